from typing import Annotated, Literal

from fastapi import APIRouter, Depends

from api.audit import service as audit
from api.auth.principal import CallingAgency, Principal, require_roles
from api.deps import PolicyDep, SessionDep
from api.identity import merging, service
from api.identity.schemas import MatchDecision, MatchOut, RelationshipCreate, RelationshipOut
from api.idempotency.service import IdempotencyDep
from api.pagination import Page, PageDep, page_of

router = APIRouter(prefix="/v1", tags=["children"])
Practitioner = Annotated[Principal, Depends(require_roles("mash_practitioner"))]
ERRORS = {404: {"description": "No such possible match, or not of your area"},
          409: {"description": "Already decided, or a record was merged elsewhere"}}


@router.post("/relationships", status_code=201, response_model=RelationshipOut,
             summary="State that the calling agency works with a child")
def create_relationship(body: RelationshipCreate, agency: CallingAgency, session: SessionDep,
                        idem: IdempotencyDep):
    if replay := idem.replay():
        return replay
    rel = service.add_relationship(session, agency, body)
    audit.record(session, actor=agency.id, actor_agency=agency.id, action="relationship.record",
                 outcome="recorded", child_id=rel.child_id)
    return idem.commit(201, RelationshipOut(id=rel.id, child_id=rel.child_id, agency=agency.id,
                                            kind=rel.kind, start=rel.start, end=rel.end))


@router.get("/matches", response_model=Page[MatchOut], tags=["identity linking"],
            summary="Possible matches of your area, for a MASH practitioner to decide")
def list_matches(session: SessionDep, page: PageDep, principal: Practitioner,
                 status: Literal["open", "confirmed", "rejected", "unmerged", "superseded"]
                 | None = "open"):
    rows = merging.read_queue(session, principal, status,
                              None if page.after is None else str(page.after), page.limit + 1)
    out = page_of(rows, page, key=lambda m: m.id, to_item=lambda m: merging.match_view(session, m))
    session.commit()
    return out


@router.post("/matches/{match_id}/confirm", response_model=MatchOut, responses=ERRORS,
             tags=["identity linking"],
             summary="The two records are one child: merge them (reversible)")
def confirm_match(match_id: str, body: MatchDecision, session: SessionDep, policy: PolicyDep,
                  principal: Practitioner, idem: IdempotencyDep):
    if replay := idem.replay():
        return replay
    match, _ = merging.confirm(session, policy, principal, match_id, body.reason)
    return idem.commit(200, merging.match_view(session, match))


@router.post("/matches/{match_id}/reject", response_model=MatchOut, responses=ERRORS,
             tags=["identity linking"], summary="Two different children: never proposed again")
def reject_match(match_id: str, body: MatchDecision, session: SessionDep,
                 principal: Practitioner, idem: IdempotencyDep):
    if replay := idem.replay():
        return replay
    match = merging.reject(session, principal, match_id, body.reason)
    return idem.commit(200, merging.match_view(session, match))


@router.post("/matches/{match_id}/unmerge", response_model=MatchOut, responses=ERRORS,
             tags=["identity linking"],
             summary="Undo a confirmed match: what the merge moved goes back")
def unmerge_match(match_id: str, body: MatchDecision, session: SessionDep,
                  principal: Practitioner, idem: IdempotencyDep):
    if replay := idem.replay():
        return replay
    match, _ = merging.unmerge(session, principal, match_id, body.reason)
    return idem.commit(200, merging.match_view(session, match))
