"""The adapters end to end: real `flagshare serve`, real `flagshare-adapter` processes.

Each agency pushes its sample export through the CLI; children's social care takes what is
forwarded through the adapter's webhook receiver, the MASH through `follow-feed`; a re-run
sends nothing new; a transfer-out row reaches the receiving area and its accept row comes
back; the receiver refuses replayed and forged deliveries. Loopback only.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from adapters.inbox import Inbox
from tests.conftest import fresh_database
from tests.processes import free_port, running_server, stop, wait_until

ADAPTER = str(Path(sys.executable).parent / "flagshare-adapter")
SAMPLES = Path(__file__).parent.parent / "adapters" / "samples"
AREA, OTHER_AREA = "E08000025", "E08000026"  # Birmingham, Coventry
AGENCIES = {"P81001": ("gp", AREA), "BWC-MAT": ("midwifery", AREA), "WMP": ("police", AREA),
            "BCT-CSC": ("childrens_social_care", AREA), "BHAM-MASH": ("mash", AREA),
            "COV-CSC": ("childrens_social_care", OTHER_AREA)}
# (adapter, publishing agency, sample, records in it)
PUSHES = [("gp", "P81001", "gp-flags.json", 5),
          ("midwifery", "BWC-MAT", "midwifery-bookings.csv", 6),
          ("police", "WMP", "police-incidents.csv", 5),
          ("police", "WMP", "police-incidents.json", 2),
          ("social-care", "BCT-CSC", "social-care-cin.csv", 8)]
FLAG_EVENTS = ("flag.shared", "flag.updated")


@pytest.fixture
def server(db_kind, tmp_path):
    with fresh_database(db_kind, tmp_path) as url, running_server(url, tmp_path) as srv:
        for agency, (kind, area) in AGENCIES.items():
            srv.add_agency(agency, kind, area)
        yield srv


def adapter(server, agency: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "FLAGSHARE_API_URL": server.url, "FLAGSHARE_CLIENT_ID": agency,
           "FLAGSHARE_CLIENT_SECRET": server.secrets[agency]}
    return subprocess.run([ADAPTER, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def push(server, agency: str, kind: str, path: Path, tmp: Path,
         state: str | None = None) -> subprocess.CompletedProcess:
    return adapter(server, agency, kind, "push", str(path),
                   "--state", str(tmp / (state or f"{agency}.state.json")),
                   "--rejected", str(tmp / f"{agency}-{path.stem}.rejected{path.suffix}"),
                   cwd=tmp)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@contextmanager
def receiving(server, http: httpx.Client, agency: str, out: Path, tmp: Path) -> Iterator[str]:
    """`flagshare-adapter receive` for the agency, subscribed as its webhook: (URL, secret)."""
    secret, port = new_secret(), free_port()
    env = {**os.environ, "FLAGSHARE_API_URL": server.url, "FLAGSHARE_CLIENT_ID": agency,
           "FLAGSHARE_CLIENT_SECRET": server.secrets[agency]}
    log_path = tmp / f"receive-{agency}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [ADAPTER, "receive", "--port", str(port), "--secret", secret, "--out", str(out)],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    try:
        wait_until(lambda: _listening(port, process, log_path), 30, "the receiver to listen")
        url = f"http://127.0.0.1:{port}/"
        r = http.post("/v1/subscriptions", headers=server.token(http, agency),
                      json={"delivery": {"mode": "webhook", "url": url, "secret": secret}})
        assert r.status_code == 201, r.text
        yield url, secret
    finally:
        stop(process)


def _listening(port: int, process: subprocess.Popen, log: Path) -> bool:
    if process.poll() is not None:
        pytest.fail(f"the receiver exited:\n{log.read_text()}")
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def flag_ids(directory: Path) -> set[str]:
    return {e["event"]["data"]["flag"]["id"] for e in Inbox(directory).events()
            if e["event"]["type"] in FLAG_EVENTS}


def published_flags(tmp: Path, agency: str) -> set[str]:
    state = json.loads((tmp / f"{agency}.state.json").read_text())
    return {entry["flag_id"] for entry in state["flags"].values()}


def deliveries_to(server, http, publisher: str, flag_id: str, recipient: str) -> list[dict]:
    items = http.get(f"/v1/flags/{flag_id}/deliveries",
                     headers=server.token(http, publisher)).json()["items"]
    return [d for d in items if d["recipient"] == recipient]


def test_samples_reach_recipients_by_webhook_and_feed_and_a_rerun_sends_nothing(
        server, tmp_path):
    csc_inbox, mash_inbox = tmp_path / "csc-inbox", tmp_path / "mash-inbox"
    with httpx.Client(base_url=server.url, timeout=30) as http, \
            receiving(server, http, "BCT-CSC", csc_inbox, tmp_path):
        for kind, agency, sample, count in PUSHES:
            out = push(server, agency, kind, SAMPLES / sample, tmp_path)
            assert out.returncode == 0, out.stdout + out.stderr
            assert f"sent {count}, unchanged 0, rejected 0" in out.stdout

        # Who should have each flag is the policy's decision, read back from the service.
        publisher = {flag: agency for agency in ("P81001", "BWC-MAT", "WMP", "BCT-CSC")
                     for flag in published_flags(tmp_path, agency)}
        shared = {flag: http.get(f"/v1/flags/{flag}", headers=server.token(http, agency))
                  .json()["shared_with"] for flag, agency in publisher.items()}
        to_csc = {f for f, recipients in shared.items() if "BCT-CSC" in recipients}
        to_mash = {f for f, recipients in shared.items() if "BHAM-MASH" in recipients}
        assert {publisher[f] for f in to_csc} == {"P81001", "BWC-MAT", "WMP"}
        assert {publisher[f] for f in to_mash} == {"P81001", "BWC-MAT", "WMP", "BCT-CSC"}

        wait_until(lambda: to_csc <= flag_ids(csc_inbox), 90, "webhook deliveries to CSC")
        feed = adapter(server, "BHAM-MASH", "follow-feed", "--out", str(mash_inbox), "--once",
                       cwd=tmp_path)
        assert feed.returncode == 0, feed.stderr
        assert flag_ids(mash_inbox) == to_mash
        assert {e["via"] for e in Inbox(mash_inbox).events()} == {"feed"}
        assert {e["via"] for e in Inbox(csc_inbox).events()} == {"webhook"}

        # Both recipients acknowledged what they were handed.
        def acknowledged() -> bool:
            return all(d["status"] == "received"
                       for flag in to_csc
                       for d in deliveries_to(server, http, publisher[flag], flag, "BCT-CSC"))
        wait_until(acknowledged, 60, "the receiver's acknowledgements")
        sample_flag = sorted(to_mash)[0]
        assert {d["status"] for d in deliveries_to(
            server, http, publisher[sample_flag], sample_flag, "BHAM-MASH")} == {"received"}

        # A re-run sends nothing new: with the state file, and from a machine without it.
        handed_to_csc = len(Inbox(csc_inbox).events())
        for kind, agency, sample, count in PUSHES:
            for state in (None, f"{agency}.fresh.json"):
                again = push(server, agency, kind, SAMPLES / sample, tmp_path, state)
                assert again.returncode == 0, again.stderr
                assert f"sent 0, unchanged {count}, rejected 0" in again.stdout
        again = adapter(server, "BHAM-MASH", "follow-feed", "--out", str(mash_inbox), "--once",
                        cwd=tmp_path)
        assert "0 new deliveries" in again.stdout
        time.sleep(1)  # the embedded worker polls every 0.25 s
        assert len(Inbox(csc_inbox).events()) == handed_to_csc


def test_closing_rows_close_their_flags(server, tmp_path):
    amelia_plan = "social-care:C100231:child_protection_plan:2026-09-14"
    jade_plan = "social-care:C100388:child_in_need:2026-03-02"

    def flag(ref: str) -> dict:
        state = json.loads((tmp_path / "BCT-CSC.state.json").read_text())["flags"]
        with httpx.Client(base_url=server.url, timeout=30) as http:
            return http.get(f"/v1/flags/{state[ref]['flag_id']}",
                            headers=server.token(http, "BCT-CSC")).json()

    out = push(server, "BCT-CSC", "social-care", SAMPLES / "social-care-cin.csv", tmp_path)
    assert out.returncode == 0, out.stderr
    ended = flag(jade_plan)
    assert (ended["status"], ended["version"], ended["period"]["end"]) == (
        "inactive", 2, "2026-10-30")
    current = flag(amelia_plan)
    assert (current["status"], current["version"]) == ("active", 1)

    # The case system records the end of Amelia's plan: the next export closes the flag.
    export = tmp_path / "next-export.csv"
    with open(SAMPLES / "social-care-cin.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = [{**r, "CPPendDate": "2026-11-20"} if r["LAchildID"] == "C100231" else r
                for r in reader]
    with open(export, "w", newline="") as f:
        writer = csv.DictWriter(f, reader.fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    out = push(server, "BCT-CSC", "social-care", export, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "sent 1, unchanged 7, rejected 0" in out.stdout
    closed = flag(amelia_plan)
    assert (closed["status"], closed["version"], closed["period"]["end"]) == (
        "inactive", 2, "2026-11-20")
    assert closed["id"] == current["id"]


def test_an_active_gp_flag_keeps_its_planned_end_and_a_new_one_amends_it(server, tmp_path):
    """A FHIR Flag's period.end on an active flag is when it is planned to end: it was dropped,
    so recipients read an open-ended flag."""
    bundle = json.loads((SAMPLES / "gp-flags.json").read_text())
    (wnb,) = [e["resource"] for e in bundle["entry"] if e["resource"]["id"] == "flag-jade-wnb"]

    def pushed(version: str, end: str) -> dict:
        source = tmp_path / f"wnb-v{version}.json"
        source.write_text(json.dumps({**wnb, "meta": {"versionId": version},
                                      "period": {"start": "2026-06-01", "end": end}}))
        out = push(server, "P81001", "gp", source, tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
        state = json.loads((tmp_path / "P81001.state.json").read_text())["flags"]
        with httpx.Client(base_url=server.url, timeout=30) as http:
            return http.get(f"/v1/flags/{state['gp:Flag/flag-jade-wnb']['flag_id']}",
                            headers=server.token(http, "P81001")).json()

    first = pushed("3", "2027-06-01")
    assert (first["status"], first["version"], first["period"]) == (
        "active", 1, {"start": "2026-06-01", "end": "2027-06-01"})
    amended = pushed("4", "2027-03-01")
    assert (amended["status"], amended["version"], amended["period"]) == (
        "active", 2, {"start": "2026-06-01", "end": "2027-03-01"})


def test_a_new_version_amends_its_flag_and_a_lost_state_file_is_explained(server, tmp_path):
    assert push(server, "WMP", "police", SAMPLES / "police-incidents.json",
                tmp_path).returncode == 0
    incidents = json.loads((SAMPLES / "police-incidents.json").read_text())
    incidents["incidents"][1].update(version=2, risk_level="high")  # Kai's risk re-graded
    revised = tmp_path / "revised.json"
    revised.write_text(json.dumps(incidents))

    out = push(server, "WMP", "police", revised, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "sent 1, unchanged 1, rejected 0" in out.stdout
    state = json.loads((tmp_path / "WMP.state.json").read_text())["flags"]
    kai = state["police:WMP-2026-111501:9990010420:missing_episode"]
    assert kai["stage"] == "v2"
    with httpx.Client(base_url=server.url, timeout=30) as http:
        flag = http.get(f"/v1/flags/{kai['flag_id']}", headers=server.token(http, "WMP")).json()
    assert flag["version"] == 2 and "risk to Kai while missing as high" in flag["summary"]

    # Without the state file the change cannot be told from a new flag: refused, explained.
    lost = push(server, "WMP", "police", revised, tmp_path, state="elsewhere.json")
    assert lost.returncode == 1 and "sent 0, unchanged 1, rejected 1" in lost.stdout
    assert "record 2: rejected: HTTP 409" in lost.stderr
    assert "keep the adapter's state file (--state)" in lost.stderr


def test_transfer_out_reaches_the_receiving_area_and_its_pickup_comes_back(server, tmp_path):
    csc_inbox, coventry_inbox = tmp_path / "csc-inbox", tmp_path / "coventry-inbox"
    with httpx.Client(base_url=server.url, timeout=30) as http, \
            receiving(server, http, "BCT-CSC", csc_inbox, tmp_path):
        out = push(server, "BCT-CSC", "social-care", SAMPLES / "social-care-cin.csv", tmp_path)
        assert out.returncode == 0, out.stderr

        feed = adapter(server, "COV-CSC", "follow-feed", "--out", str(coventry_inbox), "--once",
                       cwd=tmp_path)
        assert feed.returncode == 0, feed.stderr
        (created,) = [e["event"] for e in Inbox(coventry_inbox).events()
                      if e["event"]["type"] == "transfer.created"]
        data = created["data"]
        assert (data["from_area"], data["to_area"], data["plan"]) == (
            AREA, OTHER_AREA, "child_protection_plan")
        assert data["child"]["nhs_number"] == "9990011125"

        # Coventry's case system records the pickup; its adapter sends the accept row.
        accept = tmp_path / "transfer-in.csv"
        accept.write_text(f"RowType,FlagshareTransferID\ntransfer_in_accept,"
                          f"{data['transfer_id']}\n")
        picked = push(server, "COV-CSC", "social-care", accept, tmp_path)
        assert picked.returncode == 0, picked.stderr
        assert "sent 1, unchanged 0, rejected 0" in picked.stdout

        def accepted() -> list[dict]:
            return [e["event"] for e in Inbox(csc_inbox).events()
                    if e["event"]["type"] == "transfer.accepted"]
        wait_until(accepted, 60, "transfer.accepted at the outgoing area")
        (event,) = accepted()
        assert event["data"]["transfer_id"] == data["transfer_id"]
        assert event["data"]["status"] == "picked_up"

        again = push(server, "COV-CSC", "social-care", accept, tmp_path)
        assert "sent 0, unchanged 1, rejected 0" in again.stdout


def test_receiver_refuses_replayed_and_forged_deliveries(server, tmp_path):
    inbox = tmp_path / "csc-inbox"
    with httpx.Client(base_url=server.url, timeout=30) as http, \
            receiving(server, http, "BCT-CSC", inbox, tmp_path) as (url, secret):
        out = push(server, "WMP", "police", SAMPLES / "police-incidents.json", tmp_path)
        assert out.returncode == 0, out.stderr
        wait_until(lambda: Inbox(inbox).events(), 60, "a real delivery")
        real = Inbox(inbox).events()[0]
        delivery_id = real["delivery_id"]
        body = json.dumps(real["event"], separators=(",", ":"), sort_keys=True)

        def handed_over() -> list[str]:
            return [e["delivery_id"] for e in Inbox(inbox).events()]

        def send(msg_id: str, when: datetime, signer: Webhook, content: str = body):
            return httpx.post(url, content=content.encode(), headers={
                "content-type": "application/json", "webhook-id": msg_id,
                "webhook-timestamp": str(int(when.timestamp())),
                "webhook-signature": signer.sign(msg_id, when, body)})

        now = datetime.now(timezone.utc)
        right, wrong = Webhook(secret), Webhook(new_secret())
        # A captured delivery replayed ten minutes later: genuine signature, old timestamp.
        assert send(delivery_id, now - timedelta(minutes=10), right).status_code == 401
        assert send("msg_forged", now, wrong).status_code == 401  # not signed with the secret
        tampered = body.replace('"flag.shared"', '"flag.updated"')
        assert send(delivery_id, now, right, tampered).status_code == 401  # body altered
        assert "msg_forged" not in handed_over()
        assert handed_over().count(delivery_id) == 1
        # flagshare's own retry of a delivery already handed over: acknowledged, not repeated.
        assert send(delivery_id, now, right).status_code == 204
        assert handed_over().count(delivery_id) == 1
    log = (tmp_path / "receive-BCT-CSC.log").read_text()
    assert "Message timestamp too old" in log and "No matching signature found" in log


def test_bad_rows_are_reported_with_reasons_and_the_rest_still_sent(server, tmp_path):
    out = push(server, "WMP", "police", SAMPLES / "police-incidents-malformed.csv", tmp_path)
    assert out.returncode == 1
    assert "sent 1, unchanged 0, rejected 4" in out.stdout
    for row in (2, 3, 4, 5):
        assert f"row {row}: rejected: " in out.stderr
    rejected_file = tmp_path / "WMP-police-incidents-malformed.rejected.csv"
    with open(rejected_file, newline="") as f:
        rejected = list(csv.DictReader(f))
    assert [r["incident_ref"] for r in rejected] == [
        "WMP-2026-120001", "WMP-2026-120002", "WMP-2026-120003", "WMP-2026-120004"]
    assert "check digit" in rejected[0]["rejected_reason"]

    # Fix a row in the rejected file and push that file: the fixed row goes, the rest wait.
    rejected[0]["child_nhs_number"] = "9990013012"
    with open(rejected_file, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rejected[0]))
        writer.writeheader()
        writer.writerows(rejected)
    fixed = push(server, "WMP", "police", rejected_file, tmp_path)
    assert fixed.returncode == 1 and "sent 1, unchanged 0, rejected 3" in fixed.stdout

    # Reasons only the API can give come back in its own words.
    csc = push(server, "BCT-CSC", "social-care", SAMPLES / "social-care-cin-malformed.csv",
               tmp_path)
    assert csc.returncode == 1
    (line,) = [x for x in csc.stderr.splitlines() if x.startswith("row 6: ")]
    assert "HTTP 422" in line and "E06999999" in line
    refused = push(server, "BWC-MAT", "police", SAMPLES / "police-incidents.json", tmp_path)
    assert refused.returncode == 1 and "rejected 2" in refused.stdout
    assert "HTTP 403" in refused.stderr and "[policy rule DAI-PUB]" in refused.stderr


def test_bad_credentials_are_a_connection_error(server, tmp_path):
    env = {**os.environ, "FLAGSHARE_API_URL": server.url, "FLAGSHARE_CLIENT_ID": "WMP",
           "FLAGSHARE_CLIENT_SECRET": "not-the-secret"}
    out = subprocess.run([ADAPTER, "police", "push", str(SAMPLES / "police-incidents.csv")],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "refused the agency's credentials" in out.stderr
    assert not (tmp_path / "flagshare-adapter-state.json").exists()
