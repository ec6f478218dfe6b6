from sqlmodel import Session, select

from api.agencies.models import Agency
from api.agencies.schemas import AgencyCreate
from api.auth.passwords import hash_secret, new_client_secret
from api.policy.loader import Policy
from api.problems import ProblemError, invalid


def known_areas(session: Session, policy: Policy) -> set[str]:
    """Areas listed in the policy data plus those of registered agencies."""
    return set(policy.areas) | set(session.exec(select(Agency.area).distinct()).all())


def check_area(session: Session, policy: Policy, area: str, field: str = "area") -> None:
    if area not in policy.areas and session.exec(
        select(Agency.id).where(Agency.area == area).limit(1)
    ).first() is None:
        raise invalid(field, f"{area} is not an area known to this service (not in the policy "
                      "data and no registered agency there)")


def register(session: Session, policy: Policy, body: AgencyCreate) -> tuple[Agency, str]:
    """Register an agency; the client secret is returned once and stored hashed."""
    check_area(session, policy, body.area)
    if session.get(Agency, body.id) is not None:
        raise ProblemError(409, f"An agency with id {body.id} is already registered.")
    secret = new_client_secret()
    agency = Agency(id=body.id, name=body.name, kind=body.kind, area=body.area,
                    client_secret_hash=hash_secret(secret))
    session.add(agency)
    session.flush()
    return agency, secret
