"""Issuing access tokens to agency systems (client credentials) and people (password)."""

from __future__ import annotations

import time
import uuid

from sqlmodel import Session, select

from api.agencies.models import Agency
from api.audit import service as audit
from api.auth.keys import KeyRing
from api.auth.models import User
from api.auth.passwords import verify_secret
from api.auth.principal import PERSON_ROLES
from api.problems import not_found
from api.settings import Settings


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str):
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


def _as_name(value: str) -> str:
    """A caller-supplied id made safe to look up and log: PostgreSQL text cannot hold NUL,
    and no account name contains one, so escaping it simply makes the lookup miss."""
    return value.replace("\x00", "\\x00")


def _token(keyring: KeyRing, settings: Settings, *, sub: str, role: str, agency: str | None,
           area: str | None) -> dict:
    now = int(time.time())
    claims = {
        "iss": settings.issuer, "aud": settings.audience, "sub": sub, "iat": now, "nbf": now,
        "exp": now + settings.token_ttl_seconds, "jti": str(uuid.uuid4()), "role": role,
        "agency": agency, "area": area,
    }
    return {"access_token": keyring.sign(claims), "token_type": "Bearer",
            "expires_in": settings.token_ttl_seconds}


def _verify_outside_transaction(session: Session, stored_hash: str | None,
                                candidate: str) -> bool:
    """Argon2 takes a fifth of a second here, on purpose. The read that found the hash is ended
    first (nothing was written), so that meanwhile no connection is held, nor on SQLite the
    database's one write lock, which every other write would wait for."""
    session.commit()
    return verify_secret(stored_hash, candidate)


def client_credentials(session: Session, keyring: KeyRing, settings: Settings,
                       client_id: str, client_secret: str) -> dict:
    client_id = _as_name(client_id)
    agency = session.get(Agency, client_id)
    ok = _verify_outside_transaction(session, agency.client_secret_hash if agency else None,
                                     client_secret)
    if not ok or agency.disabled:
        audit.record(session, actor=client_id[:200], action="token.issue", outcome="denied",
                     reason="unknown client, wrong secret or disabled agency")
        session.commit()
        raise OAuthError(401, "invalid_client", "Client authentication failed.")
    token = _token(keyring, settings, sub=agency.id, role="agency_system", agency=agency.id,
                   area=agency.area)
    audit.record(session, actor=agency.id, actor_agency=agency.id, action="token.issue",
                 outcome="issued")
    session.commit()
    return token


def authenticate_person(session: Session, username: str, password_: str, *,
                        outcome: str = "token issued") -> tuple[User, Agency | None]:
    """A person's username and password checked; the login, or the failed attempt, is an
    audit event committed at once (the API's password grant and the web console alike)."""
    username = _as_name(username)
    user = session.exec(select(User).where(User.username == username)).first()
    ok = _verify_outside_transaction(session, user.password_hash if user else None, password_)
    agency = session.get(Agency, user.agency_id) if ok and user.agency_id else None
    if not ok or user.disabled or (agency is not None and agency.disabled) \
            or user.role not in PERSON_ROLES:
        audit.record(session, actor=username[:200], action="login", outcome="denied",
                     reason="unknown user, wrong password, or a disabled account or agency")
        session.commit()
        raise OAuthError(401, "invalid_grant", "The username or password is wrong.")
    audit.record(session, actor=user.username, actor_agency=user.agency_id, action="login",
                 outcome=outcome)
    session.commit()
    return user, agency


def password(session: Session, keyring: KeyRing, settings: Settings,
             username: str, password_: str) -> dict:
    user, agency = authenticate_person(session, username, password_)
    return _token(keyring, settings, sub=user.username, role=user.role,
                  agency=user.agency_id, area=agency.area if agency else None)


def set_person_disabled(session: Session, username: str, disabled: bool, *, actor: str,
                        reason: str) -> User:
    """Disable a person (a leaver, a lost device) or enable them again, audited with the
    reason. Disabled, their tokens are refused at once and no new one is issued; their console
    sessions end for good, so enabling the account again revives none of them."""
    user = None if "\x00" in username else session.exec(
        select(User).where(User.username == username).with_for_update(key_share=True)).first()
    if user is None:
        raise not_found("user")
    outcome = "unchanged" if user.disabled == disabled else "disabled" if disabled else "enabled"
    if disabled and not user.disabled:
        user.console_generation += 1
    user.disabled = disabled
    session.add(user)
    # The account is named in the reason: the log's `recipient` names agencies (64 characters)
    audit.record(session, actor=actor, action="account.disable" if disabled
                 else "account.enable", outcome=outcome,
                 reason=f"account {user.username}: {reason}")
    return user
