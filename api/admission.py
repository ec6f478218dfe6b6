"""Admission control: at most `limit` API requests run at once in a process; the rest queue.

Without it, a burst of a few hundred concurrent requests starves the connection pool: a
request's dependencies check a connection out on a worker thread and then wait, still holding
it, for a thread to run the endpoint, while every thread waits for a connection. Nothing moves
until the pool's 30 s timeout, and then requests fail. Queuing requests before they touch
the database keeps each admitted one able to finish. The feed's long poll is not counted: it
gives its connection back while it waits, and would otherwise hold a place for up to 30 s.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Receive, Scope, Send

UNCOUNTED = ("/v1/feed",)


class AdmissionLimit:
    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit
        self._slots: asyncio.Semaphore | None = None  # made on the server's event loop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/v1/") or path in UNCOUNTED:
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
        async with self._slots:
            await self.app(scope, receive, send)
