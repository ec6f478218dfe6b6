"""The auditors' view of the sharing log: search, CSV, export, verify, checkpoints, disclosures,
the append-only database, and tampering found at the exact seq online and offline."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import Session, func, select

from api import cli
from api.audit import checkpoints
from api.audit import service as audit
from api.audit.models import AuditCheckpoint, AuditEvent
from api.audit.read import FIELDS
from api.audit.service import event_hash, format_time
from api.audit.verify import (
    Checkpoint, export_line, keys_from_jwks, verify_events, verify_export,
)
from api.auth import jwt
from api.db import make_engine, utcnow
from api.flags.models import Disclosure
from api.forwarding.worker import DeliveryWorker
from api.main import create_app
from api.migrate import upgrade
from api.settings import REPO_ROOT, Settings
from tests.conftest import fresh_database
from tests.factories import NHS, build_world, flag_body, relationship_body

SUMMARY = "Marker-summary-7731: police attended; Amelia was present and frightened."
DETAILS = "Marker-details-9902: partner arrested for assault."
CONTRACT_FIELDS = {"seq", "at", "actor", "actor_agency", "action", "child_id", "flag_id",
                   "recipient", "purpose", "lawful_basis", "policy_rule", "outcome",
                   "prev_hash", "hash"}


async def activity(client, world) -> dict:
    """A child known to GP-A and SCHOOL-A; police publish; the school takes its feed and reads
    the flag; MASH reads it with a purpose; the publisher reads its own flag."""
    for agency, kind in (("GP-A", "registered_gp"), ("SCHOOL-A", "school")):
        r = await client.post("/v1/relationships", json=relationship_body(kind),
                              headers=world.auth(agency))
        assert r.status_code == 201, r.text
    r = await client.post("/v1/flags", json=flag_body(summary=SUMMARY, details=DETAILS),
                          headers=world.auth("POLICE-A"))
    assert r.status_code == 201, r.text
    flag = r.json()
    assert (await client.get("/v1/feed", headers=world.auth("SCHOOL-A"))).status_code == 200
    for who, params in (("SCHOOL-A", {}), ("POLICE-A", {}),
                        ("mash.a", {"purpose": "strategy_discussion", "reason": "Referral"})):
        r = await client.get(f"/v1/flags/{flag['id']}", headers=world.auth(who), params=params)
        assert r.status_code == 200, r.text
    return flag


async def get_events(client, world, who="auditor", **params) -> dict:
    r = await client.get("/v1/audit/events", params=params, headers=world.auth(who))
    assert r.status_code == 200, r.text
    return r.json()


async def walk(client, world, path: str, limit: int, **params) -> list[dict]:
    items, cursor = [], None
    while True:
        page = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        r = await client.get(path, headers=world.auth("auditor"), params=page)
        assert r.status_code == 200, r.text
        assert len(r.json()["items"]) <= limit
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return items


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- search --------------------------------------------------------------------------------------

async def test_filters_by_child_agency_action_and_time(client, world):
    start = format_time(utcnow())
    flag = await activity(client, world)
    child = flag["child_id"]
    everything = (await get_events(client, world, since=start, limit=500))["items"]
    assert set(everything[0]) >= CONTRACT_FIELDS | {"reason", "policy_version"}
    by_child = (await get_events(client, world, child_id=child, since=start))["items"]
    assert by_child and all(e["child_id"] == child for e in by_child)
    assert {"relationship.record", "flag.publish", "flag.disclose", "delivery.handover",
            "flag.read"} <= {e["action"] for e in by_child}
    assert by_child == [e for e in everything if e["child_id"] == child]

    school = (await get_events(client, world, agency="SCHOOL-A", since=start))["items"]
    assert school == [e for e in everything if "SCHOOL-A" in (e["actor_agency"], e["recipient"])]
    assert {("flag.disclose", "recipient"), ("delivery.handover", "recipient"),
            ("flag.read", "actor_agency")} <= {
        (e["action"], "recipient" if e["recipient"] == "SCHOOL-A" else "actor_agency")
        for e in school}

    published = (await get_events(client, world, action="flag.publish", since=start))["items"]
    assert [(e["flag_id"], e["actor"], e["policy_rule"]) for e in published] == [
        (flag["id"], "POLICE-A", "DAI-PUB")]

    middle = by_child[len(by_child) // 2]
    before = (await get_events(client, world, child_id=child, since=start,
                               until=middle["at"]))["items"]
    after = (await get_events(client, world, child_id=child, since=middle["at"]))["items"]
    assert all(parse_time(e["at"]) < parse_time(middle["at"]) for e in before)
    assert middle in after and all(parse_time(e["at"]) >= parse_time(middle["at"]) for e in after)
    assert {e["seq"] for e in before} | {e["seq"] for e in after} >= {e["seq"] for e in by_child}


async def test_times_need_an_offset_and_cursors_must_be_ours(client, world):
    for params, field in (({"since": "2026-01-01T00:00:00"}, "since"),
                          ({"until": "yesterday"}, "until"),
                          ({"cursor": "bm90LWEtY3Vyc29y"}, "cursor"),
                          ({"limit": 501}, "limit"), ({"limit": 0}, "limit")):
        r = await client.get("/v1/audit/events", params=params, headers=world.auth("auditor"))
        assert r.status_code == 422, (params, r.text)
        assert [e["field"] for e in r.json()["errors"]] == [field]


async def test_pagination_walks_every_event_once_in_seq_order(client, world):
    start = format_time(utcnow())
    await activity(client, world)
    whole = (await get_events(client, world, since=start, limit=500))["items"]
    walked = await walk(client, world, "/v1/audit/events", 3, since=start)
    # each page read is logged too, so the walk sees more reads than the single page did
    assert [e for e in walked if e["action"] != "audit.read"] == [
        e for e in whole if e["action"] != "audit.read"]
    seqs = [e["seq"] for e in walked]
    assert seqs == sorted(set(seqs))
    assert len((await get_events(client, world, since=start))["items"]) == min(50, len(walked) + 1)


async def test_reading_the_log_is_itself_logged(client, world, session):
    flag = await activity(client, world)
    await get_events(client, world, child_id=flag["child_id"], action="flag.read")
    read = session.exec(select(AuditEvent).where(AuditEvent.action == "audit.read")
                        .order_by(AuditEvent.seq.desc())).first()
    assert (read.actor, read.child_id, read.outcome) == ("auditor", flag["child_id"], "events")
    assert "action=flag.read" in read.reason


# --- CSV and export ------------------------------------------------------------------------------

async def test_csv_has_bom_header_iso_times_and_every_matching_event(client, world):
    start = format_time(utcnow())
    flag = await activity(client, world)
    r = await client.post(f"/v1/flags/{flag['id']}/decisions", headers=world.auth("mash.a"),
                          json={"decision": "not_share", "reason": "=HYPERLINK(\"http://x\")"})
    assert r.status_code == 201, r.text
    as_json = (await get_events(client, world, child_id=flag["child_id"], since=start))["items"]
    r = await client.get("/v1/audit/events", params={"child_id": flag["child_id"], "since": start,
                                                     "limit": 1},
                         headers={**world.auth("auditor"), "Accept": "text/csv"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in r.headers["content-disposition"]
    assert r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert tuple(rows[0]) == FIELDS
    body = [dict(zip(rows[0], row)) for row in rows[1:]]
    assert [int(b["seq"]) for b in body if b["action"] != "audit.read"] == [
        e["seq"] for e in as_json if e["action"] != "audit.read"]  # no pagination in CSV
    assert (body[-1]["action"], body[-1]["outcome"]) == ("audit.read", "events.csv")
    assert all(parse_time(b["at"]).tzinfo is not None for b in body)
    decision = next(b for b in body if b["action"] == "decision.record")
    assert decision["reason"] == "'=HYPERLINK(\"http://x\")"  # no formula runs in Excel


PREFIXED = [" =HYPERLINK(\"http://x\")", "\n=1+1", "\nplain", "\t=1+1", "\r@SUM(A1)", "  +1",
            "\u00a0-1", "'=1+1", "''\t=1"]
UNCHANGED = ["plain", " plain", "'plain", "a=1", "mash.a"]


async def test_csv_neutralises_formulas_an_unauthenticated_caller_can_log(client, world):
    """A failed sign-in logs whatever username was tried. A cell starting with tab, CR or LF,
    or whose first character after any whitespace is = + - @, gets a leading '; so does one
    that would after its own leading 's, so dropping the ' from any cell whose rest matches
    gives back every value exactly as logged."""
    start = format_time(utcnow())
    for name in PREFIXED + UNCHANGED:
        r = await client.post("/v1/oauth/token", data={"grant_type": "password",
                                                         "username": name, "password": "x"})
        assert r.status_code == 401, r.text
    r = await client.get("/v1/audit/events", params={"action": "login", "since": start},
                         headers={**world.auth("auditor"), "Accept": "text/csv"})
    assert r.status_code == 200
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"), newline="")))
    actors = [dict(zip(rows[0], row))["actor"] for row in rows[1:]]
    assert actors == ["'" + n for n in PREFIXED] + UNCHANGED

    def risky(text: str) -> bool:
        text = text.lstrip("'")
        return text[:1] in ("\t", "\r", "\n") or text.lstrip()[:1] in ("=", "+", "-", "@")

    def undo(cell: str) -> str:  # what an auditor's script does
        return cell[1:] if cell.startswith("'") and risky(cell[1:]) else cell

    assert [undo(a) for a in actors] == PREFIXED + UNCHANGED


async def test_export_is_json_lines_ending_in_a_signed_checkpoint(client, world, tmp_path):
    await activity(client, world)
    r = await client.get("/v1/audit/export", headers=world.auth("auditor"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    events, last = lines[:-1], lines[-1]["checkpoint"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["action"] == "audit.read" and events[-1]["outcome"] == "export"
    assert (last["seq"], last["hash"]) == (events[-1]["seq"], events[-1]["hash"])
    assert all(e["hash"] == event_hash(e) for e in events)
    jwks = (await client.get("/.well-known/jwks.json")).json()
    payload = jwt.verify_statement(last["signature"], keys_from_jwks(jwks))
    assert payload == {"iss": "https://flagshare.test", "seq": last["seq"], "hash": last["hash"],
                       "at": last["at"]}
    export = tmp_path / "audit.jsonl"
    export.write_bytes(r.content)
    report = verify_export(export, keys_from_jwks(jwks))
    assert report.ok and report.events_checked == len(events) and report.signatures_checked == 1
    assert report.head_matches_checkpoint


# --- who may look, and what they see -------------------------------------------------------------

AUDIT_GETS = ["/v1/audit/events", "/v1/audit/export", "/v1/audit/verify",
              "/v1/audit/checkpoints/latest", "/v1/children/{child}/disclosures"]


@pytest.mark.parametrize("path", AUDIT_GETS + ["POST /v1/audit/checkpoints"])
async def test_only_auditors_and_admins(client, world, path):
    flag = await activity(client, world)
    method, _, path = path.rpartition(" ")
    url = path.format(child=flag["child_id"])
    assert (await client.request(method or "GET", url)).status_code == 401
    for who in ("mash.a", "GP-A", "POLICE-A"):
        r = await client.request(method or "GET", url, headers=world.auth(who))
        assert r.status_code == 403, (who, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    if path == "/v1/audit/checkpoints/latest":
        await client.post("/v1/audit/checkpoints", headers=world.auth("admin"))
    for who in ("auditor", "admin"):
        r = await client.request(method or "GET", url, headers=world.auth(who))
        assert r.status_code in (200, 201), (who, r.text)


async def test_auditors_never_see_flag_content(client, world):
    flag = await activity(client, world)
    bodies = []
    for path in AUDIT_GETS:
        r = await client.get(path.format(child=flag["child_id"]), params={"limit": 500},
                             headers=world.auth("auditor"))
        assert r.status_code in (200, 404), r.text
        bodies.append(r.text)
    r = await client.get("/v1/audit/events",
                         headers={**world.auth("auditor"), "Accept": "text/csv"})
    bodies.append(r.text)
    assert SUMMARY[:20] in (await client.get(f"/v1/flags/{flag['id']}",
                                             headers=world.auth("POLICE-A"))).text
    for body in bodies:
        assert SUMMARY[:20] not in body and DETAILS[:20] not in body


# --- disclosures of one child --------------------------------------------------------------------

async def test_every_disclosure_of_a_child_with_rule_basis_and_fields(client, world, session):
    flag = await activity(client, world)
    path = f"/v1/children/{flag['child_id']}/disclosures"
    items = await walk(client, world, path, 2)
    assert all(set(i) >= CONTRACT_FIELDS | {"disclosed_to", "fields", "flag_version"}
               for i in items)
    handover = next(i for i in items if i["action"] == "delivery.handover"
                    and i["disclosed_to"] == "SCHOOL-A")
    school = session.exec(select(Disclosure).where(Disclosure.flag_id == flag["id"],
                                                   Disclosure.recipient_id == "SCHOOL-A")).one()
    assert handover["fields"] == school.fields and "details" not in handover["fields"]
    assert (handover["flag_version"], handover["policy_rule"], handover["purpose"]) == (
        1, "DAI-SCHOOL", "safeguarding")
    assert handover["lawful_basis"] == "6(1)(e) + 9(2)(g) + schedule1-part2-para18"
    assert handover["category"] == "domestic_abuse_incident"
    reads = {(i["disclosed_to"], i["purpose"]) for i in items if i["action"] == "flag.read"}
    # the publisher reading its own flag discloses nothing
    assert reads == {("SCHOOL-A", "safeguarding"), ("MASH-A", "strategy_discussion")}
    assert [i["seq"] for i in items] == sorted(i["seq"] for i in items)
    assert all(i["child_id"] == flag["child_id"] and i["hash"] == event_hash(i) for i in items)


async def test_showing_the_child_record_is_a_disclosure_too(client, world, session):
    """Events as the child view and matching record them; other actions are not disclosures."""
    child = (await activity(client, world))["child_id"]
    for action, agency in (("child.read", "MASH-A"), ("child.search", "MASH-B"),
                           ("identity.merge", "MASH-A")):
        audit.record(session, actor=f"someone at {agency}", actor_agency=agency, action=action,
                     outcome="disclosed", child_id=child, purpose="strategy_discussion")
    session.commit()
    r = await client.get(f"/v1/children/{child}/disclosures", params={"limit": 500},
                         headers=world.auth("auditor"))
    shown = {(i["action"], i["disclosed_to"]) for i in r.json()["items"]
             if i["action"] not in ("delivery.handover", "flag.read")}
    assert shown == {("child.read", "MASH-A"), ("child.search", "MASH-B")}


async def test_disclosures_of_an_unknown_child_is_404(client, world):
    r = await client.get("/v1/children/00000000-0000-0000-0000-000000000000/disclosures",
                         headers=world.auth("auditor"))
    assert r.status_code == 404


# --- verify and checkpoints ----------------------------------------------------------------------

async def test_verify_an_intact_log(client, world, session):
    await activity(client, world)
    r = await client.get("/v1/audit/verify", headers=world.auth("auditor"))
    assert r.status_code == 200, r.text
    body = r.json()
    head = session.exec(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
    assert (body["ok"], body["first_bad_seq"], body["problems"]) == (True, None, [])
    assert (body["events_checked"], body["head_seq"], body["head"]) == (head.seq, head.seq,
                                                                        head.hash)
    assert (body["latest_checkpoint"], body["head_matches_checkpoint"]) == (None, None)


async def test_checkpoint_on_demand_signs_the_head_once(client, world, session):
    await activity(client, world)
    headers = {**world.auth("auditor"), "Idempotency-Key": "cp-1"}
    r = await client.post("/v1/audit/checkpoints", headers=headers)
    assert r.status_code == 201, r.text
    cp = r.json()
    head = session.exec(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
    assert (cp["seq"], cp["hash"]) == (head.seq, head.hash)
    jwks = (await client.get("/.well-known/jwks.json")).json()
    assert cp["kid"] in {k["kid"] for k in jwks["keys"]}
    assert jwt.verify_statement(cp["signature"], keys_from_jwks(jwks))["seq"] == head.seq
    assert (await client.post("/v1/audit/checkpoints", headers=headers)).json() == cp  # replay
    again = await client.post("/v1/audit/checkpoints", headers=world.auth("admin"))
    assert again.json() == cp  # nothing new to sign
    latest = await client.get("/v1/audit/checkpoints/latest", headers=world.auth("auditor"))
    assert latest.json() == cp
    verified = (await client.get("/v1/audit/verify", headers=world.auth("auditor"))).json()
    assert verified["latest_checkpoint"] == cp and verified["head_matches_checkpoint"] is True
    assert verified["signatures_checked"] == 1


async def test_checkpoints_fall_due_by_count_and_by_time(client, world, session, app):
    await activity(client, world)
    cp = checkpoints.write_checkpoint(session, app.state.keyring)
    assert not checkpoints.checkpoint_due(session, cp.at + timedelta(days=1))  # nothing new
    await client.post("/v1/relationships", json=relationship_body("other", NHS[1]),
                      headers=world.auth("HOUSING-A"))
    assert not checkpoints.checkpoint_due(session, cp.at + checkpoints.EVERY / 2)
    assert checkpoints.checkpoint_due(session, cp.at + checkpoints.EVERY)
    last = cp.seq + checkpoints.EVERY_EVENTS - 1
    while session.exec(select(func.max(AuditEvent.seq))).one() < last:
        audit.record(session, actor="test", action="token.issue", outcome="issued")
        audit.append_pending(session)  # appended now, as at a commit
    assert not checkpoints.checkpoint_due(session, cp.at)
    audit.record(session, actor="test", action="token.issue", outcome="issued")
    assert not checkpoints.checkpoint_due(session, cp.at)  # queued, not yet in the log
    audit.append_pending(session)
    assert checkpoints.checkpoint_due(session, cp.at)


async def test_the_delivery_worker_signs_the_head_when_due(client, world, session, app, settings,
                                                           monkeypatch):
    await activity(client, world)
    worker = DeliveryWorker(app.state.session_factory, settings)
    worker.run_once()

    def latest_is_head():
        head = session.exec(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
        latest = session.exec(select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc())).first()
        return latest is not None and (latest.seq, latest.hash) == (head.seq, head.hash)

    assert latest_is_head()
    await client.post("/v1/relationships", json=relationship_body("other", NHS[1]),
                      headers=world.auth("HOUSING-A"))
    monkeypatch.setattr(checkpoints, "EVERY", timedelta(0))
    worker.run_once()
    assert not latest_is_head()  # it looks only every CHECK_SECONDS
    eager = checkpoints.Checkpointer(app.state.session_factory, app.state.keyring, check_seconds=0)
    assert eager.run_once() is not None and latest_is_head()
    assert eager.run_once() is None  # nothing new since


# --- tampering: a fresh database per test, a committing app, a malicious administrator -----------

@dataclass
class Log:
    client: httpx.AsyncClient
    world: object
    engine: sa.Engine
    kind: str
    tmp: Path

    async def verify(self) -> dict:
        r = await self.client.get("/v1/audit/verify", headers=self.world.auth("auditor"))
        assert r.status_code == 200, r.text
        return r.json()

    async def export(self, name: str = "audit.jsonl") -> Path:
        r = await self.client.get("/v1/audit/export", headers=self.world.auth("auditor"))
        assert r.status_code == 200, r.text
        path = self.tmp / name
        path.write_bytes(r.content)
        return path

    async def jwks_file(self) -> Path:
        path = self.tmp / "jwks.json"
        path.write_text((await self.client.get("/.well-known/jwks.json")).text)
        return path

    def head(self) -> int:
        with Session(self.engine) as s:
            return s.exec(select(func.max(AuditEvent.seq))).one()

    def tamper(self, *statements: str) -> None:
        """As an administrator with the database password: triggers off, rows changed."""
        with self.engine.begin() as conn:
            if self.kind == "postgresql":
                conn.exec_driver_sql("ALTER TABLE auditevent DISABLE TRIGGER USER")
                conn.exec_driver_sql("ALTER TABLE auditcheckpoint DISABLE TRIGGER USER")
            else:
                for name in ("auditevent_no_update", "auditevent_no_delete",
                             "auditcheckpoint_no_delete"):
                    conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
            for statement in statements:
                conn.exec_driver_sql(statement)


@pytest.fixture
async def log(db_kind, tmp_path):
    with fresh_database(db_kind, tmp_path) as url:
        upgrade(url)
        engine = make_engine(url)
        settings = Settings(database_url=url, environment="development",
                            policy_dir=REPO_ROOT / "policies", issuer="https://flagshare.test")
        app = create_app(settings, session_factory=lambda: Session(engine, expire_on_commit=False))
        app.state.keyring.ensure_signing_key()
        with Session(engine, expire_on_commit=False) as s:
            world = build_world(s, app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://flagshare.test") as c:
            yield Log(c, world, engine, db_kind, tmp_path)
        engine.dispose()


async def test_empty_log_verifies_and_has_no_head_to_sign(log):
    assert (await log.verify())["ok"] is True and (await log.verify())["events_checked"] == 0
    r = await log.client.post("/v1/audit/checkpoints", headers=log.world.auth("auditor"))
    assert r.status_code == 409
    r = await log.client.get("/v1/audit/checkpoints/latest", headers=log.world.auth("auditor"))
    assert r.status_code == 404


async def test_the_database_refuses_update_and_delete(log):
    await activity(log.client, log.world)
    await log.client.post("/v1/audit/checkpoints", headers=log.world.auth("auditor"))
    statements = ["UPDATE auditevent SET outcome = 'x' WHERE seq = 2",
                  "DELETE FROM auditevent WHERE seq = 2",
                  "UPDATE auditcheckpoint SET hash = 'x'",
                  "DELETE FROM auditcheckpoint"]
    if log.kind == "postgresql":
        statements += ["TRUNCATE auditevent CASCADE", "TRUNCATE auditcheckpoint"]
    for statement in statements:
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with log.engine.begin() as conn:
                conn.exec_driver_sql(statement)
    with Session(log.engine) as s, pytest.raises(sa.exc.DBAPIError, match="append-only"):
        s.delete(s.get(AuditEvent, 3))
        s.commit()
    assert (await log.verify())["ok"] is True


def forged_event(seq: int, prev_hash: str) -> dict:
    event = {"seq": seq, "at": "2026-01-01T00:00:00.000000Z", "actor": "nobody",
             "actor_agency": None, "action": "flag.read", "child_id": None, "flag_id": None,
             "recipient": None, "purpose": None, "reason": None, "lawful_basis": None,
             "policy_rule": None, "policy_version": None, "outcome": "forged",
             "prev_hash": prev_hash}
    return {**event, "hash": event_hash(event)}


def insert_sql(event: dict) -> str:
    def literal(v):
        return "NULL" if v is None else str(v) if isinstance(v, int) else f"'{v}'"
    columns = list(event)
    return (f"INSERT INTO auditevent ({', '.join(columns)}) "
            f"VALUES ({', '.join(literal(event[c]) for c in columns)})")


async def _chain_hash(log: Log, seq: int) -> str:
    with Session(log.engine) as s:
        return s.get(AuditEvent, seq).hash


@pytest.mark.parametrize("attack", ["edit", "delete", "swap", "insert"])
async def test_tampering_is_found_at_the_exact_seq_online_and_offline(log, attack, capsys):
    await activity(log.client, log.world)
    await activity(log.client, log.world)
    head = log.head()
    mid = head // 2
    expected = mid
    if attack == "edit":
        log.tamper(f"UPDATE auditevent SET recipient = 'ROGUE-AGENCY' WHERE seq = {mid}")
    elif attack == "delete":
        log.tamper(f"DELETE FROM auditevent WHERE seq = {mid}")
    elif attack == "swap":
        log.tamper(f"UPDATE auditevent SET seq = -1 WHERE seq = {mid}",
                   f"UPDATE auditevent SET seq = {mid} WHERE seq = {mid + 1}",
                   f"UPDATE auditevent SET seq = {mid + 1} WHERE seq = -1")
    else:  # a well-forged event slipped in: itself consistent, so the break shows at the next
        forged = forged_event(mid, await _chain_hash(log, mid - 1))
        log.tamper(f"UPDATE auditevent SET seq = -seq WHERE seq >= {mid}",
                   "UPDATE auditevent SET seq = 1 - seq WHERE seq < 0", insert_sql(forged))
        expected = mid + 1
    online = await log.verify()
    assert (online["ok"], online["first_bad_seq"]) == (False, expected), online
    assert online["problems"][0]["seq"] == expected

    export = await log.export()
    offline = verify_export(export, keys_from_jwks(json.loads((await log.jwks_file()).read_text())))
    assert (offline.ok, offline.first_bad_seq) == (False, expected)
    assert cli.main(["audit", "verify", str(export), "--jwks", str(await log.jwks_file())]) == 1
    assert f"TAMPERED: first bad seq {expected}" in capsys.readouterr().out


async def test_a_rewritten_chain_is_caught_by_the_checkpoint_signed_before(log, capsys):
    """Editing an event and recomputing every hash after it leaves a consistent chain; only a
    checkpoint signed earlier shows it, at the checkpoint's seq."""
    await activity(log.client, log.world)
    held = (await log.client.post("/v1/audit/checkpoints",
                                  headers=log.world.auth("auditor"))).json()
    held_file = log.tmp / "held.json"
    held_file.write_text(json.dumps(held))
    await activity(log.client, log.world)
    with Session(log.engine) as s:
        events = [e.model_dump() for e in s.exec(select(AuditEvent).order_by(AuditEvent.seq))]
    mid = held["seq"] // 2
    statements, prev = [], events[mid - 2]["hash"]
    for event in events[mid - 1:]:
        event = {**event, "at": format_time(event["at"]), "prev_hash": prev}
        if event["seq"] == mid:
            event["recipient"] = "ROGUE-AGENCY"
        event["hash"] = event_hash(event)
        statements.append(f"UPDATE auditevent SET recipient = "
                          f"{'NULL' if event['recipient'] is None else repr(event['recipient'])},"
                          f" prev_hash = '{prev}', hash = '{event['hash']}' "
                          f"WHERE seq = {event['seq']}")
        prev = event["hash"]
    # hashes are unique: park the old ones first
    log.tamper("UPDATE auditevent SET hash = 'old-' || seq WHERE seq >= " + str(mid), *statements)

    online = await log.verify()
    assert (online["ok"], online["first_bad_seq"]) == (False, held["seq"]), online
    assert online["head_matches_checkpoint"] is False

    export = await log.export()  # its own new checkpoint signs the rewritten head
    assert verify_export(export).ok
    jwks = await log.jwks_file()
    code = cli.main(["audit", "verify", str(export), "--jwks", str(jwks), "--checkpoint",
                     str(held_file)])
    assert code == 1
    assert f"TAMPERED: first bad seq {held['seq']}" in capsys.readouterr().out


