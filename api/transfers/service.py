"""Transfers of a child's plan between areas, and the deadline sweep that chases pickup."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

from sqlalchemy import update
from sqlmodel import Session, or_, select

from api.agencies.models import Agency
from api.audit import service as audit
from api.auth.principal import Principal
from api.db import get_locked, utcnow
from api.encoding import rfc3339
from api.identity import service as identity
from api.identity.models import Person
from api.policy.loader import Policy
from api.problems import ProblemError, not_found, validated
from api.transfers.models import SuspectedMove, Transfer
from api.transfers.notify import LAWFUL_BASIS, PURPOSE, area_agencies, notify
from api.transfers.schemas import SOCIAL_CARE, TransferClose, TransferCreate
from api.transfers.working_days import add_working_days, england_date, next_working_day
from api.validation import BodyContext


def require_social_care(agency: Agency) -> None:
    """Children's social care holds a child's plan; no other agency says where it goes."""
    if agency.kind != SOCIAL_CARE:
        raise ProblemError(403, "Only children's social care records transfers of a plan.")


def create(session: Session, policy: Policy, agency: Agency, body: TransferCreate) -> Transfer:
    """A transfer recorded by children's social care (the route checks that before the body is
    judged; checked again here for any other caller)."""
    require_social_care(agency)
    body = validated(body, BodyContext(policy, session, caller=agency))
    child = identity.resolve_child(session, agency.id, body.subject)
    pickup_due = add_working_days(england_date(body.notified_at),
                                  policy.defaults.transfer_pickup_working_days)
    transfer = Transfer(child_id=child.id, from_agency_id=agency.id, from_area=agency.area,
                        to_area=body.to_area, receiving_agency_id=body.receiving_agency,
                        plan=body.plan, notified_at=body.notified_at, reason=body.reason,
                        pickup_due=pickup_due, next_alert_on=next_working_day(pickup_due))
    session.add(transfer)
    session.flush()
    _link_previous(session, agency, transfer)
    _resolve_moves(session, transfer)
    audit.record(session, actor=agency.id, actor_agency=agency.id, action="transfer.create",
                 outcome="awaiting_pickup", child_id=child.id, purpose=PURPOSE,
                 lawful_basis=LAWFUL_BASIS, policy_rule="TRANSFER",
                 policy_version=policy.version)
    notify(session, event_type="transfer.created", recipients=_receivers(session, transfer),
           data=event_data(session, transfer), child_id=child.id, actor=agency.id,
           areas=[transfer.from_area, transfer.to_area], rule="TRANSFER")
    return transfer


def accept(session: Session, agency: Agency, transfer_id: str) -> Transfer:
    transfer = _to_close(session, agency, transfer_id)
    if agency.kind != SOCIAL_CARE or agency.area != transfer.to_area:
        raise ProblemError(403, "Only children's social care of the receiving area picks up "
                           "a transfer.")
    _require_open(transfer)
    _pick_up(session, transfer, agency, None)
    return transfer


def _pick_up(session: Session, transfer: Transfer, agency: Agency, reason: str | None) -> None:
    """The receiving area has the case: recorded, and its sender told."""
    _close(transfer, "picked_up", agency.id, reason)
    session.add(transfer)
    audit.record(session, actor=agency.id, actor_agency=agency.id, action="transfer.accept",
                 outcome="picked_up", child_id=transfer.child_id, purpose=PURPOSE,
                 lawful_basis=LAWFUL_BASIS, policy_rule="TRANSFER", reason=reason)
    notify(session, event_type="transfer.accepted", recipients=[transfer.from_agency_id],
           data=event_data(session, transfer), child_id=transfer.child_id, actor=agency.id,
           areas=[transfer.from_area, transfer.to_area], rule="TRANSFER")


def withdraw(session: Session, agency: Agency, transfer_id: str, body: TransferClose) -> Transfer:
    transfer = _to_close(session, agency, transfer_id)
    if agency.id != transfer.from_agency_id:
        raise ProblemError(403, "Only the outgoing agency withdraws a transfer.")
    _require_open(transfer)
    _close(transfer, "withdrawn", agency.id, body.reason)
    session.add(transfer)
    audit.record(session, actor=agency.id, actor_agency=agency.id, action="transfer.withdraw",
                 outcome="withdrawn", child_id=transfer.child_id, reason=body.reason)
    _tell_closed(session, transfer)
    return transfer


def get_visible(session: Session, principal: Principal, transfer_id: str) -> Transfer:
    """The transfer, or 404; a role that sees no transfers is refused before any lookup, so
    that an existing id and a missing one get the same answer."""
    areas = None if principal.role == "auditor" else _viewer_areas(session, principal)
    transfer = session.get(Transfer, transfer_id)
    if transfer is None or (areas is not None
                            and not set(areas) & {transfer.from_area, transfer.to_area}):
        raise not_found("transfer")
    return transfer


def list_query(session: Session, principal: Principal, status: str | None, area: str | None,
               today: date):
    """Transfers the caller may see: its areas' (CSC, MASH), or all for auditors."""
    q = select(Transfer)
    if principal.role != "auditor":
        areas = _viewer_areas(session, principal)
        q = q.where(or_(Transfer.from_area.in_(areas), Transfer.to_area.in_(areas)))
    if status == "overdue":
        q = q.where(Transfer.status == "awaiting_pickup", Transfer.pickup_due < today)
    elif status is not None:
        q = q.where(Transfer.status == status)
    if area is not None:
        q = q.where(or_(Transfer.from_area == area, Transfer.to_area == area))
    return q


