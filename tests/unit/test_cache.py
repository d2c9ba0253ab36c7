"""signin/cache.py: the token cache file and MSAL's http cache, as JSON only (never a pickle)."""

from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path

import pytest

from mailbotcore.errors import ConfigError, SignInRequired, TemporaryFailure
from mailbotcore.signin import cache

DISCOVERY = "GET https://login/x/v2.0/.well-known/openid-configuration hash=1 2xx"


class _Planted:
    """Unpickling this writes a marker file: proof that a pickle ran."""

    marker = ""

    def __reduce__(self) -> tuple:
        return (Path.write_text, (Path(self.marker), "pickle ran"))


def _store(tmp_path: Path) -> cache.TokenCacheFile:
    return cache.TokenCacheFile(tmp_path / "token_cache.json", 1.0)


@pytest.mark.parametrize("content", ['{"Account":[1]}', '{"Account":{"k":1}}', '{"AccessToken":"x"}', "[1]"])
def test_cache_of_the_wrong_shape_is_77_and_untouched(tmp_path: Path, content: str) -> None:
    store = _store(tmp_path)
    store.path.write_text(content)
    os.chmod(store.path, 0o600)
    with pytest.raises(SignInRequired) as caught:
        store.read_state()
    assert caught.value.exit_code == 77
    assert caught.value.message.startswith(f"the token cache {store.path} is corrupt (")
    assert caught.value.message.endswith("); it was left untouched")
    assert store.path.read_text() == content


def test_http_cache_is_json_and_round_trips(tmp_path: Path) -> None:
    from msal.individual_cache import _ExpiringMapping
    from msal.throttled_http_client import NormalizedResponse

    raw: dict = {}
    mapping = _ExpiringMapping(mapping=raw)
    stored = type("R", (), {"status_code": 200, "text": '{"issuer": "x"}', "headers": {"Content-Type": "json"}})()
    mapping.set(DISCOVERY, NormalizedResponse(stored), 3600)
    mapping.set("POST https://login/x/oauth2/v2.0/token hash=2 400", NormalizedResponse(stored), 60)
    store = _store(tmp_path)
    store.save_http_cache(raw, b"")
    data = store.http_cache_path.read_bytes()
    doc = json.loads(data)
    assert list(doc["entries"]) == [DISCOVERY]  # no replayed POST answers
    assert stat.S_IMODE(store.http_cache_path.stat().st_mode) == 0o600
    loaded = store.load_http_cache()
    again = _ExpiringMapping(mapping=loaded)[DISCOVERY]
    assert (again.status_code, again.text, again.headers) == (200, '{"issuer": "x"}', {"content-type": "json"})
    assert cache.http_cache_to_json(loaded) == data


def test_a_pickled_http_cache_is_never_unpickled(tmp_path: Path) -> None:
    store = _store(tmp_path)
    planted = _Planted()
    planted.marker = str(tmp_path / "ran")
    store.http_cache_path.write_bytes(pickle.dumps({"x": planted}))
    os.chmod(store.http_cache_path, 0o600)
    assert store.load_http_cache() == {}
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize(
    "entries",
    [
        {"POST https://login/token hash=1 400": {}},
        {DISCOVERY: {"status_code": 500, "text": "", "headers": {}, "expires_at": 9, "created_at": 1}},
        {DISCOVERY: {"status_code": 200, "text": 5, "headers": {}, "expires_at": 9, "created_at": 1}},
    ],
)
def test_an_http_cache_entry_that_is_not_discovery_is_ignored(tmp_path: Path, entries: dict) -> None:
    store = _store(tmp_path)
    store.http_cache_path.write_text(json.dumps({"version": 1, "entries": entries}))
    os.chmod(store.http_cache_path, 0o600)
    assert store.load_http_cache() == {}


def test_a_symlinked_http_cache_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"x")
    os.chmod(victim, 0o644)
    store.http_cache_path.symlink_to(victim)
    with pytest.raises(ConfigError) as caught:
        store.load_http_cache()
    assert caught.value.message == (
        f"cannot open the MSAL http cache {store.http_cache_path}: "
        "it is a symbolic link, which mailbot does not follow there"
    )
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644


def test_a_failed_cache_write_keeps_the_old_cache_and_is_75(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mapping (the disk-full case itself runs on a real tmpfs in the integration tests)."""
    import errno

    store = _store(tmp_path)
    store.write_state({"Account": {}})
    before = store.path.read_bytes()

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(TemporaryFailure) as caught:
        store.write_state({"Account": {"a": {}}})
    assert caught.value.message == f"cannot write the token cache {store.path}: No space left on device"
    assert store.path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["token_cache.json"]


def test_merge_account_keeps_other_accounts() -> None:
    disk = {
        "RefreshToken": {
            "a-rt": {"home_account_id": "A", "secret": "old"},
            "b-rt": {"home_account_id": "B", "secret": "b"},
        },
        "Account": {"a": {"home_account_id": "A"}, "b": {"home_account_id": "B"}},
    }
    ours = {
        "RefreshToken": {"a-rt2": {"home_account_id": "A", "secret": "new"}},
        "Account": {"a": {"home_account_id": "A"}},
    }
    merged = cache.merge_account(disk, ours, "A")
    assert merged["RefreshToken"] == {
        "b-rt": {"home_account_id": "B", "secret": "b"},
        "a-rt2": {"home_account_id": "A", "secret": "new"},
    }
    assert set(merged["Account"]) == {"a", "b"}
    assert cache.remove_account(merged, "A")["RefreshToken"] == {"b-rt": {"home_account_id": "B", "secret": "b"}}


def test_http_cache_keeps_only_discovery() -> None:
    from msal.individual_cache import _ExpiringMapping

    raw: dict = {}
    mapping = _ExpiringMapping(mapping=raw)
    mapping.set("GET https://login/x/v2.0/.well-known/openid-configuration hash=1 2xx", "discovery", 3600)
    mapping.set("POST https://login/x/oauth2/v2.0/token hash=2 400", "invalid_grant", 60)
    kept = cache.discovery_only(raw)
    reread = _ExpiringMapping(mapping=kept)
    assert list(reread) == ["GET https://login/x/v2.0/.well-known/openid-configuration hash=1 2xx"]
    assert reread["GET https://login/x/v2.0/.well-known/openid-configuration hash=1 2xx"] == "discovery"
    assert cache.discovery_only({}) == {}
