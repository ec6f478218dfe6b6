"""The FastAPI application: routers per domain, problem errors, limits, security headers,
request logging, health and metrics."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlmodel import Session

from api import problems
from api.admission import AdmissionLimit
from api.agencies.router import router as agencies_router
from api.audit.router import router as audit_router
from api.auth.keys import KeyRing
from api.auth.router import router as auth_router
from api.children.access import load_access
from api.children.router import router as children_router
from api.console.router import install as install_console
from api.db import get_engine, utcnow
from api.flags.router import router as flags_router
from api.forwarding.openapi import webhook_routes
from api.forwarding.router import router as forwarding_router
from api.forwarding.sealing import ensure_sealed
from api.forwarding.worker import start_in_process
from api.households.router import router as households_router
from api.identity.router import router as identity_router
from api.logs import RequestContext
from api.metrics import RequestMetrics
from api.policy.loader import load_policy
from api.ratelimit import RateLimits
from api.reports.router import router as reports_router
from api.security_headers import SecurityHeaders
from api.settings import Settings, get_settings
from api.transfers.router import router as transfers_router

def create_app(settings: Settings | None = None,
               session_factory: Callable[[], Session] | None = None) -> FastAPI:
    settings = settings or get_settings()
    policy = load_policy(settings.policy_dir)
    load_access(Path(settings.policy_dir), frozenset(policy.categories))  # cached from here on
    session_factory = session_factory or (lambda: Session(get_engine(), expire_on_commit=False))
    keyring = KeyRing(settings, session_factory)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        keyring.ensure_signing_key()
        ensure_sealed(session_factory, settings.signing_key_passphrase)
        stop_reloading = threading.Event()
        threading.Thread(target=keyring.keep_fresh, args=(stop_reloading,), daemon=True,
                         name="flagshare-keys").start()
        stop = None
        if settings.embedded_worker:
            _thread, stop = start_in_process(session_factory, settings, policy)
        yield
        stop_reloading.set()
        if stop is not None:
            stop.set()

    app = FastAPI(
        title="flagshare",
        version="0.1.0",
        summary="Share child safeguarding flags between agencies safely and provably",
        lifespan=lifespan,
        webhooks=webhook_routes(),
    )
    app.state.settings = settings
    app.state.policy = policy
    app.state.keyring = keyring
    app.state.rate_limits = RateLimits(settings)
    app.state.session_factory = session_factory
    app.state.clock = utcnow
    problems.install(app)
    for router in (auth_router, agencies_router, identity_router, households_router,
                   flags_router, forwarding_router, transfers_router, reports_router):
        app.include_router(router)
    app.include_router(audit_router)
    app.include_router(children_router)
    install_console(app)

    # Outermost last: each request gets its id and log context first, then its headers.
    app.add_middleware(RequestMetrics)
    app.add_middleware(AdmissionLimit, limit=settings.max_concurrent_requests)
    app.add_middleware(problems.RequestGuard, max_bytes=settings.max_body_bytes)
    app.add_middleware(problems.InternalErrors)
    app.add_middleware(SecurityHeaders, strict_transport=not settings.is_development)
    app.add_middleware(RequestContext)

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Readiness: the database answers",
             responses={503: {"description": "The database is not reachable"}})
    def readyz():
        try:
            with session_factory() as session:
                session.exec(text("SELECT 1"))
        except Exception:
            return problems.problem_response(503, "The database is not reachable.")
        return {"status": "ready", "policy_version": policy.version}

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics",
             response_class=PlainTextResponse)
    def metrics():
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
