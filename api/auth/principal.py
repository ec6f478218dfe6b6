"""Who is calling: the verified token turned into a principal, and role checks."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Row
from sqlmodel import Session, select

from api.agencies.models import Agency
from api.auth import jwt
from api.auth.models import User
from api.deps import SessionDep
from api.logs import note_principal
from api.problems import ProblemError

ROLES = ("agency_system", "mash_practitioner", "auditor", "admin")
# A person's roles. Agency systems sign in with their client credentials: a person holding
# `agency_system` would pass for the agency, and disabling the person would not stop them.
PERSON_ROLES = ("mash_practitioner", "auditor", "admin")
AGENCY_ROLES = ("agency_system", "mash_practitioner")  # their scope is their agency's, or area
MAX_ACTOR = 200  # the audit log's and the records' `actor` columns
MAX_LOGGED_REASON = 300  # why a token was refused, as logged (it may quote a header's values)
NOT_VALID = "The access token is not valid."
_bearer = HTTPBearer(auto_error=False, description="Access token from POST /v1/oauth/token")
log = logging.getLogger("flagshare.auth")


@dataclass(frozen=True)
class Principal:
    sub: str
    role: str
    agency_id: str | None
    area: str | None
    issuer: str
    outside: bool = False  # vouched for by another identity provider, not by this service
    # Its token is verified, but what it claims is not yet checked against the database
    # (`checked`): a route may take it so and check it in its own thread hand-off.
    unchecked: bool = False
    # The caller's agency as `checked` read it. Kept here because the session's identity map
    # holds objects weakly: a route reading it again would send the SELECT again.
    agency: Agency | None = field(default=None, compare=False, repr=False)

    @property
    def scope_key(self) -> str:
        """Stable identity for idempotency records: issuer and subject."""
        return f"{self.issuer}|{self.sub}"

    @property
    def actor(self) -> str:
        """Who acted, as the audit log and the records name them. Another identity provider's
        subject is named with its issuer: its `alice` is not this service's `alice`."""
        return self.scope_key if self.outside else self.sub

    @property
    def person(self) -> bool:
        """Issued by this service to a person (password grant: the subject is the username),
        not to an agency (client credentials: the subject is the agency's id)."""
        return not self.outside and not (self.role == "agency_system"
                                         and self.sub == self.agency_id)


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


async def claimed_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller as its verified token claims: signature, issuer, audience, expiry and the
    claims' shape, all checked without the database. Routes take `CurrentPrincipal`, unless
    they call `checked` (then `check_role`) first thing in their one thread hand-off."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ProblemError(401, "A Bearer access token is required.",
                           headers={"WWW-Authenticate": "Bearer"})
    token = credentials.credentials
    settings = request.app.state.settings
    keyring = request.app.state.keyring
    try:
        issuer, kid = jwt.peek(token)
        # Checked on the event loop (a thread hand-off costs more than the check) unless the
        # keys must first be read from the database or fetched from the issuer.
        keys = (await run_in_threadpool(keyring.keys_for, issuer, kid)
                if keyring.must_load(issuer, kid) else keyring.keys_in_memory(issuer))
        if keys is None:
            raise jwt.TokenInvalid(f"issuer {issuer!r} is not trusted")
        claims = jwt.verify(token, keys, issuer=issuer, audience=settings.audience)
    except jwt.TokenInvalid as exc:
        # Why is for the log: the caller learns only that the token is not valid (a prober
        # would otherwise learn which of its guesses got further).
        log.info("access token refused: %s", str(exc)[:MAX_LOGGED_REASON])
        raise _unauthorized(NOT_VALID) from exc
    role = claims.get("role")
    if role not in ROLES:
        raise _unauthorized("The access token carries no recognised role.")
    agency, area = claims.get("agency"), claims.get("area")
    if not all(v is None or (isinstance(v, str) and v and "\x00" not in v) for v in (agency, area)):
        # an outside issuer may send anything; these claims end up in queries and the audit log
        raise _unauthorized("The access token's agency or area claim is malformed.")
    if role == "agency_system" and not agency:
        raise _unauthorized("An agency_system token must name its agency.")
    outside = issuer != settings.issuer
    if outside:
        trusted = next(t for t in settings.trusted_issuers if t.issuer == issuer)
        if role not in trusted.roles or (
            trusted.agencies is not None and agency not in trusted.agencies
        ):
            raise _unauthorized(f"Issuer {issuer!r} is not trusted for this role or agency.")
        if role in AGENCY_ROLES and not agency:
            raise _unauthorized(f"A {role} token from another issuer must name the agency the "
                                "caller works for.")
    principal = Principal(sub=str(claims["sub"]), role=role, agency_id=agency,
                          area=area, issuer=issuer, outside=outside)
    if len(principal.actor) > MAX_ACTOR:
        raise _unauthorized(f"The access token's sub is too long: the records name a caller in "
                            f"at most {MAX_ACTOR} characters"
                            + (", its issuer included." if outside else "."))
    note_principal(principal.actor)
    request.app.state.rate_limits.admit_request(principal.scope_key)
    return replace(principal, unchecked=principal.person or _names_agency(principal))


