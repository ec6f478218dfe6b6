"""Structured logs: one JSON object a line (or text in development), each carrying the request
it belongs to, and never anything a caller sent.

Every line has `time, level, logger, message, request_id, principal, path, status`. The request
fields come from `RequestContext`, which also writes the access log itself (`flagshare.access`)
instead of uvicorn's: uvicorn's access line includes the query string, and queries such as
`/v1/children?nhs_number=` carry personal data. Bodies, summaries, names and query strings are
never logged; a path holds only opaque ids. In JSON an exception is logged as its type and
stack without its message.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("flagshare.access")

# A dict per request, set by RequestContext; mutated (not replaced) by the dependencies that
# learn who is calling, so code running in the request's worker thread updates the same one.
_request: ContextVar[dict[str, Any] | None] = ContextVar("flagshare_request", default=None)
CONTEXT_FIELDS = ("request_id", "principal", "path", "status")
REQUEST_ID_HEADER = "x-request-id"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def note_principal(name: str) -> None:
    """Record who is calling on the current request's log context (its token's subject)."""
    context = _request.get()
    if context is not None:
        context["principal"] = name


class _ContextFilter(logging.Filter):
    """Copies the request's fields onto every record, so both formats can show them."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _request.get() or {}
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, context.get(name))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            line[name] = getattr(record, name, None)
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and name not in line:
                line[name] = value
        if record.exc_info:
            line["exception"] = _where_it_failed(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def _where_it_failed(exc_info) -> str:
    """An exception's type and stack (files, lines, code) without its message, which may
    quote whatever value was being handled: a name, a summary, an NHS number."""
    exc_type, _exc, tb = exc_info
    stack = "".join(traceback.format_list(traceback.extract_tb(tb)))
    return f"{exc_type.__module__}.{exc_type.__qualname__} (message withheld)\n{stack}"


TEXT_FORMAT = ("%(asctime)s %(levelname)s %(name)s [%(request_id)s %(principal)s] "
               "%(message)s")


def configure(log_format: str) -> None:
    """Send every log line (flagshare's, uvicorn's, the libraries') to stderr in one format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else
                         logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # httpx logs every outbound URL at INFO; a webhook URL may carry the receiver's token.
    logging.getLogger("httpx").setLevel(logging.WARNING)


class RequestContext:
    """Outermost middleware: gives each request an id (a caller's sane `X-Request-ID`, else a
    new one), returns it in `X-Request-ID`, and writes one access line when the request ends."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", [])).get(REQUEST_ID_HEADER.encode(), b"").decode(
            "latin-1")
        request_id = given if _SAFE_REQUEST_ID.match(given) else uuid.uuid4().hex
        context: dict[str, Any] = {"request_id": request_id, "principal": None,
                                   "path": scope.get("path"), "status": None}
        token = _request.set(context)
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                context["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"],
                                      (REQUEST_ID_HEADER.encode(), request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            access_log.info("%s %s %s", scope.get("method"), scope.get("path"),
                            context["status"] or 500,
                            extra={"method": scope.get("method"),
                                   "duration_ms": round((time.perf_counter() - started) * 1000,
                                                        1)})
            _request.reset(token)