def sweep_overdue(session_factory: Callable[[], Session], policy: Policy,
                  now: datetime | None = None) -> int:
    """Alert on transfers not picked up: first on the working day after pickup_due, then every
    policy interval. A conditional update claims each alert, so two sweepers never both send it.
    """
    today = england_date(now or utcnow())
    repeat = policy.defaults.transfer_alert_repeat_working_days
    with session_factory() as session:
        due = session.exec(select(Transfer.id, Transfer.alerts_sent, Transfer.next_alert_on)
                           .where(Transfer.status == "awaiting_pickup",
                                  Transfer.next_alert_on <= today)
                           .order_by(Transfer.next_alert_on).limit(500)).all()
    sent = 0
    for transfer_id, alerts_sent, alert_on in due:
        with session_factory() as session:
            claimed = session.exec(update(Transfer).where(
                Transfer.id == transfer_id, Transfer.status == "awaiting_pickup",
                Transfer.alerts_sent == alerts_sent, Transfer.next_alert_on == alert_on)
                .values(alerts_sent=alerts_sent + 1,
                        next_alert_on=add_working_days(today, repeat)))
            if claimed.rowcount != 1:
                session.rollback()
                continue
            transfer = session.get(Transfer, transfer_id)
            data = {**event_data(session, transfer), "alert_number": alerts_sent + 1,
                    "working_days_overdue": _working_days_between(transfer.pickup_due, today)}
            notify(session, event_type="transfer.not_picked_up",
                   recipients=[transfer.from_agency_id, *_receivers(session, transfer)],
                   data=data, child_id=transfer.child_id, actor="flagshare",
                   areas=[transfer.from_area, transfer.to_area], rule="TRANSFER-OVERDUE")
            session.commit()
            sent += 1
    return sent


def moves_query(session: Session, principal: Principal, status: str | None):
    """Suspected moves touching the caller's area (CSC or MASH)."""
    areas = _viewer_areas(session, principal)
    q = select(SuspectedMove).where(or_(SuspectedMove.plan_area.in_(areas),
                                        SuspectedMove.seen_area.in_(areas)))
    return q.where(SuspectedMove.status == status) if status else q


def dismiss_move(session: Session, principal: Principal, move_id: str, reason: str) -> SuspectedMove:
    areas = _viewer_areas(session, principal)
    # Locked until commit, as a transfer being closed is: a second dismissal finds it done.
    move = get_locked(session, SuspectedMove, move_id)
    if move is None or not {move.plan_area, move.seen_area} & set(areas):
        raise not_found("suspected move")
    if move.status != "open":
        raise ProblemError(409, f"This suspected move is already {move.status}.")
    move.status, move.resolution = "dismissed", reason
    session.add(move)
    audit.record(session, actor=principal.actor, actor_agency=principal.agency_id,
                 action="move.dismiss", outcome="dismissed", child_id=move.child_id,
                 reason=reason)
    return move


def event_data(session: Session, transfer: Transfer) -> dict:
    """What the areas need to act: who the child is, the plan, who holds it, the deadline."""
    child = session.get(Person, transfer.child_id)
    return {
        "transfer_id": transfer.id, "status": transfer.status, "plan": transfer.plan,
        "from_agency": transfer.from_agency_id, "from_area": transfer.from_area,
        "to_area": transfer.to_area, "receiving_agency": transfer.receiving_agency_id,
        "notified_at": rfc3339(transfer.notified_at),
        "pickup_due": transfer.pickup_due.isoformat(), "reason": transfer.reason,
        "previous_transfer_id": transfer.previous_transfer_id,
        "child": {"child_id": child.id, "nhs_number": child.nhs_number,
                  "given_name": child.given_name, "family_name": child.family_name,
                  "birth_date": child.birth_date.isoformat() if child.birth_date else None},
    }


def is_overdue(transfer: Transfer, today: date) -> bool:
    return transfer.status == "awaiting_pickup" and transfer.pickup_due < today


# --- helpers -----------------------------------------------------------------------------