ClaimedPrincipal = Annotated[Principal, Depends(claimed_principal)]


async def current_principal(principal: ClaimedPrincipal, session: SessionDep) -> Principal:
    """The caller, its claims checked against the database in a thread hand-off of their own."""
    if not principal.unchecked:
        return principal
    return await run_in_threadpool(_checked_apart, session, principal)


def _checked_apart(session: Session, principal: Principal) -> Principal:
    """`checked`, before the route's own work. A person's read ends its transaction if it began
    it, as the console's does: a handler may first do slow work outside any transaction (an
    admin's new agency secret is hashed so), holding neither a pooled connection nor, on
    SQLite, the write lock. An agency's read goes on into its route's transaction (a publish's
    first statement would otherwise begin another)."""
    fresh = not session.in_transaction()
    principal_checked = checked(session, principal)
    if fresh and principal.person:
        session.rollback()
    return principal_checked


def checked(session: Session, principal: Principal) -> Principal:
    """The principal as the database has it now: a person's token stops working as soon as
    their account or its agency is disabled, the account removed, or its role or agency
    changed (the token claims what the account was when it was issued); an agency's, as soon
    as it is disabled; another issuer's `area` claim is never taken on its word. One read."""
    if not principal.unchecked:
        return principal
    if principal.person:
        found = account(session, principal.sub)
        if refused := account_refusal(found, principal.role, principal.agency_id):
            log.info("access token refused: %s", refused)
            raise _unauthorized(NOT_VALID)
        return replace(principal, unchecked=False, agency=found.Agency)
    return _registered(session, principal)


def _names_agency(principal: Principal) -> bool:
    """An agency's own token, or another issuer's naming the agency its caller works for."""
    return principal.agency_id is not None and (principal.outside
                                                or principal.role == "agency_system")


def account(session: Session, username: str) -> Row | None:
    """A person's account as each request of theirs is judged against it (their tokens here,
    their console session): one read by the unique username. Its agency comes too, into the
    session, so a route's own `session.get` of it sends nothing."""
    with session.no_autoflush:
        return session.exec(select(User.disabled, User.role, User.agency_id,
                                   User.console_generation, Agency)
                            .outerjoin(Agency, Agency.id == User.agency_id)
                            .where(User.username == username)).first()


def account_refusal(found: Row | None, role: str, agency_id: str | None) -> str | None:
    """Why a token or session claiming this role and agency no longer speaks for the account,
    or None while it does."""
    if found is None or found.disabled or (found.Agency is not None and found.Agency.disabled):
        return "the account is unknown or disabled, or its agency is"
    if found.role not in PERSON_ROLES:
        return f"the account holds {found.role}, which is not a person's role"
    if (found.role, found.agency_id) != (role, agency_id):
        return "the account's role or agency has changed since"
    return None


def _registered(session: Session, principal: Principal) -> Principal:
    """The principal as its agency's registration has it: a disabled agency's tokens stop
    working at once, and another issuer's `area` claim is never taken on its word (scope is
    by area), but from the agency it names."""
    agency = session.get(Agency, principal.agency_id)
    if agency is None or agency.disabled:
        raise _unauthorized("The agency named in the token is not registered or is disabled.")
    if principal.outside and principal.area is not None and principal.area != agency.area:
        raise _unauthorized("The token's area is not the area its agency is registered in.")
    return replace(principal, area=agency.area if principal.outside else principal.area,
                   unchecked=False, agency=agency)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def check_role(principal: Principal, roles: tuple[str, ...]) -> Principal:
    """403 for an authenticated caller of any other role."""
    if principal.role not in roles:
        raise ProblemError(403, f"This needs one of the roles: {', '.join(roles)}; "
                           f"you are {principal.role}.")
    return principal


def require_roles(*roles: str):
    """Dependency allowing only the given roles (403 for any other authenticated caller)."""

    async def _check(principal: CurrentPrincipal) -> Principal:  # no I/O: no thread hand-off
        return check_role(principal, roles)

    return _check


async def calling_agency(
    principal: Annotated[Principal, Depends(require_roles("agency_system"))],
) -> Agency:
    """The registered, enabled agency behind an agency_system token, as `current_principal`
    read it (no I/O here, so no thread hand-off)."""
    return principal.agency


CallingAgency = Annotated[Agency, Depends(calling_agency)]
