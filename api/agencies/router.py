from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlmodel import select

from api.agencies import service
from api.agencies.models import Agency
from api.agencies.schemas import (AREA_PATTERN, AgencyChange, AgencyCreate, AgencyCreated,
                                  AgencyOut)
from api.audit import service as audit
from api.auth.passwords import new_secret
from api.auth.principal import CurrentPrincipal, Principal, require_roles
from api.deps import PolicyDep, SessionDep
from api.idempotency.service import IdempotencyDep
from api.pagination import Page, PageDep, page_of
from api.policy.schema import AgencyKind
from api.problems import not_found

router = APIRouter(prefix="/v1/agencies", tags=["agencies"])


def _out(a: Agency) -> AgencyOut:
    return AgencyOut(id=a.id, name=a.name, kind=a.kind, area=a.area, disabled=a.disabled)


@router.post("", status_code=201, response_model=AgencyCreated,
             summary="Register an agency (admin); its client secret is returned once")
def create_agency(
    body: AgencyCreate,
    session: SessionDep,
    policy: PolicyDep,
    idem: IdempotencyDep,
    principal: Annotated[Principal, Depends(require_roles("admin"))],
):
    secret = new_secret()  # hashed before the transaction begins (see NewSecret)
    if replay := idem.replay():
        return replay
    try:
        agency = service.register(session, policy, body, secret)
    except service.AlreadyRegistered:
        if replay := idem.replay():  # a concurrent request with this key won: answer as it did
            return replay
        raise
    audit.record(session, actor=principal.actor, actor_agency=principal.agency_id,
                 action="agency.register", outcome="registered", recipient=agency.id)
    out = _out(agency).model_dump()
    # A replay answers with the same status and id but never the secret, which is not stored.
    return idem.commit(201, AgencyCreated(**out, client_secret=secret.plain),
                       remember={**out, "client_secret": None})


@router.post("/{agency_id}/secret", response_model=AgencyCreated,
             summary="Issue a new client secret (admin); the old one stops working at once")
def rotate_secret(
    agency_id: str,
    session: SessionDep,
    idem: IdempotencyDep,
    principal: Annotated[Principal, Depends(require_roles("admin"))],
):
    secret = new_secret()  # hashed before the transaction begins (see NewSecret)
    if replay := idem.replay():  # rotated already: not again, and the secret is not shown again
        return replay
    agency = service.rotate_secret(session, agency_id, secret)
    audit.record(session, actor=principal.actor, actor_agency=principal.agency_id,
                 action="agency.rotate_secret", outcome="rotated", recipient=agency.id)
    out = _out(agency).model_dump()
    return idem.commit(200, AgencyCreated(**out, client_secret=secret.plain),
                       remember={**out, "client_secret": None})


@router.patch("/{agency_id}", response_model=AgencyOut,
              summary="Disable an agency, or enable it again (admin); audited with the reason")
def change_agency(
    agency_id: str,
    body: AgencyChange,
    session: SessionDep,
    idem: IdempotencyDep,
    principal: Annotated[Principal, Depends(require_roles("admin"))],
):
    if replay := idem.replay():  # a retry is answered as the first was, and audited once
        return replay
    agency = service.set_disabled(session, agency_id, body.disabled, actor=principal.actor,
                                  actor_agency=principal.agency_id, reason=body.reason)
    return idem.commit(200, _out(agency))


@router.get("", response_model=Page[AgencyOut], summary="Registered agencies")
def list_agencies(
    session: SessionDep,
    _: CurrentPrincipal,
    page: PageDep,
    area: Annotated[str | None, Query(pattern=AREA_PATTERN)] = None,
    kind: AgencyKind | None = None,
):
    q = select(Agency).order_by(Agency.id)
    if area:
        q = q.where(Agency.area == area)
    if kind:
        q = q.where(Agency.kind == kind)
    if (after := service.cursor_id(page.after)) is not None:
        q = q.where(Agency.id > after)
    rows = session.exec(q.limit(page.limit + 1)).all()
    return page_of(rows, page, key=lambda a: a.id, to_item=_out)


@router.get("/{agency_id}", response_model=AgencyOut, summary="One registered agency")
def get_agency(agency_id: str, session: SessionDep, _: CurrentPrincipal):
    agency = service.find(session, agency_id)
    if agency is None:
        raise not_found("agency")
    return _out(agency)
