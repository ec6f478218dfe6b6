"""`Idempotency-Key` on writes: the same key and body replay the first result; another body is 409.

The record is written in the same transaction as the write it guards, so a crash cannot leave
one without the other. Two racing requests with one key take turns: on PostgreSQL a key not
yet stored is locked until the write commits (SQLite runs one writer at a time anyway), so the
second finds the first's result and replays it, instead of finding the object already changed
(a transfer picked up: 409) or meeting it at the primary key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from api.auth.principal import CurrentPrincipal
from api.deps import SessionDep
from api.encoding import json_ready
from api.idempotency.models import IdempotencyRecord
from api.problems import ProblemError

# The first key of PostgreSQL's two-key advisory locks (a space apart from the audit log's
# one-key lock) for Idempotency-Keys not yet stored; the second is a hash of the key.
_KEY_LOCKS = 1
log = logging.getLogger("flagshare")


class Idempotency:
    def __init__(self, session: Session, scope: str, key: str | None, request_hash: str):
        self.session = session
        self.scope = scope
        self.key = key
        self.request_hash = request_hash

    def replay(self) -> Response | None:
        """The stored first result for this key, if any (409 if the body differs)."""
        if self.key is None:
            return None
        found = self.session.get(IdempotencyRecord, (self.scope, self.key))
        if found is None and self.session.get_bind().dialect.name == "postgresql":
            self.session.exec(text("SELECT pg_advisory_xact_lock(:space, hashtext(:key))")
                              .bindparams(space=_KEY_LOCKS, key=f"{self.scope}\n{self.key}"))
            found = self.session.get(IdempotencyRecord, (self.scope, self.key))
        if found is None:
            return None
        if not hmac.compare_digest(found.request_hash, self.request_hash):
            raise ProblemError(
                409,
                "This Idempotency-Key was already used with a different request body.",
                errors=[{"field": "Idempotency-Key", "message": "reused with a different body"}],
            )
        return _response(found.response_body, found.status_code,
                         headers={"Idempotent-Replayed": "true"})

    def commit(self, status_code: int, body: Any = None, *, remember: Any = None) -> Response:
        """Remember the result with the write, commit both, and return the response.

        `remember` replaces what is stored for replays when the response holds a secret that
        must never rest in the database.
        """
        encoded = None if status_code == 204 else json_ready(body)
        if self.key is not None:
            self.session.add(IdempotencyRecord(
                principal=self.scope, key=self.key, request_hash=self.request_hash,
                status_code=status_code,
                response_body=encoded if remember is None else json_ready(remember),
            ))
        try:
            self.session.commit()
        except IntegrityError:
            self.session.rollback()
            replayed = self.replay()
            if replayed is None:
                # A row another request wrote first (what the locks in the services should
                # leave none of): a conflict to the caller, and logged for whoever runs it.
                log.warning("a write met another at commit; answered 409", exc_info=True)
                raise ProblemError(409, "Another change to the same record was made at the "
                                   "same moment; nothing was written. Read it again and retry "
                                   "if the change is still needed.") from None
            return replayed
        return _response(encoded, status_code)


def _response(body: Any, status_code: int, headers: dict[str, str] | None = None) -> Response:
    """The result as sent: JSON, or nothing at all for 204 No Content."""
    if status_code == 204:
        return Response(status_code=204, headers=headers)
    return JSONResponse(body, status_code=status_code, headers=headers)


async def idempotency(
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=200, description="Repeat a write safely: same key and body, same result"),
    ] = None,
) -> Idempotency:
    body = await request.body()
    try:  # the same JSON with keys in another order or other spacing is the same body
        body = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        pass
    digest = hashlib.sha256(request.method.encode() + b" " + request.url.path.encode() + b"\n"
                            + body).hexdigest()
    return Idempotency(session, principal.scope_key, idempotency_key, digest)


IdempotencyDep = Annotated[Idempotency, Depends(idempotency)]
