"""The plan the database chooses for a statement, for tests that guard an index's use."""

from __future__ import annotations

from sqlalchemy import text


def query_plan(session, statement, params: dict) -> str:
    """EXPLAIN (PostgreSQL) or EXPLAIN QUERY PLAN (SQLite) of the statement with these values,
    one line per plan node."""
    bind = session.get_bind()
    sql = str(statement.params(params).compile(bind, compile_kwargs={"literal_binds": True}))
    explain = "EXPLAIN QUERY PLAN " if bind.dialect.name == "sqlite" else "EXPLAIN "
    return "\n".join(str(row[-1]) for row in session.execute(text(explain + sql)))
