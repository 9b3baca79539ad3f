"""Secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) under a rotatable list of keys.

CREDENTIALS_ENCRYPTION_KEYS is a comma-separated list. The first key encrypts, every key
decrypts, so a new key goes first and the old ones stay listed until `flask credentials
rotate-key` has re-encrypted every stored secret under the new one. An entry is either a Fernet
key (`Fernet.generate_key()`) or a passphrase of at least 32 characters, from which a key is
derived with HKDF-SHA256. Without the setting, the one key is derived from SECRET_KEY.
"""

import base64
import binascii
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MIN_PASSPHRASE = 32
_HKDF_INFO = b"gefapi credentials encryption v1"


class SecretUnreadable(Exception):
    """A stored secret that none of the configured keys decrypts."""


def _is_fernet_key(entry: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(entry.encode())) == 32 and len(entry) == 44
    except (binascii.Error, ValueError):
        return False


def _derive(passphrase: str) -> bytes:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        passphrase.encode()
    )
    return base64.urlsafe_b64encode(key)


def key_entries(config) -> tuple[str, ...]:
    raw = config.get("CREDENTIALS_ENCRYPTION_KEYS") or ""
    entries = tuple(entry.strip() for entry in raw.split(",") if entry.strip())
    return entries or (config["SECRET_KEY"],)


def check_keys(entries: tuple[str, ...]) -> None:
    for position, entry in enumerate(entries, start=1):
        if not _is_fernet_key(entry) and len(entry) < MIN_PASSPHRASE:
            raise RuntimeError(
                f"CREDENTIALS_ENCRYPTION_KEYS entry {position} is neither a Fernet key nor a "
                f"passphrase of at least {MIN_PASSPHRASE} characters"
            )


@functools.lru_cache(maxsize=8)
def _box(entries: tuple[str, ...]) -> MultiFernet:
    check_keys(entries)
    return MultiFernet(
        [Fernet(entry.encode() if _is_fernet_key(entry) else _derive(entry)) for entry in entries]
    )


def box(config) -> MultiFernet:
    return _box(key_entries(config))


def encrypt(config, plaintext: str) -> str:
    return box(config).encrypt(plaintext.encode()).decode()


def decrypt(config, token: str) -> str:
    try:
        return box(config).decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("no configured key decrypts this secret") from None


def reencrypt(config, token: str) -> str:
    """The same secret under the first key (MultiFernet.rotate)."""
    try:
        return box(config).rotate(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("no configured key decrypts this secret") from None
