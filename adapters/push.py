"""Sending a batch: every record mapped, sent and accounted for; a bad one never stops the rest.

A record is `accepted` when anything new reached flagshare, `unchanged` when everything it
asks for was already there (an idempotent replay, or a stage already sent), and `rejected`
with the mapper's or the API's reasons otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from adapters.client import FlagshareClient, Outcome
from adapters.records import Call, FlagPart, Part, RecordError, idempotency_key
from adapters.sources import Batch, SourceRecord
from adapters.state import State

STALE_STATE_HINT = ("; this record's flag was created earlier with other content: keep the "
                    "adapter's state file (--state) between runs so that changes are sent "
                    "as amendments")


@dataclass
class RecordResult:
    record: SourceRecord
    status: str  # accepted | unchanged | rejected
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def mapped(batch: Batch) -> Iterator[tuple[SourceRecord, list[Part] | RecordError]]:
    """Each record with its requests, or the error that keeps it from being sent."""
    for record in batch.records:
        try:
            yield record, batch.map(record.data)
        except RecordError as exc:
            yield record, exc


def push(batch: Batch, client: FlagshareClient, state: State,
         on_result: Callable[[RecordResult], None]) -> None:
    """Send every record in order, reporting each; `ApiUnavailable` stops the run (nothing
    else does)."""
    for record, parts in mapped(batch):
        if isinstance(parts, RecordError):
            result = RecordResult(record, "rejected", [str(parts)])
        else:
            outcomes: list[Outcome] = []
            for part in parts:
                outcomes += send_part(part, client, state)
            result = combine(record, outcomes)
        on_result(result)


def send_part(part: Part, client: FlagshareClient, state: State) -> list[Outcome]:
    if isinstance(part, Call):
        return [client.write("POST", part.path, part.body, part.key)]
    return send_flag(part, client, state)


def send_flag(part: FlagPart, client: FlagshareClient, state: State) -> list[Outcome]:
    """Create the flag once; afterwards send only a new stage (amended, closed) as a PATCH."""
    known = state.get(part.ref)
    outcomes = []
    if known is None:
        created = client.write("POST", "/v1/flags", part.create,
                               idempotency_key(part.ref, "create"))
        if created.status == "rejected":
            if _key_reused(created):
                created = Outcome("rejected", 409, {**created.body, "detail": (
                    created.body.get("detail", "") + STALE_STATE_HINT)})
            return [created]
        outcomes.append(created)
        flag_id = created.body["id"]
        if part.close is None:
            state.put(part.ref, flag_id, part.stage)
            return outcomes
        state.put(part.ref, flag_id, None)
        known = state.get(part.ref)
    elif known["stage"] == part.stage:
        return [Outcome("unchanged", None)]
    patched = client.write("PATCH", f"/v1/flags/{known['flag_id']}", patch_body(part),
                           idempotency_key(part.ref, part.stage))
    if patched.status != "rejected":
        state.put(part.ref, known["flag_id"], part.stage)
    return outcomes + [patched]


def _key_reused(outcome: Outcome) -> bool:
    return outcome.http_status == 409 and any(
        e.get("field") == "Idempotency-Key" for e in outcome.body.get("errors") or [])


def patch_body(part: FlagPart) -> dict:
    """The record's current summary, and its end (planned, or as it ended): the same for every
    path, so a replay after a lost state file matches what was first sent."""
    planned = {"period": {"end": end}} if (end := part.create.get("period", {}).get("end")) \
        else {}
    return {"summary": part.create["summary"], **planned, **(part.close or {})}


def combine(record: SourceRecord, outcomes: list[Outcome]) -> RecordResult:
    statuses = {o.status for o in outcomes}
    status = ("rejected" if "rejected" in statuses
              else "accepted" if "accepted" in statuses else "unchanged")
    reasons = [o.reason for o in outcomes if o.status == "rejected"]
    warnings = list(dict.fromkeys(w for o in outcomes if o.status == "accepted"
                                  for w in o.warnings))
    return RecordResult(record, status, reasons, warnings)
