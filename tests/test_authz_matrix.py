"""The authorisation matrix (issue 11): every route × every role × own agency / another agency
of the same area / an agency of another area.

Built from `app.routes`: a route missing from the matrix fails the suite, so a new endpoint
cannot escape it. Each API route addresses an object of the scene (`tests/scene.py`) owned by
a Birmingham agency ("own"); it is asked for by that agency, by an agency of the same area with
no tie to it (a second school), by the owner's counterpart in Sandwell, by MASH practitioners
of both areas, by an auditor and by an administrator. Each caller must get exactly the expected
status: 2xx for those allowed, 403 for a role that may not, 404 for an object the caller must
not see, answered exactly as for an id that does not exist (no existence oracle). A list must
hold the object only for callers who may see it. Every probe runs in a savepoint rolled back
afterwards, so one caller's write never changes what the next one meets.

The web console's routes use a session cookie (tests/test_console.py); here they must treat a
bearer token like no credentials at all.
"""

from __future__ import annotations

from collections.abc import Callable
import uuid
from dataclasses import dataclass, field, fields, replace

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from schemathesis.python.asgi import ASGIClient

from tests.factories import BIRMINGHAM, NHS, flag_body, relationship_body
from tests.scene import Scene, build_scene

VARIANTS = ("own", "same_area", "other_area", "mash_same_area", "mash_other_area", "auditor",
            "admin")
COUNTERPART = {"POLICE-A": "POLICE-B", "CSC-A": "CSC-B", "GP-A": "GP-B"}
UNRELATED_SAME_AREA = "SCHOOL-A2"  # a Birmingham school that works with none of the children
PURPOSE = "purpose=mash_triage&reason=Referral%20from%20school%20about%20bruising"
REASON = {"reason": "Checked with the GP and the school: same child, same address."}


def caller(variant: str, owner: str) -> str:
    return {"own": owner, "same_area": UNRELATED_SAME_AREA, "other_area": COUNTERPART[owner],
            "mash_same_area": "mash.a", "mash_other_area": "mash.b", "auditor": "auditor",
            "admin": "admin"}[variant]


def expect(agency: int = 403, mash: int = 403, auditor: int = 403, admin: int = 403,
           **variants: int) -> dict[str, int]:
    """Expected status per variant: by role, then overridden per variant."""
    by_role = {"own": agency, "same_area": agency, "other_area": agency, "mash_same_area": mash,
               "mash_other_area": mash, "auditor": auditor, "admin": admin}
    return {**by_role, **variants}


@dataclass(frozen=True)
class Probe:
    owner: str                       # the agency that owns what the route addresses
    url: Callable[[Scene], str]
    statuses: dict[str, int]
    body: Callable[[Scene], dict] | None = None
    listed: Callable[[Scene], str] | None = None  # lists: the id of the owner's object...
    sees: frozenset[str] = field(default_factory=frozenset)  # ...and who must find it there


def fixed(url: str) -> Callable[[Scene], str]:
    return lambda _: url


EVERYONE = frozenset(VARIANTS)
CHILD_VIEW = expect(agency=404, mash=404, own=200, mash_same_area=200)

