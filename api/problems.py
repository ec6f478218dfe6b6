"""RFC 9457 problem details for every error, and the request body size limit.

A 422 names every bad field of a body at once, those judged in context too (api.validation).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.validation import BodyContext, ContextChecked, request_context

log = logging.getLogger("flagshare")

PROBLEM_JSON = "application/problem+json"
TITLES = {
    400: "Malformed request",
    401: "Authentication required",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal error",
}


class FieldProblem(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details; some errors add members (`policy_rule`, OAuth's `error`)."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] | None = None


# What any operation may answer, whatever its handler does: the contract's error statuses.
GENERIC_ERRORS = {
    400: "Malformed: not JSON, not an object, or text holding NUL characters",
    401: "No access token, or not a valid one",
    403: "Authenticated but not allowed, by role or policy (a policy refusal names the rule)",
    404: "No such object, or not visible to you",
    409: "The Idempotency-Key was used with a different body, or the object's state forbids it",
    413: "The request body is larger than the limit",
    422: "Well-formed but invalid: each bad field is named in `errors`",
    429: "Too many requests: rate-limited",
}


class ProblemError(Exception):
    """Raised by service functions; rendered as application/problem+json."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        type_: str = "about:blank",
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.type = type_
        self.extra = extra or {}
        self.headers = headers


def invalid(field: str, message: str) -> ProblemError:
    """422 naming one bad field."""
    return invalid_fields([{"field": field, "message": message}])


def invalid_fields(fields: list[dict[str, str]]) -> ProblemError:
    """422 naming every bad field."""
    detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return ProblemError(422, detail, errors=fields)


Body = TypeVar("Body", bound=ContextChecked)


def validated(body: Body, context: BodyContext) -> Body:
    """The body validated again, in context: its fields valid only there are judged too (the
    schema's were, before the route was called). A 422 names every bad field."""
    sent = body.model_dump(exclude_unset=True)
    try:
        return type(body).model_validate(sent, context=context)
    except ValidationError as exc:
        raise invalid_fields(_field_problems(_in_body(exc), sent)) from None


def not_found(what: str = "resource") -> ProblemError:
    return ProblemError(404, f"No such {what}, or it is not visible to you.")