async def test_a_truncated_tail_is_caught_by_a_signed_checkpoint(log, capsys):
    await activity(log.client, log.world)
    export = await log.export()
    jwks = await log.jwks_file()
    lines = export.read_text().splitlines(keepends=True)
    cut = log.tmp / "cut.jsonl"
    cut.write_text("".join(lines[:-4] + lines[-1:]))  # last three events gone, checkpoint kept
    last_kept = json.loads(lines[-5])["seq"]
    report = verify_export(cut, keys_from_jwks(json.loads(jwks.read_text())))
    assert (report.ok, report.first_bad_seq) == (False, last_kept + 1)
    assert "tail was cut off" in report.findings[0].problem
    assert cli.main(["audit", "verify", str(cut), "--jwks", str(jwks)]) == 1
    assert f"first bad seq {last_kept + 1}" in capsys.readouterr().out

    # In the database too, checkpoints and all: then only the checkpoint the auditor kept shows it.
    held = log.tmp / "held.jsonl"
    held.write_text(lines[-1])
    keep = last_kept
    log.tamper(f"DELETE FROM auditevent WHERE seq > {keep}", "DELETE FROM auditcheckpoint")
    assert (await log.verify())["ok"] is True  # nothing left to contradict it
    shorter = await log.export("shorter.jsonl")
    assert cli.main(["audit", "verify", str(shorter), "--jwks", str(jwks)]) == 0
    capsys.readouterr()
    assert cli.main(["audit", "verify", str(shorter), "--jwks", str(jwks),
                     "--checkpoint", str(held)]) == 1
    # the log now ends at keep + 1 (the export's own read), short of the kept checkpoint
    assert f"first bad seq {keep + 2}" in capsys.readouterr().out