MATRIX: dict[tuple[str, str], Probe] = {
    ("POST", "/v1/agencies"): Probe(
        "POLICE-A", fixed("/v1/agencies"), expect(admin=201),
        body=lambda s: {"id": "NEW-GP", "name": "New GP", "kind": "gp", "area": BIRMINGHAM}),
    ("POST", "/v1/agencies/{agency_id}/secret"): Probe(
        "POLICE-A", fixed("/v1/agencies/POLICE-A/secret"), expect(admin=200)),
    ("PATCH", "/v1/agencies/{agency_id}"): Probe(
        "POLICE-A", fixed("/v1/agencies/POLICE-A"), expect(admin=200),
        body=lambda s: {"disabled": True, "reason": "Authorisation matrix probe"}),
    ("GET", "/v1/agencies"): Probe(
        "POLICE-A", fixed("/v1/agencies?limit=500"), expect(200, 200, 200, 200),
        listed=lambda s: '"POLICE-A"', sees=EVERYONE),
    ("GET", "/v1/agencies/{agency_id}"): Probe(
        "POLICE-A", fixed("/v1/agencies/POLICE-A"), expect(200, 200, 200, 200)),
    ("POST", "/v1/relationships"): Probe(
        "GP-A", fixed("/v1/relationships"), expect(agency=201),
        body=lambda s: relationship_body("other", NHS[4])),
    ("GET", "/v1/matches"): Probe(
        "GP-A", fixed("/v1/matches"), expect(mash=200), listed=lambda s: s.match,
        sees=frozenset({"mash_same_area"})),
    ("POST", "/v1/matches/{match_id}/confirm"): Probe(
        "GP-A", lambda s: f"/v1/matches/{s.match}/confirm",
        expect(mash_same_area=200, mash_other_area=404), body=lambda s: REASON),
    ("POST", "/v1/matches/{match_id}/reject"): Probe(
        "GP-A", lambda s: f"/v1/matches/{s.match}/reject",
        expect(mash_same_area=200, mash_other_area=404), body=lambda s: REASON),
    ("POST", "/v1/matches/{match_id}/unmerge"): Probe(  # open, not merged: reached, refused
        "GP-A", lambda s: f"/v1/matches/{s.match}/unmerge",
        expect(mash_same_area=409, mash_other_area=404), body=lambda s: REASON),
    ("POST", "/v1/household-members"): Probe(
        "GP-A", fixed("/v1/household-members"), expect(agency=201),
        body=lambda s: {"subject": {"nhs_number": NHS[0]}, "people": [
            {"role": "household_member", "given_name": "Dean", "family_name": "Morris"}]}),
    ("POST", "/v1/flags"): Probe(
        "POLICE-A", fixed("/v1/flags"), expect(agency=201, same_area=403),
        body=lambda s: flag_body()),
    ("GET", "/v1/flags/{flag_id}"): Probe(
        "POLICE-A", lambda s: f"/v1/flags/{s.flag}?{PURPOSE}",
        expect(agency=404, mash=404, own=200, mash_same_area=200)),
    ("PATCH", "/v1/flags/{flag_id}"): Probe(
        "POLICE-A", lambda s: f"/v1/flags/{s.flag}", expect(agency=404, own=200),
        body=lambda s: {"status": "inactive"}),
    ("POST", "/v1/flags/{flag_id}/decisions"): Probe(
        "POLICE-A", lambda s: f"/v1/flags/{s.flag}/decisions",
        expect(agency=404, mash=404, own=201, mash_same_area=201),
        body=lambda s: {"decision": "not_share", "reason": "The school already knows."}),
    ("POST", "/v1/subscriptions"): Probe(
        "GP-A", fixed("/v1/subscriptions"), expect(agency=201),
        body=lambda s: {"delivery": {"mode": "feed"}}),
    ("GET", "/v1/subscriptions"): Probe(
        "GP-A", fixed("/v1/subscriptions"), expect(agency=200),
        listed=lambda s: s.subscription, sees=frozenset({"own"})),
    ("DELETE", "/v1/subscriptions/{subscription_id}"): Probe(
        "GP-A", lambda s: f"/v1/subscriptions/{s.subscription}", expect(agency=404, own=204)),
    ("GET", "/v1/feed"): Probe(
        "GP-A", fixed("/v1/feed?limit=500"), expect(agency=200),
        listed=lambda s: s.delivery, sees=frozenset({"own"})),
    ("POST", "/v1/deliveries/{delivery_id}/ack"): Probe(
        "GP-A", lambda s: f"/v1/deliveries/{s.delivery}/ack", expect(agency=404, own=200),
        body=lambda s: {"status": "received"}),
    ("GET", "/v1/flags/{flag_id}/deliveries"): Probe(
        "POLICE-A", lambda s: f"/v1/flags/{s.flag}/deliveries", expect(agency=404, own=200)),
    ("POST", "/v1/transfers"): Probe(  # Sandwell's CSC cannot transfer a child to its own area
        "CSC-A", fixed("/v1/transfers"), expect(agency=403, own=201, other_area=422),
        body=lambda s: {"subject": {"nhs_number": NHS[0]}, "to_area": "E08000028",
                        "plan": "child_protection_plan",
                        "notified_at": "2026-11-20T09:30:00+00:00"}),
    ("GET", "/v1/transfers"): Probe(
        "CSC-A", fixed("/v1/transfers"),
        expect(agency=200, mash=200, auditor=200, same_area=403), listed=lambda s: s.transfer,
        sees=frozenset({"own", "other_area", "mash_same_area", "mash_other_area", "auditor"})),
    ("GET", "/v1/transfers/{transfer_id}"): Probe(
        "CSC-A", lambda s: f"/v1/transfers/{s.transfer}",
        expect(agency=200, mash=200, auditor=200, same_area=403)),
    ("POST", "/v1/transfers/{transfer_id}/accept"): Probe(  # only the receiving area's CSC
        "CSC-A", lambda s: f"/v1/transfers/{s.transfer}/accept",
        expect(own=403, same_area=404, other_area=200)),
    ("POST", "/v1/transfers/{transfer_id}/withdraw"): Probe(  # only the outgoing agency
        "CSC-A", lambda s: f"/v1/transfers/{s.transfer}/withdraw",
        expect(own=200, same_area=404, other_area=403),
        body=lambda s: {"reason": "The family did not move after all."}),
    ("GET", "/v1/suspected-moves"): Probe(
        "CSC-A", fixed("/v1/suspected-moves"), expect(agency=200, mash=200, same_area=403),
        listed=lambda s: s.move,
        sees=frozenset({"own", "other_area", "mash_same_area", "mash_other_area"})),
    ("POST", "/v1/suspected-moves/{move_id}/dismiss"): Probe(
        "CSC-A", lambda s: f"/v1/suspected-moves/{s.move}/dismiss",
        expect(agency=200, mash=200, same_area=403),
        body=lambda s: {"reason": "Foster placement across the border; no move."}),
    ("GET", "/v1/reports/data-quality"): Probe(
        "POLICE-A", fixed(f"/v1/reports/data-quality?area={BIRMINGHAM}"),
        expect(mash_same_area=200, admin=200)),
    ("GET", "/v1/audit/events"): Probe(
        "POLICE-A", fixed("/v1/audit/events"), expect(auditor=200, admin=200)),
    ("GET", "/v1/audit/export"): Probe(
        "POLICE-A", fixed("/v1/audit/export"), expect(auditor=200, admin=200)),
    ("GET", "/v1/audit/verify"): Probe(
        "POLICE-A", fixed("/v1/audit/verify"), expect(auditor=200, admin=200)),
    ("POST", "/v1/audit/checkpoints"): Probe(
        "POLICE-A", fixed("/v1/audit/checkpoints"), expect(auditor=201, admin=201),
        body=lambda s: {}),
    ("GET", "/v1/audit/checkpoints/latest"): Probe(
        "POLICE-A", fixed("/v1/audit/checkpoints/latest"), expect(auditor=200, admin=200)),
    ("GET", "/v1/audit/keys"): Probe(  # every key that ever signed, for old checkpoints
        "POLICE-A", fixed("/v1/audit/keys"), expect(auditor=200, admin=200)),
    ("GET", "/v1/children/{child_id}/disclosures"): Probe(
        "GP-A", lambda s: f"/v1/children/{s.child}/disclosures", expect(auditor=200, admin=200)),
    ("GET", "/v1/children/search"): Probe(
        "GP-A", fixed(f"/v1/children/search?nhs_number={NHS[0]}&{PURPOSE}"),
        expect(agency=200, mash=200), listed=lambda s: s.child,
        sees=frozenset({"own", "mash_same_area"})),
    ("GET", "/v1/children"): Probe(
        "GP-A", fixed(f"/v1/children?nhs_number={NHS[0]}&{PURPOSE}"), CHILD_VIEW),
    ("GET", "/v1/children/{child_id}"): Probe(
        "GP-A", lambda s: f"/v1/children/{s.child}?{PURPOSE}", CHILD_VIEW),
}
# Open to anyone by design: what a caller needs before it has a token, and operations.
PUBLIC = {("POST", "/v1/oauth/token"): 400, ("GET", "/.well-known/jwks.json"): 200,
          ("GET", "/healthz"): 200, ("GET", "/readyz"): 200, ("GET", "/metrics"): 200}
