from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from api.db import timestamp_column


class IdempotencyRecord(SQLModel, table=True):
    """The first result of a write made with an Idempotency-Key, replayed for repeats."""

    principal: str = Field(primary_key=True, max_length=300)
    key: str = Field(primary_key=True, max_length=200)
    request_hash: str = Field(max_length=64)
    status_code: int
    response_body: dict = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = timestamp_column()