# --- the offline verifier's own checks -----------------------------------------------------------

async def test_a_checkpoint_must_be_signed_by_the_service(log, tmp_path, capsys):
    await activity(log.client, log.world)
    export = await log.export()
    jwks = await log.jwks_file()
    lines = export.read_text().splitlines(keepends=True)
    cp = json.loads(lines[-1])["checkpoint"]

    edited = tmp_path / "edited.jsonl"  # the stated hash no longer what was signed
    edited.write_text("".join(lines[:-1]) + json.dumps({"checkpoint": {**cp, "seq": 1}}) + "\n")
    report = verify_export(edited)  # caught even without the public keys
    assert not report.ok and "differs from the stated" in report.findings[-1].problem
    broken = tmp_path / "broken.jsonl"
    broken.write_text("".join(lines[:-1]) + json.dumps({"checkpoint": {"seq": "x"}}) + "\n")
    assert cli.main(["audit", "verify", str(broken)]) == 1
    assert "malformed checkpoint" in capsys.readouterr().out

    pem, public = jwt.new_rsa_key()  # someone else's key, claiming the service's kid
    forged = jwt.sign(jwt.read_statement(cp["signature"])[1], pem, cp["kid"])
    forged_file = tmp_path / "forged.jsonl"
    forged_file.write_text("".join(lines[:-1])
                           + json.dumps({"checkpoint": {**cp, "signature": forged}}) + "\n")
    assert verify_export(forged_file).ok  # without keys the signature cannot be judged...
    assert cli.main(["audit", "verify", str(forged_file)]) == 0
    assert "signatures NOT checked" in capsys.readouterr().out
    assert cli.main(["audit", "verify", str(forged_file), "--jwks", str(jwks)]) == 1  # ...with them
    assert "signature does not verify" in capsys.readouterr().out
    other_jwks = tmp_path / "other.json"
    other_jwks.write_text(json.dumps({"keys": [{**public, "kid": "someone-else"}]}))
    assert cli.main(["audit", "verify", str(export), "--jwks", str(other_jwks)]) == 1
    assert "unknown signing key" in capsys.readouterr().out


