"""Moves nobody notified: a child on a plan in one area seen by an agency in another."""

from __future__ import annotations

from sqlalchemy import bindparam
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from api.agencies.models import Agency
from api.flags.models import Flag
from api.transfers.models import SuspectedMove, Transfer
from api.transfers.notify import area_agencies, notify

PLAN_CATEGORIES = ("child_protection_plan", "looked_after_child")
# Built once: read on every flag, relationship and household published.
_ACTIVE_PLANS = (select(Flag, Agency).join(Agency, Agency.id == Flag.publisher_id)
                 .where(Flag.child_id == bindparam("child_id"), Flag.status == "active",
                        Flag.category.in_(PLAN_CATEGORIES)))


def check_for_move(session: Session, child_id: str, seen_by: Agency, seen_as: str) -> None:
    """Raise `move.suspected` once per child and area pair, unless a transfer covers it."""
    plans = session.exec(_ACTIVE_PLANS, params={"child_id": child_id}).all()
    for plan, owner in plans:
        if owner.area == seen_by.area:
            continue
        transferred = session.exec(select(Transfer.id).where(
            Transfer.child_id == child_id, Transfer.from_area == owner.area,
            Transfer.to_area == seen_by.area, Transfer.status != "withdrawn")).first()
        if transferred or _already_raised(session, child_id, owner.area, seen_by.area):
            continue
        move = SuspectedMove(child_id=child_id, plan_flag_id=plan.id, plan_area=owner.area,
                             seen_area=seen_by.area, seen_by_agency_id=seen_by.id,
                             seen_as=seen_as)
        try:
            with session.begin_nested():
                session.add(move)
        except IntegrityError:  # raised concurrently by another request
            continue
        notify(session, event_type="move.suspected",
               recipients=[owner.id, *area_agencies(session, seen_by.area, ["mash"])],
               data={"suspected_move_id": move.id, "child_id": child_id,
                     "plan": plan.category, "plan_flag_id": plan.id, "plan_area": owner.area,
                     "plan_owner": owner.id, "seen_area": seen_by.area,
                     "seen_by": seen_by.id, "seen_by_kind": seen_by.kind, "seen_as": seen_as},
               child_id=child_id, actor=seen_by.id, areas=[owner.area, seen_by.area],
               rule="MOVE-SUSPECTED")


def _already_raised(session: Session, child_id: str, plan_area: str, seen_area: str) -> bool:
    return session.exec(select(SuspectedMove.id).where(
        SuspectedMove.child_id == child_id, SuspectedMove.plan_area == plan_area,
        SuspectedMove.seen_area == seen_area)).first() is not None
