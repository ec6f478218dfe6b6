"""Signing keys (persisted in the database) and the key sets of trusted issuers.

With FLAGSHARE_SIGNING_KEY_PASSPHRASE_FILE set, the private halves are stored encrypted
(PKCS #8, the passphrase never in the database) and decrypted only in each process's memory.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from sqlmodel import Session, select

from api.auth import jwt
from api.auth.models import SigningKey
from api.db import new_id, utcnow
from api.settings import Settings

log = logging.getLogger("flagshare.keys")
JWKS_REFRESH_SECONDS = 300
# Margin for verifiers whose clocks run behind ours: they may take a token as unexpired this
# long after its `exp`, so its key must stay published that much longer.
CLOCK_SKEW_SECONDS = 60
# How often each process re-reads the signing keys, so a rotation elsewhere reaches it.
KEY_RELOAD_SECONDS = 30
# A token naming a key we do not know re-reads them, at most this often (unknown kids are
# cheap for anyone to send).
KID_MISS_RELOAD_SECONDS = 1
_NEVER_FETCHED = (float("-inf"), {})  # (fetched at, keys) of an outside issuer not yet read
SEALED = "-----BEGIN ENCRYPTED PRIVATE KEY-----"


class SigningKeyError(Exception):
    """The stored signing key cannot be used with this configuration: the process must not
    start."""


class KeyRing:
    """One per process: our own keys from the database, other issuers' from their JWKS.

    Rotation (`rotate`) adds a signing key and retires the previous one. A retired key signs
    nothing more, but stays published in the JWKS, and accepted, until every token it can have
    signed has expired: its retirement, plus the time other processes may take to notice
    (`reload_seconds`), plus the longest lifetime it signs for (an access token or a console
    session), plus clock skew. Then it is dropped from the JWKS and its tokens are refused. Its
    public half is kept for good in `historic_jwks`, because audit checkpoints it signed must
    stay verifiable for years; its private half is erased at retirement.
    """

    def __init__(self, settings: Settings, session_factory: Callable[[], Session],
                 reload_seconds: float = KEY_RELOAD_SECONDS):
        self.settings = settings
        self.session_factory = session_factory
        self.reload_seconds = reload_seconds
        self._lock = threading.Lock()
        self._keys: list[SigningKey] = []  # every key ever made, oldest first
        self._signing: tuple[str, str] | None = None
        self._external: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}
        self._last_own_reload = float("-inf")
        self._passphrase = settings.signing_key_passphrase
        self._opened: dict[str, str] = {}  # stored form -> private PEM in the clear
        self._warned = False

    @property
    def publication_horizon(self) -> timedelta:
        """How long after retirement a key stays published and accepted."""
        longest = max(self.settings.token_ttl_seconds, self.settings.console_idle_minutes * 60)
        return timedelta(seconds=self.reload_seconds + longest + CLOCK_SKEW_SECONDS)

    def ensure_signing_key(self) -> None:
        """Create the first signing key if the database has none, or encrypt one stored in the
        clear once a passphrase is configured; then load all keys. Raises SigningKeyError when
        the stored key cannot be opened."""
        with self.session_factory() as session:
            active = session.exec(select(SigningKey).where(SigningKey.retired_at.is_(None))).first()
            if active is None:
                session.add(_new_signing_key(self._passphrase))
                session.commit()
            elif self._passphrase and not active.private_pem.startswith(SEALED):
                active.private_pem = _seal(active.private_pem, self._passphrase)
                session.add(active)
                session.commit()
        if self._passphrase is None and not self.settings.is_development and not self._warned:
            self._warned = True  # once a process: `serve` ensures the key twice as it starts
            log.warning("the signing key is stored in the database in the clear: anyone with a "
                        "copy of the database can sign tokens; set "
                        "FLAGSHARE_SIGNING_KEY_PASSPHRASE_FILE to store it encrypted")
        self.reload()

    def rotate(self) -> SigningKey:
        """Sign with a new key from now on; the current one is retired (see the class)."""
        with self.session_factory() as session:
            now = utcnow()
            current = session.exec(select(SigningKey).where(SigningKey.retired_at.is_(None))).all()
            for old in current:
                self._open(old.private_pem)  # never a key in the clear for want of the passphrase
                old.retired_at = now
                old.private_pem = ""  # never signs again: nothing left to steal
                session.add(old)
            key = _new_signing_key(self._passphrase)
            session.add(key)
            session.commit()
        self.reload()
        return key

    def reload(self) -> None:
        with self.session_factory() as session:
            rows = session.exec(select(SigningKey).order_by(SigningKey.created_at)).all()
        active = [r for r in rows if r.retired_at is None]
        signing = (active[-1].kid, self._open(active[-1].private_pem)) if active else None
        with self._lock:
            self._keys = list(rows)
            self._signing = signing
            self._last_own_reload = time.monotonic()

    def _open(self, stored: str) -> str:
        """The private key in the clear; decrypting costs milliseconds, so each stored form is
        opened once."""
        if stored not in self._opened:
            self._opened[stored] = _decrypt(stored, self._passphrase)
        return self._opened[stored]

    def reload_if_stale(self) -> None:
        """Re-read the keys if the last read is older than `reload_seconds`. Call it outside
        any transaction: on SQLite the read would wait for the caller's own write lock."""
        if time.monotonic() - self._last_own_reload > self.reload_seconds:
            self.reload()

    def keep_fresh(self, stop: threading.Event) -> None:
        """Reload every `reload_seconds` until `stop` is set (a daemon thread of `serve`)."""
        while not stop.wait(self.reload_seconds):
            try:
                self.reload()
            except Exception:  # the database may be briefly away; the next round retries
                log.warning("could not reload signing keys", exc_info=True)

    def sign(self, claims: dict[str, Any]) -> str:
        if self._signing is None:
            self.ensure_signing_key()
        kid, pem = self._signing
        return jwt.sign(claims, pem, kid)

    def _published(self) -> dict[str, dict[str, Any]]:
        """kid -> public JWK of the keys whose tokens may still be alive."""
        oldest_live = utcnow() - self.publication_horizon
        return {k.kid: k.public_jwk for k in self._keys
                if k.retired_at is None or k.retired_at > oldest_live}

    def jwks(self) -> dict[str, Any]:
        if not self._keys:
            self.reload()
        return {"keys": list(self._published().values())}

    def historic_jwks(self) -> dict[str, Any]:
        """Every key this service has ever signed with: what verifies old audit checkpoints.
        Never used to accept a token; read afresh, so a rotation elsewhere is seen at once."""
        self.reload()
        return {"keys": [k.public_jwk for k in self._keys]}

    def keys_for(self, issuer: str, kid_hint: str | None = None) -> dict[str, dict[str, Any]] | None:
        """Key set for an issuer we trust, or None for an issuer we do not."""
        if self.must_load(issuer, kid_hint):
            if issuer == self.settings.issuer:
                self.reload()
            else:
                keys = self._fetch(self._trusted(issuer)) or self._external_keys(issuer)
                self._external[issuer] = (time.monotonic(), keys)
        return self.keys_in_memory(issuer)

    def keys_in_memory(self, issuer: str) -> dict[str, dict[str, Any]] | None:
        """What `keys_for` returns when `must_load` says nothing need be read first."""
        if issuer == self.settings.issuer:
            return self._published()
        return None if self._trusted(issuer) is None else self._external_keys(issuer)

    def must_load(self, issuer: str, kid_hint: str | None = None) -> bool:
        """Whether `keys_for` would read the database or fetch a key set: the caller on the event
        loop then hands it to a thread; otherwise the keys are in memory."""
        if issuer == self.settings.issuer:
            # Another process may have rotated keys and signed with the new one already.
            return not self._keys or (kid_hint not in self._published() and time.monotonic()
                                      - self._last_own_reload > KID_MISS_RELOAD_SECONDS)
        if self._trusted(issuer) is None:
            return False
        # Never fetched counts as infinitely old: monotonic time may start near 0 at boot.
        fetched_at, keys = self._external.get(issuer, _NEVER_FETCHED)
        return (time.monotonic() - fetched_at > JWKS_REFRESH_SECONDS
                or (kid_hint not in keys and time.monotonic() - fetched_at > 10))

    def _external_keys(self, issuer: str) -> dict[str, dict[str, Any]]:
        return self._external.get(issuer, _NEVER_FETCHED)[1]

    def _trusted(self, issuer: str):
        return next((t for t in self.settings.trusted_issuers if t.issuer == issuer), None)

    @staticmethod
    def _fetch(trusted) -> dict[str, dict[str, Any]]:
        try:
            if trusted.jwks_file:
                doc = json.loads(trusted.jwks_file.read_text())
            else:
                resp = httpx.get(str(trusted.jwks_url), timeout=5.0)
                resp.raise_for_status()
                doc = resp.json()
            entries = doc.get("keys") if isinstance(doc, dict) else None
            if not isinstance(entries, list):
                raise ValueError('not a JWKS document (no "keys" list)')
            keys = {k["kid"]: k for k in entries if jwt.usable_public_jwk(k)}
            if len(keys) < len(entries):
                log.warning("JWKS for trusted issuer %s: skipped %d unusable key(s)",
                            trusted.issuer, len(entries) - len(keys))
            return keys
        except (httpx.HTTPError, OSError, ValueError) as exc:
            log.warning("could not load JWKS for trusted issuer %s: %s", trusted.issuer, exc)
            return {}