async def test_lines_swapped_or_garbled_in_the_file(log, tmp_path):
    await activity(log.client, log.world)
    lines = (await log.export()).read_text().splitlines(keepends=True)
    swapped = tmp_path / "swapped.jsonl"
    swapped.write_text("".join(lines[:4] + [lines[5], lines[4]] + lines[6:]))
    assert verify_export(swapped).first_bad_seq == 5
    garbled = tmp_path / "garbled.jsonl"
    garbled.write_text("".join(lines[:6] + ["not json\n"] + lines[7:]))
    report = verify_export(garbled)
    assert report.first_bad_seq == 7 and "not an audit event" in report.findings[0].problem


def test_usage_errors_exit_2(tmp_path, capsys):
    export = tmp_path / "empty.jsonl"
    export.write_text("")
    assert cli.main(["audit", "verify", str(tmp_path / "missing.jsonl")]) == 2
    (tmp_path / "bad.json").write_text("{}")
    assert cli.main(["audit", "verify", str(export), "--jwks", str(tmp_path / "bad.json")]) == 2
    assert cli.main(["audit", "verify", str(export),
                     "--checkpoint", str(tmp_path / "bad.json")]) == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(["audit", "verify"])
    assert exc.value.code == 2
    assert cli.main(["audit", "verify", str(export)]) == 0  # an empty log is intact
    assert "events checked: 0" in capsys.readouterr().out


