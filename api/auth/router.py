import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse

from api.auth import service
from api.deps import SessionDep, SettingsDep

router = APIRouter(tags=["identity"])


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="flagshare"'
    return JSONResponse(
        {"error": error, "error_description": description, "type": "about:blank",
         "title": "Token request refused", "status": status, "detail": description},
        status_code=status, headers=headers,
    )


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        raw = base64.b64decode(header[6:], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = raw.partition(":")
    return (client_id, secret) if sep else None


@router.post(
    "/v1/oauth/token",
    summary="OAuth 2.0 token endpoint (client_credentials for agency systems, password for people)",
    # OAuth errors are application/json (RFC 6749) with the problem members too.
    responses={400: {"description": "invalid_request or unsupported_grant_type",
                     "content": {"application/json": {}}},
               401: {"description": "invalid_client or invalid_grant",
                     "content": {"application/json": {}}},
               429: {"description": "too many failed attempts for this account or address"}},
)
def token(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    grant_type: Annotated[str | None, Form()] = None,
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
    username: Annotated[str | None, Form()] = None,
    password: Annotated[str | None, Form()] = None,
    scope: Annotated[str | None, Form()] = None,
):
    keyring = request.app.state.keyring
    limits = request.app.state.rate_limits
    address = request.client.host if request.client else None
    account = None
    try:
        if grant_type == "client_credentials":
            basic = _basic_credentials(request)
            if basic:
                client_id, client_secret = basic
            if not client_id or not client_secret:
                return _oauth_error(400, "invalid_request",
                                    "client_id and client_secret are required.")
            account = client_id
            limits.admit_credential_attempt(session, account, address)
            body = service.client_credentials(session, keyring, settings, client_id, client_secret)
        elif grant_type == "password":
            if not username or not password:
                return _oauth_error(400, "invalid_request", "username and password are required.")
            account = username
            limits.admit_credential_attempt(session, account, address)
            body = service.password(session, keyring, settings, username, password)
        elif not grant_type:
            return _oauth_error(400, "invalid_request", "grant_type is required.")
        else:
            return _oauth_error(400, "unsupported_grant_type",
                                "grant_type must be client_credentials or password.")
    except service.OAuthError as exc:
        limits.note_failed_attempt(session, account, address)
        return _oauth_error(exc.status, exc.error, exc.description)
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@router.get("/.well-known/jwks.json", summary="Public keys that verify this service's tokens")
def jwks(request: Request):
    return request.app.state.keyring.jwks()