def _new_signing_key(passphrase: bytes | None) -> SigningKey:
    pem, public = jwt.new_rsa_key()
    kid = new_id()
    return SigningKey(kid=kid, private_pem=_seal(pem, passphrase) if passphrase else pem,
                      public_jwk={**public, "kid": kid})


def reseal_signing_keys(session: Session, old: bytes | None, new: bytes) -> int:
    """Every key that can still sign, encrypted under the `new` passphrase instead of `old`
    (or of none), in the caller's transaction; SigningKeyError if `old` does not open one.
    Retired keys hold no private half, so there is nothing of theirs to re-encrypt."""
    keys = session.exec(select(SigningKey).where(SigningKey.private_pem != "")).all()
    for key in keys:
        key.private_pem = _seal(_decrypt(key.private_pem, old), new)
        session.add(key)
    return len(keys)


def _decrypt(stored: str, passphrase: bytes | None) -> str:
    """The private key in the clear, from its stored form."""
    if not stored.startswith(SEALED):
        return stored
    if passphrase is None:
        raise SigningKeyError(
            "the signing key in the database is encrypted: set "
            "FLAGSHARE_SIGNING_KEY_PASSPHRASE_FILE to the file holding its passphrase")
    try:
        key = serialization.load_pem_private_key(stored.encode(), passphrase)
    except ValueError:
        raise SigningKeyError(
            "the passphrase in FLAGSHARE_SIGNING_KEY_PASSPHRASE_FILE does not decrypt "
            "the signing key in the database") from None
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _seal(pem: str, passphrase: bytes) -> str:
    """The private key encrypted under the passphrase (PKCS #8, the best scheme cryptography
    offers), as it is stored."""
    key = serialization.load_pem_private_key(pem.encode(), None)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(passphrase)).decode()
