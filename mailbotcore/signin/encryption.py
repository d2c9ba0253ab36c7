"""Encryption at rest for the token cache (optional): AES-256-GCM, versioned file format.

The key comes from ``MAILBOT_CACHE_KEY_FILE`` (fits systemd's ``LoadCredential=``) or from
the output of ``MAILBOT_CACHE_KEY_COMMAND`` (``pass show mailbot``, ``systemd-creds
decrypt ...``), run with a timeout so a missing keyring can never hang a cron job.

What the file or command holds is either a raw key -- 32 bytes in base64, as printed by
``openssl rand -base64 32`` -- or a passphrase, which goes through scrypt with a random
salt stored in the file.

File format, version 1 (all of it authenticated; the header is the AES-GCM associated data)::

    b"MAILBOT-CACHE\\x00"  magic (14 bytes)
    1                     version (1 byte)
    kdf                   0 = raw key, 1 = scrypt(passphrase, salt, n=2**15, r=8, p=1) (1 byte)
    salt                  16 bytes (zeros for a raw key)
    nonce                 12 bytes, fresh for every write
    ciphertext + tag      AES-256-GCM of the cache's JSON

A file that does not start with the magic is the plain JSON cache. Small API for other
readers of the cache (e.g. a fast path that reads it without MSAL): :func:`is_encrypted`
and :func:`decrypt` (``decrypt(data, key_material) -> bytes``).
"""

from __future__ import annotations

import base64
import binascii
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from mailbotcore.errors import SignInRequired, TemporaryFailure

MAGIC = b"MAILBOT-CACHE\x00"
VERSION = 1
KDF_RAW, KDF_SCRYPT = 0, 1
SALT_BYTES, NONCE_BYTES, KEY_BYTES = 16, 12, 32
HEADER_BYTES = len(MAGIC) + 2 + SALT_BYTES + NONCE_BYTES
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
COMMAND_TIMEOUT = 20.0


class DecryptError(ValueError):
    """The data is not a cache this key can open (wrong key, damaged, unknown version)."""


def is_encrypted(data: bytes) -> bool:
    return data.startswith(MAGIC)


def _raw_key(material: bytes) -> bytes | None:
    """32 bytes given in base64 are a key; anything else is a passphrase."""
    text = material.strip()
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return decoded if len(decoded) == KEY_BYTES else None


def _scrypt(passphrase: bytes, salt: bytes) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=KEY_BYTES, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(passphrase)


@dataclass
class CacheKey:
    """Key material from the key file or command; derived keys are remembered per salt."""

    material: bytes = field(repr=False)
    origin: str = "the cache key"
    _derived: dict[bytes, bytes] = field(default_factory=dict, repr=False)
    _salt: bytes | None = field(default=None, repr=False)

    def _key(self, kdf: int, salt: bytes) -> bytes:
        if kdf == KDF_RAW:
            raw = _raw_key(self.material)
            if raw is None:
                raise DecryptError("the file was encrypted with a raw key, and this key is a passphrase")
            return raw
        if salt not in self._derived:
            self._derived[salt] = _scrypt(self.material.strip(), salt)
        return self._derived[salt]

    def decrypt(self, data: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not is_encrypted(data) or len(data) < HEADER_BYTES + 16:
            raise DecryptError("not an encrypted mailbot token cache")
        version, kdf = data[len(MAGIC)], data[len(MAGIC) + 1]
        if version != VERSION or kdf not in (KDF_RAW, KDF_SCRYPT):
            raise DecryptError(f"unknown format version {version} (kdf {kdf}): written by a newer mailbot?")
        start = len(MAGIC) + 2
        salt = data[start : start + SALT_BYTES]
        nonce = data[start + SALT_BYTES : HEADER_BYTES]
        try:
            plain = AESGCM(self._key(kdf, salt)).decrypt(nonce, data[HEADER_BYTES:], data[:HEADER_BYTES])
        except InvalidTag:
            raise DecryptError("wrong key, or the file was damaged") from None
        if kdf == KDF_SCRYPT:
            self._salt = salt  # re-encrypt with the same salt: no second scrypt run
        return plain

    def encrypt(self, plain: bytes) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        raw = _raw_key(self.material)
        if raw is not None:
            kdf, salt, key = KDF_RAW, bytes(SALT_BYTES), raw
        else:
            salt = self._salt or os.urandom(SALT_BYTES)
            kdf, key = KDF_SCRYPT, self._key(KDF_SCRYPT, salt)
            self._salt = salt
        header = MAGIC + bytes([VERSION, kdf]) + salt + os.urandom(NONCE_BYTES)
        return header + AESGCM(key).encrypt(header[-NONCE_BYTES:], plain, header)


def decrypt(data: bytes, key_material: bytes) -> bytes:
    """The plain cache JSON of an encrypted cache file's ``data``; DecryptError if it cannot."""
    return CacheKey(key_material).decrypt(data)


def encrypt(plain: bytes, key_material: bytes) -> bytes:
    return CacheKey(key_material).encrypt(plain)


@dataclass
class KeySource:
    """Where the key comes from; read once, and only when an encrypted file is read or written."""

    key_file: Path | None = None
    key_command: str | None = None
    timeout: float = COMMAND_TIMEOUT
    _key: CacheKey | None = field(default=None, repr=False)

    @property
    def configured(self) -> bool:
        return self.key_file is not None or bool(self.key_command)

    def describe(self) -> str:
        if self.key_file is not None:
            return f"MAILBOT_CACHE_KEY_FILE {self.key_file}"
        return "MAILBOT_CACHE_KEY_COMMAND"

    def key(self) -> CacheKey:
        if self._key is None:
            material = self._read_file() if self.key_file is not None else self._run_command()
            if not material.strip():
                raise SignInRequired(f"{self.describe()} gave an empty key: the token cache cannot be opened")
            self._key = CacheKey(material, self.describe())
        return self._key

    def _read_file(self) -> bytes:
        from mailbotcore.store.files import read_private

        path = self.key_file
        if path is None:
            raise SignInRequired("no cache key file is configured")
        data = read_private(path, "cache key file")  # no symlink; ours, regular, not readable by others
        if data is None:
            raise SignInRequired(f"cannot read the cache key file {path}: it does not exist")
        return data

    def _run_command(self) -> bytes:
        from mailbotcore.config import SECRET_VARIABLES

        env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
        try:
            done = subprocess.run(
                ["/bin/sh", "-c", self.key_command or "false"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.timeout,
                env=env,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as exc:
            raise TemporaryFailure(
                f"MAILBOT_CACHE_KEY_COMMAND did not print a key within {self.timeout:g} s",
                hint="a keyring that waits for a desktop session never answers under cron; use MAILBOT_CACHE_KEY_FILE",
            ) from exc
        except OSError as exc:
            raise SignInRequired(f"cannot run MAILBOT_CACHE_KEY_COMMAND: {exc.strerror or exc}") from exc
        if done.returncode != 0:
            reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise SignInRequired(
                f"MAILBOT_CACHE_KEY_COMMAND failed (exit {done.returncode})" + (f": {reason[0]}" if reason else "")
            )
        return done.stdout
