"""Checking the sharing log: the same rules online (`GET /v1/audit/verify`, from the database)
and offline (`flagshare audit verify FILE`, from a JSON-lines export, no database).

The events are read once, in order, in bounded memory. Each must carry the next `seq`
(a gap is a deleted event, a step back a reordered or inserted one), a `prev_hash` equal to the
previous event's `hash`, and a `hash` equal to SHA-256 of its own canonical form (an edited
field). A signed checkpoint (seq, hash) must be on the chain: a different hash there means
the log was rewritten behind it, and a log that ends before it has lost its tail.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from api.audit.service import GENESIS_HASH, event_hash
from api.auth import jwt

MAX_FINDINGS = 100  # enough to see the shape of the damage; the first is what matters


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    at: str
    kid: str
    signature: str

    @classmethod
    def parse(cls, data: Any) -> Checkpoint:
        """From the public form ({"seq","hash","at","kid","signature"}); ValueError if not."""
        if not isinstance(data, dict):
            raise ValueError("a checkpoint is a JSON object")
        try:
            cp = cls(**{k: data[k] for k in ("seq", "hash", "at", "kid", "signature")})
        except KeyError as exc:
            raise ValueError(f"a checkpoint needs {exc.args[0]!r}") from exc
        if not isinstance(cp.seq, int) or not all(
                isinstance(v, str) for v in (cp.hash, cp.at, cp.kid, cp.signature)):
            raise ValueError("a checkpoint has an integer seq and string hash, at, kid, signature")
        return cp


@dataclass(frozen=True)
class Finding:
    seq: int | None  # the first seq the problem makes untrustworthy (None: not about one event)
    problem: str


@dataclass
class Report:
    events_checked: int = 0
    head_seq: int = 0
    head: str = GENESIS_HASH
    findings: list[Finding] = field(default_factory=list)
    checkpoints_checked: int = 0
    signatures_checked: int = 0
    latest_checkpoint: Checkpoint | None = None
    head_matches_checkpoint: bool | None = None  # the chain passes through the latest one

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first_bad_seq(self) -> int | None:
        seqs = [f.seq for f in self.findings if f.seq is not None]
        return min(seqs) if seqs else None

    def as_dict(self) -> dict:
        """The `GET /v1/audit/verify` body; the CLI prints the same facts."""
        latest = self.latest_checkpoint
        return {"ok": self.ok, "events_checked": self.events_checked, "head": self.head,
                "head_seq": self.head_seq, "first_bad_seq": self.first_bad_seq,
                "problems": [{"seq": f.seq, "problem": f.problem} for f in self.findings],
                "checkpoints_checked": self.checkpoints_checked,
                "signatures_checked": self.signatures_checked,
                "latest_checkpoint": asdict(latest) if latest else None,
                "head_matches_checkpoint": self.head_matches_checkpoint}

    def add(self, seq: int | None, problem: str) -> None:
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(Finding(seq, problem))


def check_signature(cp: Checkpoint, keys: dict[str, dict] | None) -> str | None:
    """Why the checkpoint cannot be trusted, or None. Without keys only the signed payload is
    compared with the stated seq/hash/at (the signature itself is then unchecked)."""
    try:
        payload = (jwt.verify_statement(cp.signature, keys) if keys is not None
                   else jwt.read_statement(cp.signature)[1])
    except jwt.TokenInvalid as exc:
        return f"checkpoint at seq {cp.seq}: {exc}"
    signed = (payload.get("seq"), payload.get("hash"), payload.get("at"))
    if signed != (cp.seq, cp.hash, cp.at):
        return (f"checkpoint at seq {cp.seq}: its signed content {signed} differs from the "
                f"stated seq, hash and time")
    return None


def verify_events(events: Iterable[Any], checkpoints: Iterable[Checkpoint] = ()) -> Report:
    """Walk the chain in the given order; `checkpoints` are held against it (their signatures
    are checked separately, by `check_signature`)."""
    report = Report()
    by_seq: dict[int, list[Checkpoint]] = {}
    for cp in checkpoints:
        by_seq.setdefault(cp.seq, []).append(cp)
        report.checkpoints_checked += 1
        if report.latest_checkpoint is None or cp.seq > report.latest_checkpoint.seq:
            report.latest_checkpoint = cp
    expected_seq, prev = 1, GENESIS_HASH
    for event in events:
        report.events_checked += 1
        seq = event.get("seq") if isinstance(event, dict) else None
        if not isinstance(seq, int) or not isinstance(event.get("hash"), str):
            report.add(expected_seq, f"entry {report.events_checked} (expected seq "
                                     f"{expected_seq}) is not an audit event")
            expected_seq += 1
            continue
        if seq < expected_seq:
            report.add(seq, f"event {seq} appears again or out of order after "
                            f"{expected_seq - 1} (reordered or inserted)")
            continue  # the chain carries on from the event before it
        if seq > expected_seq:
            missing = (f"event {expected_seq} is" if seq == expected_seq + 1
                       else f"events {expected_seq}..{seq - 1} are")
            report.add(expected_seq, f"{missing} missing (deleted or moved): the next is {seq}")
        elif event.get("prev_hash") != prev:
            report.add(seq, f"event {seq}: prev_hash is not the hash of event {seq - 1} "
                            f"(reordered, inserted or rewritten)")
        if event_hash(event) != event["hash"]:
            report.add(seq, f"event {seq}: content does not match its hash (edited or moved)")
        for cp in by_seq.get(seq, ()):
            if cp.hash != event["hash"]:
                report.add(seq, f"event {seq}: hash differs from the checkpoint signed at "
                                f"{cp.at}: the log was rewritten up to here after that")
        expected_seq, prev = seq + 1, event["hash"]
        report.head_seq, report.head = seq, event["hash"]
    for seq in sorted(s for s in by_seq if s > report.head_seq):
        for cp in by_seq[seq]:
            report.add(report.head_seq + 1,
                       f"the log ends at seq {report.head_seq} but the checkpoint signed at "
                       f"{cp.at} covers seq {seq}: the tail was cut off")
    latest = report.latest_checkpoint
    if latest is not None:
        report.head_matches_checkpoint = not any(
            f.seq is not None and f.seq <= latest.seq for f in report.findings)
    return report


# --- offline: a JSON-lines export --------------------------------------------------------

CHECKPOINT_KEY = "checkpoint"


class ExportUnreadable(Exception):
    """The file cannot be read as an export at all (a usage error, not a verdict)."""


def export_line(event: dict) -> str:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n"


def checkpoint_line(checkpoint: dict) -> str:
    return json.dumps({CHECKPOINT_KEY: checkpoint}, separators=(",", ":")) + "\n"


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    yield number, line
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportUnreadable(f"cannot read {path}: {exc}") from exc


def _parse(number: int, line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return {"line": number, "unparsable": line[:80]}  # reported as "not an audit event"


def _is_checkpoint(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {CHECKPOINT_KEY}


def read_export_checkpoints(path: Path) -> tuple[list[Checkpoint], list[str]]:
    """First pass: the (few) checkpoint lines, so the event pass can hold the chain to them;
    and what is wrong with any that are malformed."""
    found, problems = [], []
    for number, line in _lines(path):
        if f'"{CHECKPOINT_KEY}"' not in line:
            continue
        value = _parse(number, line)
        if _is_checkpoint(value):
            try:
                found.append(Checkpoint.parse(value[CHECKPOINT_KEY]))
            except ValueError as exc:
                problems.append(f"line {number}: malformed checkpoint: {exc}")
    return found, problems


def read_export_events(path: Path) -> Iterator[Any]:
    """Second pass: every line that is not a checkpoint, parsed, in file order."""
    for number, line in _lines(path):
        value = _parse(number, line)
        if not _is_checkpoint(value):
            yield value


def verify_export(path: Path, keys: dict[str, dict] | None = None,
                  held: Iterable[Checkpoint] = ()) -> Report:
    """An export, with its own checkpoints and any the auditor `held` from earlier; with
    `keys` (the public JWKS, by kid) every checkpoint's signature is checked."""
    in_file, malformed = read_export_checkpoints(path)
    checkpoints = [*in_file, *held]
    report = verify_events(read_export_events(path), checkpoints)
    for problem in malformed:
        report.add(None, problem)
    for cp in checkpoints:
        if problem := check_signature(cp, keys):
            report.add(None, problem)
        if keys is not None:
            report.signatures_checked += 1
    return report


def keys_from_jwks(document: Any) -> dict[str, dict]:
    """kid -> public JWK from a JWKS document; ValueError if it is not one."""
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError('not a JWKS document (no "keys" list)')
    keys = {k["kid"]: k for k in entries if jwt.usable_public_jwk(k)}
    if not keys:
        raise ValueError("the JWKS holds no usable RSA key with a kid")
    return keys
