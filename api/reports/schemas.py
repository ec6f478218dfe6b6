from datetime import date, datetime

from pydantic import BaseModel


class AgencyQuality(BaseModel):
    agency: str
    name: str
    kind: str
    flags: int
    flags_about_born_children: int
    without_nhs_number: int
    without_nhs_number_share: float | None
    without_ethnicity: int
    without_ethnicity_share: float | None
    with_plain_language_warnings: int
    with_plain_language_warnings_share: float | None


class UnownedChild(BaseModel):
    child_id: str
    nhs_number: str | None
    given_name: str | None
    family_name: str | None
    birth_date: date | None
    unborn: bool
    agencies: list[str]
    flags: int
    latest_flag_at: datetime


class DataQualityReport(BaseModel):
    area: str
    generated_at: datetime
    agencies: list[AgencyQuality]
    known_to_many_owned_by_none: list[UnownedChild]
