"""Adapter mappers, the shared client and the inbox, from real-shaped inputs.

Mappers are pure, so they are called directly on the shipped samples, on deliberately
malformed rows, and on the official HL7 FHIR R4 Flag examples. The client is exercised
against a scripted HTTP peer on loopback (the network, not our server, is what it stands in
for); the end-to-end tests run it against the real service.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from adapters import gp, midwifery, police, social_care
from adapters.client import ApiUnavailable, FlagshareClient
from adapters.inbox import Inbox
from adapters.push import patch_body
from adapters.receiver import WebhookReceiver
from adapters.records import Call, FlagPart, RecordError, idempotency_key
from adapters.sources import SourceError, read_csv
from tests.processes import free_port

SAMPLES = Path(__file__).parent.parent / "adapters" / "samples"
FHIR = Path(__file__).parent / "fixtures" / "fhir"
ADAPTER = str(Path(sys.executable).parent / "flagshare-adapter")


def rows(name: str) -> list[dict]:
    return [r.data for r in read_csv(SAMPLES / name)[1]]


def errors_of(call, *args) -> dict[str, str]:
    with pytest.raises(RecordError) as caught:
        call(*args)
    return dict(caught.value.errors)


def flags(parts) -> list[FlagPart]:
    return [p for p in parts if isinstance(p, FlagPart)]


# --- police ----------------------------------------------------------------------------------

def test_police_domestic_abuse_row_gives_a_flag_per_child_and_one_for_the_named_adult():
    parts = police.map_row(rows("police-incidents.csv")[0])
    dai, hmr = flags(parts)
    assert dai.create["category"] == "domestic_abuse_incident"
    assert dai.create["severity"] == "high"
    assert dai.create["subject"]["nhs_number"] == "9990010005"
    assert dai.create["occurred_at"] == "2026-11-21T22:40:00+00:00"
    summary = dai.create["summary"]
    assert "Amelia's home in Ladywood on 21 November 2026 at 22:40" in summary
    assert "high" in summary and "DASH" not in summary
    assert dai.create["related_people"] == [{
        "role": "alleged_perpetrator", "given_name": "Liam", "family_name": "Carter",
        "birth_date": "1994-05-20", "relationship": "mother's partner"}]
    assert hmr.create["category"] == "household_member_risk"
    assert hmr.create["summary"].startswith("Liam Carter, Amelia's mother's partner,")
    assert dai.ref != hmr.ref and dai.ref.startswith("police:WMP-2026-110421:9990010005")


def test_police_times_are_told_in_london_time():
    row = {**rows("police-incidents.csv")[0], "occurred_at": "2026-07-01T21:30:00Z"}
    assert "1 July 2026 at 22:30" in flags(police.map_row(row))[0].create["summary"]


def test_police_child_without_nhs_number_is_named_by_local_id():
    (dai,) = flags(police.map_row(rows("police-incidents.csv")[2]))
    assert dai.create["subject"] == {"local_id": "WMP-N-88231", "given_name": "Oliver",
                                     "family_name": "Nowak", "birth_date": "2015-11-30"}
    assert dai.create["severity"] == "medium"
    assert "related_people" not in dai.create


def test_police_missing_episode_and_an_adult_without_risk():
    (missing,) = flags(police.map_row(rows("police-incidents.csv")[3]))
    assert missing.create["category"] == "missing_episode"
    assert "Jade was reported missing" in missing.create["summary"]
    (dai,) = flags(police.map_row(rows("police-incidents.csv")[4]))
    assert dai.create["severity"] == "low"  # standard risk
    assert dai.create["related_people"][0]["role"] == "household_member"


def test_police_json_incident_flags_every_child():
    incidents = json.loads((SAMPLES / "police-incidents.json").read_text())["incidents"]
    parts = flags(police.map_incident(incidents[0]))
    assert [(p.create["subject"]["given_name"], p.create["category"]) for p in parts] == [
        ("Mia", "domestic_abuse_incident"), ("Mia", "household_member_risk"),
        ("Leo", "domestic_abuse_incident"), ("Leo", "household_member_risk")]
    assert flags(police.map_incident(incidents[1]))[0].create["category"] == "missing_episode"


def test_police_malformed_rows_name_each_bad_column():
    bad = rows("police-incidents-malformed.csv")
    assert "check digit" in errors_of(police.map_row, bad[0])["child_nhs_number"]
    assert "YYYY-MM-DD" not in errors_of(police.map_row, bad[1])["occurred_at"]
    assert "'21/11/2026 22:40' is not a date and time" in \
        errors_of(police.map_row, bad[1])["occurred_at"]
    assert "unknown incident type 'BURGLARY'" in errors_of(police.map_row, bad[2])[
        "incident_type"]
    assert "local id with family name and birth date" in \
        errors_of(police.map_row, bad[3])["child_nhs_number"]
    assert flags(police.map_row(bad[4]))  # the good row among them maps


def test_police_missing_column_is_named():
    (row,) = rows("police-incidents-missing-column.csv")
    assert errors_of(police.map_row, row) == {"risk_level": "missing (no such column)"}


def test_police_json_errors_name_the_field_path():
    incident = {"incident_ref": "X1", "occurred_at": "2026-11-21T22:40:00+00:00",
                "incident_type": "DA", "risk_level": "high",
                "children": [{"nhs_number": "9990010005"}, {"nhs_number": "12345"}],
                "named_adult": {"risk": "DA_PERPETRATOR"}}
    errors = errors_of(police.map_incident, incident)
    assert "not an NHS number" in errors["children[2].nhs_number"]
    assert "needs a name or an NHS number" in errors["named_adult.family_name"]
    assert "children[1].nhs_number" not in errors
    assert errors_of(police.map_incident, ["not", "an", "object"]) == {
        "incident": "is not a JSON object"}


# --- midwifery -------------------------------------------------------------------------------

def test_midwifery_booking_names_the_unborn_child_the_mother_and_partner():
    relationship, concern = midwifery.map_row(rows("midwifery-bookings.csv")[0])
    unborn = {"unborn": True, "mother_nhs_number": "9990010498",
              "expected_delivery_date": "2027-03-14"}
    assert relationship == Call("/v1/relationships", {
        "subject": unborn, "kind": "midwife", "start": "2026-09-02"},
        "midwifery:MAT-26-0311:v1:midwife")
    assert concern.create["subject"] == unborn
    assert concern.create["category"] == "unborn_child_protection_concern"
    assert concern.create["lawful_basis"]["article9"] == "9(2)(g)"
    assert [(p["role"], p["relationship"]) for p in concern.create["related_people"]] == [
        ("parent", "mother"), ("household_member", "mother's partner")]
    assert "due on 14 March 2027" in concern.create["summary"]


def test_midwifery_categories_come_from_the_mapping_table():
    categories = [flags(midwifery.map_row(r))[0].create["category"]
                  for r in rows("midwifery-bookings.csv")[:4]]
    assert categories == ["unborn_child_protection_concern", "parental_mental_health",
                          "concealed_pregnancy", "parental_substance_misuse"]


def test_midwifery_birth_links_the_newborn_to_the_mother():
    relationship, concern = midwifery.map_row(rows("midwifery-bookings.csv")[4])
    baby = relationship.body["subject"]
    assert baby["nhs_number"] == "9990010773" and baby["birth_date"] == "2026-10-03"
    assert baby["sex"] == "female" and baby["mother_nhs_number"] == "9990010846"
    assert relationship.body["kind"] == "midwife" and relationship.body["start"] == "2026-10-03"
    assert concern.create["related_people"] == [{
        "role": "parent", "relationship": "mother", "nhs_number": "9990010846",
        "given_name": "Laura", "family_name": "Green", "birth_date": "1995-11-14"}]
    assert concern.create["summary"].startswith("Ruby was born on 3 October 2026.")
    # A birth with no concern is only the midwife's relationship with the baby.
    (only,) = midwifery.map_row(rows("midwifery-bookings.csv")[5])
    assert isinstance(only, Call) and only.body["subject"]["nhs_number"] == "9990010919"


def test_midwifery_malformed_rows():
    bad = rows("midwifery-bookings-malformed.csv")
    assert "check digit" in errors_of(midwifery.map_row, bad[0])["mother_nhs_number"]
    assert errors_of(midwifery.map_row, bad[1]) == {
        "expected_delivery_date": "'14/03/2027' is not a date in the form YYYY-MM-DD"}
    assert "unknown concern 'HOUSING'" in errors_of(midwifery.map_row, bad[2])["concern"]
    assert "unknown event 'antenatal'" in errors_of(midwifery.map_row, bad[3])["event"]


# --- children's social care ------------------------------------------------------------------

def test_social_care_child_protection_plan_opens_a_flag():
    (cpp,) = social_care.map_row(rows("social-care-cin.csv")[0])
    assert cpp.ref == "social-care:C100231:child_protection_plan:2026-09-14"
    assert cpp.close is None and cpp.stage == "v1"
    assert cpp.create["category"] == "child_protection_plan"
    assert cpp.create["purpose"] == "child_protection"
    assert cpp.create["period"] == {"start": "2026-09-14"}
    assert cpp.create["subject"] == {
        "nhs_number": "9990010005", "local_id": "C100231", "given_name": "Amelia",
        "family_name": "Hartley", "birth_date": "2017-03-14", "sex": "female",
        "ethnicity": "A", "disability": "none"}
    assert "because of neglect" in cpp.create["summary"]


def test_social_care_end_date_closes_the_plan():
    (cin,) = social_care.map_row(rows("social-care-cin.csv")[2])
    assert cin.create["category"] == "child_in_need"
    assert "mainly because of difficulties within the family" in cin.create["summary"]
    assert cin.close == {"status": "inactive", "period": {"end": "2026-10-30"}}
    assert cin.stage == "v1:inactive:2026-10-30"


def test_social_care_looked_after_and_a_child_known_only_locally():
    (cla,) = social_care.map_row(rows("social-care-cin.csv")[3])
    assert cla.create["category"] == "looked_after_child"
    assert "a full care order (section 31)" in cla.create["summary"]
    assert cla.create["subject"]["ethnicity"] == "D"  # MWBC: White and Black Caribbean
    (cin,) = social_care.map_row(rows("social-care-cin.csv")[4])
    assert "nhs_number" not in cin.create["subject"]
    assert cin.create["subject"]["local_id"] == "C100533"
    assert cin.create["subject"]["disability"] == "learning difficulty, communication"


def test_social_care_transfer_out_and_accept_rows():
    (transfer,) = social_care.map_row(rows("social-care-cin.csv")[6])
    assert transfer.path == "/v1/transfers"
    assert transfer.body["to_area"] == "E08000026"
    assert transfer.body["plan"] == "child_protection_plan"
    assert transfer.body["notified_at"] == "2026-11-20T10:30:00+00:00"
    assert transfer.body["subject"]["nhs_number"] == "9990011125"
    (accept,) = social_care.map_row({"RowType": "transfer_in_accept",
                                     "FlagshareTransferID": "4b1c2d3e-0000-4000-8000-00000000abcd"})
    assert accept == Call("/v1/transfers/4b1c2d3e-0000-4000-8000-00000000abcd/accept", None,
                          "social-care:accept:4b1c2d3e-0000-4000-8000-00000000abcd")
    assert "not a flagshare transfer id" in errors_of(
        social_care.map_row, {"RowType": "transfer_in_accept",
                              "FlagshareTransferID": "../flags"})["FlagshareTransferID"]


def test_social_care_malformed_rows():
    bad = rows("social-care-cin-malformed.csv")
    assert "YYYY-MM-DD" in errors_of(social_care.map_row, bad[0])["CPPstartDate"]
    assert "unknown category of abuse 'XYZ'" in errors_of(social_care.map_row, bad[1])[
        "InitialCategoryOfAbuse"]
    assert "check digit" in errors_of(social_care.map_row, bad[2])["NHSnumber"]
    assert errors_of(social_care.map_row, bad[3]) == {"CPPendDate": "is before the start date"}
    social_care.map_row(bad[4])  # an area the API does not know: only the API can say so
    nothing = {**rows("social-care-cin.csv")[0], "CPPstartDate": "", "InitialCategoryOfAbuse": ""}
    assert "nothing to send" in errors_of(social_care.map_row, nothing)["CPPstartDate"]


# --- GP (FHIR R4) ----------------------------------------------------------------------------

def test_gp_bundle_flags_and_registrations():
    batch = gp.load(SAMPLES / "gp-flags.json")
    assert [r.number for r in batch.records] == [5, 6, 7, 8, 9]  # patients are context
    mapped = {r.number: batch.map(r.data) for r in batch.records}
    (registration,) = mapped[5]
    assert registration.path == "/v1/relationships"
    assert registration.body["kind"] == "registered_gp"
    assert registration.body["subject"]["nhs_number"] == "9990010773"  # via urn:uuid
    assert registration.key == "gp:EpisodeOfCare/reg-ruby-green:v1"
    assert mapped[6][0].body["subject"]["nhs_number"] == "9990010005"  # via Patient/id
    (injury,) = mapped[7]
    assert injury.create["category"] == "injury_non_mobile_infant"
    assert injury.create["subject"]["ethnicity"] == "A"
    assert "bruise on the left cheek" in injury.create["summary"]
    (wnb,) = mapped[8]
    assert wnb.create["subject"] == {"nhs_number": "9990010145"}  # on the reference itself
    assert wnb.version == "3"
    (closed,) = mapped[9]
    assert closed.close == {"status": "inactive", "period": {"end": "2026-09-30"}}


@pytest.mark.parametrize("name", ["flag-example.json", "flag-example-encounter.json"])
def test_official_hl7_r4_flag_examples_parse_and_are_rejected_for_want_of_nhs_number(name):
    resource = json.loads((FHIR / name).read_text())
    parsed = gp.Flag.model_validate(resource)
    assert parsed.subject.reference == "Patient/example"
    errors = errors_of(gp.map_resource, resource)
    assert "no NHS number" in errors["Flag.subject"]
    assert "https://fhir.nhs.uk/Id/nhs-number" in errors["Flag.subject"]
    assert "no flagshare category for http://example.org/local" in errors["Flag.code"]
    # The same through the file loader: one record, rejected with the reasons, no crash.
    (record,) = gp.load(FHIR / name).records
    assert record.number == 1


def test_gp_malformed_entries():
    batch = gp.load(SAMPLES / "gp-flags-malformed.json")
    errors = {}
    for record in batch.records:
        with pytest.raises(RecordError) as caught:
            batch.map(record.data)
        errors[record.number] = dict(caught.value.errors)
    assert errors[1] == {"Flag.subject": "Field required"}
    assert "check digit" in errors[2]["Flag.subject"]
    assert "342191000000101 (Subject to child protection plan)" in errors[3]["Flag.code"]
    assert "'Observation'" in errors[4]["resourceType"]
    assert "missing" in errors[5]["EpisodeOfCare.period.start"]


def test_gp_invalid_fhir_status_and_errors_in_error():
    flag = {"resourceType": "Flag", "id": "f1", "status": "paused",
            "code": {"coding": [{"system": "https://gp-system.example/CodeSystem/"
                                 "safeguarding-flag", "code": "WNB"}]},
            "subject": {"identifier": {"system": gp.NHS_SYSTEM, "value": "9990010005"}}}
    assert "'paused'" in errors_of(gp.map_resource, flag)["Flag.status"]
    wrong = {**flag, "status": "entered-in-error"}
    assert gp.map_resource(wrong)[0].close == {"status": "entered_in_error"}
    partial = errors_of(gp.map_resource, {**wrong, "period": {"start": "2015-01"}})
    assert partial == {"Flag.period.start": "'2015-01' is not a full date"}
    location = {**flag, "status": "active", "subject": {"reference": "Location/ward-3"}}
    assert "not a patient" in errors_of(gp.map_resource, location)["Flag.subject"]


def test_gp_periods_out_of_order_are_rejected_before_anything_is_sent():
    """Sent as they were, an inactive flag would be published, then its closing PATCH
    refused: the record reported rejected while an active flag stayed shared."""
    flag = {"resourceType": "Flag", "id": "wnb-42", "status": "inactive",
            "code": {"coding": [{"system": "https://gp-system.example/CodeSystem/"
                                 "safeguarding-flag", "code": "WNB"}]},
            "subject": {"identifier": {"system": gp.NHS_SYSTEM, "value": "9990010005"}},
            "period": {"start": "2024-05-01", "end": "2024-04-01"}}
    assert errors_of(gp.map_resource, flag) == {"Flag.period.end": "is before the start date"}
    (end_only,) = gp.map_resource({**flag, "period": {"end": "2024-04-01"}})
    assert end_only.close == {"status": "inactive", "period": {"end": "2024-04-01"}}
    (closed,) = gp.map_resource({**flag, "period": {"start": "2024-04-01", "end": "2024-04-01"}})
    assert closed.close == {"status": "inactive", "period": {"end": "2024-04-01"}}
    active = {**flag, "status": "active"}
    (planned,) = gp.map_resource({**active, "period": {"start": "2024-04-01", "end": "2024-06-01"}})
    assert planned.create["period"] == {"start": "2024-04-01", "end": "2024-06-01"}
    assert planned.close is None
    assert patch_body(planned)["period"] == {"end": "2024-06-01"}
    assert "missing" in errors_of(gp.map_resource, {**active, "period": {"end": "2024-06-01"}})[
        "Flag.period.start"]
    registration = {"resourceType": "EpisodeOfCare", "id": "reg-1", "status": "finished",
                    "patient": {"identifier": {"system": gp.NHS_SYSTEM, "value": "9990010005"}},
                    "period": {"start": "2024-05-01", "end": "2024-04-01"}}
    assert errors_of(gp.map_resource, registration) == {
        "EpisodeOfCare.period.end": "is before the start date"}


def test_gp_file_that_is_not_fhir_is_a_file_error(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"hello": "world"}')
    with pytest.raises(SourceError, match="not a FHIR resource"):
        gp.load(path)
    path.write_text('{"resourceType": "Bundle", "entry": []}')
    with pytest.raises(SourceError, match="not a valid FHIR Bundle"):
        gp.load(path)


# --- keys ------------------------------------------------------------------------------------

def test_idempotency_keys_stay_within_the_api_limit():
    assert idempotency_key("gp", "Flag/1", "create") == "gp:Flag/1:create"
    long = idempotency_key("gp", "x" * 300)
    assert len(long) <= 200 and long.startswith("gp:sha256:")
    assert long == idempotency_key("gp", "x" * 300) != idempotency_key("gp", "y" * 300)
    long_ref = idempotency_key("police:" + "x" * 300, "create")  # a FlagPart's ref
    assert len(long_ref) <= 200 and long_ref.startswith("police:sha256:")


# --- the client against a scripted peer ------------------------------------------------------

class Peer:
    """A loopback HTTP peer: the token endpoint, then scripted answers to other requests."""

    def __init__(self, script: list[tuple[int, dict, dict]]):
        self.script, self.requests, self.tokens = list(script), [], 0
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path == "/v1/oauth/token":
                    peer.tokens += 1
                    status, headers, payload = 200, {}, {
                        "access_token": f"t{peer.tokens}", "token_type": "Bearer",
                        "expires_in": 900}
                else:
                    peer.requests.append((self.command, self.path,
                                          {k.lower(): v for k, v in self.headers.items()}, body))
                    status, headers, payload = peer.script.pop(0)
                data = json.dumps(payload).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def client_for(url: str, waits: list[float], attempts: int = 4) -> FlagshareClient:
    return FlagshareClient(url, "WMP", "secret", attempts=attempts, sleep=waits.append)


def test_client_retries_5xx_and_429_honouring_retry_after_then_succeeds():
    created = (201, {}, {"id": "f1"})
    with Peer([(503, {}, {}), (429, {"Retry-After": "7"}, {}), created]) as peer:
        waits = []
        with client_for(peer.url, waits) as client:
            outcome = client.write("POST", "/v1/flags", {"a": 1}, "police:1:create")
    assert outcome.status == "accepted" and outcome.body == {"id": "f1"}
    assert len(peer.requests) == 3
    assert 0.4 <= waits[0] <= 0.6 and waits[1] == 7.0  # backoff, then the server's word
    assert {r[2]["idempotency-key"] for r in peer.requests} == {"police:1:create"}


def test_client_never_retries_a_4xx_and_reports_the_problem():
    problem = {"type": "about:blank", "title": "Invalid request", "status": 422,
               "detail": "subject.nhs_number: not a valid NHS number",
               "errors": [{"field": "subject.nhs_number", "message": "not a valid NHS number"}]}
    with Peer([(422, {}, problem)]) as peer:
        waits = []
        with client_for(peer.url, waits) as client:
            outcome = client.write("POST", "/v1/flags", {}, "k")
    assert outcome.status == "rejected" and len(peer.requests) == 1 and waits == []
    assert outcome.reason == "HTTP 422: subject.nhs_number: not a valid NHS number"
    forbidden = {"detail": "Not allowed for police", "policy_rule": "CPP-PUB"}
    with Peer([(403, {}, forbidden)]) as peer:
        with client_for(peer.url, []) as client:
            outcome = client.write("POST", "/v1/flags", {}, "k")
    assert outcome.reason == "HTTP 403: Not allowed for police [policy rule CPP-PUB]"


def test_client_gives_up_after_bounded_attempts():
    with Peer([(500, {}, {"detail": "boom"})] * 3) as peer:
        waits = []
        with client_for(peer.url, waits, attempts=3) as client:
            outcome = client.write("POST", "/v1/flags", {}, "k")
    assert outcome.status == "rejected" and len(peer.requests) == 3 and len(waits) == 2
    with client_for(f"http://127.0.0.1:{free_port()}", waits := [], attempts=3) as client:
        with pytest.raises(ApiUnavailable, match="cannot reach"):
            client.write("POST", "/v1/flags", {}, "k")
    assert len(waits) == 2


def test_client_caches_its_token_and_renews_it_when_refused():
    ok = (201, {}, {"id": "f"})
    replay = (201, {"Idempotent-Replayed": "true"}, {"id": "f"})
    with Peer([ok, replay, (401, {}, {"detail": "expired"}), ok]) as peer:
        with client_for(peer.url, []) as client:
            first = client.write("POST", "/v1/flags", {}, "k1")
            second = client.write("POST", "/v1/flags", {}, "k1")
            third = client.write("POST", "/v1/flags", {}, "k2")
    assert (first.status, second.status, third.status) == ("accepted", "unchanged", "accepted")
    assert peer.tokens == 2
    assert [r[2]["authorization"] for r in peer.requests] == [
        "Bearer t1", "Bearer t1", "Bearer t1", "Bearer t2"]


def test_cli_exits_2_when_the_api_cannot_be_reached_or_is_not_configured(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "FLAGSHARE_API_URL": f"http://127.0.0.1:{free_port()}",
           "FLAGSHARE_CLIENT_ID": "WMP", "FLAGSHARE_CLIENT_SECRET": "s"}
    sample = str(SAMPLES / "police-incidents.csv")
    unreachable = subprocess.run([ADAPTER, "police", "push", sample], env=env, cwd=tmp_path,
                                 capture_output=True, text=True, timeout=120)
    assert unreachable.returncode == 2, unreachable.stderr
    assert "cannot reach" in unreachable.stderr
    unset = subprocess.run([ADAPTER, "police", "push", sample], env={"PATH": "/usr/bin"},
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert unset.returncode == 2 and "--api-url" in unset.stderr
    usage = subprocess.run([ADAPTER, "police", "push"], capture_output=True, text=True,
                           timeout=60)
    assert usage.returncode == 2
    missing = subprocess.run([ADAPTER, "police", "push", str(tmp_path / "none.csv"),
                              "--dry-run"], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "none.csv" in missing.stderr


def test_cli_dry_run_sends_nothing_and_reports_bad_rows():
    out = subprocess.run([ADAPTER, "midwifery", "push",
                          str(SAMPLES / "midwifery-bookings-malformed.csv"), "--dry-run"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and out.stdout == ""
    assert "row 3: rejected: expected_delivery_date: '14/03/2027'" in out.stderr
    good = subprocess.run([ADAPTER, "police", "push", str(SAMPLES / "police-incidents.json"),
                           "--dry-run"], capture_output=True, text=True, timeout=60)
    assert good.returncode == 0
    assert [json.loads(line)["record"] for line in good.stdout.splitlines()] == [1, 2]


# --- the inbox -------------------------------------------------------------------------------

def test_inbox_hands_each_delivery_over_once_across_restarts(tmp_path):
    event = {"id": "evt_1", "type": "flag.shared", "data": {}}
    assert Inbox(tmp_path).accept("msg_1", event, "webhook") is True
    again = Inbox(tmp_path)  # a restart reads what was handed over
    assert again.accept("msg_1", event, "feed") is False
    assert again.accept("msg_2", event, "feed") is True
    assert [(e["delivery_id"], e["via"]) for e in again.events()] == [
        ("msg_1", "webhook"), ("msg_2", "feed")]


# --- the webhook receiver --------------------------------------------------------------------
# test_adapters_e2e covers a replay ten minutes late, a wrong secret and an altered body against
# the running service; these are the other ways a captured or forged delivery could get in.

def test_receiver_refuses_future_timestamps_moved_ids_and_unsigned_requests(tmp_path):
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    acked: list[str] = []
    receiver = WebhookReceiver(secret, Inbox(tmp_path), acked.append)
    receiver.server.server_close()  # handle() is called directly; no socket needed
    signer = Webhook(secret)
    body = json.dumps({"id": "evt_1", "type": "flag.shared", "data": {}}).encode()
    now = datetime.now(timezone.utc)

    def headers(msg_id: str, when: datetime, signed_id: str | None = None) -> dict[str, str]:
        return {"webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())),
                "webhook-signature": signer.sign(signed_id or msg_id, when, body.decode())}

    # Signed ahead of time (a clock set forward to outlive the replay window).
    assert receiver.handle(headers("msg_1", now + timedelta(minutes=10)), body) == 401
    # A genuine signature for msg_1 presented under a fresh id to get past de-duplication.
    assert receiver.handle(headers("msg_2", now, signed_id="msg_1"), body) == 401
    # A genuine signature with the timestamp header changed to look fresh.
    stale = headers("msg_1", now - timedelta(minutes=10))
    assert receiver.handle({**stale, "webhook-timestamp": str(int(now.timestamp()))},
                           body) == 401
    for missing in ("webhook-signature", "webhook-timestamp", "webhook-id"):
        unsigned = {k: v for k, v in headers("msg_1", now).items() if k != missing}
        assert receiver.handle(unsigned, body) == 401, missing
    assert Inbox(tmp_path).events() == [] and acked == []
    # The same delivery, properly signed and current, is handed over and acknowledged.
    assert receiver.handle(headers("msg_1", now), body) == 204
    assert [e["delivery_id"] for e in Inbox(tmp_path).events()] == ["msg_1"]
    assert acked == ["msg_1"]
