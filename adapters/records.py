"""What a mapper returns, and the field checks every mapper shares.

A mapper is a pure function from one native record to contract requests. It either returns
every request the record needs or raises `RecordError` naming every bad field, so one bad row
is reported in full and never stops the rest of an import.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import nhs_number
import yaml

MAPPINGS = Path(__file__).parent / "mappings"
AREA = re.compile(r"^E(06|08|09|10)\d{6}$")
MAX_KEY = 200  # the API's Idempotency-Key limit


@dataclass(frozen=True)
class Call:
    """One idempotent write: a relationship, a transfer or an acceptance."""

    path: str
    body: dict | None
    key: str


@dataclass(frozen=True)
class FlagPart:
    """A flag kept in step with a source record: created once, then amended or closed.

    `ref` names the record (and which of its flags this is) and never changes between
    versions; it keys creation, so re-running an import never creates a second flag.
    """

    ref: str
    version: str
    create: dict
    close: dict | None = None  # PATCH body once the source record has ended

    @property
    def stage(self) -> str:
        """The record's version and whether it has ended: a new stage is sent as a PATCH."""
        if self.close is None:
            return f"v{self.version}"
        end = (self.close.get("period") or {}).get("end")
        return f"v{self.version}:{self.close['status']}" + (f":{end}" if end else "")


Part = Call | FlagPart


class RecordError(ValueError):
    """A record that cannot be mapped; `errors` names each bad field."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors))


def idempotency_key(*parts: str) -> str:
    """`system:record:...`, hashed when a long source id would pass the API's limit."""
    key = ":".join(parts)
    if len(key) <= MAX_KEY:
        return key
    system = parts[0].split(":", 1)[0][:32]
    return f"{system}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


@cache
def mapping(name: str) -> dict:
    """The mapping table for one agency kind (adapters/mappings/NAME.yaml)."""
    with open(MAPPINGS / f"{name}.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def compact(values: Mapping[str, Any]) -> dict:
    """Drop absent values and write dates as the contract's strings."""
    return {k: v.isoformat() if isinstance(v, date) else v
            for k, v in values.items() if v is not None and v != [] and v != {}}


def nhs_problem(value: str) -> str | None:
    """Why a value is not a valid NHS number, or None."""
    digits = re.sub(r"[\s-]", "", value)
    if not re.fullmatch(r"[0-9]{10}", digits):
        return f"{value!r} is not an NHS number (10 digits)"
    if not nhs_number.is_valid(digits):
        return f"{value} is not a valid NHS number: the Modulus 11 check digit does not match"
    return None


class Fields:
    """Reads values from one native record, collecting every problem before failing.

    `prefix` is prepended to each key read (a CSV's `child_` columns); `where` to the name an
    error reports (`children[2].`), so every message names the column or field to fix.
    """

    def __init__(self, data: Mapping[str, Any], *, missing: str = "no such column",
                 prefix: str = "", where: str = "",
                 errors: list[tuple[str, str]] | None = None):
        self.data, self.missing, self.prefix, self.where = data, missing, prefix, where
        self.errors: list[tuple[str, str]] = [] if errors is None else errors

    def nested(self, data: Mapping[str, Any], *, prefix: str = "", where: str = "") -> Fields:
        """Fields of a part of the record, reporting into the same list of errors."""
        return Fields(data, missing=self.missing, prefix=prefix, where=where,
                      errors=self.errors)

    def present(self, *names: str) -> bool:
        """Whether any of these values is given (to tell an absent part from a bad one)."""
        return any(str(self.data.get(self.prefix + n) or "").strip() for n in names)

    def error(self, name: str, message: str) -> None:
        self.errors.append((self.where + self.prefix + name, message))

    def check(self) -> None:
        if self.errors:
            raise RecordError(self.errors)

    def text(self, name: str, *, required: bool = True) -> str | None:
        key = self.prefix + name
        if key not in self.data:
            if required:
                self.error(name, f"missing ({self.missing})")
            return None
        value = self.data[key]
        value = "" if value is None else str(value).strip()
        if not value:
            if required:
                self.error(name, "is empty")
            return None
        return value

    def nhs(self, name: str, *, required: bool = True) -> str | None:
        value = self.text(name, required=required)
        if value is None:
            return None
        if problem := nhs_problem(value):
            self.error(name, problem)
            return None
        return re.sub(r"[\s-]", "", value)

    def date(self, name: str, *, required: bool = True) -> date | None:
        value = self.text(name, required=required)
        if value is None:
            return None
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                raise ValueError
            return date.fromisoformat(value)
        except ValueError:
            self.error(name, f"{value!r} is not a date in the form YYYY-MM-DD")
            return None

    def moment(self, name: str, *, required: bool = True) -> datetime | None:
        value = self.text(name, required=required)
        if value is None:
            return None
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T.+", value):
                raise ValueError
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            self.error(name, f"{value!r} is not a date and time with its UTC offset, "
                             "e.g. 2026-11-21T22:40:00+00:00")
            return None
        return parsed

    def code(self, name: str, table: Mapping[str, Any], what: str, *,
             required: bool = True) -> Any:
        """The table's entry for a coded value (codes match ignoring case)."""
        value = self.text(name, required=required)
        return None if value is None else self.code_value(name, value, table, what)

    def code_value(self, name: str, value: str, table: Mapping[str, Any], what: str) -> Any:
        for code, entry in table.items():
            if str(code).casefold() == value.casefold():
                return entry
        known = ", ".join(str(c) for c in table)
        self.error(name, f"unknown {what} {value!r} (known: {known})")
        return None

    def area(self, name: str) -> str | None:
        value = self.text(name)
        if value is not None and not AREA.match(value):
            self.error(name, f"{value!r} is not a local authority area code like E08000025")
            return None
        return value

    def ordered(self, start: date | None, end: date | None, end_name: str) -> None:
        if start and end and end < start:
            self.error(end_name, "is before the start date")


def identify_child(f: Fields, subject: dict, nhs_field: str) -> None:
    """The contract names a child by NHS number, or by local id, family name and birth date."""
    if subject.get("nhs_number"):
        return
    if subject.get("local_id") and subject.get("family_name") and subject.get("birth_date"):
        return
    label = f.where + f.prefix + nhs_field
    if not any(name == label for name, _ in f.errors):  # a bad NHS number is already named
        f.error(nhs_field, "the child needs an NHS number, or a local id with family name and "
                           "birth date")


def long_date(value: date) -> str:
    """'21 November 2026': dates in summaries read the way people write them."""
    return f"{value.day} {value:%B %Y}"