def _receivers(session: Session, transfer: Transfer) -> list[str]:
    social_care = ([transfer.receiving_agency_id] if transfer.receiving_agency_id
                   else area_agencies(session, transfer.to_area, [SOCIAL_CARE]))
    return [*social_care, *area_agencies(session, transfer.to_area, ["mash"])]


def _link_previous(session: Session, agency: Agency, transfer: Transfer) -> None:
    """A child moving again before pickup: the new transfer links and closes the child's latest
    open transfer that the creator's area is an end of, locked as `_to_close` locks it, so that
    a pickup at the same moment is not overwritten.

    - The receiving area moves the child on (A→B, then B→C): B had taken the case, so the
      first is picked up, and its outgoing agency is sent `transfer.accepted` as on a pickup.
    - The sending area sends again (A→B, then A→B or A→C): the first is superseded, and both
      its ends are sent `transfer.closed`.
    A transfer of which the creator's area is neither end is not its to close or to see: it
    stays open and is not linked.
    """
    previous = session.exec(select(Transfer).where(
        Transfer.child_id == transfer.child_id, Transfer.status == "awaiting_pickup",
        Transfer.id != transfer.id,
        or_(Transfer.from_area == agency.area, Transfer.to_area == agency.area))
        .order_by(Transfer.created_at.desc()).with_for_update(key_share=True)).first()
    if previous is None:
        return
    transfer.previous_transfer_id = previous.id
    if agency.area == previous.to_area:  # B moves the child on: B had taken the case
        _pick_up(session, previous, agency, f"transferred on by {agency.id}")
        return
    reason = f"superseded by transfer {transfer.id}"
    _close(previous, "superseded", agency.id, reason)
    session.add(previous)
    audit.record(session, actor=agency.id, actor_agency=agency.id, action="transfer.supersede",
                 outcome="superseded", child_id=previous.child_id, reason=reason)
    _tell_closed(session, previous)


def _tell_closed(session: Session, transfer: Transfer) -> None:
    """A transfer that will not be picked up, withdrawn or superseded: its receivers stop
    waiting for a case that is not coming, and its sender hears if another agency closed it
    (`transfer.closed`); the agency that closed it knows."""
    data = {**event_data(session, transfer), "closed_by": transfer.closed_by_agency_id,
            "closed_at": rfc3339(transfer.closed_at), "close_reason": transfer.close_reason}
    notify(session, event_type="transfer.closed",
           recipients=[r for r in [transfer.from_agency_id, *_receivers(session, transfer)]
                       if r != transfer.closed_by_agency_id],
           data=data, child_id=transfer.child_id, actor=transfer.closed_by_agency_id,
           areas=[transfer.from_area, transfer.to_area], rule="TRANSFER")


def _resolve_moves(session: Session, transfer: Transfer) -> None:
    session.exec(update(SuspectedMove).where(
        SuspectedMove.child_id == transfer.child_id, SuspectedMove.plan_area == transfer.from_area,
        SuspectedMove.seen_area == transfer.to_area, SuspectedMove.status == "open")
        .values(status="resolved", resolution=f"transfer {transfer.id} recorded"))


def _close(transfer: Transfer, status: str, agency_id: str, reason: str | None) -> None:
    transfer.status, transfer.closed_by_agency_id = status, agency_id
    transfer.closed_at, transfer.close_reason = utcnow(), reason


def _require_open(transfer: Transfer) -> None:
    if transfer.status != "awaiting_pickup":
        raise ProblemError(409, f"This transfer is already {transfer.status}.")


def _to_close(session: Session, agency: Agency, transfer_id: str) -> Transfer:
    """The transfer if the agency sees it, locked until commit (PostgreSQL; SQLite serialises
    writers already): of two requests closing it at once, the second waits, then finds it
    closed (409) instead of closing it, alerting and auditing a second time."""
    transfer = get_locked(session, Transfer, transfer_id)
    if transfer is None or not _agency_sees(agency, transfer):
        raise not_found("transfer")
    return transfer


def _agency_sees(agency: Agency, transfer: Transfer) -> bool:
    return agency.kind in (SOCIAL_CARE, "mash") and agency.area in (transfer.from_area,
                                                                    transfer.to_area)


def _viewer_areas(session: Session, principal: Principal) -> list[str]:
    if principal.role == "mash_practitioner" and principal.area:
        return [principal.area]
    if principal.role == "agency_system":
        agency = session.get(Agency, principal.agency_id)
        if agency is not None and agency.kind in (SOCIAL_CARE, "mash"):
            return [agency.area]
    raise ProblemError(403, "Transfers are visible to children's social care and MASH of the "
                       "areas involved, and to auditors.")


def _working_days_between(start: date, end: date) -> int:
    count, day = 0, start
    while day < end:
        day = next_working_day(day)
        if day <= end:
            count += 1
    return count