def test_checkpoint_parse_rejects_what_is_not_one():
    with pytest.raises(ValueError):
        Checkpoint.parse({"seq": "1", "hash": "h", "at": "t", "kid": "k", "signature": "s"})


# --- the offline verifier hashes canonical export lines as they stand ----------------------------

def _chain(reasons: list[str | None]) -> list[dict]:
    """A valid chain whose reasons exercise JSON escaping (quotes, backslashes, control and
    non-ASCII characters, null)."""
    events, prev = [], audit.GENESIS_HASH
    for seq, reason in enumerate(reasons, 1):
        event = {"seq": seq, "at": "2026-11-24T10:12:05.118204Z", "actor": f"user{seq}",
                 "actor_agency": "AG-1" if seq % 2 else None, "action": "flag.read",
                 "child_id": "c-1", "flag_id": None, "recipient": "AG-2", "purpose": "safeguarding",
                 "reason": reason, "lawful_basis": "6(1)(e)", "policy_rule": "R",
                 "policy_version": "v1", "outcome": "shared", "prev_hash": prev}
        event["hash"] = prev = event_hash(event)
        events.append(event)
    return events


REASONS = ["Zoë was frightened", None, 'said "stop"', "C:\\path", "tab\there\nnewline",
           "bell\x07", "line\u2028separator", "plain", "emoji 😀", "last"]


