"""Fields of a request body that are valid only in context: a category the policy in force
defines, an area the service knows (listed in the policy data or a registered agency's), a
webhook URL the settings allow, an area other than the caller's own.

Their validators read a `BodyContext` from pydantic's validation context, and pass when there
is none, as when FastAPI validates a body: on the event loop, where no database read may wait,
and before the route has its context. The service validates the body again in context
(`api.problems.validated`), and the 422 handler does so for a body the schema refused, so that
one 422 names every bad field: the schema's problems and these.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pydantic import BaseModel
from sqlmodel import Session
from starlette.requests import Request

from api.agencies.models import Agency
from api.policy.loader import Policy
from api.settings import Settings

_CALLER = "calling_agency"  # on request.state, for the 422 handler


@dataclass(frozen=True)
class BodyContext:
    policy: Policy
    session: Session  # to read the registered agencies
    settings: Settings | None = None
    caller: Agency | None = None  # for fields judged relative to the calling agency


class ContextChecked(BaseModel):
    """A request body with fields valid only in context: the 422 handler validates a body of
    this kind that the schema refused again, in the request's context."""


def note_caller(request: Request, agency: Agency) -> None:
    """Give the 422 handler the calling agency, for fields judged relative to it. A dependency
    that found the agency calls this: the handler runs after the route's dependencies end."""
    setattr(request.state, _CALLER, agency)


@contextmanager
def request_context(request: Request) -> Iterator[BodyContext]:
    """The context of a request whose body the schema refused, with a session of its own (the
    route's has ended), read-only and closed on leaving."""
    state = request.app.state
    with state.session_factory() as session:
        yield BodyContext(state.policy, session, state.settings,
                          getattr(request.state, _CALLER, None))
