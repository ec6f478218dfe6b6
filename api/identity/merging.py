"""Deciding possible matches: confirm (merge), reject, and undo a merge.

A merge keeps one record and retires the other: everything that named the retired record
(flags, relationships, links to people, local ids, transfers, suspected moves) is re-pointed to
the kept one, and the retired record leads to it from then on. The merge record lists exactly
what moved, so an unmerge puts it back. Flags follow the merge, and agencies newly entitled to
them through the kept record (its GP, its health visitor) receive them under the policy.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, or_, select

from api.audit import service as audit
from api.auth.principal import Principal
from api.db import utcnow
from api.flags import service as flags
from api.flags.models import Flag
from api.households import service as households
from api.identity.models import (
    IdentityMerge, LocalIdentifier, Person, PersonLink, PossibleMatch, Relationship,
)
from api.identity import linking
from api.identity.service import DEMOGRAPHICS, current
from api.policy.loader import Policy
from api.problems import ProblemError, not_found
from api.transfers.models import SuspectedMove, Transfer
from api.transfers.notify import LAWFUL_BASIS, PURPOSE

SIMPLE_MOVES = {"flag": Flag, "relationship": Relationship, "transfer": Transfer}


def read_queue(session: Session, principal: Principal, status: str | None, after: str | None,
               limit: int) -> list[PossibleMatch]:
    """Possible matches of the practitioner's own area (where a record arrived, or where the
    other record is known), by id; showing both records is audited for each child."""
    if not principal.area:
        raise ProblemError(403, "Possible matches are decided by MASH practitioners of an area.")
    q = select(PossibleMatch).where(or_(PossibleMatch.area == principal.area,
                                        PossibleMatch.other_area == principal.area))
    if status:
        q = q.where(PossibleMatch.status == status)
    if after is not None:
        q = q.where(PossibleMatch.id > after)
    rows = list(session.exec(q.order_by(PossibleMatch.id).limit(limit)).all())
    for match in rows:
        for child_id in (match.person_id, match.other_person_id):
            audit.record(session, actor=principal.actor, actor_agency=principal.agency_id,
                         action="match.read", outcome="disclosed", child_id=child_id,
                         purpose=PURPOSE, lawful_basis=LAWFUL_BASIS, reason=match.id)
    return rows


def match_view(session: Session, match: PossibleMatch) -> dict:
    """The pair side by side with who knows each record, and the merge if there was one."""
    records = []
    for person_id in (match.person_id, match.other_person_id):
        person = session.get(Person, person_id)
        known = set(session.exec(select(LocalIdentifier.agency_id).where(
            LocalIdentifier.person_id == person_id)).all())
        known |= set(session.exec(select(Relationship.agency_id).where(
            Relationship.child_id == person_id)).all())
        records.append({**linking.person_summary(person), "merged_into": person.merged_into_id,
                        "known_to": sorted(known)})
    merge = session.exec(select(IdentityMerge).where(IdentityMerge.match_id == match.id)
                         .order_by(IdentityMerge.merged_at.desc())).first()
    return {
        "id": match.id, "kind": match.kind, "status": match.status, "score": match.score,
        "reasons": match.reasons, "area": match.area, "other_area": match.other_area,
        "proposed_by": match.proposed_by_agency_id, "records": records,
        "merge": None if merge is None else {
            **merge.model_dump(exclude={"match_id", "moved", "filled"}),
            "moved": {name: len(ids) for name, ids in merge.moved.items()}},
        "decided_by": match.decided_by, "decided_at": match.decided_at,
        "decision_reason": match.decision_reason, "created_at": match.created_at,
    }


def get_visible(session: Session, principal: Principal, match_id: str) -> PossibleMatch:
    match = session.get(PossibleMatch, match_id)
    # An area must be named: `other_area` is None when both records are known in one area.
    if match is None or not principal.area or principal.area not in (match.area,
                                                                       match.other_area):
        raise not_found("possible match")
    return match


def confirm(session: Session, policy: Policy, principal: Principal, match_id: str,
            reason: str) -> tuple[PossibleMatch, IdentityMerge]:
    """The two records are one child: merge them, and share the flags the merge entitles."""
    match = get_visible(session, principal, match_id)
    _require_open(match)
    # A record already merged into another stands for that one.
    first, second = (current(session, session.get(Person, pid))
                     for pid in (match.person_id, match.other_person_id))
    a, b = _lock_pair(session, first.id, second.id)
    if a.merged_into_id or b.merged_into_id:
        raise ProblemError(409, "One of these records was merged concurrently; try again.")
    if match.kind == "unborn_to_born" and not (_unborn(a) or _unborn(b)):
        # Twins reach this: each baby was proposed as the birth of one unborn record, and the
        # record was confirmed as the other baby.
        raise ProblemError(409, "The unborn child's record was already confirmed as another "
                           "baby, so these are two babies of one pregnancy and are never "
                           "merged. What was recorded before the birth is on the baby "
                           "confirmed first; the publishers of what is still active were told "
                           "of this baby, to publish for it too. Reject this match to close "
                           "it.")
    if a.nhs_number and b.nhs_number and a.nhs_number != b.nhs_number:
        raise ProblemError(409, "These records now carry different NHS numbers: they are two "
                           "children and are never merged. Reject this match to close it.")
    kept, retired = choose_kept(a, b)
    _claim(session, match, "confirmed", principal, reason)
    merge = merge_records(session, kept, retired, match, principal.actor, reason)
    for child_id, outcome in ((kept.id, "kept"), (retired.id, "merged_into_other")):
        audit.record(session, actor=principal.actor, actor_agency=principal.agency_id,
                     action="identity.merge", outcome=outcome, child_id=child_id,
                     purpose=PURPOSE, lawful_basis=LAWFUL_BASIS, policy_rule="MATCH-CONFIRMED",
                     reason=reason)
    for flag in session.exec(select(Flag).where(Flag.child_id == kept.id,
                                                Flag.status == "active")).all():
        flags.share_with_new_recipients(session, policy, flag)
    # One person now: an adult's history may reach another household, and an unborn child
    # who is born is a new sibling of any brother or sister on a plan.
    actor = households.Actor(principal.actor, principal.agency_id)
    households.review_people(session, policy, [kept.id], actor)
    if match.kind == "unborn_to_born":
        households.review_siblings(session, policy, kept.id, actor, trigger="born")
        for baby in _other_babies(session, retired, kept) if _unborn(retired) else ():
            linking.tell_of_another_baby(session, retired, baby, principal.actor)
    return match, merge


def _unborn(person: Person) -> bool:
    return person.unborn and person.birth_date is None


def _other_babies(session: Session, pregnancy: Person, born: Person) -> list[Person]:
    """Other babies still proposed as the birth of an unborn record just confirmed as one."""
    others = session.exec(select(PossibleMatch).where(
        PossibleMatch.status == "open", PossibleMatch.kind == "unborn_to_born",
        or_(PossibleMatch.person_id == pregnancy.id,
            PossibleMatch.other_person_id == pregnancy.id))).all()
    babies = {}
    for m in others:
        baby = current(session, session.get(Person, m.other_person_id if m.person_id
                                            == pregnancy.id else m.person_id))
        if baby.id != born.id and not _unborn(baby):
            babies[baby.id] = baby
    return list(babies.values())


def reject(session: Session, principal: Principal, match_id: str,
           reason: str) -> PossibleMatch:
    """Two different children: the pair is closed and never proposed again."""
    match = get_visible(session, principal, match_id)
    _require_open(match)
    _claim(session, match, "rejected", principal, reason)
    for child_id in (match.person_id, match.other_person_id):
        audit.record(session, actor=principal.actor, actor_agency=principal.agency_id,
                     action="match.reject", outcome="rejected", child_id=child_id,
                     reason=reason)
    return match


def unmerge(session: Session, principal: Principal, match_id: str,
            reason: str) -> tuple[PossibleMatch, IdentityMerge]:
    """Undo a confirmed match: what moved goes back; what was added since stays where it is."""
    match = get_visible(session, principal, match_id)
    merge = session.exec(select(IdentityMerge).where(IdentityMerge.match_id == match.id,
                                                     IdentityMerge.unmerged_at.is_(None))).first()
    if match.status != "confirmed" or merge is None:
        raise ProblemError(409, f"This possible match is {match.status}, not merged.")
    kept, retired = _lock_pair(session, merge.kept_id, merge.merged_id)
    if kept.merged_into_id is not None:
        raise ProblemError(409, "The kept record was itself merged into another since; unmerge "
                           "that merge first.")
    claimed = session.exec(update(PossibleMatch).where(
        PossibleMatch.id == match.id, PossibleMatch.status == "confirmed")
        .values(status="unmerged"))
    if claimed.rowcount != 1:
        raise ProblemError(409, "This merge was undone concurrently.")
    for name, model in SIMPLE_MOVES.items():
        _repoint(session, model, model.child_id, merge.moved.get(name, []), kept.id, retired.id)
    _repoint(session, SuspectedMove, SuspectedMove.child_id, merge.moved.get("suspectedmove", []),
             kept.id, retired.id)
    _repoint(session, PersonLink, PersonLink.child_id, merge.moved.get("link_child", []),
             kept.id, retired.id)
    _repoint(session, PersonLink, PersonLink.person_id, merge.moved.get("link_person", []),
             kept.id, retired.id)
    for agency_id, local_id in merge.moved.get("local_id", []):
        session.exec(update(LocalIdentifier).where(
            LocalIdentifier.agency_id == agency_id, LocalIdentifier.local_id == local_id,
            LocalIdentifier.person_id == kept.id).values(person_id=retired.id))
    for name, value in merge.filled.items():
        if str(getattr(kept, name)) == value:  # unless someone has since corrected it
            setattr(kept, name, None)
    retired.merged_into_id = None
    session.exec(update(PossibleMatch).where(
        PossibleMatch.id.in_(merge.moved.get("superseded_match", [])),
        PossibleMatch.status == "superseded").values(status="open"))
    kept.updated_at = retired.updated_at = utcnow()
    merge.unmerged_by, merge.unmerged_at, merge.unmerge_reason = principal.actor, utcnow(), reason
    session.add_all([kept, retired, merge])
    session.flush()
    session.expire_all()
    for child_id in (kept.id, retired.id):
        audit.record(session, actor=principal.actor, actor_agency=principal.agency_id,
                     action="identity.unmerge", outcome="restored",
                     child_id=child_id, purpose=PURPOSE, lawful_basis=LAWFUL_BASIS,
                     reason=reason)
    return session.get(PossibleMatch, match.id), session.get(IdentityMerge, merge.id)


def choose_kept(a: Person, b: Person) -> tuple[Person, Person]:
    """Keep the record with an NHS number, else a born child over its unborn record, else the
    older record."""
    def rank(p: Person):
        return (p.nhs_number is None, _unborn(p), p.created_at, p.id)
    kept, retired = sorted((a, b), key=rank)
    return kept, retired


def merge_records(session: Session, kept: Person, retired: Person, match: PossibleMatch,
                  actor: str, reason: str) -> IdentityMerge:
    """Re-point everything naming the retired record to the kept one, remembering what moved."""
    moved: dict[str, list] = {}
    for name, model in SIMPLE_MOVES.items():
        ids = list(session.exec(select(model.id).where(model.child_id == retired.id)).all())
        moved[name] = _repoint(session, model, model.child_id, ids, retired.id, kept.id)
    taken = set(session.exec(select(SuspectedMove.plan_area, SuspectedMove.seen_area).where(
        SuspectedMove.child_id == kept.id)).all())
    moves = [m.id for m in session.exec(select(SuspectedMove).where(
        SuspectedMove.child_id == retired.id)).all() if (m.plan_area, m.seen_area) not in taken]
    moved["suspectedmove"] = _repoint(session, SuspectedMove, SuspectedMove.child_id, moves,
                                      retired.id, kept.id)
    moved["link_child"], moved["link_person"] = _move_links(session, retired.id, kept.id)
    local_ids = session.exec(select(LocalIdentifier).where(
        LocalIdentifier.person_id == retired.id)).all()
    moved["local_id"] = [[lk.agency_id, lk.local_id] for lk in local_ids]
    for lk in local_ids:
        lk.person_id = kept.id
        session.add(lk)
    filled = {}
    for name in DEMOGRAPHICS:
        value = getattr(retired, name)
        if value is not None and getattr(kept, name) is None:
            setattr(kept, name, value)
            filled[name] = str(value)
    retired.merged_into_id = kept.id
    session.flush()
    # Other open pairs now inside one record need no decision; an unmerge reopens them.
    cluster = _cluster(session, kept.id)
    moved["superseded_match"] = list(session.exec(select(PossibleMatch.id).where(
        PossibleMatch.status == "open", PossibleMatch.id != match.id,
        PossibleMatch.person_id.in_(cluster), PossibleMatch.other_person_id.in_(cluster))).all())
    _supersede(session, moved["superseded_match"])
    kept.updated_at = retired.updated_at = utcnow()
    merge = IdentityMerge(match_id=match.id, kept_id=kept.id, merged_id=retired.id, moved=moved,
                          filled=filled, merged_by=actor, reason=reason)
    session.add_all([kept, retired, merge])
    session.flush()
    return merge


# --- helpers -----------------------------------------------------------------------------

def _supersede(session: Session, match_ids: list[str]) -> None:
    if match_ids:
        session.exec(update(PossibleMatch).where(PossibleMatch.id.in_(match_ids))
                     .values(status="superseded"))


def _require_open(match: PossibleMatch) -> None:
    if match.status != "open":
        raise ProblemError(409, f"This possible match is already {match.status}.")


def _claim(session: Session, match: PossibleMatch, status: str, principal: Principal,
           reason: str) -> None:
    """A conditional update, so two practitioners deciding at once cannot both succeed."""
    claimed = session.exec(update(PossibleMatch).where(
        PossibleMatch.id == match.id, PossibleMatch.status == "open")
        .values(status=status, decided_by=principal.actor, decided_at=utcnow(),
                decision_reason=reason))
    if claimed.rowcount != 1:
        raise ProblemError(409, "This possible match was decided concurrently.")
    session.refresh(match)


def _lock_pair(session: Session, first: str, second: str) -> tuple[Person, Person]:
    """Both records, locked in id order on PostgreSQL so concurrent merges queue up."""
    rows = session.exec(select(Person).where(Person.id.in_([first, second])).order_by(Person.id)
                        .with_for_update().execution_options(populate_existing=True)).all()
    by_id = {p.id: p for p in rows}
    return by_id[first], by_id[second]


def _cluster(session: Session, person_id: str) -> set[str]:
    """The record and every record merged into it, directly or through another."""
    found, frontier = {person_id}, [person_id]
    while frontier:
        frontier = list(session.exec(select(Person.id).where(
            Person.merged_into_id.in_(frontier))).all())
        found.update(frontier)
    return found


def _repoint(session: Session, model, column, ids: list[str], source: str,
             target: str) -> list[str]:
    """Move the listed rows from source to target (only those still on source)."""
    if ids:
        session.exec(update(model).where(model.id.in_(ids), column == source)
                     .values({column.key: target}))
    return ids


def _move_links(session: Session, retired: str, kept: str) -> tuple[list[str], list[str]]:
    """Links naming the retired record, except those the kept record already has (or that
    would link the child to itself), which stay behind."""
    have = {(lk.person_id, lk.role, lk.flag_id) for lk in session.exec(
        select(PersonLink).where(PersonLink.child_id == kept)).all()}
    as_child = [lk.id for lk in session.exec(select(PersonLink).where(
        PersonLink.child_id == retired)).all()
        if lk.person_id != kept and (lk.person_id, lk.role, lk.flag_id) not in have]
    named = {(lk.child_id, lk.role, lk.flag_id) for lk in session.exec(
        select(PersonLink).where(PersonLink.person_id == kept)).all()}
    as_person = [lk.id for lk in session.exec(select(PersonLink).where(
        PersonLink.person_id == retired)).all()
        if lk.child_id != kept and (lk.child_id, lk.role, lk.flag_id) not in named]
    _repoint(session, PersonLink, PersonLink.child_id, as_child, retired, kept)
    _repoint(session, PersonLink, PersonLink.person_id, as_person, retired, kept)
    return as_child, as_person
