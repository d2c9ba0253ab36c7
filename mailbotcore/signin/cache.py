"""The token cache file: MSAL's ``SerializableTokenCache`` as JSON in one private file.

Saved after every change (refresh tokens rotate), atomically, mode 0600, under a
cross-process lock with a re-read, so concurrent cron jobs never lose a token; one
account's entries are merged into what is on disk, so other accounts are kept.
"""

from __future__ import annotations

import errno
import heapq
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailbotcore.errors import SignInRequired, TemporaryFailure
from mailbotcore.signin import encryption
from mailbotcore.store import files as fileutil

if TYPE_CHECKING:
    import msal

log = logging.getLogger("mailbot.auth")


class TokenCacheFile:
    """MSAL's ``SerializableTokenCache`` kept in one JSON file, plus the persisted ``http_cache``."""

    def __init__(
        self,
        path: Path,
        lock_wait: float,
        logout_command: str = "mailbot logout",
        key_source: encryption.KeySource | None = None,
    ) -> None:
        self.path = path
        self.key_source = key_source
        self.logout_command = logout_command
        self.http_cache_path = path.with_name(path.name + ".http-cache")
        self.lock_path = path.with_name(path.name + ".lock")
        self.lock_wait = lock_wait

    def encrypted_on_disk(self) -> bool:
        """Whether the file on disk is encrypted (no key needed to tell)."""
        try:
            with self.path.open("rb") as handle:
                return encryption.is_encrypted(handle.read(len(encryption.MAGIC)))
        except OSError:
            return False

    def lock(self) -> fileutil.FileLock:
        return fileutil.FileLock(
            self.lock_path, self.lock_wait, f"the token cache {self.path} is locked by another mailbot run"
        )

    def read_state(self) -> dict[str, Any]:
        """The cache as JSON; {} when there is none. Corrupt files are an error, never discarded.

        Read through an ``O_NOFOLLOW`` descriptor checked for owner, type and mode: a symlink,
        a directory or another user's file is refused (78), never chmodded or renamed."""
        data = fileutil.read_private(self.path, "token cache")
        if data is None:
            return {}
        try:
            text = self._plain(data).decode("utf-8")
            state = json.loads(text) if text.strip() else {}
            if not isinstance(state, dict):
                raise ValueError("not a JSON object")
            for section, entries in state.items():
                # MSAL's format: each section maps keys to objects.
                if not isinstance(entries, dict) or not all(isinstance(e, dict) for e in entries.values()):
                    raise ValueError(f"{section!r} is not a map of entries")
        except ValueError as exc:
            raise SignInRequired(
                f"the token cache {self.path} is corrupt ({exc}); it was left untouched",
                hint=f'inspect it, or run "{self.logout_command}" to move it aside, then "login"',
            ) from exc
        return state

    @staticmethod
    def to_cache(state: dict[str, Any]) -> msal.SerializableTokenCache:
        import msal

        cache = msal.SerializableTokenCache()
        if state:
            cache.deserialize(json.dumps(state))
        return cache

    def reserve(self) -> fileutil.Reservation | None:
        """Room on disk for saving the cache after a refresh, taken before the refresh (75 if
        there is none: the old refresh token is then not spent, the cache stays usable).

        None when the folder cannot take a file for another reason (read-only, say): then the
        save after a refresh, if one is needed, reports that."""
        try:
            size = self.path.lstat().st_size
        except OSError:
            size = 0
        try:
            return fileutil.Reservation(self.path, size + 64 * 1024)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise fileutil.os_failure(exc, "write the token cache", self.path) from exc
            log.debug("no room reserved for the token cache %s: %s", self.path, exc)
            return None

    def may_refresh(self, state: dict[str, Any], username: str, force: bool) -> bool:
        """False when the cached access token of ``username`` will be used as it is (MSAL
        refreshes 5 minutes before expiry, or after ``refresh_on``), so nothing is written."""
        if force:
            return True
        homes = {account.get("home_account_id") for account in self.accounts(state, username)}
        now = time.time()
        for entry in state.get("AccessToken", {}).values():
            if entry.get("home_account_id") not in homes:
                continue
            try:
                expires = int(entry.get("expires_on", 0))
                refresh_on = int(entry.get("refresh_on", expires))
            except (TypeError, ValueError):
                continue
            if expires - now > 300 + 60 and refresh_on > now + 60:
                return False
        return True

    def save(self, cache: msal.SerializableTokenCache, reservation: fileutil.Reservation | None = None) -> None:
        if cache.has_state_changed:
            self.write_state(json.loads(cache.serialize()), reservation)
            cache.has_state_changed = False

    def write_state(self, state: dict[str, Any], reservation: fileutil.Reservation | None = None) -> None:
        """Atomically (into ``reservation`` when given); on a full disk the old cache stays as
        it was and the run exits 75."""
        data = json.dumps(state, indent=1, sort_keys=True).encode()
        if self.key_source is not None and self.key_source.configured:
            data = self.key_source.key().encrypt(data)  # a plain cache is encrypted at its next save
        if reservation is None:
            fileutil.write_private(self.path, data, "token cache")
            return
        try:
            reservation.commit(data)
        except OSError as exc:
            raise fileutil.os_failure(exc, "write the token cache", self.path) from exc

    def _plain(self, data: bytes) -> bytes:
        """The cache JSON of the file's bytes, decrypting an encrypted cache (exit 77 if it cannot)."""
        if not encryption.is_encrypted(data):
            return data
        if self.key_source is None or not self.key_source.configured:
            raise SignInRequired(
                f"the token cache {self.path} is encrypted, but no key is configured; it was left untouched",
                hint="set MAILBOT_CACHE_KEY_FILE or MAILBOT_CACHE_KEY_COMMAND to the key it was encrypted with",
            )
        key = self.key_source.key()
        try:
            return key.decrypt(data)
        except encryption.DecryptError as exc:
            raise SignInRequired(
                f"cannot decrypt the token cache {self.path} with {key.origin}: {exc}; it was left untouched"
            ) from exc

    def load_http_cache(self) -> dict[Any, Any]:
        """MSAL's http_cache (tenant discovery documents, no tokens, no errors); {} when unusable.

        JSON, never a pickle (see :func:`http_cache_to_json`), read like the token cache: a
        symlink, a directory or another user's file there is refused (78). Content that does
        not parse (an old pickle, damage) is cheap to fetch again: it is ignored."""
        data = fileutil.read_private(self.http_cache_path, "MSAL http cache")
        if data is None:
            return {}
        try:
            return http_cache_from_json(data)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            log.debug("ignoring unusable http cache %s: %s", self.http_cache_path, exc)
            return {}

    def save_http_cache(self, http_cache: dict[Any, Any], before: bytes) -> None:
        """Only when it changed; a failure to save this cache of public documents is a warning."""
        data = http_cache_to_json(http_cache)
        if data != before:
            try:
                fileutil.write_private(self.http_cache_path, data, "MSAL http cache")
            except TemporaryFailure as exc:
                log.warning("%s (it is fetched again next time)", exc.message)

    @staticmethod
    def accounts(state: dict[str, Any], username: str) -> list[dict[str, Any]]:
        """Cached accounts for ``username`` (case-insensitive), read without any network."""
        return [
            account
            for account in state.get("Account", {}).values()
            if str(account.get("username", "")).lower() == username.lower()
        ]


