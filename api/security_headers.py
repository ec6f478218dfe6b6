"""Security headers on every response, API and console alike.

Console pages get a Content-Security-Policy that allows only the service's own scripts, styles
and images (the committed GOV.UK Frontend assets) plus, by a per-response nonce, the one inline
script GOV.UK's page template carries; every other response may run nothing at all. No response
may be framed. Responses under /v1/ carry personal data and are never stored by a cache unless
the route says otherwise. Strict-Transport-Security is sent outside development.
"""

from __future__ import annotations

import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONSOLE_PREFIX = "/console"
# Swagger UI and ReDoc load their code from a CDN and run inline scripts: no script policy.
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc")
NONCE_STATE_KEY = "csp_nonce"

COMMON = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
DOCS_CSP = "frame-ancestors 'none'"
CONSOLE_CSP = ("default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self'; "
               "img-src 'self' data:; font-src 'self'; connect-src 'self'; form-action 'self'; "
               "base-uri 'none'; object-src 'none'; frame-ancestors 'none'")
HSTS = b"max-age=31536000; includeSubDomains"


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, strict_transport: bool):
        self.app = app
        self.strict_transport = strict_transport

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path.startswith(CONSOLE_PREFIX):
            nonce = secrets.token_urlsafe(18)
            scope.setdefault("state", {})[NONCE_STATE_KEY] = nonce  # request.state.csp_nonce
            csp = CONSOLE_CSP.format(nonce=nonce)
        else:
            csp = DOCS_CSP if path in DOCS_PATHS else API_CSP
        added = [*COMMON, (b"content-security-policy", csp.encode())]
        if self.strict_transport:
            added.append((b"strict-transport-security", HSTS))
        personal = path.startswith("/v1/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [h for h in added if h[0] not in present]
                if personal and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
