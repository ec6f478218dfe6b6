from datetime import datetime

from sqlmodel import Field, SQLModel, UniqueConstraint

from api.db import new_id, timestamp_column


class RiskAlert(SQLModel, table=True):
    """One flag of an adult's risk history, told to one child's agencies.

    Each history flag is told once per child: the same adult linked to the same child again
    raises nothing new, while a flag added to the adult's history later is told.
    """

    __table_args__ = (UniqueConstraint("person_id", "child_id", "history_flag_id"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    person_id: str = Field(foreign_key="person.id", index=True)
    child_id: str = Field(foreign_key="person.id", index=True)
    history_flag_id: str = Field(foreign_key="flag.id", index=True)
    event_id: str = Field(max_length=64)
    created_at: datetime = timestamp_column()
