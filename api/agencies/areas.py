"""The areas this service knows: those listed in the policy data and those of registered
agencies. Any other area is 422, wherever a request names one; so is an agency that is not
registered."""

from pydantic import ValidationInfo
from sqlmodel import Session, select

from api.agencies.models import Agency
from api.policy.loader import Policy


def is_known(session: Session, policy: Policy, area: str) -> bool:
    return area in policy.areas or session.exec(
        select(Agency.id).where(Agency.area == area).limit(1)).first() is not None


def unknown(area: str) -> str:
    return (f"{area} is not an area known to this service (not in the policy data and no "
            "registered agency there)")


def known_area(area: str, info: ValidationInfo) -> str:
    """Pydantic validator of a field naming an area: a known one (judged in context)."""
    if info.context is not None and not is_known(info.context.session, info.context.policy, area):
        raise ValueError(unknown(area))
    return area


def registered_agency(agency_id: str, info: ValidationInfo) -> str:
    """Pydantic validator of a field naming an agency: a registered one (judged in context)."""
    if info.context is not None and info.context.session.get(Agency, agency_id) is None:
        raise ValueError(f"no registered agency {agency_id}")
    return agency_id