CONSOLE_SIGN_IN = {("GET", "/console/login"), ("POST", "/console/login")}  # signing in itself


def route_table(app) -> set[tuple[str, str]]:
    """(method, path) of every API route, through the routers included in the app."""
    return {(method, context.path) for context in iter_route_contexts(app.routes)
            if isinstance(context.original_route, APIRoute)
            for method in context.original_route.methods}


def test_every_route_is_in_the_matrix(app):
    routes = route_table(app)
    console = {r for r in routes if r[1].startswith("/console")}
    assert len(routes) > len(MATRIX) and console, "the route table was not read whole"
    unclassified = routes - set(MATRIX) - set(PUBLIC) - console
    assert not unclassified, f"routes missing from the authorisation matrix: {unclassified}"
    assert not set(MATRIX) - routes, "the matrix names routes that no longer exist"


def test_each_role_sees_only_what_it_may(app_session_per_request, world, session, connection):
    """One scene for all routes: each probe's savepoint is rolled back, so it stays intact."""
    client = ASGIClient(app_session_per_request)
    scene = build_scene(client, world, session)
    assert UNRELATED_SAME_AREA not in scene.flag_shared_with
    nowhere = replace(scene, **{f.name: str(uuid.uuid4()) for f in fields(Scene)
                                if isinstance(getattr(scene, f.name), str)})

    def ask(method: str, probe: Probe, variant: str, about: Scene):
        savepoint = connection.begin_nested()
        try:
            return client.request(method, probe.url(about),
                                  headers=world.auth(caller(variant, probe.owner)),
                                  json=probe.body(about) if probe.body else None)
        finally:
            savepoint.rollback()

    wrong = []
    for (method, path), probe in sorted(MATRIX.items()):
        for variant in VARIANTS:
            response = ask(method, probe, variant, scene)
            expected = probe.statuses[variant]
            where = f"{method} {path} as {variant} ({caller(variant, probe.owner)})"
            if response.status_code != expected:
                wrong.append(f"{where}: {response.status_code}, expected {expected}: "
                             f"{response.text[:200]}")
            elif expected == 404:  # invisible must read exactly as nonexistent
                missing = ask(method, probe, variant, nowhere)
                if (missing.status_code, missing.json()) != (404, response.json()):
                    wrong.append(f"{where}: invisible answers unlike nonexistent: "
                                 f"{response.text[:200]} / {missing.text[:200]}")
            elif probe.listed is not None and expected == 200:
                found = probe.listed(scene) in response.text
                if found != (variant in probe.sees):
                    wrong.append(f"{where}: the owner's object is "
                                 f"{'listed' if found else 'missing'}")
    assert not wrong, "\n".join(wrong)


