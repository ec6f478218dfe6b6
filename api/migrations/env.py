"""Alembic environment: the URL comes from the caller (api.migrate), never from a file."""

from alembic import context
from sqlalchemy import text
from sqlmodel import SQLModel

import api.models  # noqa: F401  (registers every table on SQLModel.metadata)
from api.db import make_engine

config = context.config
target_metadata = SQLModel.metadata
_LOCK = 0x6D696772  # serialises concurrent `db upgrade` from several processes


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _run(connectable)
        return
    engine = make_engine(url)
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)").bindparams(k=_LOCK))
        context.run_migrations()


run_migrations_online()
