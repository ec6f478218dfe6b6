"""Who is signed in to the web console: a session cookie, its CSRF token and its idle timeout.

The cookie holds an RS256 JWS signed with the service's own token key (so every API process
can check it) but for a different audience than API tokens, so it is never accepted as a Bearer
token, nor an API token as a session. It expires FLAGSHARE_CONSOLE_IDLE_MINUTES after the last
request and is re-signed on every page, so idling signs a person out; a session never outlives
MAX_SESSION_HOURS. The account is looked up on every request, so disabling it ends the session,
and so does signing out: the cookie carries the account's `console_generation`, which signing
out raises, so a copy of the cookie kept from before is refused too.
"""


import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Form, Request
from sqlalchemy import update
from sqlmodel import Session

from api.agencies.models import Agency
from api.auth import jwt
from api.auth.models import User
from api.auth.principal import Principal, account, account_refusal
from api.deps import SessionDep
from api.logs import note_principal

COOKIE = "flagshare_console"
LOGIN_COOKIE = "flagshare_console_login"  # CSRF token of the sign-in form (no session yet)
MAX_SESSION_HOURS = 12
PATH = "/console"


class LoginRequired(Exception):
    """No valid session: the browser is sent to the sign-in page."""


class Forbidden(Exception):
    """Signed in, but this page or form is not for them (403)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ConsoleUser:
    username: str
    role: str
    agency_id: str | None
    area: str | None
    csrf: str
    started: int
    generation: int  # the account's console_generation when the session began

    def principal(self, issuer: str) -> Principal:
        return Principal(sub=self.username, role=self.role, agency_id=self.agency_id,
                         area=self.area, issuer=issuer)


def audience(request: Request) -> str:
    return request.app.state.settings.audience + ":console"


def start(user: User, agency: Agency | None) -> ConsoleUser:
    """A new session after a successful sign-in, with a fresh CSRF token."""
    return ConsoleUser(username=user.username, role=user.role, agency_id=user.agency_id,
                       area=agency.area if agency else None, csrf=secrets.token_urlsafe(32),
                       started=int(time.time()), generation=user.console_generation)


def cookie_value(request: Request, user: ConsoleUser) -> str:
    settings = request.app.state.settings
    now = int(time.time())
    return request.app.state.keyring.sign({
        "iss": settings.issuer, "aud": audience(request), "sub": user.username,
        "role": user.role, "agency": user.agency_id, "area": user.area, "csrf": user.csrf,
        "auth_time": user.started, "gen": user.generation, "iat": now, "jti": str(uuid.uuid4()),
        "exp": now + settings.console_idle_minutes * 60})


def set_cookie(request: Request, response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path=PATH, httponly=True,
                        secure=not request.app.state.settings.is_development, samesite="lax")


def _from_cookie(request: Request) -> ConsoleUser | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    settings = request.app.state.settings
    try:
        issuer, kid = jwt.peek(token)
        keys = request.app.state.keyring.keys_for(settings.issuer, kid)
        if issuer != settings.issuer or keys is None:
            return None
        claims = jwt.verify(token, keys, issuer=settings.issuer, audience=audience(request))
    except jwt.TokenInvalid:
        return None
    started, generation = claims.get("auth_time"), claims.get("gen")
    if not isinstance(started, int) or time.time() - started > MAX_SESSION_HOURS * 3600:
        return None
    if not isinstance(generation, int):  # a cookie from before sessions could be ended
        return None
    return ConsoleUser(username=claims["sub"], role=claims["role"], agency_id=claims["agency"],
                       area=claims["area"], csrf=claims["csrf"], started=started,
                       generation=generation)


def signed_in(request: Request, session: SessionDep) -> ConsoleUser:
    """The person behind the session cookie, still enabled, with the role and agency the session
    began with, and not signed out since; otherwise off to sign in."""
    user = _from_cookie(request)
    if user is None:
        raise LoginRequired()
    found = account(session, user.username)
    session.rollback()  # end the lookup's transaction: on SQLite each one holds the write lock
    if (account_refusal(found, user.role, user.agency_id)
            or found.console_generation != user.generation):
        raise LoginRequired()
    note_principal(user.username)
    request.app.state.rate_limits.admit_request(f"console|{user.username}")
    request.state.console_user = user  # the page re-signs the cookie: the idle clock restarts
    return user


SignedIn = Annotated[ConsoleUser, Depends(signed_in)]


def end(session: Session, user: ConsoleUser) -> None:
    """Sign out: every session the account holds (this one, and any copy of its cookie) is
    refused from now on. One atomic update, so two sign-outs at once both count."""
    session.exec(update(User).where(User.username == user.username)
                 .values(console_generation=User.console_generation + 1))
    session.commit()


def require_roles(*roles: str):
    def _check(user: SignedIn) -> ConsoleUser:
        if user.role not in roles:
            raise Forbidden("Your role cannot open this page.")
        return user

    return _check


def check_csrf(expected: str | None, given: str) -> None:
    if not expected or not secrets.compare_digest(expected.encode(), given.encode()):
        raise Forbidden("This form did not come from this service, or has expired. Go back, "
                        "reload the page and try again.")


def posted_by(*roles: str):
    """A form post by a signed-in person of these roles, carrying their session's CSRF token."""

    def _check(user: Annotated[ConsoleUser, Depends(require_roles(*roles))],
               csrf_token: Annotated[str, Form()] = "") -> ConsoleUser:
        check_csrf(user.csrf, csrf_token)
        return user

    return _check


PRACTITIONER = ("mash_practitioner",)
AUDITOR = ("auditor", "admin")
Practitioner = Annotated[ConsoleUser, Depends(require_roles(*PRACTITIONER))]
PractitionerPost = Annotated[ConsoleUser, Depends(posted_by(*PRACTITIONER))]
Auditor = Annotated[ConsoleUser, Depends(require_roles(*AUDITOR))]
AuditorPost = Annotated[ConsoleUser, Depends(posted_by(*AUDITOR))]
SignedInPost = Annotated[ConsoleUser, Depends(posted_by(*PRACTITIONER, *AUDITOR))]
