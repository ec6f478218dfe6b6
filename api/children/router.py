from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session

from api.auth.principal import (ClaimedPrincipal, Principal, check_role, checked,
                                require_roles)
from api.agencies.models import Agency
from api.children import service
from api.children.access import AccessDep
from api.children.schemas import CandidatePage, ChildView
from api.deps import ClockDep, PolicyDep, SessionDep
from api.identity.schemas import NhsNumberDigits, Postcode
from api.pagination import PageDep, encode_cursor
from api.policy.loader import Policy
from api.policy.schema import AccessPolicy
from api.problems import ProblemError, invalid

router = APIRouter(prefix="/v1/children", tags=["children"])
ERRORS = {403: {"description": "Auditors and administrators never read a child's record; "
                                "break-glass is for MASH practitioners"},
          404: {"description": "No such child, or not visible to you"},
          422: {"description": "purpose or reason missing or invalid, each named in errors"}}
PurposeQ = Annotated[str, Query(min_length=1, max_length=40, description=(
    "Why you are reading, from the policy's list, e.g. mash_triage, strategy_discussion, "
    "section_47_enquiry, early_help"))]
ReasonQ = Annotated[str, Query(min_length=1, max_length=2000, pattern=r"\S",
                               description="Free text: what prompted this read (audited)")]
BreakGlassQ = Annotated[bool, Query(description=(
    "MASH practitioners only: read a child outside your area. Marked in the audit log and "
    "alerts the MASH of the child's areas"))]


READERS = ("mash_practitioner", "agency_system")
ReaderPrincipal = Annotated[Principal, Depends(require_roles(*READERS))]


def reader(principal: ReaderPrincipal, session: SessionDep) -> service.Reader:
    """A practitioner with their MASH agency (when registered), or the calling agency: as
    `checked` read it, or read now for a principal that did not come through it (a console
    session's)."""
    agency = principal.agency
    if agency is None and principal.agency_id:
        agency = session.get(Agency, principal.agency_id)
    return service.Reader(principal, agency)


ReaderDep = Annotated[service.Reader, Depends(reader)]


def search_probe(
    nhs_number: Annotated[NhsNumberDigits | None,
                          Query(description="10 digits, Modulus 11")] = None,
    family_name: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    birth_date: date | None = None,
    given_name: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    postcode: Annotated[Postcode | None, Query(max_length=10)] = None,
) -> service.SearchProbe:
    """An NHS number, or a family name and birth date (and optionally given name, postcode)."""
    if not nhs_number and not (family_name and birth_date):
        missing = [f for f, v in (("family_name", family_name), ("birth_date", birth_date))
                   if not v]
        raise ProblemError(422, "Search by nhs_number, or by family_name and birth_date.",
                           errors=[{"field": f, "message": "required without nhs_number"}
                                   for f in missing])
    return service.SearchProbe(nhs_number=nhs_number, family_name=family_name,
                               birth_date=birth_date, given_name=given_name, postcode=postcode)


@router.get("/search", response_model=CandidatePage, responses=ERRORS,
            summary="Find a child by NHS number, or by family name and birth date")
def search_children(
    session: SessionDep, access: AccessDep, who: ReaderDep, page: PageDep, clock: ClockDep,
    probe: Annotated[service.SearchProbe, Depends(search_probe)],
    purpose: PurposeQ, reason: ReasonQ, break_glass: BreakGlassQ = False,
):
    offset = page.after or 0
    if not isinstance(offset, int) or offset < 0:
        raise invalid("cursor", "not a cursor returned by this search")
    items, more = service.search(session, access, who, probe,
                                 service.Purpose(purpose, reason, break_glass),
                                 offset=offset, limit=page.limit, now=clock())
    return {"items": items, "next_cursor": encode_cursor(offset + page.limit) if more else None}


@router.get("", response_model=ChildView, response_model_exclude_none=True, responses=ERRORS,
            summary="A child's whole record, found by NHS number")
async def child_by_nhs_number(
    session: SessionDep, policy: PolicyDep, access: AccessDep, principal: ClaimedPrincipal,
    clock: ClockDep,
    nhs_number: Annotated[NhsNumberDigits, Query(description="10 digits, Modulus 11")],
    purpose: PurposeQ, reason: ReasonQ, break_glass: BreakGlassQ = False, history: bool = False,
):
    return await run_in_threadpool(_view, session, policy, access, principal,
                                   service.Purpose(purpose, reason, break_glass), history,
                                   clock(), nhs_number=nhs_number)


@router.get("/{child_id}", response_model=ChildView, response_model_exclude_none=True,
            responses=ERRORS,
            summary="A child's whole record: flags as one chronology, people, relationships, "
                    "transfers, outstanding deliveries, recent accesses")
async def child_by_id(
    child_id: str, session: SessionDep, policy: PolicyDep, access: AccessDep,
    principal: ClaimedPrincipal, clock: ClockDep, purpose: PurposeQ, reason: ReasonQ,
    break_glass: BreakGlassQ = False,
    history: Annotated[bool, Query(description="Add every earlier version of each flag")] = False,
):
    return await run_in_threadpool(_view, session, policy, access, principal,
                                   service.Purpose(purpose, reason, break_glass), history,
                                   clock(), child_id=child_id)


def _view(session: Session, policy: Policy, access: AccessPolicy, principal: Principal,
          stated: service.Purpose, history: bool, now: datetime, **find: str) -> dict:
    """The whole read, the principal's check against the database first, in one hand-off to
    the thread pool.

    The view is the most frequent read and its endpoints are `async`: as `def` endpoints with
    `current_principal` and the `reader` dependency they cost four hand-offs (the principal's
    check, the dependency, the endpoint, and FastAPI's validation of a `def` endpoint's
    response), about 0.15 ms each here, and the check would be a transaction of its own.
    """
    principal = check_role(checked(session, principal), READERS)  # as for any other route
    return service.child_view(session, policy, access, reader(principal, session), stated,
                              history=history, now=now, **find)
