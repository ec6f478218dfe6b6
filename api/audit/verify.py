"""Checking the sharing log: the same rules online (`GET /v1/audit/verify`, from the database)
and offline (`flagshare audit verify FILE`, from a JSON-lines export, no database).

The events are read once, in order, in bounded memory. Each must carry the next `seq`
(a gap is a deleted event, a step back a reordered or inserted one), a `prev_hash` equal to the
previous event's `hash`, and a `hash` equal to SHA-256 of its own canonical form (an edited
field). A signed checkpoint (seq, hash) must be on the chain: a different hash there means
the log was rewritten behind it, and a log that ends before it has lost its tail.
"""

from __future__ import annotations

import gc
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from itertools import repeat
from operator import add, methodcaller
from pathlib import Path
from typing import Any

from api.audit.service import GENESIS_HASH, HASHED_FIELDS, event_hash
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

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first_bad_seq(self) -> int | None:
        seqs = [f.seq for f in self.findings if f.seq is not None]
        return min(seqs) if seqs else None

    @property
    def head_matches_checkpoint(self) -> bool | None:
        """The chain passes through the latest checkpoint: nothing is wrong up to it."""
        latest = self.latest_checkpoint
        if latest is None:
            return None
        return not any(f.seq is not None and f.seq <= latest.seq for f in self.findings)

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

    def hold(self, checkpoints: list[Checkpoint]) -> None:
        """Count the checkpoints the chain is held to and note the latest (the first of the
        highest seq)."""
        self.checkpoints_checked = len(checkpoints)
        self.latest_checkpoint = None
        for cp in checkpoints:
            if self.latest_checkpoint is None or cp.seq > self.latest_checkpoint.seq:
                self.latest_checkpoint = cp


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


# One event as the chain walk needs it: (seq, prev_hash, hash, SHA-256 of its canonical form).
Link = tuple[Any, Any, Any, "str | None"]
NOT_AN_EVENT: Link = (None, None, None, None)


