from fastapi import APIRouter

from api.audit import service as audit
from api.auth.principal import CallingAgency
from api.deps import SessionDep
from api.identity import service
from api.identity.schemas import RelationshipCreate, RelationshipOut
from api.idempotency.service import IdempotencyDep

router = APIRouter(prefix="/v1", tags=["children"])


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
