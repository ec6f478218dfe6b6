"""Auditors' pages: the sharing log with filters and CSV, one child's disclosures, and whether
the hash chain is intact up to the latest signed checkpoint.

They call the audit domain's own functions, so every read of the log is an `audit.read` event
exactly as through the API, and auditors see metadata, never flag content.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from api.audit import disclosures, read
from api.audit.checkpoints import write_checkpoint
from api.audit.router import CSV
from api.console import forms, pages
from api.console.session import Auditor, AuditorPost
from api.deps import SessionDep
from api.identity.models import Person

router = APIRouter(prefix="/console/audit", include_in_schema=False)
Query = Annotated[dict[str, str], Depends(forms.fields)]
ROWS = 50


def _filters(query: dict[str, str], errors: forms.Errors) -> read.EventFilter:
    """The filter form: child, agency, action and a range of days (UK dates, both inclusive)."""
    since = forms.date_input(forms.date_parts(query, "since"),
                             "since", "the from date", errors)
    until = forms.date_input(forms.date_parts(query, "until"),
                             "until", "the to date", errors)
    if since and until and until < since:
        errors.add("until-day", "The to date must be the same as or after the from date")
    return read.EventFilter(
        child_id=forms.text(query.get("child_id"), "child_id", errors, max_length=36),
        agency=forms.text(query.get("agency"), "agency", errors, max_length=64),
        action=forms.text(query.get("action"), "action", errors, max_length=40),
        since=datetime.combine(since, time(), pages.LONDON) if since else None,
        until=datetime.combine(until + timedelta(days=1), time(), pages.LONDON)
        if until else None)


def _after(query: dict[str, str]) -> int | None:
    value = query.get("after", "")
    return int(value) if value.isdigit() and len(value) < 19 else None


@router.get("")
def events(request: Request, user: Auditor, session: SessionDep, query: Query):
    errors = forms.Errors()
    filters = _filters(query, errors)
    context = {"form": query, "errors": errors,
               "since_items": forms.date_items(forms.date_parts(query, "since"), "since", errors),
               "until_items": forms.date_items(forms.date_parts(query, "until"), "until", errors),
               "since_error": forms.date_error("since", errors),
               "until_error": forms.date_error("until", errors)}
    if errors:
        return pages.render(request, "audit_events.html", status=400, events=[], **context)
    rows = read.page(session, filters, _after(query), ROWS)
    read.record_read(session, user.principal(request.app.state.settings.issuer), "events",
                     filters)
    session.commit()
    kept = {k: v for k, v in query.items() if k != "after" and v}
    next_url = (f"/console/audit?{urlencode({**kept, 'after': rows[ROWS - 1]['seq']})}"
                if len(rows) > ROWS else None)
    return pages.render(request, "audit_events.html", events=rows[:ROWS], next_url=next_url,
                        csv_url=f"/console/audit/events.csv?{urlencode(kept)}", **context)


@router.get("/events.csv")
def events_csv(request: Request, user: Auditor, session: SessionDep, query: Query):
    errors = forms.Errors()
    filters = _filters(query, errors)
    if errors:
        return pages.render(request, "error.html", status=400, title="Check the filters",
                            message=" ".join(errors.by_field.values()))
    principal = user.principal(request.app.state.settings.issuer)
    upto = read.record_read(session, principal, "events.csv", filters).seq
    session.commit()
    chunks = read.csv_chunks(read.stream(request.app.state.session_factory, upto, filters))
    return StreamingResponse(chunks, media_type=f"{CSV}; charset=utf-8", headers={
        "Content-Disposition": 'attachment; filename="audit-events.csv"',
        "Cache-Control": "no-store"})


@router.get("/disclosures")
def child_disclosures(request: Request, user: Auditor, session: SessionDep, query: Query):
    errors = forms.Errors()
    child_id = forms.text(query.get("child_id"), "child_id", errors, max_length=36,
                          required="Enter the child's reference")
    if not errors and session.get(Person, child_id) is None:
        errors.add("child_id", "There is no child with this reference")
    if errors:
        return pages.render(request, "audit_disclosures.html", status=400, errors=errors,
                            form=query, items=[])
    rows = disclosures.page(session, child_id, _after(query), ROWS)
    read.record_read(session, user.principal(request.app.state.settings.issuer), "disclosures",
                     read.EventFilter(child_id=child_id))
    session.commit()
    next_url = (f"/console/audit/disclosures?"
                f"{urlencode({'child_id': child_id, 'after': rows[ROWS - 1]['seq']})}"
                if len(rows) > ROWS else None)
    return pages.render(request, "audit_disclosures.html", errors=errors, form=query,
                        child_id=child_id, items=rows[:ROWS], next_url=next_url)


@router.get("/verify")
def verify(request: Request, user: Auditor, signed: bool = False):
    keys = {k["kid"]: k for k in request.app.state.keyring.jwks()["keys"]}
    report = read.verify_log(request.app.state.session_factory, keys).as_dict()
    return pages.render(request, "audit_verify.html", report=report, signed=signed)


@router.post("/checkpoints")
def sign_head(request: Request, user: AuditorPost, session: SessionDep):
    write_checkpoint(session, request.app.state.keyring)
    session.commit()
    return pages.redirect(request, "/console/audit/verify?signed=true")
