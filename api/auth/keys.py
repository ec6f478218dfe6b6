"""Signing keys (persisted in the database) and the key sets of trusted issuers."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from sqlmodel import Session, select

from api.auth import jwt
from api.auth.models import SigningKey
from api.db import new_id
from api.settings import Settings

log = logging.getLogger("flagshare.keys")
JWKS_REFRESH_SECONDS = 300


class KeyRing:
    """One per process: our own keys from the database, other issuers' from their JWKS."""

    def __init__(self, settings: Settings, session_factory: Callable[[], Session]):
        self.settings = settings
        self.session_factory = session_factory
        self._lock = threading.Lock()
        self._own: dict[str, dict[str, Any]] = {}
        self._signing: tuple[str, str] | None = None
        self._external: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}
        self._last_own_reload = 0.0

    def ensure_signing_key(self) -> None:
        """Create the first signing key if the database has none; then load all keys."""
        with self.session_factory() as session:
            if session.exec(select(SigningKey).where(SigningKey.retired_at.is_(None))).first() is None:
                pem, public = jwt.new_rsa_key()
                kid = new_id()
                session.add(SigningKey(kid=kid, private_pem=pem, public_jwk={**public, "kid": kid}))
                session.commit()
        self.reload()

    def reload(self) -> None:
        with self.session_factory() as session:
            rows = session.exec(select(SigningKey).order_by(SigningKey.created_at)).all()
        with self._lock:
            self._own = {r.kid: r.public_jwk for r in rows}
            active = [r for r in rows if r.retired_at is None]
            self._signing = (active[-1].kid, active[-1].private_pem) if active else None
            self._last_own_reload = time.monotonic()

    def sign(self, claims: dict[str, Any]) -> str:
        if self._signing is None:
            self.ensure_signing_key()
        kid, pem = self._signing
        return jwt.sign(claims, pem, kid)

    def jwks(self) -> dict[str, Any]:
        if not self._own:
            self.reload()
        return {"keys": list(self._own.values())}

    def keys_for(self, issuer: str, kid_hint: str | None = None) -> dict[str, dict[str, Any]] | None:
        """Key set for an issuer we trust, or None for an issuer we do not."""
        if issuer == self.settings.issuer:
            # Another process may have rotated keys: reload at most every 10 s on a miss.
            if not self._own or (kid_hint not in self._own
                                 and time.monotonic() - self._last_own_reload > 10):
                self.reload()
            return self._own
        trusted = next((t for t in self.settings.trusted_issuers if t.issuer == issuer), None)
        if trusted is None:
            return None
        # Never fetched counts as infinitely old: monotonic time may start near 0 at boot.
        fetched_at, keys = self._external.get(issuer, (float("-inf"), {}))
        stale = time.monotonic() - fetched_at > JWKS_REFRESH_SECONDS
        if stale or (kid_hint not in keys and time.monotonic() - fetched_at > 10):
            keys = self._fetch(trusted) or keys
            self._external[issuer] = (time.monotonic(), keys)
        return keys

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