def discovery_only(http_cache: dict[Any, Any]) -> dict[Any, Any]:
    """The GET (discovery) entries of MSAL's http_cache, without its replayed POST errors.

    MSAL also caches 400 and 5xx token answers for 60 s; persisted, they would be replayed
    to the next cron run without asking the server, so only discovery is kept."""
    index = http_cache.get("_index_")
    if not (isinstance(index, (tuple, list)) and len(index) == 2 and isinstance(index[1], dict)):
        return {}
    sequence, timestamps = index
    keep = sorted(key for key in timestamps if isinstance(key, str) and key.startswith("GET "))
    kept = {key: http_cache[key] for key in keep if key in http_cache}
    heap = [entry for entry in sequence if entry[2] in kept]
    heapq.heapify(heap)
    kept["_index_"] = (heap, {key: timestamps[key] for key in kept})
    return kept


def http_cache_to_json(http_cache: dict[Any, Any]) -> bytes:
    """The discovery entries of MSAL's http_cache as JSON: URL key, status, text, headers, times.

    MSAL keeps ``NormalizedResponse`` objects there; only what they carry is written."""
    kept = discovery_only(http_cache)
    index = kept.get("_index_")
    timestamps = index[1] if index else {}
    entries = {}
    for key, value in kept.items():
        if key == "_index_" or key not in timestamps:
            continue
        status, text = getattr(value, "status_code", None), getattr(value, "text", None)
        headers = getattr(value, "headers", {})
        if not (isinstance(status, int) and isinstance(text, str) and isinstance(headers, dict)):
            continue
        expires_at, created_at = timestamps[key]
        entries[key] = {
            "status_code": status,
            "text": text,
            "headers": {str(k): str(v) for k, v in headers.items()},
            "expires_at": int(expires_at),
            "created_at": int(created_at),
        }
    return json.dumps({"version": 1, "entries": entries}, sort_keys=True).encode()


