from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request

from api.agencies.models import Agency
from api.auth.principal import CallingAgency, CurrentPrincipal, Principal, require_roles
from api.deps import ClockDep, PolicyDep, SessionDep
from api.idempotency.service import IdempotencyDep
from api.pagination import Page, PageDep, page_of
from api.transfers import service
from api.transfers.models import SuspectedMove, Transfer
from api.transfers.schemas import (
    DismissMove, SuspectedMoveOut, TransferClose, TransferCreate, TransferOut,
)
from api.transfers.working_days import england_date
from api.validation import note_caller

router = APIRouter(prefix="/v1", tags=["transfers"])
AREA = Query(pattern=r"^E(06|08|09|10)\d{6}$")


async def social_care(request: Request, agency: CallingAgency) -> Agency:
    """The calling agency, which must be children's social care: any other is refused before
    its body is judged. Its area is where a transfer cannot go, for the 422 handler too."""
    service.require_social_care(agency)
    note_caller(request, agency)
    return agency


def transfer_out(t: Transfer, today: date) -> TransferOut:
    return TransferOut(
        id=t.id, status=t.status, pickup_due=t.pickup_due,
        overdue=service.is_overdue(t, today), child_id=t.child_id,
        from_agency=t.from_agency_id, from_area=t.from_area, to_area=t.to_area,
        receiving_agency=t.receiving_agency_id, plan=t.plan, notified_at=t.notified_at,
        reason=t.reason, previous_transfer_id=t.previous_transfer_id,
        alerts_sent=t.alerts_sent, closed_at=t.closed_at, closed_by=t.closed_by_agency_id,
        created_at=t.created_at)


@router.post("/transfers", status_code=201, response_model=TransferOut,
             summary="Record a transfer of a child's plan to another area (outgoing CSC)")
def create_transfer(body: TransferCreate, agency: Annotated[Agency, Depends(social_care)],
                    session: SessionDep, policy: PolicyDep, idem: IdempotencyDep,
                    clock: ClockDep):
    if replay := idem.replay():
        return replay
    transfer = service.create(session, policy, agency, body)
    return idem.commit(201, transfer_out(transfer, england_date(clock())))


@router.post("/transfers/{transfer_id}/accept", response_model=TransferOut,
             summary="The receiving area's children's social care picks the transfer up")
def accept_transfer(transfer_id: str, agency: CallingAgency, session: SessionDep,
                    idem: IdempotencyDep, clock: ClockDep):
    if replay := idem.replay():
        return replay
    transfer = service.accept(session, agency, transfer_id)
    return idem.commit(200, transfer_out(transfer, england_date(clock())))


@router.post("/transfers/{transfer_id}/withdraw", response_model=TransferOut,
             summary="The outgoing agency withdraws a transfer that is no longer happening")
def withdraw_transfer(transfer_id: str, body: TransferClose, agency: CallingAgency,
                      session: SessionDep, idem: IdempotencyDep, clock: ClockDep):
    if replay := idem.replay():
        return replay
    transfer = service.withdraw(session, agency, transfer_id, body)
    return idem.commit(200, transfer_out(transfer, england_date(clock())))


@router.get("/transfers", response_model=Page[TransferOut],
            summary="Transfers of the caller's areas (CSC, MASH) or all (auditors)")
def list_transfers(
    session: SessionDep,
    principal: CurrentPrincipal,
    page: PageDep,
    clock: ClockDep,
    status: Literal["awaiting_pickup", "overdue", "picked_up", "withdrawn", "superseded"]
    | None = None,
    area: Annotated[str | None, AREA] = None,
):
    today = england_date(clock())
    q = service.list_query(session, principal, status, area, today)
    if page.after is not None:
        q = q.where(Transfer.id > str(page.after))
    rows = session.exec(q.order_by(Transfer.id).limit(page.limit + 1)).all()
    return page_of(rows, page, key=lambda t: t.id, to_item=lambda t: transfer_out(t, today))


@router.get("/transfers/{transfer_id}", response_model=TransferOut, summary="One transfer")
def get_transfer(transfer_id: str, session: SessionDep, principal: CurrentPrincipal,
                 clock: ClockDep):
    transfer = service.get_visible(session, principal, transfer_id)
    return transfer_out(transfer, england_date(clock()))


@router.get("/suspected-moves", response_model=Page[SuspectedMoveOut],
            summary="Children on a plan seen in another area with no transfer recorded")
def list_moves(
    session: SessionDep,
    page: PageDep,
    principal: Annotated[Principal, Depends(require_roles("mash_practitioner", "agency_system"))],
    status: Literal["open", "resolved", "dismissed"] | None = "open",
):
    q = service.moves_query(session, principal, status)
    if page.after is not None:
        q = q.where(SuspectedMove.id > str(page.after))
    rows = session.exec(q.order_by(SuspectedMove.id).limit(page.limit + 1)).all()
    return page_of(rows, page, key=lambda m: m.id, to_item=move_out)


@router.post("/suspected-moves/{move_id}/dismiss", response_model=SuspectedMoveOut,
             responses={409: {"description": "Already dismissed or resolved"}},
             summary="Dismiss a suspected move with a reason")
def dismiss_move(
    move_id: str,
    body: DismissMove,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require_roles("mash_practitioner", "agency_system"))],
    idem: IdempotencyDep,
):
    if replay := idem.replay():
        return replay
    move = service.dismiss_move(session, principal, move_id, body.reason)
    return idem.commit(200, move_out(move))


def move_out(m: SuspectedMove) -> SuspectedMoveOut:
    return SuspectedMoveOut(id=m.id, child_id=m.child_id, plan_flag_id=m.plan_flag_id,
                            plan_area=m.plan_area, seen_area=m.seen_area,
                            seen_by=m.seen_by_agency_id, seen_as=m.seen_as, status=m.status,
                            resolution=m.resolution, created_at=m.created_at)
