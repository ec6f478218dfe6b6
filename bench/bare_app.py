"""The stack's ceiling: a bare FastAPI app on the same uvicorn, engine and driver as flagshare,
with one endpoint doing one INSERT of the posted JSON body and two doing a primary-key SELECT (of
its own table, and of flagshare's `person` table when the database holds one). No auth, no
policy, no audit: what is left is the framework, the driver and the database.

    python -m bench.bare_app --database-url URL --port PORT
"""

from __future__ import annotations

import argparse
import uuid
from typing import Annotated, Any

import sqlalchemy as sa
import uvicorn
from fastapi import Body, Depends, FastAPI, HTTPException, Request
from sqlalchemy.orm import Session

from api.db import make_engine

TABLE = sa.Table("bench_insert", sa.MetaData(),
                 sa.Column("id", sa.String(36), primary_key=True),
                 sa.Column("body", sa.JSON, nullable=False))


PERSON = sa.text("SELECT * FROM person WHERE id = :id")


def session(request: Request):
    with Session(request.app.state.engine) as s:
        yield s


SessionDep = Annotated[Session, Depends(session)]


def create_bare_app(database_url: str) -> FastAPI:
    app = FastAPI()
    app.state.engine = make_engine(database_url)  # flagshare's own (pool, SQLite pragmas)
    TABLE.metadata.create_all(app.state.engine)

    @app.post("/insert", status_code=201)
    def insert(body: Annotated[dict[str, Any], Body()], s: SessionDep) -> dict[str, str]:
        row_id = str(uuid.uuid4())
        s.execute(TABLE.insert().values(id=row_id, body=body))
        s.commit()
        return {"id": row_id}

    @app.get("/rows/{row_id}")
    def select(row_id: str, s: SessionDep) -> dict[str, Any]:
        row = s.execute(sa.select(TABLE).where(TABLE.c.id == row_id)).first()
        if row is None:
            raise HTTPException(404)
        return {"id": row.id, "body": row.body}

    @app.get("/people/{person_id}")
    def person(person_id: str, s: SessionDep) -> dict[str, Any]:
        """The child view's baseline: one child's row by primary key."""
        row = s.execute(PERSON, {"id": person_id}).mappings().first()
        if row is None:
            raise HTTPException(404)
        return dict(row)

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # The same uvicorn settings as `flagshare serve`.
    uvicorn.run(create_bare_app(args.database_url), host="127.0.0.1", port=args.port,
                log_level="info", access_log=False)


if __name__ == "__main__":
    main()
