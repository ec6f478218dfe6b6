from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from api.agencies import areas
from api.agencies.models import Agency
from api.agencies.schemas import AgencyCreate
from api.audit import service as audit
from api.auth.passwords import NewSecret
from api.db import get_locked
from api.policy.loader import Policy
from api.problems import ProblemError, invalid, not_found, validated
from api.validation import BodyContext


def find(session: Session, agency_id: str) -> Agency | None:
    """The agency with this id; an id holding NUL (which PostgreSQL refuses) names none."""
    return None if "\x00" in agency_id else session.get(Agency, agency_id)


def cursor_id(after: Any) -> str | None:
    """The agency id a list cursor points after; anything else is not a cursor we issued."""
    if after is not None and (not isinstance(after, str) or "\x00" in after):
        raise invalid("cursor", "not a cursor returned by this service")
    return after


def check_area(session: Session, policy: Policy, area: str) -> None:
    """422 naming the `area` parameter if it is not an area the service knows."""
    if not areas.is_known(session, policy, area):
        raise invalid("area", areas.unknown(area))


class AlreadyRegistered(ProblemError):
    def __init__(self, agency_id: str):
        super().__init__(409, f"An agency with id {agency_id} is already registered.")


def register(session: Session, policy: Policy, body: AgencyCreate, secret: NewSecret) -> Agency:
    """Register an agency with a client secret (made beforehand), stored hashed."""
    body = validated(body, BodyContext(policy, session))
    if session.get(Agency, body.id) is not None:
        raise AlreadyRegistered(body.id)
    agency = Agency(id=body.id, name=body.name, kind=body.kind, area=body.area,
                    client_secret_hash=secret.hashed)
    try:
        # A concurrent registration of the same id (PostgreSQL) meets ours at the primary key;
        # the savepoint keeps this transaction usable so the loser can answer 409 or replay.
        with session.begin_nested():
            session.add(agency)
    except IntegrityError as exc:
        raise AlreadyRegistered(body.id) from exc
    return agency


def rotate_secret(session: Session, agency_id: str, secret: NewSecret) -> Agency:
    """Replace the agency's client secret with one made beforehand; the old one stops working."""
    agency = session.get(Agency, agency_id)
    if agency is None:
        raise not_found("agency")
    agency.client_secret_hash = secret.hashed
    session.add(agency)
    return agency


def set_disabled(session: Session, agency_id: str, disabled: bool, *, actor: str,
                 reason: str, actor_agency: str | None = None) -> Agency:
    """Disable an agency or enable it again, audited with the reason. Disabled, its tokens and
    its practitioners' are refused at once and it is left out of every share; what was queued
    for it stays queued."""
    agency = None if "\x00" in agency_id else get_locked(session, Agency, agency_id)
    if agency is None:
        raise not_found("agency")
    outcome = ("unchanged" if agency.disabled == disabled
               else "disabled" if disabled else "enabled")
    agency.disabled = disabled
    session.add(agency)
    audit.record(session, actor=actor, actor_agency=actor_agency,
                 action="agency.disable" if disabled else "agency.enable", outcome=outcome,
                 recipient=agency.id, reason=reason)
    return agency
