"""Which areas a child is linked to: the scope in which a MASH practitioner may see it."""

from __future__ import annotations

from datetime import date

from sqlalchemy import bindparam, union
from sqlmodel import Session, select

from api.agencies.models import Agency
from api.db import plain_rows
from api.flags.models import Flag
from api.identity.models import PersonLink, Relationship
from api.transfers.models import Transfer


# Built once: the view of a child checks its scope on every read. `on` is the day.
_CHILD_AREAS = union(
    select(Agency.area).join(Relationship, Relationship.agency_id == Agency.id).where(
        Relationship.child_id == bindparam("child_id"),
        Relationship.in_force_on(bindparam("on"))),
    select(Agency.area).join(Flag, Flag.publisher_id == Agency.id).where(
        Flag.child_id == bindparam("child_id"), Flag.status != "entered_in_error"),
    select(Agency.area).join(PersonLink, PersonLink.agency_id == Agency.id).where(
        PersonLink.child_id == bindparam("child_id"), PersonLink.flag_id.is_(None)),
    select(Transfer.from_area).where(Transfer.child_id == bindparam("child_id"),
                                     Transfer.status != "withdrawn"),
    select(Transfer.to_area).where(Transfer.child_id == bindparam("child_id"),
                                   Transfer.status != "withdrawn"),
)


def child_areas(session: Session, child_id: str, on: date | None = None) -> set[str]:
    """Areas where the child lives or is worked with (agencies holding a current relationship),
    where an agency flagged it (a flag entered in error does not count) or recorded its
    household, and both ends of any transfer that is not withdrawn."""
    return set(plain_rows(session, _CHILD_AREAS, {"child_id": child_id,
                                                 "on": on or date.today()}).scalars().all())


def person_areas(session: Session, person_id: str) -> set[str]:
    """A child's areas, and for an adult the areas of the agencies that named them."""
    named_by = select(Agency.area).join(PersonLink, PersonLink.agency_id == Agency.id).where(
        PersonLink.person_id == person_id)
    return child_areas(session, person_id) | set(session.scalars(named_by).all())
