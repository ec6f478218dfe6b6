"""A small synthetic world for tests: two areas, their agencies and people, and tokens."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from sqlmodel import Session

from api.agencies.models import Agency
from api.auth.models import User
from api.auth.passwords import hash_secret

SECRET = "test-secret-for-every-agency"
PASSWORD = "test-password-for-every-person"
_SECRET_HASH = hash_secret(SECRET)  # hashed once: argon2 is slow by design
_PASSWORD_HASH = hash_secret(PASSWORD)

BIRMINGHAM, SANDWELL = "E08000025", "E08000028"
AGENCIES = {
    "GP-A": ("gp", BIRMINGHAM),
    "MW-A": ("midwifery", BIRMINGHAM),
    "HV-A": ("health_visiting", BIRMINGHAM),
    "POLICE-A": ("police", BIRMINGHAM),
    "CSC-A": ("childrens_social_care", BIRMINGHAM),
    "SCHOOL-A": ("education", BIRMINGHAM),
    "SCHOOL-A2": ("education", BIRMINGHAM),
    "MASH-A": ("mash", BIRMINGHAM),
    "HOUSING-A": ("housing", BIRMINGHAM),
    "GP-B": ("gp", SANDWELL),
    "CSC-B": ("childrens_social_care", SANDWELL),
    "MASH-B": ("mash", SANDWELL),
    "POLICE-B": ("police", SANDWELL),
}
USERS = {
    "mash.a": ("mash_practitioner", "MASH-A"),
    "mash.b": ("mash_practitioner", "MASH-B"),
    "auditor": ("auditor", None),
    "admin": ("admin", None),
}
BASIS = {"article6": "6(1)(e)", "article9": "9(2)(g)", "dpa2018": "schedule1-part2-para18"}
# Valid NHS numbers from the 999 test range.
NHS = ["9990000018", "9990000026", "9990000034", "9990000042", "9990000050", "9990000069",
       "9990000077", "9990000085", "9990000093", "9990000107"]


@dataclass
class World:
    app: object
    agencies: dict[str, Agency] = field(default_factory=dict)

    def token(self, who: str, **override) -> str:
        """A valid access token for an agency id or a username, signed by the service key."""
        if who in AGENCIES:
            kind, area = AGENCIES[who]
            claims = {"sub": who, "role": "agency_system", "agency": who, "area": area}
        else:
            role, agency = USERS[who]
            area = AGENCIES[agency][1] if agency else None
            claims = {"sub": who, "role": role, "agency": agency, "area": area}
        settings = self.app.state.settings
        now = int(time.time())
        claims.update(iss=settings.issuer, aud=settings.audience, iat=now, exp=now + 300,
                      jti=str(uuid.uuid4()))
        claims.update(override)
        claims = {k: v for k, v in claims.items() if v is not ...}
        return self.app.state.keyring.sign(claims)

    def auth(self, who: str, **override) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(who, **override)}"}


def build_world(session: Session, app) -> World:
    world = World(app=app)
    for agency_id, (kind, area) in AGENCIES.items():
        agency = Agency(id=agency_id, name=f"Test {kind} {agency_id}", kind=kind, area=area,
                        client_secret_hash=_SECRET_HASH)
        session.add(agency)
        world.agencies[agency_id] = agency
    session.flush()
    for username, (role, agency_id) in USERS.items():
        session.add(User(username=username, role=role, agency_id=agency_id,
                         password_hash=_PASSWORD_HASH))
    session.commit()
    return world


def flag_body(**override) -> dict:
    """A valid domestic abuse flag from police about the first test child."""
    body = {
        "subject": {"nhs_number": NHS[0], "given_name": "Amelia", "family_name": "Hartley",
                    "birth_date": "2022-03-14", "ethnicity": "A", "postcode": "B31 2AB"},
        "category": "domestic_abuse_incident",
        "severity": "high",
        "summary": "Police attended a domestic abuse incident at home last night; Amelia was "
                   "present and frightened. Risk to mother assessed as high.",
        "details": "Partner arrested for assault occasioning actual bodily harm.",
        "purpose": "safeguarding",
        "lawful_basis": dict(BASIS),
    }
    body.update(override)
    return body


def relationship_body(kind: str, nhs: str = NHS[0], start: str = "2023-01-01") -> dict:
    return {"subject": {"nhs_number": nhs}, "kind": kind, "start": start}


def with_passphrase(settings, tmp_path, passphrase: str = "correct horse battery staple"):
    """The settings with FLAGSHARE_SIGNING_KEY_PASSPHRASE_FILE pointing at a new file."""
    secret = tmp_path / f"passphrase-{len(list(tmp_path.iterdir()))}"
    secret.write_text(passphrase + "\n")  # as `openssl rand` or an editor leaves it
    return settings.model_copy(update={"signing_key_passphrase_file": secret})
