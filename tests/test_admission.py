"""The per-process admission limit: API requests beyond the limit wait their turn (none is
refused), and what must never queue behind them (health checks, the feed's long poll) does
not."""

from __future__ import annotations

import asyncio

import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from api.admission import AdmissionLimit


def counting_app(release: asyncio.Event):
    running = {"now": 0, "most": 0}

    async def slow(request):
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        await release.wait()
        running["now"] -= 1
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/v1/flags", slow, methods=["POST"]),
                            Route("/v1/feed", slow), Route("/healthz", slow)])
    return AdmissionLimit(app, limit=3), running


async def test_requests_over_the_limit_queue_and_all_complete():
    release = asyncio.Event()
    app, running = counting_app(release)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as client:
        calls = [asyncio.create_task(client.post("/v1/flags")) for _ in range(12)]
        while running["now"] < 3:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # the other nine are queued, not running
        assert running["now"] == 3
        # Health checks and the long-polling feed go straight through.
        others = [asyncio.create_task(client.get(p)) for p in ("/healthz", "/v1/feed")]
        while running["now"] < 5:
            await asyncio.sleep(0.01)
        release.set()
        responses = await asyncio.gather(*calls, *others)
    assert [r.status_code for r in responses] == [200] * 14
    assert running["most"] == 5  # 3 counted + the 2 uncounted, never more
