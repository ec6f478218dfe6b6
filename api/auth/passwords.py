"""Client secrets and passwords are stored only as argon2 hashes."""

import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Verified against when the account does not exist, so timing does not reveal which exist.
_DUMMY_HASH = _hasher.hash("flagshare-no-such-account")


def hash_secret(secret: str) -> str:
    return _hasher.hash(secret)


def verify_secret(stored_hash: str | None, candidate: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, candidate) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_client_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class NewSecret:
    """A client secret, shown once, and the argon2 hash that is stored.

    Made before the request's transaction begins: hashing takes a fifth of a second, during
    which a transaction would hold a pooled connection and, on SQLite, the one write lock that
    every publish waits for."""

    plain: str
    hashed: str


def new_secret() -> NewSecret:
    plain = new_client_secret()
    return NewSecret(plain, hash_secret(plain))
