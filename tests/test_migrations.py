"""The alembic migrations produce exactly the schema the models describe."""

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import api.models  # noqa: F401
from api.db import make_engine
from api.migrate import alembic_config, upgrade


def test_migrated_schema_matches_models(engine):
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_console_generation_migration_keeps_people_and_undoes_cleanly(private_database_url):
    """0010 adds app_user.console_generation: the people already held get 0 (their sessions
    are at generation 0), and downgrading drops it without losing them."""
    url = private_database_url
    upgrade(url, "0009")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO app_user (id, username, password_hash, role, agency_id, disabled, "
                "created_at) VALUES ('u1', 'held.before', 'x', 'auditor', NULL, :f, :at)"),
                {"f": False, "at": datetime(2026, 12, 1, tzinfo=timezone.utc)})
        upgrade(url)
        with engine.connect() as conn:
            assert conn.execute(sa.text(
                "SELECT username, console_generation FROM app_user")).all() == [
                ("held.before", 0)]
        command.downgrade(alembic_config(url), "0009")
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("app_user")}
            assert "console_generation" not in columns and "disabled" in columns
            assert conn.execute(sa.text("SELECT username FROM app_user")).all() == [
                ("held.before",)]
        upgrade(url)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
        assert diff == []
    finally:
        engine.dispose()
