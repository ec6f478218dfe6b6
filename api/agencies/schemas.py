from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from api.agencies.areas import known_area
from api.policy.schema import AgencyKind
from api.validation import ContextChecked

AREA_PATTERN = r"^E(06|08|09|10)\d{6}$"


class AgencyCreate(ContextChecked):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$",
                    description="The agency's own code, e.g. an ODS code such as P81001")
    name: str = Field(min_length=1, max_length=200)
    kind: AgencyKind
    area: Annotated[str, AfterValidator(known_area)] = Field(
        pattern=AREA_PATTERN, description="ONS code of the local authority area")


class AgencyOut(BaseModel):
    id: str
    name: str
    kind: str
    area: str
    disabled: bool = Field(False, description=(
        "A disabled agency's tokens, and its practitioners', are refused, and nothing more is "
        "shared with it, until it is enabled again (PATCH /v1/agencies/{id})"))


class AgencyChange(BaseModel):
    """An administrator disabling an agency (a system retired or compromised, an organisation
    gone) or enabling it again; the reason goes to the audit log."""

    model_config = ConfigDict(extra="forbid")

    disabled: bool
    reason: str = Field(min_length=1, max_length=1000, pattern=r"\S",
                        description="Why, for the audit log, e.g. a change ticket")


class AgencyCreated(AgencyOut):
    client_secret: str | None = Field(
        description="Shown once; only its hash is stored (null when an Idempotency-Key replay "
        "answers: rotate it with POST /v1/agencies/{id}/secret if the first answer was lost)")