# Writes whose bodies are bad in two fields, one of them judged against the policy or the
# registered agencies, and who may make each (every other caller is one of the roles below).
BAD_WRITES = {
    "/v1/flags": ({**flag_body(), "category": "nope", "severity": "extreme"},
                  {"POLICE-A", "CSC-A", "GP-A"}),
    "/v1/agencies": ({"id": "NEW-GP", "name": "", "kind": "gp", "area": "E09999999"},
                     {"admin"}),
    "/v1/transfers": ({"subject": {"nhs_number": NHS[0]}, "to_area": "E06999999",
                       "plan": "early_help", "notified_at": "2026-11-20T09:30:00+00:00"},
                      {"CSC-A"}),
    "/v1/subscriptions": ({"categories": ["weather"], "delivery": {
        "mode": "webhook", "url": "https://x.example/h", "secret": "abc"}},
        {"POLICE-A", "CSC-A", "GP-A"}),
}


@pytest.mark.parametrize("path", sorted(BAD_WRITES))
def test_a_caller_who_may_not_write_is_refused_before_the_body_is_judged(app, world, path):
    body, allowed = BAD_WRITES[path]
    client = ASGIClient(app)
    assert client.post(path, json=body).status_code == 401
    for who in ("POLICE-A", "CSC-A", "GP-A", "mash.a", "auditor", "admin"):
        r = client.post(path, json=body, headers=world.auth(who))
        assert r.status_code == (422 if who in allowed else 403), (who, r.text)
        assert ("errors" in r.json()) == (who in allowed), (who, r.text)


@pytest.mark.parametrize("route", sorted(PUBLIC), ids=" ".join)
def test_public_routes_need_no_token(route, app):
    response = ASGIClient(app).request(*route)
    assert response.status_code == PUBLIC[route], response.text


def test_console_takes_no_bearer_token(app_session_per_request, world):
    """A bearer token of any role opens no console page: as if signed out, off to sign in."""
    client = ASGIClient(app_session_per_request)
    routes = {r for r in route_table(app_session_per_request) if r[1].startswith("/console")}
    for method, path in sorted(routes - CONSOLE_SIGN_IN):
        url = path.replace("{child_id}", "some-child").replace("{match_id}", "some-match")
        for who in ("GP-A", "mash.a", "auditor", "admin", None):
            headers = world.auth(who) if who else {}
            response = client.request(method, url, headers=headers, allow_redirects=False)
            assert response.status_code == 303, (method, path, who, response.status_code)
            assert response.headers["location"].startswith("/console/login"), (method, path)
