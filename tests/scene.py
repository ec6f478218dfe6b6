"""One of every object the API addresses, made through the API itself and owned by Birmingham
agencies, so the fuzzer's requests reach real rows and the authorisation matrix has something
to ask about.

Takes any synchronous client whose `post` takes `json=` and `headers=`, such as schemathesis'
in-process ASGI client (a `requests` session).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from api.forwarding.models import Delivery
from api.identity.models import PossibleMatch
from api.transfers.models import SuspectedMove
from tests.factories import BASIS, NHS, World, flag_body, relationship_body

# A child the GP knows by NHS number, and the same girl as the police know her (no NHS number):
# a possible match for Birmingham's MASH.
GP_RECORD = {"nhs_number": NHS[3], "given_name": "Amelia", "family_name": "Hartley",
             "birth_date": "2019-06-02", "sex": "female", "postcode": "B31 2AB"}
POLICE_RECORD = {"local_id": "NOM-4411", "given_name": "Millie", "family_name": "Hartly",
                 "birth_date": "2019-02-06", "postcode": "B31 2AB"}


@dataclass(frozen=True)
class Scene:
    child: str         # NHS[0]: GP-A and CSC-A work with her; POLICE-A flagged her
    flag: str          # POLICE-A's domestic abuse flag about `child`
    flag_shared_with: frozenset[str]  # the agencies that flag was shared with
    delivery: str      # that flag's delivery to GP-A
    plan_child: str    # NHS[1]: on CSC-A's child protection plan, transferred to Sandwell
    plan_flag: str     # CSC-A's child protection plan flag
    transfer: str      # CSC-A's transfer of `plan_child` to Sandwell (awaiting pickup)
    move: str          # `moved_child` (NHS[2], looked after by CSC-A) seen by GP-B
    moved_child: str
    subscription: str  # GP-A's feed subscription
    match: str         # MASH-A's open possible match (GP_RECORD and POLICE_RECORD)


def _created(response) -> dict:
    assert response.status_code in (200, 201), response.text
    return response.json()


def build_scene(client, world: World, session: Session) -> Scene:
    def post(who: str, path: str, body: dict) -> dict:
        return _created(client.post(path, json=body, headers=world.auth(who)))

    child = post("GP-A", "/v1/relationships", relationship_body("registered_gp"))["child_id"]
    post("CSC-A", "/v1/relationships", relationship_body("allocated_social_worker"))
    flag = post("POLICE-A", "/v1/flags", flag_body())
    plan = post("CSC-A", "/v1/flags", flag_body(
        subject={"nhs_number": NHS[1]}, category="child_protection_plan", purpose="child_protection",
        summary="Jay is on a child protection plan for neglect; the plan is reviewed monthly."))
    transfer = post("CSC-A", "/v1/transfers", {
        "subject": {"nhs_number": NHS[1]}, "to_area": "E08000028",
        "plan": "child_protection_plan", "notified_at": "2026-11-20T09:30:00+00:00",
        "reason": "Family moved to Oldbury after eviction; mother gave new address."})["id"]
    moved = post("CSC-A", "/v1/flags", {
        "subject": {"nhs_number": NHS[2]}, "category": "looked_after_child", "severity": "high",
        "purpose": "care_planning", "lawful_basis": dict(BASIS),
        "summary": "Kai is looked after by the council under a care order and lives with "
                   "foster carers in Birmingham."})["child_id"]
    post("GP-B", "/v1/relationships", relationship_body("registered_gp", NHS[2]))
    subscription = post("GP-A", "/v1/subscriptions", {"delivery": {"mode": "feed"}})["id"]
    post("GP-A", "/v1/relationships", {"subject": GP_RECORD, "kind": "registered_gp",
                                       "start": "2023-01-01"})
    post("POLICE-A", "/v1/flags", flag_body(subject=POLICE_RECORD))
    delivery = session.exec(select(Delivery.id).where(
        Delivery.flag_id == flag["id"], Delivery.recipient_id == "GP-A")).one()
    move = session.exec(select(SuspectedMove.id).where(SuspectedMove.child_id == moved)).one()
    match = session.exec(select(PossibleMatch.id).where(PossibleMatch.status == "open")).first()
    assert match is not None, "the police record should be queued as a possible match"
    post("auditor", "/v1/audit/checkpoints", {})  # so that the latest checkpoint exists
    return Scene(child=child, flag=flag["id"], flag_shared_with=frozenset(flag["shared_with"]),
                 delivery=delivery, plan_child=plan["child_id"],
                 plan_flag=plan["id"], transfer=transfer, move=move, moved_child=moved,
                 subscription=subscription, match=match)
