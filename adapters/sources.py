"""Reading native export files into numbered records, and writing rejected ones back out.

Rejected records are written in the same format as their source, with the reason alongside,
so they can be fixed and pushed again (re-sending what was accepted is harmless).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.records import Part

REASON_COLUMN = "rejected_reason"


class SourceError(Exception):
    """The file as a whole cannot be read (not a usage of one bad row)."""


@dataclass(frozen=True)
class SourceRecord:
    number: int  # CSV line, JSON position or bundle entry, as a person would count it
    data: Any


@dataclass(frozen=True)
class Batch:
    """A file's records, the mapper bound to its context, and how to write rejects."""

    records: Sequence[SourceRecord]
    map: Callable[[Any], list[Part]]
    write_rejected: Callable[[Path, Sequence[tuple[SourceRecord, str]]], None]
    suffix: str  # of the rejected file
    label: str = "row"  # how a person refers to one record: row, record, entry


def read_csv(path: Path) -> tuple[list[str], list[SourceRecord]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames:
                raise SourceError(f"{path}: no header row")
            records = []
            line = reader.line_num
            for row in reader:
                records.append(SourceRecord(line + 1, row))
                line = reader.line_num
            return list(reader.fieldnames), records
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"{path}: {exc}") from exc


def csv_batch(path: Path, mapper: Callable[[dict], list[Part]]) -> Batch:
    header, records = read_csv(path)

    def write(target: Path, rejected: Sequence[tuple[SourceRecord, str]]) -> None:
        columns = header + ([REASON_COLUMN] if REASON_COLUMN not in header else [])
        with open(target, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, columns, extrasaction="ignore")
            writer.writeheader()
            for record, reason in rejected:
                writer.writerow({**record.data, REASON_COLUMN: reason})

    return Batch(records, mapper, write, ".csv")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}: not valid JSON ({exc})") from exc


def write_json_array(target: Path, rejected: Sequence[tuple[SourceRecord, str]]) -> None:
    """A JSON array of the rejected records, each with its reason (mappers ignore it)."""
    items = [{**record.data, REASON_COLUMN: reason} if isinstance(record.data, dict)
             else {"record": record.data, REASON_COLUMN: reason} for record, reason in rejected]
    target.write_text(json.dumps(items, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
