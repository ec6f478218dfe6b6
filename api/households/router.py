from fastapi import APIRouter

from api.audit import service as audit
from api.auth.principal import CallingAgency
from api.deps import PolicyDep, SessionDep
from api.households import service
from api.households.schemas import HouseholdCreate, HouseholdOut, HouseholdPerson
from api.idempotency.service import IdempotencyDep

router = APIRouter(prefix="/v1", tags=["children"])


@router.post("/household-members", status_code=201, response_model=HouseholdOut,
             summary="Record who lives with or parents a child (a new partner, a father)",
             description="The calling agency states that these people are the child's parents "
                         "or household members. An adult with a risk history raises "
                         "`household.risk_joined` for the child's agencies, as a flag naming "
                         "them would.")
def record_household(body: HouseholdCreate, agency: CallingAgency, session: SessionDep,
                     policy: PolicyDep, idem: IdempotencyDep):
    if replay := idem.replay():
        return replay
    child, links = service.record_household(session, policy, agency, body)
    audit.record(session, actor=agency.id, actor_agency=agency.id, action="household.record",
                 outcome="recorded", child_id=child.id)
    return idem.commit(201, HouseholdOut(child_id=child.id, people=[
        HouseholdPerson(person_id=link.person_id, role=link.role,
                        relationship=link.relationship, new=new) for link, new in links]))
