"""Demo data for `flagshare serve --demo`: two areas, their agencies, people and a few flags.

All people and NHS numbers are synthetic (NHS numbers from the 999 test range).
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlmodel import Session, select

from api.agencies.models import Agency
from api.auth.models import User
from api.auth.passwords import hash_secret, new_secret
from api.flags import service as flags
from api.flags.models import Flag
from api.flags.schemas import FlagCreate
from api.identity import service as identity
from api.identity.schemas import RelationshipCreate
from api.policy.loader import Policy

BIRMINGHAM, SANDWELL = "E08000025", "E08000028"
AGENCIES = [
    ("M85001", "Northfield Health Centre (GP practice)", "gp", BIRMINGHAM),
    ("RRK-MATERNITY", "Birmingham Women's Hospital maternity", "midwifery", BIRMINGHAM),
    ("BCHC-HV", "Birmingham community health visiting", "health_visiting", BIRMINGHAM),
    ("WMP", "West Midlands Police", "police", BIRMINGHAM),
    ("BCT-CSC", "Birmingham Children's Trust", "childrens_social_care", BIRMINGHAM),
    ("URN-103000", "Northfield Primary School", "education", BIRMINGHAM),
    ("BHAM-MASH", "Birmingham MASH", "mash", BIRMINGHAM),
    ("M88001", "Oldbury Medical Centre (GP practice)", "gp", SANDWELL),
    ("SCT-CSC", "Sandwell Children's Trust", "childrens_social_care", SANDWELL),
    ("URN-103900", "Oldbury Academy", "education", SANDWELL),
    ("SAND-MASH", "Sandwell MASH", "mash", SANDWELL),
]
USERS = [
    ("mash.practitioner", "mash_practitioner", "BHAM-MASH"),
    ("auditor", "auditor", None),
    ("admin", "admin", None),
]
DEMO_PASSWORD = "demo-password-change-me"
CHILD = {"nhs_number": "9990000018", "local_id": "BCT-4471", "given_name": "Amelia",
         "family_name": "Hartley", "birth_date": (date.today() - timedelta(days=3 * 365)).isoformat(),
         "sex": "female", "postcode": "B31 2AB", "ethnicity": "A"}


def load_demo(session: Session, policy: Policy, base_url: str) -> str:
    """Create (or refresh) the demo world; returns the login instructions to print."""
    # Hashed before the transaction begins (see NewSecret); fresh secrets each start, since
    # only hashes are ever stored.
    secrets = {agency_id: new_secret() for agency_id, *_ in AGENCIES}
    password_hash = hash_secret(DEMO_PASSWORD)
    for agency_id, name, kind, area in AGENCIES:
        agency = session.get(Agency, agency_id)
        if agency is None:
            agency = Agency(id=agency_id, name=name, kind=kind, area=area, client_secret_hash="")
        agency.client_secret_hash = secrets[agency_id].hashed
        session.add(agency)
    for username, role, agency_id in USERS:
        user = session.exec(select(User).where(User.username == username)).first()
        if user is None:
            session.add(User(username=username, role=role, agency_id=agency_id,
                             password_hash=password_hash))
    session.flush()
    if session.exec(select(Flag).limit(1)).first() is None:
        _demo_flags(session, policy)
    session.commit()
    lines = [
        "", "flagshare demo loaded (development mode; synthetic data only).", "",
        f"People (password for each: {DEMO_PASSWORD}):",
        *[f"  {u:<20} {r}" + (f" at {a}" if a else "") for u, r, a in USERS],
        "", "Agency systems (client_id / client_secret, new each start):",
        *[f"  {a:<14} {secrets[a].plain}   {n}" for a, n, _k, _ar in AGENCIES],
        "", "Get a token and read the demo flags:",
        f"  curl -s -X POST {base_url}/v1/oauth/token -d grant_type=client_credentials "
        f"-d client_id=WMP -d client_secret={secrets['WMP'].plain}",
        f"  curl -s -X POST {base_url}/v1/oauth/token -d grant_type=password "
        f"-d username=mash.practitioner -d password={DEMO_PASSWORD}",
        f"  API documentation: {base_url}/docs", "",
    ]
    return "\n".join(lines)


def _demo_flags(session: Session, policy: Policy) -> None:
    def agency(agency_id: str) -> Agency:
        return session.get(Agency, agency_id)

    since = (date.today() - timedelta(days=400)).isoformat()
    for agency_id, kind in (("M85001", "registered_gp"), ("URN-103000", "school"),
                            ("BCHC-HV", "health_visitor")):
        identity.add_relationship(session, agency(agency_id), RelationshipCreate.model_validate(
            {"subject": CHILD, "kind": kind, "start": since}))
    basis = {"article6": "6(1)(e)", "article9": "9(2)(g)", "dpa2018": "schedule1-part2-para18"}
    flags.publish(session, policy, agency("WMP"), FlagCreate.model_validate({
        "subject": CHILD, "category": "domestic_abuse_incident", "severity": "high",
        "summary": "Police were called to a domestic abuse incident at Amelia's home overnight; "
                   "Amelia was present and saw her mother being assaulted. Risk assessed as high.",
        "details": "Mother's partner arrested for assault; bail conditions not to attend address.",
        "purpose": "safeguarding", "lawful_basis": basis,
        "related_people": [{"role": "alleged_perpetrator", "given_name": "Dean",
                            "family_name": "Morris", "relationship": "mother's partner"},
                           {"role": "parent", "nhs_number": "9990000026",
                            "given_name": "Kelly", "family_name": "Hartley",
                            "relationship": "mother"}],
    }))
    flags.publish(session, policy, agency("BCT-CSC"), FlagCreate.model_validate({
        "subject": CHILD, "category": "child_protection_plan", "severity": "high",
        "summary": "Amelia is subject to a child protection plan under the category of emotional "
                   "abuse after repeated domestic abuse at home; the plan is reviewed in 3 months.",
        "period": {"start": date.today().isoformat()},
        "purpose": "child_protection", "lawful_basis": basis,
    }))
