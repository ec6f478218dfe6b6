"""The web console's front door: sign in, sign out, the home page for each role, and how the
console is mounted (pages, GOV.UK Frontend static files, its error pages)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.staticfiles import StaticFiles

from api.auth.service import OAuthError, authenticate_person
from api.console import audit_pages, children_pages, forms, pages
from api.console import session as console_session
from api.console.session import SignedIn, SignedInPost
from api.deps import SessionDep
from api.problems import ProblemError

router = APIRouter(prefix="/console", include_in_schema=False)
LOGIN_FORM_SECONDS = 3600


def _safe_next(target: str | None) -> str:
    """Only a console path: never a redirect to another site."""
    if target and target.startswith("/console") and not target.startswith("//"):
        return target
    return "/console"


def _login_page(request: Request, *, status: int = 200, errors: forms.Errors | None = None,
                username: str = "", next_url: str = "/console", notice: str | None = None):
    token = secrets.token_urlsafe(32)
    response = pages.render(request, "login.html", status=status, errors=errors or forms.Errors(),
                            username=username, next_url=next_url, csrf_token=token, notice=notice)
    console_session.set_cookie(request, response, console_session.LOGIN_COOKIE, token,
                               LOGIN_FORM_SECONDS)
    return response


@router.get("/login")
def login_form(request: Request, next: str | None = None, signed_out: bool = False,
               expired: bool = False):
    notice = ("You have signed out." if signed_out else
              "You were signed out because you had not done anything for a while."
              if expired else None)
    return _login_page(request, next_url=_safe_next(next), notice=notice)


@router.post("/login")
def login(request: Request, session: SessionDep,
          username: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
          csrf_token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = ""):
    console_session.check_csrf(request.cookies.get(console_session.LOGIN_COOKIE), csrf_token)
    errors = forms.Errors()
    name = forms.text(username, "username", errors, required="Enter your username",
                      max_length=100)
    if not password:
        errors.add("password", "Enter your password")
    if errors:
        return _login_page(request, status=400, errors=errors, username=username,
                           next_url=_safe_next(next))
    limits = request.app.state.rate_limits
    address = request.client.host if request.client else None
    try:
        limits.admit_credential_attempt(session, name, address)
    except ProblemError as exc:
        errors.add("username", f"{exc.detail} Sign-in is paused after several wrong passwords")
        response = _login_page(request, status=429, errors=errors, username=username,
                               next_url=_safe_next(next))
        response.headers.update(exc.headers)
        return response
    try:
        user, agency = authenticate_person(session, name, password, outcome="console session")
    except OAuthError:
        limits.note_failed_attempt(session, name, address)
        errors.add("username", "The username or password is wrong")
        return _login_page(request, status=401, errors=errors, username=username,
                           next_url=_safe_next(next))
    if user.role not in (*console_session.PRACTITIONER, *console_session.AUDITOR):
        errors.add("username", "The web console is for MASH practitioners and auditors")
        return _login_page(request, status=403, errors=errors, username=username)
    request.state.console_user = console_session.start(user, agency)
    response = pages.redirect(request, _safe_next(next))
    response.delete_cookie(console_session.LOGIN_COOKIE, path=console_session.PATH)
    return response


@router.post("/logout")
def logout(request: Request, user: SignedInPost, session: SessionDep):
    console_session.end(session, user)  # the cookie is deleted too, but a copy may be kept
    request.state.console_user = None
    response = pages.redirect(request, "/console/login?signed_out=true")
    response.delete_cookie(console_session.COOKIE, path=console_session.PATH)
    return response


@router.get("")
def home(request: Request, user: SignedIn):
    if user.role in console_session.AUDITOR:
        return pages.redirect(request, "/console/audit")
    return pages.redirect(request, "/console/children")


def install(app: FastAPI) -> None:
    """Mount the console on the app: its pages, static files and error pages."""
    app.mount("/console/static", StaticFiles(directory=pages.STATIC), name="console-static")
    app.include_router(router)
    app.include_router(children_pages.router)
    app.include_router(audit_pages.router)
    app.add_exception_handler(console_session.LoginRequired, pages.login_redirect)
    app.add_exception_handler(console_session.Forbidden, pages.forbidden)
