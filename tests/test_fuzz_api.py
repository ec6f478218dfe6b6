"""Property-based fuzzing of the whole OpenAPI document with schemathesis (issue 11).

Every operation of `/openapi.json` is called with schemathesis-generated requests, valid
(positive) and invalid (negative), as each role, and with the ids of real objects in its path
(`tests/scene.py`) as well as made-up ones. Each response must not be a 5xx and must conform to
the document: a documented status code and content type, and a body matching its schema. A 422
must name each bad field, and a refused write must leave no business row behind.

It runs on the usual per-test rolled-back transaction, with one database session per request
as in production (`app_session_per_request`). Requests go through schemathesis' in-process
ASGI client without the app's lifespan (no embedded worker).

Budget: each generated request is sent as every principal, so generation (the costly part) is
paid once for six requests: over 5,000 requests one after another, a few minutes per database
at most. The count is asserted so that generation cannot silently shrink. All failures are
collected and reported together, one example of each kind with a curl command. The cases
are the same every run; `FLAGSHARE_FUZZ_EXPLORE=1` draws fresh ones.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.python.asgi import ASGIClient
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_schema_conformance, status_code_conformance,
)
from sqlmodel import SQLModel

from tests.scene import Scene, build_scene

# One principal of each role; three agency systems of different kinds, so that writes that only
# one kind may make (transfers by children's social care, flags by police) are reached.
PRINCIPALS = ("POLICE-A", "CSC-A", "GP-A", "mash.a", "auditor", "admin")
EXAMPLES_PER_OPERATION = 25
MINIMUM_REQUESTS = 5000
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
WRITES = {"POST", "PATCH", "PUT", "DELETE"}
# Written by refusals too, by design: every refusal is audited.
NOT_BUSINESS_ROWS = {"auditevent", "auditcheckpoint", "signingkey"}
# The feed long-polls up to `wait` seconds; its waiting is tested in test_forwarding.py.
PINNED_QUERY = {("GET", "/v1/feed"): {"wait": 0}}
# The same cases every run (a CI failure is reproducible); FLAGSHARE_FUZZ_EXPLORE=1 draws new ones.
EXPLORE = os.environ.get("FLAGSHARE_FUZZ_EXPLORE") == "1"


def real_ids(scene: Scene) -> dict[str, list[str]]:
    """Path parameter name -> ids of real objects, so generated requests reach real rows."""
    return {
        "flag_id": [scene.flag, scene.plan_flag],
        "child_id": [scene.child, scene.plan_child, scene.moved_child],
        "delivery_id": [scene.delivery],
        "subscription_id": [scene.subscription],
        "transfer_id": [scene.transfer],
        "move_id": [scene.move],
        "match_id": [scene.match],
        "agency_id": ["POLICE-A", "CSC-B", "MASH-A"],
    }


def row_counts(connection) -> tuple[int, ...]:
    """Rows of every business table, in one query: a refused write must leave them as they were."""
    tables = [t for name, t in sorted(SQLModel.metadata.tables.items())
              if name not in NOT_BUSINESS_ROWS]
    return tuple(connection.execute(sa.select(*[
        sa.select(sa.func.count()).select_from(t).scalar_subquery() for t in tables])).one())


def problems_in(response, rows_before, rows_after) -> list[str]:
    """What the OpenAPI checks do not cover: a 422 names each bad field; a refused write
    leaves nothing half-written."""
    found = []
    if response.status_code == 422:
        errors = response.json().get("errors") or []
        if not errors or not all(e.get("field") for e in errors):
            found.append("422 without the bad fields named in `errors`")
    if 400 <= response.status_code < 500 and rows_before != rows_after:
        found.append(f"refused with {response.status_code} but rows were written")
    return found


def case_strategy(operation, ids: dict[str, list[str]]):
    """Valid and invalid requests, and valid ones addressing real objects."""
    query = PINNED_QUERY.get((operation.method.upper(), operation.path))
    strategies = [operation.as_strategy(GenerationMode.POSITIVE, query=query),
                  operation.as_strategy(GenerationMode.NEGATIVE, query=query)]
    names = [p.name for p in operation.path_parameters]
    if names and all(n in ids for n in names):
        real = st.fixed_dictionaries({n: st.sampled_from(ids[n]) for n in names})
        strategies.append(real.flatmap(
            lambda path: operation.as_strategy(GenerationMode.POSITIVE, path_parameters=path,
                                               query=query)))
    return st.one_of(strategies)


def test_fuzz_every_operation_as_every_role(app_session_per_request, world, session,
                                            connection):
    app = app_session_per_request
    client = ASGIClient(app)
    scene = build_scene(client, world, session)
    schema = schemathesis.openapi.from_dict(app.openapi())
    schema.app = app
    operations = [result.ok() for result in schema.get_all_operations()]
    ids = real_ids(scene)
    auth = {who: {"Authorization": f"Bearer {world.token(who, exp=int(time.time()) + 3600)}"}
            for who in PRINCIPALS}
    sent: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    failures: dict[tuple[str, str, str], str] = {}  # one example of each kind
    started = time.monotonic()

    for operation in operations:
        @hypothesis_settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
                             database=None, derandomize=not EXPLORE,
                             suppress_health_check=list(HealthCheck))
        @given(case=case_strategy(operation, ids))
        def call_as_everyone(case):
            write = operation.method.upper() in WRITES
            for who in PRINCIPALS:  # one generated request, sent as each principal
                before = row_counts(connection) if write else None
                try:
                    response = case.call(session=client, headers=auth[who])
                except Exception as exc:  # Starlette re-raises what it answered 500 for
                    failures.setdefault((operation.label, who, repr(exc)), (
                        f"500, unhandled {exc!r}\n{case.as_curl_command()}"))
                    continue
                after = row_counts(connection) if write else None
                sent[operation.label] += 1
                statuses[response.status_code] += 1
                found = problems_in(response, before, after)
                try:
                    case.validate_response(response, checks=CHECKS, headers=auth[who])
                except FailureGroup as group:
                    found += [f"{f.title}\n{f.message[:600]}" for f in group.exceptions]
                for problem in found:
                    failures.setdefault((operation.label, who, problem.split("\n")[0]), (
                        f"{problem}\n{response.status_code} {response.text[:300]}\n"
                        f"{case.as_curl_command()}"))

        call_as_everyone()

    total = sum(sent.values())
    elapsed = time.monotonic() - started
    print(f"\n{total} requests over {len(sent)} operations in {elapsed:.0f} s; "
          f"statuses {dict(sorted(statuses.items()))}")
    assert set(sent) == {op.label for op in operations}, "an operation was never called"
    assert total >= MINIMUM_REQUESTS, f"only {total} requests were generated"
    assert not failures, f"{len(failures)} kinds of failure:\n" + "\n\n".join(
        f"{label} as {who}: {example}" for (label, who, _), example in sorted(failures.items()))
