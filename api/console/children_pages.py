"""MASH practitioners' pages: find a child, state why, see the record; the area's transfers,
suspected moves and unacknowledged deliveries; the possible-match queue.

Every read goes through the same service functions as the API, so it is checked and audited
the same way. Reading a child is a form post (with its CSRF token): the purpose and reason are
stated before anything is shown, and never travel in a URL.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from api.children import service
from api.children.access import AccessDep
from api.children.router import reader as children_reader
from api.console import forms, pages
from api.console.session import ConsoleUser, Forbidden, Practitioner, PractitionerPost
from api.deps import ClockDep, PolicyDep, SessionDep, SettingsDep
from api.forwarding.service import unacknowledged_in_area
from api.identity import merging
from api.policy.schema import AccessPolicy
from api.problems import ProblemError
from api.transfers import service as transfers
from api.transfers.models import SuspectedMove, Transfer
from api.transfers.router import move_out, transfer_out
from api.transfers.working_days import england_date

router = APIRouter(prefix="/console", include_in_schema=False)
Fields = Annotated[dict[str, str], Depends(forms.fields)]
CANDIDATES_SHOWN = 20
AREA_ROWS = 200
MATCHES_SHOWN = 50


def _stated(fields: dict[str, str], access: AccessPolicy,
            errors: forms.Errors) -> service.Purpose | None:
    purpose = fields.get("purpose") or ""
    if purpose not in access.purposes:
        errors.add("purpose", "Select why you need to see this child's record")
    reason = forms.text(fields.get("reason"), "reason", errors, max_length=2000,
                        required="Enter what prompted you to look at this child's record")
    return None if errors else service.Purpose(purpose, reason)


def _search_page(request: Request, access: AccessPolicy, fields: dict[str, str],
                 errors: forms.Errors, status: int = 200, **context):
    return pages.render(request, "search.html", status=status, purposes=access.purposes,
                        form=fields, errors=errors,
                        birth_date_items=forms.date_items(forms.date_parts(fields, "birth_date"),
                                                          "birth_date", errors),
                        birth_date_error=forms.date_error("birth_date", errors), **context)


def _reader(session, settings, user: ConsoleUser) -> service.Reader:
    return children_reader(user.principal(settings.issuer), session)


def _child_page(request: Request, session, policy, access: AccessPolicy, reader: service.Reader,
                stated: service.Purpose, now, *, child_id: str | None = None,
                nhs_number: str | None = None):
    try:
        view = service.child_view(session, policy, access, reader, stated, history=False,
                                  now=now, child_id=child_id, nhs_number=nhs_number)
    except ProblemError as exc:
        if exc.status != 404:
            raise
        return None
    return pages.render(request, "child.html", view=view)


@router.get("/children")
def search_form(request: Request, user: Practitioner, access: AccessDep):
    return _search_page(request, access, {}, forms.Errors())


@router.post("/children/search")
def search(request: Request, user: PractitionerPost, fields: Fields, session: SessionDep,
           policy: PolicyDep, access: AccessDep, settings: SettingsDep, clock: ClockDep):
    errors = forms.Errors()
    stated = _stated(fields, access, errors)
    nhs_number = forms.nhs_number(fields.get("nhs_number"), "nhs_number", errors)
    given_name = forms.text(fields.get("given_name"), "given_name", errors, max_length=100)
    family_name = forms.text(fields.get("family_name"), "family_name", errors, max_length=100)
    birth_date = forms.date_input(forms.date_parts(fields, "birth_date"), "birth_date",
                                  "date of birth", errors, past=True)
    said_who = nhs_number or (family_name and birth_date)
    if not said_who and "nhs_number" not in errors.by_field and not forms.date_error(
            "birth_date", errors):
        if not family_name:
            errors.add("nhs_number", "Enter an NHS number, or a last name and date of birth")
        else:
            errors.add("birth_date-day", "Enter the date of birth")
    if errors:
        return _search_page(request, access, fields, errors, status=400)
    reader = _reader(session, settings, user)
    if nhs_number:
        shown = _child_page(request, session, policy, access, reader, stated, clock(),
                            nhs_number=nhs_number)
        return shown or _search_page(request, access, fields, errors, status=404,
                                     not_found=True)
    probe = service.SearchProbe(family_name=family_name, birth_date=birth_date,
                                given_name=given_name)
    candidates, more = service.search(session, access, reader, probe, stated, offset=0,
                                      limit=CANDIDATES_SHOWN, now=clock())
    return _search_page(request, access, fields, errors, candidates=candidates, more=more,
                        searched=True, stated=stated)


@router.get("/children/{child_id}")
def purpose_form(child_id: str, request: Request, user: Practitioner, access: AccessDep):
    """Only the question: nothing about the child is shown before the purpose is stated."""
    return pages.render(request, "purpose.html", child_id=child_id, purposes=access.purposes,
                        form={}, errors=forms.Errors())


@router.post("/children/{child_id}")
def child(child_id: str, request: Request, user: PractitionerPost, fields: Fields,
          session: SessionDep, policy: PolicyDep, access: AccessDep, settings: SettingsDep,
          clock: ClockDep):
    errors = forms.Errors()
    stated = _stated(fields, access, errors)
    if errors:
        return pages.render(request, "purpose.html", status=400, child_id=child_id,
                            purposes=access.purposes, form=fields, errors=errors)
    shown = _child_page(request, session, policy, access, _reader(session, settings, user),
                        stated, clock(), child_id=child_id)
    return shown or pages.render(
        request, "error.html", status=404, title="Child not found",
        message="There is no child record with this reference that you can open.")


@router.get("/area")
def area(request: Request, user: Practitioner, session: SessionDep, settings: SettingsDep,
         clock: ClockDep):
    if not user.area:
        raise Forbidden("Your account is not linked to a MASH agency with an area.")
    principal = user.principal(settings.issuer)
    now = clock()
    today = england_date(now)
    waiting = session.exec(transfers.list_query(session, principal, "awaiting_pickup", None, today)
                           .order_by(Transfer.pickup_due, Transfer.id).limit(AREA_ROWS)).all()
    moves = session.exec(transfers.moves_query(session, principal, "open")
                         .order_by(SuspectedMove.created_at).limit(AREA_ROWS)).all()
    return pages.render(
        request, "area.html", transfers=[transfer_out(t, today) for t in waiting],
        moves=[move_out(m) for m in moves],
        deliveries=unacknowledged_in_area(session, user.area, now, AREA_ROWS))


def _matches_page(request: Request, session, settings, user: ConsoleUser, *, status: int = 200,
                  errors: forms.Errors | None = None, form: dict | None = None,
                  failed: str | None = None, decided: str | None = None):
    principal = user.principal(settings.issuer)
    if not user.area:
        raise Forbidden("Possible matches are decided by MASH practitioners of an area.")
    queue = merging.read_queue(session, principal, "open", None, MATCHES_SHOWN)
    views = [merging.match_view(session, m) for m in queue]
    session.commit()  # showing both records of each pair is audited
    return pages.render(request, "matches.html", status=status, matches=views,
                        errors=errors or forms.Errors(), form=form or {}, failed=failed,
                        decided=decided)


@router.get("/matches")
def matches(request: Request, user: Practitioner, session: SessionDep, settings: SettingsDep,
            decided: str | None = None):
    return _matches_page(request, session, settings, user,
                         decided=decided if decided in ("confirm", "reject") else None)


@router.post("/matches/{match_id}")
def decide_match(match_id: str, request: Request, user: PractitionerPost, fields: Fields,
                 session: SessionDep, policy: PolicyDep, settings: SettingsDep):
    errors = forms.Errors()
    decision = fields.get("decision")
    if decision not in ("confirm", "reject"):
        errors.add(f"decision-{match_id}", "Select whether these are the same child")
    reason = forms.text(fields.get("reason"), f"reason-{match_id}", errors, max_length=2000,
                        required="Enter why you decided this")
    if not errors:
        principal = user.principal(settings.issuer)
        try:
            if decision == "confirm":
                merging.confirm(session, policy, principal, match_id, reason)
            else:
                merging.reject(session, principal, match_id, reason)
            session.commit()
            return pages.redirect(request, f"/console/matches?decided={decision}")
        except ProblemError as exc:
            session.rollback()
            errors.add(f"decision-{match_id}", exc.detail)
            status = exc.status
    else:
        status = 400
    return _matches_page(request, session, settings, user, status=status, errors=errors,
                         form=fields, failed=match_id)
