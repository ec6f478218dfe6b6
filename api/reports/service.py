"""Data-quality report for one area: what reviews keep finding missing, per agency, and the
children many agencies have flagged but no children's social care works with."""

from __future__ import annotations

from sqlalchemy import bindparam, case, func
from sqlmodel import Session, select

from api.agencies.models import Agency
from api.db import utcnow
from api.flags.models import Flag, FlagVersion
from api.identity.linking import person_summary
from api.identity.models import Person
from api.identity.scope import child_areas
from api.identity.service import current_relationships
from api.transfers.notify import area_agencies, notify

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


# Built once: read on every flag published.
_FLAGS_BY_PUBLISHER = (select(Flag.publisher_id, func.count())
                       .where(Flag.child_id == bindparam("child_id"),
                              Flag.status != "entered_in_error")
                       .group_by(Flag.publisher_id))


def newly_known_to_many(session: Session, child_id: str, publisher_id: str) -> list[str]:
    """The agencies that have flagged the child, when the flag just recorded is the first of
    the agency that makes them MANY_AGENCIES; otherwise none. So each child is raised once,
    when the picture first comes together, not at every flag after."""
    counts = dict(session.exec(_FLAGS_BY_PUBLISHER, params={"child_id": child_id}).all())
    if len(counts) == MANY_AGENCIES and counts.get(publisher_id) == 1:
        return sorted(counts)
    return []


def tell_mash_known_to_many(session: Session, child: Person, agencies: list[str],
                            actor: str) -> None:
    """`child.known_to_many` to the MASH of each area the child is known in: what the
    data-quality report lists, sent when it happens. Reviews found agencies acting in
    isolation on what each knew; a MASH reading the report weekly would learn of it late. The
    agencies are named, never what they flagged, as in the report."""
    areas = sorted(child_areas(session, child.id))
    notify(session, event_type="child.known_to_many",
           recipients=[m for area in areas for m in area_agencies(session, area, ["mash"])],
           data={"child": person_summary(child), "agencies": agencies, "areas": areas,
                 "what_to_do": f"{len(agencies)} agencies have flagged this child and no "
                               "children's social care works with them. Consider whether "
                               "what they know together needs a referral or a strategy "
                               "discussion."},
           child_id=child.id, actor=actor, areas=areas, rule="KNOWN-TO-MANY")


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
