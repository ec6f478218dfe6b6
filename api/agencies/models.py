from datetime import datetime

from sqlmodel import Field, SQLModel

from api.db import timestamp_column


class Agency(SQLModel, table=True):
    """A registered agency system (GP practice, police force, council service, school...)."""

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=40, index=True)
    area: str = Field(max_length=9, index=True)
    client_secret_hash: str = Field(max_length=200)
    disabled: bool = False
    created_at: datetime = timestamp_column()
