"""Which areas a child is linked to: the scope in which a MASH practitioner may see it."""

from __future__ import annotations

from datetime import date

from sqlmodel import Session, or_, select

from api.agencies.models import Agency
from api.flags.models import Flag
from api.identity.models import PersonLink, Relationship
from api.transfers.models import Transfer


def child_areas(session: Session, child_id: str, on: date | None = None) -> set[str]:
    """Areas where the child lives or is worked with (agencies holding a current relationship),
    where an agency flagged it (a flag entered in error does not count) or recorded its
    household, and both ends of any transfer that is not withdrawn."""
    on = on or date.today()
    working = select(Agency.area).join(Relationship, Relationship.agency_id == Agency.id).where(
        Relationship.child_id == child_id, Relationship.start <= on,
        or_(Relationship.end.is_(None), Relationship.end >= on))
    flagged = select(Agency.area).join(Flag, Flag.publisher_id == Agency.id).where(
        Flag.child_id == child_id, Flag.status != "entered_in_error")
    household = select(Agency.area).join(PersonLink, PersonLink.agency_id == Agency.id).where(
        PersonLink.child_id == child_id, PersonLink.flag_id.is_(None))
    areas = set(session.scalars(working.union(flagged, household)).all())
    for from_area, to_area in session.exec(select(Transfer.from_area, Transfer.to_area).where(
            Transfer.child_id == child_id, Transfer.status != "withdrawn")).all():
        areas.update((from_area, to_area))
    return areas


def person_areas(session: Session, person_id: str) -> set[str]:
    """A child's areas, and for an adult the areas of the agencies that named them."""
    named_by = select(Agency.area).join(PersonLink, PersonLink.agency_id == Agency.id).where(
        PersonLink.person_id == person_id)
    return child_areas(session, person_id) | set(session.scalars(named_by).all())
