"""Auditors' view of the sharing log: search, CSV, export, verify, checkpoints, disclosures.

Auditors and admins only; they see metadata (who, what, when, why, under which rule), never
flag content. Every read of the log is itself an `audit.read` event.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime

from api.audit import disclosures, read
from api.audit.checkpoints import checkpoint_out, latest_checkpoint, write_checkpoint
from api.audit.schemas import AuditEventOut, CheckpointOut, DisclosureOut, VerifyOut
from api.auth.principal import Principal, require_roles
from api.deps import SessionDep
from api.identity.models import Person
from api.idempotency.service import IdempotencyDep
from api.pagination import Page, PageDep, page_of
from api.problems import ProblemError, not_found

router = APIRouter(tags=["audit"])
Auditor = Annotated[Principal, Depends(require_roles("auditor", "admin"))]
CSV = "text/csv"
JSON_LINES = "application/x-ndjson"


def _download(chunks, media_type: str, filename: str) -> StreamingResponse:
    return StreamingResponse(chunks, media_type=media_type,
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get(
    "/v1/audit/events", response_model=Page[AuditEventOut],
    responses={200: {"content": {CSV: {"schema": {"type": "string"}}},
                     "description": "JSON page, or with `Accept: text/csv` every matching "
                                    "event as CSV (UTF-8 with BOM; `limit`/`cursor` unused)"}},
    summary="Search the sharing log (cursor-paginated JSON, or the whole selection as CSV)")
def list_events(
    request: Request,
    principal: Auditor,
    session: SessionDep,
    page: PageDep,
    child_id: Annotated[str | None, Query(max_length=36)] = None,
    agency: Annotated[str | None, Query(max_length=64,
                                        description="Acting agency or recipient")] = None,
    action: Annotated[str | None, Query(max_length=40)] = None,
    since: Annotated[AwareDatetime | None, Query(description="Inclusive, with offset")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Exclusive, with offset")] = None,
):
    filters = read.EventFilter(child_id, agency, action, since, until)
    if CSV in request.headers.get("accept", ""):
        upto = read.record_read(session, principal, "events.csv", filters).seq
        session.commit()
        events = read.stream(request.app.state.session_factory, upto, filters)
        return _download(read.csv_chunks(events), f"{CSV}; charset=utf-8", "audit-events.csv")
    rows = read.page(session, filters, page.after_as(int), page.limit)
    read.record_read(session, principal, "events", filters)
    session.commit()
    return page_of(rows, page, key=lambda e: e["seq"], to_item=lambda e: e)


@router.get(
    "/v1/audit/export", response_class=StreamingResponse,
    responses={200: {"content": {JSON_LINES: {"schema": {"type": "string"}}},
                     "description": "One event per line, oldest first, then "
                                    '`{"checkpoint": {...}}` signing the last one'}},
    summary="The whole log as JSON lines with a signed checkpoint, for `flagshare audit verify`")
def export(request: Request, principal: Auditor, session: SessionDep):
    read.record_read(session, principal, "export", read.EventFilter())
    checkpoint = checkpoint_out(write_checkpoint(session, request.app.state.keyring))
    session.commit()
    events = read.stream(request.app.state.session_factory, checkpoint["seq"])
    return _download(read.jsonl_chunks(events, checkpoint), JSON_LINES,
                     f"audit-{checkpoint['seq']}.jsonl")


@router.get("/v1/audit/verify", response_model=VerifyOut,
            summary="Check the whole hash chain, and that it passes through its checkpoints")
def verify(request: Request, principal: Auditor):
    keyring = request.app.state.keyring
    keys = {k["kid"]: k for k in keyring.historic_jwks()["keys"]}
    return read.verify_log(request.app.state.session_factory, keys).as_dict()


@router.get("/v1/audit/keys",
            summary="Every key the service has signed with, retired ones too (a JWKS document)",
            description="What `flagshare audit verify --jwks` needs for checkpoints signed before "
                        "a key rotation: /.well-known/jwks.json drops a retired key once its "
                        "tokens have expired, this document never does. Not for verifying "
                        "tokens.")
def signing_keys(request: Request, principal: Auditor):
    return request.app.state.keyring.historic_jwks()


@router.post("/v1/audit/checkpoints", status_code=201, response_model=CheckpointOut,
             responses={409: {"description": "The log is empty"}},
             summary="Sign the current head now (returns the existing one if already signed)")
def sign_head(request: Request, principal: Auditor, session: SessionDep, idem: IdempotencyDep):
    if replay := idem.replay():
        return replay
    checkpoint = write_checkpoint(session, request.app.state.keyring)
    if checkpoint is None:
        raise ProblemError(409, "The audit log is empty: there is no head to sign.")
    return idem.commit(201, checkpoint_out(checkpoint))


@router.get("/v1/audit/checkpoints/latest", response_model=CheckpointOut,
            responses={404: {"description": "No checkpoint yet"}},
            summary="The latest signed head; keep it to hold the operator to it later")
def latest(principal: Auditor, session: SessionDep):
    checkpoint = latest_checkpoint(session)
    if checkpoint is None:
        raise not_found("checkpoint")
    return checkpoint_out(checkpoint)


@router.get("/v1/children/{child_id}/disclosures", response_model=Page[DisclosureOut],
            responses={404: {"description": "No such child"}},
            summary="Every disclosure of a child's data: to whom, when, why, under which rule")
def child_disclosures(child_id: str, principal: Auditor, session: SessionDep, page: PageDep):
    if session.get(Person, child_id) is None:
        raise not_found("child")
    rows = disclosures.page(session, child_id, page.after_as(int), page.limit)
    read.record_read(session, principal, "disclosures", read.EventFilter(child_id=child_id))
    session.commit()
    return page_of(rows, page, key=lambda e: e["seq"], to_item=lambda e: e)
