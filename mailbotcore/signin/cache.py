"""The token cache file: MSAL's ``SerializableTokenCache`` as JSON in one private file.

Saved after every change (refresh tokens rotate), atomically, mode 0600, under a
cross-process lock with a re-read, so concurrent cron jobs never lose a token; one
account's entries are merged into what is on disk, so other accounts are kept.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailbotcore.errors import SignInRequired
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
        """The cache as JSON; {} when there is none. Corrupt files are an error, never discarded."""
        fileutil.check_private(self.path, "token cache")
        try:
            data = self.path.read_bytes()
            text = self._plain(data).decode("utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            raise SignInRequired(f"cannot read the token cache {self.path}: {exc}") from exc
        try:
            state = json.loads(text) if text.strip() else {}
            if not isinstance(state, dict):
                raise ValueError("not a JSON object")
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

    def save(self, cache: msal.SerializableTokenCache) -> None:
        if cache.has_state_changed:
            self.write_state(json.loads(cache.serialize()))
            cache.has_state_changed = False

    def write_state(self, state: dict[str, Any]) -> None:
        data = json.dumps(state, indent=1, sort_keys=True).encode()
        if self.key_source is not None and self.key_source.configured:
            data = self.key_source.key().encrypt(data)  # a plain cache is encrypted at its next save
        fileutil.atomic_write(self.path, data)

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
        """MSAL's http_cache (tenant discovery and throttling hints, no tokens); {} when unusable.

        It is a pickle, so it is only loaded from a private file of ours."""
        try:
            info = self.http_cache_path.stat()
            if info.st_uid != os.getuid() or info.st_mode & 0o077:
                log.warning("ignoring %s: not a private file of this user", self.http_cache_path)
                return {}
            with self.http_cache_path.open("rb") as handle:
                loaded = pickle.load(handle)
            return loaded if isinstance(loaded, dict) else {}
        except FileNotFoundError:
            return {}
        except Exception as exc:  # a damaged cache of cheap data: start afresh
            log.debug("ignoring unreadable http cache %s: %s", self.http_cache_path, exc)
            return {}

    def save_http_cache(self, http_cache: dict[Any, Any], before: bytes) -> None:
        data = pickle.dumps(discovery_only(http_cache))
        if data != before:
            fileutil.atomic_write(self.http_cache_path, data)

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
