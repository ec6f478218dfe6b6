from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.auth.principal import CallingAgency, CurrentPrincipal, Principal, require_roles
from api.children.access import AccessDep
from api.deps import PolicyDep, SessionDep
from api.flags import service
from api.flags.schemas import DecisionCreate, DecisionOut, FlagCreate, FlagOut, FlagPublished, FlagUpdate
from api.idempotency.service import IdempotencyDep

router = APIRouter(prefix="/v1/flags", tags=["flags"])
ERRORS = {403: {"description": "Not allowed by policy or role (the policy rule is named)"},
          404: {"description": "No such flag, or not visible to you"},
          422: {"description": "Invalid fields, each named in errors"}}


@router.post("", status_code=201, response_model=FlagPublished, responses=ERRORS,
             summary="Publish a flag about a child, with purpose and lawful basis")
def publish_flag(body: FlagCreate, agency: CallingAgency, session: SessionDep, policy: PolicyDep,
                 idem: IdempotencyDep):
    if replay := idem.replay():
        return replay
    return idem.commit(201, service.publish(session, policy, agency, body))


@router.get("/{flag_id}", response_model=FlagOut, response_model_exclude_none=True,
            responses=ERRORS, summary="Read a flag (publisher, recipients, MASH with a purpose)")
def get_flag(
    flag_id: str,
    session: SessionDep,
    policy: PolicyDep,
    access: AccessDep,
    principal: CurrentPrincipal,
    purpose: Annotated[str | None, Query(max_length=64, description="Required for MASH")] = None,
    reason: Annotated[str | None, Query(max_length=2000, description="Required for MASH")] = None,
):
    return service.visible_flag(session, policy, access, principal, flag_id, purpose=purpose,
                                reason=reason)


@router.patch("/{flag_id}", response_model=FlagPublished, responses=ERRORS,
              summary="Change status, period end or summary: a new version, re-forwarded")
def amend_flag(flag_id: str, body: FlagUpdate, agency: CallingAgency, session: SessionDep,
               policy: PolicyDep, idem: IdempotencyDep):
    if replay := idem.replay():
        return replay
    return idem.commit(200, service.amend(session, policy, agency, flag_id, body))


@router.post("/{flag_id}/decisions", status_code=201, response_model=DecisionOut,
             responses=ERRORS, summary="Record a decision to share further, or not to share")
def record_decision(
    flag_id: str,
    body: DecisionCreate,
    session: SessionDep,
    policy: PolicyDep,
    idem: IdempotencyDep,
    principal: Annotated[Principal, Depends(require_roles("agency_system", "mash_practitioner"))],
):
    if replay := idem.replay():
        return replay
    d = service.record_decision(session, policy, principal, flag_id, body)
    return idem.commit(201, DecisionOut(id=d.id, flag_id=d.flag_id, decision=d.decision,
                                        recipient=d.recipient_id, reason=d.reason,
                                        decided_by=d.decided_by, decided_at=d.decided_at))
