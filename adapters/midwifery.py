"""Maternity safeguarding concerns -> flags about the unborn child, then the newborn.

A `booking` row names an unborn child the contract's way (mother's NHS number and expected
delivery date), states the midwife's relationship with it and publishes the concern with the
mother, and any partner, as related people: reviews keep finding men around a baby unknown to
the agencies. A `birth` row does the same for the newborn by its own NHS number, naming the
mother as parent, so alerts follow the baby rather than stopping at the pregnancy.

Input: CSV, one row per booking concern or birth (column `event`).
"""

from __future__ import annotations

from pathlib import Path

from adapters.records import (
    Call, Fields, FlagPart, Part, compact, idempotency_key, long_date, mapping,
)
from adapters.sources import Batch, csv_batch

EVENTS = {"booking": "booking", "birth": "birth"}


def map_row(row: dict, table: dict | None = None) -> list[Part]:
    table = table or mapping("midwifery")
    f = Fields(row)
    record = f.text("record_id")
    version = f.text("version", required=False) or "1"
    event = f.code("event", EVENTS, "event")
    mother = compact({"role": "parent", "relationship": "mother",
                      "nhs_number": f.nhs("mother_nhs_number"),
                      "given_name": f.text("mother_given_name", required=False),
                      "family_name": f.text("mother_family_name", required=False),
                      "birth_date": f.date("mother_birth_date", required=False)})
    edd = f.date("expected_delivery_date", required=event == "booking")
    notes = f.text("notes", required=False)
    if event == "birth":
        return _birth(f, table, record, version, mother, edd, notes)
    f.check()  # an unknown event stops here, its error already named
    return _booking(f, table, record, version, mother, edd, notes)


def load(path: Path) -> Batch:
    return csv_batch(path, map_row)


def _booking(f: Fields, table: dict, record: str, version: str, mother: dict, edd,
             notes: str | None) -> list[Part]:
    booked = f.date("booked_on")
    concern = f.code("concern", table["concerns"], "concern")
    partner = compact({"role": "household_member", "relationship": "mother's partner",
                       "given_name": f.text("partner_given_name", required=False),
                       "family_name": f.text("partner_family_name", required=False),
                       "birth_date": f.date("partner_birth_date", required=False)})
    f.ordered(booked, edd, "expected_delivery_date")
    f.check()
    subject = {"unborn": True, "mother_nhs_number": mother["nhs_number"],
               "expected_delivery_date": edd.isoformat()}
    summary = (f"At booking on {long_date(booked)} the midwife recorded {concern['concern']} "
               f"for the baby due on {long_date(edd)}. {concern['meaning']}")
    related = [mother] + ([partner] if "given_name" in partner or "family_name" in partner
                          else [])
    return [
        Call("/v1/relationships", {"subject": subject, "kind": "midwife",
                                   "start": booked.isoformat()},
             idempotency_key("midwifery", record, f"v{version}", "midwife")),
        FlagPart(f"midwifery:{record}", version, compact({
            "subject": subject, "category": concern["category"],
            "severity": concern["severity"], "summary": summary, "details": notes,
            "period": {"start": booked.isoformat()}, "related_people": related,
            "purpose": table["purpose"], "lawful_basis": table["lawful_basis"]})),
    ]


def _birth(f: Fields, table: dict, record: str, version: str, mother: dict, edd,
           notes: str | None) -> list[Part]:
    born = f.date("baby_birth_date")
    concern = f.code("concern", table["concerns"], "concern", required=False)
    subject = compact({"nhs_number": f.nhs("baby_nhs_number"),
                       "given_name": f.text("baby_given_name", required=False),
                       "family_name": f.text("baby_family_name", required=False),
                       "birth_date": born,
                       "sex": f.code("baby_sex", table["sexes"], "sex", required=False),
                       # The pregnancy the baby was known by, so the API can link the two.
                       "mother_nhs_number": mother.get("nhs_number"),
                       "expected_delivery_date": edd})
    f.check()
    parts: list[Part] = [Call(
        "/v1/relationships", {"subject": subject, "kind": "midwife", "start": born.isoformat()},
        idempotency_key("midwifery", record, f"v{version}", "midwife"))]
    if concern:
        baby = subject.get("given_name") or "The baby"
        summary = (f"{baby} was born on {long_date(born)}. During the pregnancy the midwife "
                   f"recorded {concern['concern']}. {concern['meaning']}")
        parts.append(FlagPart(f"midwifery:{record}", version, compact({
            "subject": subject, "category": concern["category"],
            "severity": concern["severity"], "summary": summary, "details": notes,
            "period": {"start": born.isoformat()}, "related_people": [mother],
            "purpose": table["purpose"], "lawful_basis": table["lawful_basis"]})))
    return parts
