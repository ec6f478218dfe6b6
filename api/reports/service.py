"""Data-quality report for one area: what reviews keep finding missing, per agency, and the
children many agencies have flagged but no children's social care works with."""

from __future__ import annotations

from sqlalchemy import case, func
from sqlmodel import Session, select

from api.agencies.models import Agency
from api.db import utcnow
from api.flags.models import Flag, FlagVersion
from api.identity.models import Person
from api.identity.scope import child_areas
from api.identity.service import current_relationships

MANY_AGENCIES = 3  # flagged by at least this many agencies, owned by none


def data_quality(session: Session, area: str) -> dict:
    return {"area": area, "generated_at": utcnow(), "agencies": agency_quality(session, area),
            "known_to_many_owned_by_none": known_to_many(session, area)}


def agency_quality(session: Session, area: str) -> list[dict]:
    """Per publishing agency of the area: flags (not entered in error) missing the child's NHS
    number or ethnicity as the publisher sent them, or whose summary drew plain-language
    warnings. An unborn child has neither, so it is left out of those two shares."""
    born = Person.unborn.is_(False)
    count = lambda cond: func.sum(case((cond, 1), else_=0))  # noqa: E731
    rows = session.exec(
        select(Agency, func.count(Flag.id), count(born),
               count(born & (Flag.subject_nhs_number_given.is_not(True))),
               count(born & (Flag.subject_ethnicity_given.is_not(True))),
               count(func.json_array_length(FlagVersion.warnings) > 0))
        .join(Flag, Flag.publisher_id == Agency.id)
        .join(FlagVersion, (FlagVersion.flag_id == Flag.id)
              & (FlagVersion.version == Flag.version))
        .join(Person, Person.id == Flag.child_id)
        .where(Agency.area == area, Flag.status != "entered_in_error")
        .group_by(Agency.id).order_by(Agency.id)).all()
    out = []
    for agency, flags, born_flags, no_nhs, no_ethnicity, warned in rows:
        out.append({
            "agency": agency.id, "name": agency.name, "kind": agency.kind, "flags": flags,
            "flags_about_born_children": born_flags,
            "without_nhs_number": no_nhs, "without_nhs_number_share": _share(no_nhs, born_flags),
            "without_ethnicity": no_ethnicity,
            "without_ethnicity_share": _share(no_ethnicity, born_flags),
            "with_plain_language_warnings": warned,
            "with_plain_language_warnings_share": _share(warned, flags),
        })
    return out


def known_to_many(session: Session, area: str) -> list[dict]:
    """Children of the area flagged by three or more agencies with no current relationship
    with any children's social care: most agencies first, then the latest flag first."""
    rows = session.exec(
        select(Flag.child_id, func.count(func.distinct(Flag.publisher_id)),
               func.count(Flag.id), func.max(Flag.created_at))
        .where(Flag.status != "entered_in_error")
        .group_by(Flag.child_id)
        .having(func.count(func.distinct(Flag.publisher_id)) >= MANY_AGENCIES)).all()
    found = []
    for child_id, agencies, flags, latest in rows:
        if area not in child_areas(session, child_id):
            continue
        if any(r.agency_kind == "childrens_social_care"
               for r in current_relationships(session, child_id)):
            continue
        child = session.get(Person, child_id)
        if child.merged_into_id is not None:
            continue
        publishers = session.exec(select(Flag.publisher_id).where(
            Flag.child_id == child_id, Flag.status != "entered_in_error")
            .distinct().order_by(Flag.publisher_id)).all()
        found.append({"child_id": child.id, "nhs_number": child.nhs_number,
                      "given_name": child.given_name, "family_name": child.family_name,
                      "birth_date": child.birth_date, "unborn": child.unborn,
                      "agencies": list(publishers), "flags": flags, "latest_flag_at": latest})
    found.sort(key=lambda c: (-len(c["agencies"]), -c["latest_flag_at"].timestamp(),
                              c["child_id"]))
    return found


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