def link(event: Any) -> Link:
    """The chain facts of one parsed event; NOT_AN_EVENT unless it has an integer seq and a
    string hash."""
    seq = event.get("seq") if isinstance(event, dict) else None
    if not isinstance(seq, int) or not isinstance(event.get("hash"), str):
        return NOT_AN_EVENT
    try:
        content = event_hash(event)
    except UnicodeEncodeError:  # a lone surrogate (\ud800) cannot be canonical: never matches
        content = None
    return seq, event.get("prev_hash"), event["hash"], content


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive events already found consistent among themselves (seq first, first + 1, …;
    each prev_hash the hash before it; each hash that of its content): the walk then needs only
    to check where the run joins the chain, instead of looking at every event."""

    first_seq: int
    first_prev: str
    hashes: list[str]

    def links(self) -> Iterator[Link]:
        seqs = range(self.first_seq, self.first_seq + len(self.hashes))
        prevs = [self.first_prev, *self.hashes[:-1]]
        return zip(seqs, prevs, self.hashes, self.hashes)


class _Walk:
    """The chain as walked so far: what the next event must carry, and what was found."""

    def __init__(self, report: Report, checkpoints: list[Checkpoint]):
        self.report = report
        self.by_seq: dict[int, list[Checkpoint]] = {}
        for cp in checkpoints:
            self.by_seq.setdefault(cp.seq, []).append(cp)
        self.expected_seq, self.prev = 1, GENESIS_HASH

    def event(self, seq: Any, prev_hash: Any, stated: Any, content: str | None) -> None:
        report = self.report
        report.events_checked += 1
        expected_seq = self.expected_seq
        if seq is None:
            report.add(expected_seq, f"entry {report.events_checked} (expected seq "
                                     f"{expected_seq}) is not an audit event")
            self.expected_seq += 1
            return
        if seq < expected_seq:
            report.add(seq, f"event {seq} appears again or out of order after "
                            f"{expected_seq - 1} (reordered or inserted)")
            return  # the chain carries on from the event before it
        if seq > expected_seq:
            missing = (f"event {expected_seq} is" if seq == expected_seq + 1
                       else f"events {expected_seq}..{seq - 1} are")
            report.add(expected_seq, f"{missing} missing (deleted or moved): the next is {seq}")
        elif prev_hash != self.prev:
            report.add(seq, f"event {seq}: prev_hash is not the hash of event {seq - 1} "
                            f"(reordered, inserted or rewritten)")
        if content != stated:
            report.add(seq, f"event {seq}: content does not match its hash (edited or moved)")
        for cp in self.by_seq.get(seq, ()):
            if cp.hash != stated:
                report.add(seq, f"event {seq}: hash differs from the checkpoint signed at "
                                f"{cp.at}: the log was rewritten up to here after that")
        self.expected_seq, self.prev = seq + 1, stated
        report.head_seq, report.head = seq, stated

    def run(self, run: Run) -> None:
        """The whole run at once when it carries on the chain and agrees with every checkpoint
        within it; otherwise event by event, to say exactly what is wrong."""
        first, hashes = run.first_seq, run.hashes
        last = first + len(hashes) - 1
        if (first == self.expected_seq and run.first_prev == self.prev
                and all(cp.hash == hashes[seq - first] for seq, cps in self.by_seq.items()
                        if first <= seq <= last for cp in cps)):
            self.report.events_checked += len(hashes)
            self.expected_seq, self.prev = last + 1, hashes[-1]
            self.report.head_seq, self.report.head = last, hashes[-1]
        else:
            for one in run.links():
                self.event(*one)

    def finish(self) -> Report:
        report = self.report
        for seq in sorted(s for s in self.by_seq if s > report.head_seq):
            for cp in self.by_seq[seq]:
                report.add(report.head_seq + 1,
                           f"the log ends at seq {report.head_seq} but the checkpoint signed "
                           f"at {cp.at} covers seq {seq}: the tail was cut off")
        return report


def verify_events(events: Iterable[Any], checkpoints: Iterable[Checkpoint] = ()) -> Report:
    """Walk the chain of parsed events in the given order (see `verify_chain`)."""
    return verify_chain(map(link, events), checkpoints)


def verify_chain(links: Iterable[Link | Run], checkpoints: Iterable[Checkpoint] = ()) -> Report:
    """Walk the chain in the given order; `checkpoints` are held against it (their signatures
    are checked separately, by `check_signature`)."""
    checkpoints = list(checkpoints)
    report = Report()
    report.hold(checkpoints)
    walk = _Walk(report, checkpoints)
    for item in links:
        if type(item) is Run:
            walk.run(item)
        else:
            walk.event(*item)
    return walk.finish()


# --- offline: a JSON-lines export --------------------------------------------------------

CHECKPOINT_KEY = "checkpoint"
_BLOCK_BYTES = 1 << 18


class ExportUnreadable(Exception):
    """The file cannot be read as an export at all (a usage error, not a verdict)."""


_EXPORT_KEYS = (*sorted(HASHED_FIELDS), "hash")


def export_line(event: dict) -> str:
    """The event's canonical form with its `hash` added last (written as
    `api.audit.service.canonical` writes, from an event whose `at` is already formatted), so
    that a verifier can hash the line's own bytes (see `_canonical_form_pattern`) instead of
    parsing and re-serialising it."""
    return json.dumps({k: event.get(k) for k in _EXPORT_KEYS}, ensure_ascii=False,
                      separators=(",", ":")) + "\n"


def checkpoint_line(checkpoint: dict) -> str:
    return json.dumps({CHECKPOINT_KEY: checkpoint}, separators=(",", ":")) + "\n"


def _canonical_form_pattern(string_char: bytes) -> bytes:
    """A line exactly as `export_line` writes it, but its end: the canonical form's keys in
    order, each value null or a string of `string_char`s (`seq` an integer as json.dumps writes
    it), then `"hash"`. Groups: the canonical form but its closing brace, prev_hash, seq, hash.

    A JSON string with no backslash and no control character is written by
    json.dumps(ensure_ascii=False) exactly as it stands, so where the strings hold neither, a
    match is byte for byte the canonical form of what json.loads reads from the line.
    """
    chars = string_char + b"*+"
    fields = []
    for name in sorted(HASHED_FIELDS):
        key = b'"' + name.encode() + b'":'
        fields.append(key + (rb"(0|[1-9][0-9]*+)" if name == "seq"
                             else b'"(' + chars + b')"' if name == "prev_hash"
                             else b'(?:"' + chars + b'"|null)'))
    return rb"(\{" + b",".join(fields) + rb'),"hash":"(' + chars + rb')"\}'


_UNSAFE = (*range(0x0A), *range(0x0B, 0x20), ord("\\"))  # escapes, control characters but LF
# Every line of a block free of _UNSAFE bytes (findall); one line anywhere (fullmatch).
_CANONICAL_LINES = re.compile(rb"(?m)^" + _canonical_form_pattern(rb'[^"]') + rb"(?:\n|\Z)")
_CANONICAL_LINE = re.compile(_canonical_form_pattern(rb'[^"\\\x00-\x1f]') + rb"\n?")
_LINE_REST = len(',"hash":""}\n')  # a canonical line's bytes besides its canonical form and hash


def _blocks(path: Path) -> Iterator[tuple[int, bytes]]:
    """The file as (offset, bytes) blocks of whole lines; the last may lack its newline."""
    try:
        with path.open("rb") as fh:
            offset = 0
            while block := fh.read(_BLOCK_BYTES):
                if not block.endswith(b"\n"):
                    block += fh.readline()
                yield offset, block
                offset += len(block)
    except OSError as exc:
        raise ExportUnreadable(f"cannot read {path}: {exc}") from exc


def _text(path: Path, offset: int, block: bytes) -> str:
    try:
        return block.decode()
    except UnicodeDecodeError as exc:
        raise ExportUnreadable(f"cannot read {path}: not UTF-8 at byte {offset + exc.start} "
                               f"({exc.reason})") from exc


def _line_number(path: Path, offset: int) -> int:
    """The number of the line that starts at byte `offset` (lines end at LF, CRLF or CR, as
    when the file is read as text)."""
    before = 0
    for start, block in _blocks(path):
        if start >= offset:
            break
        before += len(block[:offset - start].splitlines())
    return before + 1


def _parse(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None  # reported as "not an audit event"


def _is_checkpoint(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {CHECKPOINT_KEY}


@dataclass
class FoundCheckpoints:
    """The checkpoint lines of an export, met while its events are read."""

    path: Path
    found: list[Checkpoint] = field(default_factory=list)
    malformed: list[tuple[int, str]] = field(default_factory=list)  # (offset, what is wrong)

    def take(self, value: dict, offset: int) -> None:
        try:
            self.found.append(Checkpoint.parse(value[CHECKPOINT_KEY]))
        except ValueError as exc:
            self.malformed.append((offset, str(exc)))

    def problems(self) -> list[str]:
        """What is wrong with the malformed ones, by line number (counted only now)."""
        return [f"line {_line_number(self.path, offset)}: malformed checkpoint: {problem}"
                for offset, problem in self.malformed]


def _parsed_link(line: str, offset: int, checkpoints: FoundCheckpoints) -> Link | None:
    """A line (at byte `offset`) parsed in full: None if blank or a checkpoint, which is handed
    over if it names "checkpoint" as it stands (any other checkpoint-shaped line is passed
    over)."""
    if not line.strip():
        return None
    value = _parse(line)
    if not _is_checkpoint(value):
        return link(value)
    if f'"{CHECKPOINT_KEY}"' in line:
        checkpoints.take(value, offset)
    return None


def _canonical_block(block: bytes) -> list[Link | Run] | None:
    """A block free of _UNSAFE bytes, all at once: None unless every line is canonical; then
    one Run if they follow on from one another, else their links."""
    if not _CANONICAL_LINE.match(block):  # spare the search through a block of other lines
        return None
    rows = _CANONICAL_LINES.findall(block)
    forms, prevs, seqs, hashes = zip(*rows)
    matched = b"".join(forms + hashes)
    # The matches are whole lines, so they cover the block only if every line matched; and
    # they are one a line only if no string took in a line break (a string may hold any byte
    # but a quote here: the block has no other control character).
    if (len(matched) + _LINE_REST * len(rows) != len(block) + (not block.endswith(b"\n"))
            or b"\n" in matched):
        return None
    content = list(map(methodcaller("hexdigest"),
                       map(hashlib.sha256, map(add, forms, repeat(b"}")))))
    stated = list(map(bytes.decode, hashes))
    seqs = list(map(int, seqs))
    if (content == stated and prevs[1:] == hashes[:-1]
            and seqs == list(range(seqs[0], seqs[0] + len(seqs)))):
        return [Run(seqs[0], prevs[0].decode(), stated)]
    return list(zip(seqs, map(bytes.decode, prevs), stated, content))


def _line_links(block: bytes, offset: int, checkpoints: FoundCheckpoints) -> Iterator[Link]:
    """A block line by line: canonical lines hashed as they stand, the others parsed."""
    for line in block.splitlines(keepends=True):  # at LF, CRLF or CR, as a text reader splits
        m = _CANONICAL_LINE.fullmatch(line)
        if m is not None:
            yield (int(m[3]), m[2].decode(), m[4].decode(),
                   hashlib.sha256(m[1] + b"}").hexdigest())
        elif (parsed := _parsed_link(line.decode(), offset, checkpoints)) is not None:
            yield parsed
        offset += len(line)


def read_export_links(path: Path, checkpoints: FoundCheckpoints) -> Iterator[Link | Run]:
    """Every event line in file order, for `verify_chain`; checkpoint lines go to
    `checkpoints`. A line as `export_line` writes it is hashed as it stands; any other (an
    older export, a reformatted or hand-edited line) is parsed and re-serialised. The verdict
    is the same either way."""
    for offset, block in _blocks(path):
        _text(path, offset, block)  # a file that is not UTF-8 is refused whatever it holds
        plain = not any(byte in block for byte in _UNSAFE)
        canonical_block = _canonical_block(block) if plain else None
        if canonical_block is not None:
            yield from canonical_block
        else:
            yield from _line_links(block, offset, checkpoints)


@contextmanager
def _collector_paused():
    """Without the cyclic garbage collector: a block's rows are thousands of short-lived tuples,
    freed by reference counting as soon as the block is done (they hold no cycles), and would
    only set off collection passes, about a twentieth of the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def verify_export(path: Path, keys: dict[str, dict] | None = None,
                  held: Iterable[Checkpoint] = ()) -> Report:
    """An export, with its own checkpoints and any the auditor `held` from earlier; with
    `keys` (the public JWKS, by kid) every checkpoint's signature is checked.

    The export's own checkpoints are found while its events are walked. When they all sign
    the head the walk reached, and nothing was wrong, holding the chain to them from the start
    would have found nothing either; otherwise the file is walked again, held to them all,
    so that every finding comes at its place.
    """
    held = list(held)
    in_file = FoundCheckpoints(path)
    with _collector_paused():
        report = verify_chain(read_export_links(path, in_file), held)
        checkpoints = [*in_file.found, *held]
        if report.ok and all((cp.seq, cp.hash) == (report.head_seq, report.head)
                             for cp in in_file.found):
            report.hold(checkpoints)
        else:
            report = verify_chain(read_export_links(path, FoundCheckpoints(path)), checkpoints)
    for problem in in_file.problems():
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
