"""The token cache's encrypted file format (mailbotcore.signin.encryption)."""

from __future__ import annotations

import base64
import os

import pytest

from mailbotcore.signin import encryption

PLAIN = b'{"AccessToken": {"k": {"secret": "eyJ0eXAi..."}}}'


def test_passphrase_round_trip_uses_scrypt_with_a_stored_salt() -> None:
    data = encryption.encrypt(PLAIN, b"a passphrase")
    assert data.startswith(encryption.MAGIC) and b"AccessToken" not in data
    assert data[len(encryption.MAGIC)] == encryption.VERSION
    assert data[len(encryption.MAGIC) + 1] == encryption.KDF_SCRYPT
    assert encryption.decrypt(data, b"a passphrase\n") == PLAIN  # a trailing newline is not part of it
    other = encryption.encrypt(PLAIN, b"a passphrase")
    assert (
        other[len(encryption.MAGIC) + 2 : encryption.HEADER_BYTES]
        != data[len(encryption.MAGIC) + 2 : encryption.HEADER_BYTES]
    )


def test_raw_key_round_trip() -> None:
    key = base64.b64encode(os.urandom(32))
    data = encryption.encrypt(PLAIN, key)
    assert data[len(encryption.MAGIC) + 1] == encryption.KDF_RAW
    assert encryption.decrypt(data, key) == PLAIN
    with pytest.raises(encryption.DecryptError):
        encryption.decrypt(data, b"a passphrase")


@pytest.mark.parametrize("where", [len(encryption.MAGIC) + 3, encryption.HEADER_BYTES - 1, -1])
def test_any_changed_byte_is_refused(where: int) -> None:
    data = bytearray(encryption.encrypt(PLAIN, b"a passphrase"))
    data[where] ^= 1
    with pytest.raises(encryption.DecryptError):
        encryption.decrypt(bytes(data), b"a passphrase")


def test_wrong_key_and_unknown_version() -> None:
    data = encryption.encrypt(PLAIN, b"a passphrase")
    with pytest.raises(encryption.DecryptError, match="wrong key"):
        encryption.decrypt(data, b"another")
    newer = data[: len(encryption.MAGIC)] + bytes([2]) + data[len(encryption.MAGIC) + 1 :]
    with pytest.raises(encryption.DecryptError, match="unknown format version 2"):
        encryption.decrypt(newer, b"a passphrase")
    assert not encryption.is_encrypted(PLAIN)
