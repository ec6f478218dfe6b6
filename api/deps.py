"""Process-wide objects handed to routes through FastAPI `Depends`.

They only read `app.state`, so they are `async def`: FastAPI runs a plain `def` dependency in its
thread pool, a hand-off (about 0.15 ms here) that would cost more than the lookup.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from api.db import get_session
from api.policy.loader import Policy
from api.settings import Settings


async def get_policy(request: Request) -> Policy:
    return request.app.state.policy


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_clock(request: Request) -> Callable[[], datetime]:
    """The app's clock; tests replace `app.state.clock` to travel in time."""
    return request.app.state.clock


SessionDep = Annotated[Session, Depends(get_session)]
PolicyDep = Annotated[Policy, Depends(get_policy)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ClockDep = Annotated[Callable[[], datetime], Depends(get_clock)]