def _full_parse(path: Path):
    """The verdict from parsing every line and rebuilding its canonical form (the way every
    line was verified before export lines were hashed as they stand)."""
    events = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    events.append(json.loads(line))
                except ValueError:
                    events.append(None)
    return verify_events(events)


def _forged(line: str) -> str:
    """The line with its hash recomputed over its own (not canonical) bytes."""
    body = line[:line.rindex(',"hash":')] + "}"
    return body[:-1] + f',"hash":"{hashlib.sha256(body.encode()).hexdigest()}"}}\n'


def test_an_export_line_is_the_canonical_form_then_the_hash():
    for event in _chain(REASONS):
        line = export_line(event)
        assert json.loads(line) == event
        assert line.encode().startswith(audit.canonical(event)[:-1] + b',"hash":')


CHANGES = {
    "none": lambda line, event: line,
    # spaces, escaped non-ASCII, keys in column order: the same content, parsed in full
    "reformatted": lambda line, event: json.dumps({k: event[k] for k in FIELDS}) + "\n",
    "crlf": lambda line, event: line.replace("\n", "\r\n"),
    "edited": lambda line, event: line.replace('"outcome":"shared"', '"outcome":"withheld"'),
    # the hash recomputed over bytes that are not the canonical form
    "forged spaces": lambda line, event: _forged(line.replace('"actor":', '"actor": ')),
    "forged escape": lambda line, event: _forged(line.replace('"actor":"u', '"actor":"\\u0075')),
    "forged control character": lambda line, event: _forged(
        line.replace('"actor":"u', '"actor":"\x01u')),
    "forged duplicate key": lambda line, event: _forged(
        line.replace('"actor":', '"actor":"x","actor":')),
    # a raw line break inside a string: two lines, neither of them JSON
    "forged line break": lambda line, event: _forged(line.replace('"actor":"u', '"actor":"\nu')),
    "line break in the hash": lambda line, event: line.replace('"hash":"', '"hash":"\n'),
}


