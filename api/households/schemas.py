from pydantic import BaseModel, ConfigDict, Field

from api.identity.schemas import RelatedPerson, Subject


class HouseholdCreate(BaseModel):
    """People an agency knows live with or parent a child (a new partner, a father)."""

    model_config = ConfigDict(extra="forbid")

    subject: Subject
    people: list[RelatedPerson] = Field(min_length=1, max_length=20)


class HouseholdPerson(BaseModel):
    person_id: str
    role: str
    relationship: str | None
    new: bool = Field(description="False when the person was already linked in this role")


class HouseholdOut(BaseModel):
    child_id: str
    people: list[HouseholdPerson]