def problem_response(
    status: int,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    type_: str = "about:blank",
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": type_,
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    body.update(extra or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_problems(errors: list[dict[str, Any]], body: Any) -> list[dict[str, str]]:
    """Each validation error as the field it names, with its message."""
    return [{"field": _field_name(tuple(e["loc"]), body),
             "message": e.get("msg", "invalid").removeprefix("Value error, ")} for e in errors]


def _field_name(loc: tuple[Any, ...], body: Any) -> str:
    """A parameter's name, or a path in the body as the client sent it.

    Pydantic's `loc` also names steps that are not in the body: a tagged union's tag (the
    `webhook` of `delivery.webhook.secret`, where the body has `delivery.secret`) and
    validator branches (`function-after[...]`). A step is kept if the body holds it there, or
    if it is the last, a field the body lacks."""
    source, *steps = loc
    if source != "body":  # query, path, header, cookie
        return ".".join(str(s) for s in steps if "[" not in str(s))
    path, node = [], body
    for i, step in enumerate(steps):
        if (isinstance(node, Mapping) and step in node) or (
                isinstance(node, list) and isinstance(step, int) and step < len(node)):
            node = node[step]
        elif i < len(steps) - 1 or "[" in str(step):
            continue
        path.append(str(step))
    return ".".join(path) or "body"


def _in_body(exc: ValidationError) -> list[dict[str, Any]]:
    """A body model's errors located as FastAPI locates a body's."""
    return [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]


def _body_model(request: Request) -> Any:
    """The model of the body the matched route takes, if any."""
    field = getattr(request.scope.get("route"), "body_field", None)
    return None if field is None else field.field_info.annotation


def _errors_in_request_context(request: Request, model: type[BaseModel],
                               body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every problem of the body, those only its context shows too."""
    with request_context(request) as context:
        try:
            model.model_validate(body, context=context)
        except ValidationError as exc:
            return _in_body(exc)
    return []


def _problem_schemas() -> dict[str, Any]:
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    return {**schema.pop("$defs"), "Problem": schema}


def _possible_errors(path: str, operation: dict[str, Any]) -> set[int]:
    """The generic error statuses an operation can answer, from what it takes."""
    codes = {400, 413}
    if operation.get("parameters") or operation.get("requestBody"):
        codes.add(422)
    if path.startswith("/v1/"):
        codes.add(429)
    if operation.get("security"):
        codes |= {401, 403}
    if "{" in path:
        codes.add(404)
    if any(p["name"].lower() == "idempotency-key" for p in operation.get("parameters", [])):
        codes.add(409)
    return codes


def document_problems(openapi: dict[str, Any]) -> dict[str, Any]:
    """Declare every error an operation can answer as application/problem+json `Problem`,
    replacing FastAPI's default 422 body, which this service never sends."""
    problem = {"schema": {"$ref": "#/components/schemas/Problem"}}
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(_problem_schemas())
    for path, operations in openapi["paths"].items():
        for operation in operations.values():
            responses = operation["responses"]
            for code in _possible_errors(path, operation):
                responses.setdefault(str(code), {"description": GENERIC_ERRORS[code]})
            for code, response in responses.items():
                if code[0] not in "45":
                    continue
                content = response.get("content", {})
                response["content"] = {**{media: problem for media in content},
                                       PROBLEM_JSON: problem}
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return openapi


def install(app: FastAPI) -> None:
    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(generate_openapi())
        return app.openapi_schema

    app.openapi = openapi

    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError):
        return problem_response(
            exc.status, exc.detail, errors=exc.errors, type_=exc.type, extra=exc.extra,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errs = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errs):
            return problem_response(400, "The request body is not valid JSON.")
        if any(e.get("type") == "model_attributes_type" and e.get("loc") == ("body",) for e in errs):
            return problem_response(400, "The request body must be a JSON object.")
        model = _body_model(request)
        if isinstance(exc.body, dict) and isinstance(model, type) and issubclass(
                model, ContextChecked):
            # And the problems only its context shows (read from the database: off the event
            # loop), so that this one 422 names every bad field.
            in_context = await run_in_threadpool(_errors_in_request_context, request, model,
                                                 exc.body)
            reported = {(e["loc"], e["msg"]) for e in errs}
            errs = errs + [e for e in in_context if (e["loc"], e["msg"]) not in reported]
        problem = invalid_fields(_field_problems(errs, exc.body))
        return problem_response(422, problem.detail, errors=problem.errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "")
        return problem_response(exc.status_code, detail, headers=getattr(exc, "headers", None))



class InternalErrors:
    """Any exception a handler did not turn into a problem becomes a 500 whose body says
    nothing about it (no traceback, SQL or message, which could hold a caller's data): only an
    opaque incident id, logged with the traceback so an operator can find it.

    A middleware rather than an exception handler, so it runs inside the request's logging
    context and the security headers middleware, which Starlette's outermost error handler
    does not."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch_start)
        except Exception:
            incident = uuid.uuid4().hex
            log.exception("unhandled error on %s %s (incident %s)", scope.get("method"),
                          scope.get("path"), incident, extra={"incident": incident})
            if started:  # too late for an error response: the connection is cut short
                raise
            response = problem_response(
                500, f"An internal error occurred; it has been logged as incident {incident}.",
                extra={"incident": incident})
            await response(scope, receive, send)


NUL_DETAIL = "Text must not contain NUL (U+0000) characters."


def _nul_response() -> JSONResponse:
    # `error` too, so OAuth clients of the token endpoint read it as invalid_request.
    return problem_response(400, NUL_DETAIL, extra={"error": "invalid_request"})


def _has_nul(raw: bytes, url_encoded: bool) -> bool:
    if b"\x00" in raw or b"\\u0000" in raw:
        return True
    return url_encoded and b"%00" in raw


class RequestGuard:
    """Before any handler: 413 for bodies over the configured size (declared or streamed), and
    400 for NUL characters in the path, query or body, which PostgreSQL cannot store."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        if "\x00" in scope.get("path", "") or _has_nul(scope.get("query_string", b""), True):
            await _nul_response()(scope, receive, send)
            return
        # Read the whole body up front (bounded), so a streamed oversize body is refused too.
        chunks, total = [], 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await self._reject(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if _has_nul(body, b"form-urlencoded" in headers.get(b"content-type", b"")):
            await _nul_response()(scope, receive, send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413, f"The request body is larger than the limit of {self.max_bytes} bytes."
        )
        await response(scope, receive, send)
