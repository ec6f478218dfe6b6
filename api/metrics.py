"""Prometheus request metrics, counted by a plain ASGI middleware.

Starlette's `@app.middleware("http")` runs each request through a task group and a streamed
response body, which cost about as much as a primary-key read per request; this wrapper only
watches the response start.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("flagshare_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("flagshare_http_request_seconds", "HTTP request latency", ["method", "route"])


class RequestMetrics:
    """Latency and count per method, route template (never the concrete path, which may hold
    an NHS number) and status. A request that raised counts as 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            # The router wrote the matched route into this same scope.
            path = getattr(scope.get("route"), "path", "unmatched")
            LATENCY.labels(scope["method"], path).observe(time.perf_counter() - start)
            REQUESTS.labels(scope["method"], path, str(status)).inc()