@pytest.mark.parametrize("reasons", [REASONS, [f"plain {n}" for n in range(10)]],
                         ids=["escapes", "plain"])  # plain: read a block at a time
@pytest.mark.parametrize("change", [*CHANGES, "swapped", "deleted"])
def test_export_lines_get_the_verdict_a_full_parse_gives(tmp_path, reasons, change):
    events = _chain(reasons)
    lines = [export_line(e) for e in events]
    if change == "swapped":
        lines[3], lines[4] = lines[4], lines[3]
    elif change == "deleted":
        del lines[3]
    else:
        lines[3] = CHANGES[change](lines[3], events[3])
    export = tmp_path / "audit.jsonl"
    export.write_text("".join(lines), encoding="utf-8", newline="")
    report = verify_export(export)
    assert report.as_dict() == _full_parse(export).as_dict()
    intact = change in ("none", "reformatted", "crlf")
    assert report.first_bad_seq == (None if intact else 4)
    assert report.events_checked == len(lines) + ("line break" in change)


def _appended(session) -> list[str]:
    return session.exec(select(AuditEvent.outcome).where(AuditEvent.actor == "queue-test")
                        .order_by(AuditEvent.seq)).all()


def test_events_are_appended_at_commit_and_a_rolled_back_savepoint_takes_its_own(session):
    audit.record(session, actor="queue-test", action="token.issue", outcome="kept-before")
    with pytest.raises(RuntimeError):
        with session.begin_nested():
            audit.record(session, actor="queue-test", action="token.issue", outcome="dropped")
            raise RuntimeError("the savepoint's work fails")
    with session.begin_nested():  # released, not rolled back: what it queued stays
        audit.record(session, actor="queue-test", action="token.issue", outcome="kept-inside")
    assert _appended(session) == []  # queued, not yet in the log
    session.commit()
    assert _appended(session) == ["kept-before", "kept-inside"]


def test_after_an_early_append_a_rolled_back_savepoint_still_takes_what_it_queued(session):
    """The CSV export appends its own event at once; what a savepoint queues after that is
    still dropped with the savepoint."""
    with pytest.raises(RuntimeError):
        with session.begin_nested():
            audit.record(session, actor="queue-test", action="audit.read", outcome="early")
            assert audit.append_pending(session).outcome == "early"
            audit.record(session, actor="queue-test", action="token.issue", outcome="later")
            raise RuntimeError("the savepoint's work fails")
    audit.record(session, actor="queue-test", action="token.issue", outcome="after")
    session.commit()
    assert _appended(session) == ["after"]
