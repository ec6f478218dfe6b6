"""Webhook signing secrets sealed at rest.

The secret that signs an agency's webhooks has to be stored to be used; it cannot be hashed.
Stored in the clear, anyone with a copy of the database (a backup, say) could sign events as
this service and put a forged flag into an agency's own system. With
FLAGSHARE_SIGNING_KEY_PASSPHRASE_FILE set (the passphrase that already seals the token signing
keys) each secret is stored encrypted with AES-256-GCM under a key derived from the passphrase
by scrypt, and opened only in a process's memory when it signs.
"""

from __future__ import annotations

import base64
import os
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from sqlmodel import Session, select

from api.auth.keys import SigningKeyError
from api.forwarding.models import Subscription

SEALED = "sealed:v1:"
# One salt for the installation: the passphrase file is meant to be random, and the key is
# derived once per process, not once per secret.
_SALT = b"flagshare webhook signing secrets"


class SealedSecretError(SigningKeyError):
    """A sealed secret cannot be opened: no passphrase, or not the one that sealed it. Stops a
    process as a signing key it cannot open does."""


@lru_cache(maxsize=2)
def _cipher(passphrase: bytes) -> AESGCM:
    return AESGCM(Scrypt(salt=_SALT, length=32, n=2**15, r=8, p=1).derive(passphrase))


def seal(secret: str, passphrase: bytes | None) -> str:
    """What is stored: the secret sealed under the passphrase, or as it is without one. The
    longest secret accepted (whsec_ and 64 bytes) seals to 174 characters, within the column."""
    if passphrase is None:
        return secret
    nonce = os.urandom(12)
    sealed = nonce + _cipher(passphrase).encrypt(nonce, secret.encode(), None)
    return SEALED + base64.urlsafe_b64encode(sealed).decode()


def unseal(stored: str, passphrase: bytes | None) -> str:
    if not stored.startswith(SEALED):
        return stored
    if passphrase is None:
        raise SealedSecretError("webhook signing secrets in the database are encrypted: set "
                                "FLAGSHARE_SIGNING_KEY_PASSPHRASE_FILE to the file holding "
                                "their passphrase")
    sealed = base64.urlsafe_b64decode(stored.removeprefix(SEALED))
    try:
        return _cipher(passphrase).decrypt(sealed[:12], sealed[12:], None).decode()
    except InvalidTag:
        raise SealedSecretError("the passphrase in FLAGSHARE_SIGNING_KEY_PASSPHRASE_FILE does "
                                "not open the webhook signing secrets in the database") from None


def seal_stored_secrets(session: Session, passphrase: bytes | None) -> int:
    """At start: with a passphrase, seal any secret still in the clear, and open one sealed
    secret, so that a missing or wrong passphrase stops the process before it sends anything.
    Returns how many were sealed now."""
    sealed, opened_one = 0, False
    for sub in session.exec(select(Subscription).where(Subscription.secret.is_not(None))).all():
        if sub.secret.startswith(SEALED):
            if not opened_one:
                unseal(sub.secret, passphrase)
                opened_one = True
        elif passphrase is not None:
            sub.secret = seal(sub.secret, passphrase)
            session.add(sub)
            sealed += 1
    session.commit()
    return sealed


def reseal_stored_secrets(session: Session, old: bytes | None, new: bytes) -> int:
    """Every stored secret sealed under the `new` passphrase instead of `old` (or of none), in
    the caller's transaction; SealedSecretError if `old` does not open one."""
    subs = session.exec(select(Subscription).where(Subscription.secret.is_not(None))).all()
    for sub in subs:
        sub.secret = seal(unseal(sub.secret, old), new)
        session.add(sub)
    return len(subs)


def ensure_sealed(session_factory, passphrase: bytes | None) -> None:
    """seal_stored_secrets in a session of its own, as a process starts."""
    with session_factory() as session:
        seal_stored_secrets(session, passphrase)