def http_cache_from_json(data: bytes) -> dict[Any, Any]:
    """MSAL's http_cache rebuilt from :func:`http_cache_to_json`; only well-formed discovery
    (GET, 2xx) entries are taken. Raises ValueError/TypeError on anything else."""
    from msal.throttled_http_client import NormalizedResponse

    doc = json.loads(data.decode("utf-8"))
    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("entries"), dict):
        raise ValueError("not a mailbot http cache")
    cache: dict[Any, Any] = {}
    heap: list[list[Any]] = []
    timestamps: dict[str, list[int]] = {}
    for key, entry in doc["entries"].items():
        if not (isinstance(key, str) and key.startswith("GET ") and isinstance(entry, dict)):
            raise ValueError(f"unexpected entry {key!r}")
        status, text, headers = entry.get("status_code"), entry.get("text"), entry.get("headers")
        expires_at, created_at = entry.get("expires_at"), entry.get("created_at")
        if not (
            type(status) is int
            and 200 <= status < 300
            and isinstance(text, str)
            and isinstance(headers, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
            and type(expires_at) is int
            and type(created_at) is int
        ):
            raise ValueError(f"malformed entry {key!r}")
        response = type("_Stored", (), {"status_code": status, "text": text, "headers": headers})()
        cache[key] = NormalizedResponse(response)
        heap.append([expires_at, created_at, key])
        timestamps[key] = [expires_at, created_at]
    if cache:
        heapq.heapify(heap)
        cache["_index_"] = (heap, timestamps)
    return cache


def _account_entries(state: dict[str, Any], home_account_id: str) -> dict[str, dict[str, Any]]:
    return {
        section: {key: value for key, value in entries.items() if value.get("home_account_id") == home_account_id}
        for section, entries in state.items()
        if isinstance(entries, dict)
    }


def merge_account(disk: dict[str, Any], ours: dict[str, Any], home_account_id: str) -> dict[str, Any]:
    """Replace one account's entries in ``disk`` with those in ``ours``, keeping other accounts."""
    merged = remove_account(disk, home_account_id)
    for section, entries in _account_entries(ours, home_account_id).items():
        merged.setdefault(section, {}).update(entries)
    for key, value in ours.get("AppMetadata", {}).items():
        merged.setdefault("AppMetadata", {})[key] = value
    return merged


def remove_account(state: dict[str, Any], home_account_id: str) -> dict[str, Any]:
    """``state`` without any entry of ``home_account_id``."""
    return {
        section: (
            {key: value for key, value in entries.items() if value.get("home_account_id") != home_account_id}
            if isinstance(entries, dict)
            else entries
        )
        for section, entries in state.items()
    }
