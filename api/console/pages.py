"""Rendering console pages: the Jinja2 environment with the GOV.UK Frontend macros, filters,
error pages, and the session cookie re-signed on every page a signed-in person sees."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import (ChoiceLoader, Environment, FileSystemLoader, PackageLoader, PrefixLoader,
                    select_autoescape)

from api.console import session as console_session
from api.security_headers import NONCE_STATE_KEY

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
LONDON = ZoneInfo("Europe/London")
GOVUK_FRONTEND_VERSION = (STATIC / "govuk" / "VERSION").read_text().strip()


def _when(value) -> str:
    """A moment as people in England read it: '23 Nov 2026, 14:05' (UK time)."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.astimezone(LONDON).strftime("%-d %b %Y, %H:%M")


def _day(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = date.fromisoformat(value)
    return value.strftime("%-d %b %Y")


def _label(value) -> str:
    """An identifier from the policy made readable: 'domestic_abuse_incident' -> 'Domestic
    abuse incident'."""
    text = str(value or "").replace("_", " ")
    return text[:1].upper() + text[1:]


def _nhs(value) -> str:
    digits = str(value or "")
    return f"{digits[:3]} {digits[3:6]} {digits[6:]}" if len(digits) == 10 else digits


env = Environment(
    loader=ChoiceLoader([
        FileSystemLoader(HERE / "templates"),
        PrefixLoader({"govuk_frontend_jinja": PackageLoader("govuk_frontend_jinja")}),
    ]),
    autoescape=select_autoescape(("html",)),
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters.update(when=_when, day=_day, label=_label, nhs=_nhs)
env.globals.update(govuk_frontend_version=GOVUK_FRONTEND_VERSION)
templates = Jinja2Templates(env=env)


def _keep_session(request: Request, response: Response) -> Response:
    """Re-sign the session cookie: each page a person sees restarts the idle clock."""
    user = getattr(request.state, "console_user", None)
    if user is not None:
        # The browser keeps the cookie for the longest session; its signed expiry (the idle
        # timeout) is what counts, and an expired one tells the person why they must sign in.
        console_session.set_cookie(request, response, console_session.COOKIE,
                                   console_session.cookie_value(request, user),
                                   console_session.MAX_SESSION_HOURS * 3600)
    return response


def render(request: Request, name: str, status: int = 200, **context) -> Response:
    user = getattr(request.state, "console_user", None)
    # GOV.UK's page template carries one inline script; the CSP admits it by this nonce.
    nonce = getattr(request.state, NONCE_STATE_KEY, None)
    response = templates.TemplateResponse(request, name,
                                          {"user": user, "cspNonce": nonce, **context},
                                          status_code=status)
    response.headers["Cache-Control"] = "no-store"  # a child's record stays off shared disks
    return _keep_session(request, response)


def redirect(request: Request, url: str) -> Response:
    return _keep_session(request, RedirectResponse(url, status_code=303))


def login_redirect(request: Request, exc: console_session.LoginRequired) -> Response:
    target = request.url.path if request.method == "GET" else "/console"
    if request.method == "GET" and request.url.query:
        target += "?" + request.url.query
    expired = "&expired=true" if request.cookies.get(console_session.COOKIE) else ""
    response = RedirectResponse(f"/console/login?next={quote(target, safe='')}{expired}",
                                status_code=303)
    response.delete_cookie(console_session.COOKIE, path=console_session.PATH)
    return response


def forbidden(request: Request, exc: console_session.Forbidden) -> Response:
    return render(request, "error.html", status=403, title="You cannot do this",
                  message=exc.message)
