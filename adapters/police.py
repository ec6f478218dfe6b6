"""Police incident notifications -> one flag per child present.

Domestic abuse incidents and missing episodes become `domestic_abuse_incident` and
`missing_episode` flags; a named adult with a recorded risk adds `household_member_risk` for
each child. Summaries are composed from the fields in plain words, because the school that
reads one before the next school day does not speak police codes.

Input: CSV with one row per child present (incident columns repeated), or JSON (an array of
incidents, or `{"incidents": [...]}`) with a `children` list and an optional `named_adult`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from adapters.records import (
    Fields, FlagPart, Part, RecordError, compact, identify_child, long_date, mapping,
)
from adapters.sources import Batch, SourceError, SourceRecord, csv_batch, read_json, \
    write_json_array

LONDON = ZoneInfo("Europe/London")
CHILD = ("nhs_number", "local_id", "given_name", "family_name", "birth_date")
ADULT = ("nhs_number", "given_name", "family_name", "birth_date", "relationship", "risk")


def map_row(row: dict, table: dict | None = None) -> list[Part]:
    """A CSV row: the incident, one child (`child_*` columns), perhaps an adult (`adult_*`)."""
    f = Fields(row)
    adult = f.nested(row, prefix="adult_")
    return _incident(f, [f.nested(row, prefix="child_")],
                     adult if adult.present(*ADULT) else None, table or mapping("police"))


def map_incident(incident: dict, table: dict | None = None) -> list[Part]:
    """A JSON incident with `children` and an optional `named_adult`."""
    if not isinstance(incident, dict):
        raise RecordError([("incident", "is not a JSON object")])
    f = Fields(incident, missing="no such field")
    children = incident.get("children")
    if not isinstance(children, list) or not all(isinstance(c, dict) for c in children):
        f.error("children", "must be a list of children, each a JSON object")
        children = []
    adult = incident.get("named_adult")
    if adult is not None and not isinstance(adult, dict):
        f.error("named_adult", "must be a JSON object")
        adult = None
    return _incident(f, [f.nested(c, where=f"children[{i}].") for i, c in enumerate(children, 1)],
                     f.nested(adult, where="named_adult.") if adult else None,
                     table or mapping("police"))


def load(path: Path) -> Batch:
    if path.suffix.lower() == ".csv":
        return csv_batch(path, map_row)
    data = read_json(path)
    if isinstance(data, dict) and isinstance(data.get("incidents"), list):
        data = data["incidents"]
    if not isinstance(data, list):
        raise SourceError(f"{path}: expected a JSON array of incidents or "
                          '{"incidents": [...]}')
    records = [SourceRecord(i, item) for i, item in enumerate(data, 1)]
    return Batch(records, map_incident, write_json_array, ".json", "record")


def _incident(f: Fields, children: list[Fields], adult: Fields | None,
              table: dict) -> list[Part]:
    ref = f.text("incident_ref")
    version = f.text("version", required=False) or "1"
    occurred = f.moment("occurred_at")
    category = f.code("incident_type", table["incident_types"], "incident type")
    level = f.text("risk_level")
    severity = f.code("risk_level", table["risk_levels"], "risk level") if level else None
    area = f.text("address_area", required=False)
    notes = f.text("notes", required=False)
    subjects = [_child(c) for c in children]
    if not children:
        f.error("children", "the incident names no child")
    person, risk = _adult(adult, table) if adult else (None, None)
    f.check()

    facts = Facts(occurred, (level or "").lower(), area)
    basis = {"purpose": table["purpose"], "lawful_basis": table["lawful_basis"]}
    parts: list[Part] = []
    for subject in subjects:
        name = subject.get("given_name")
        child_ref = f"police:{ref}:{subject.get('nhs_number') or subject['local_id']}"
        related = [{**person, "role": risk["role"] if risk else "household_member"}] \
            if person else []
        parts.append(FlagPart(f"{child_ref}:{category}", version, compact({
            "subject": subject, "category": category, "severity": severity,
            "summary": facts.summary(category, name), "details": notes,
            "occurred_at": occurred.isoformat(), "related_people": related, **basis})))
        if risk:
            parts.append(FlagPart(f"{child_ref}:household_member_risk", version, compact({
                "subject": subject, "category": "household_member_risk",
                "severity": risk["severity"],
                "summary": facts.adult_summary(name, person, risk["phrase"]),
                "details": notes, "occurred_at": occurred.isoformat(),
                "related_people": [{**person, "role": risk["role"]}], **basis})))
    return parts


def _child(c: Fields) -> dict:
    subject = compact({"nhs_number": c.nhs("nhs_number", required=False),
                       "local_id": c.text("local_id", required=False),
                       "given_name": c.text("given_name", required=False),
                       "family_name": c.text("family_name", required=False),
                       "birth_date": c.date("birth_date", required=False)})
    identify_child(c, subject, "nhs_number")
    return subject


def _adult(a: Fields, table: dict) -> tuple[dict, dict | None]:
    person = compact({"nhs_number": a.nhs("nhs_number", required=False),
                      "given_name": a.text("given_name", required=False),
                      "family_name": a.text("family_name", required=False),
                      "birth_date": a.date("birth_date", required=False),
                      "relationship": a.text("relationship", required=False)})
    if not (person.get("nhs_number") or person.get("given_name") or person.get("family_name")):
        a.error("family_name", "a named adult needs a name or an NHS number")
    risk = a.code("risk", table["adult_risks"], "adult risk", required=False)
    return person, risk


class Facts:
    """The incident's facts, told the way a teacher or health visitor needs to hear them."""

    def __init__(self, occurred: datetime, level: str, area: str | None):
        local = occurred.astimezone(LONDON)
        self.when = f"{long_date(local.date())} at {local:%H:%M}"
        self.day = long_date(local.date())
        self.level, self.area = level, area

    def summary(self, category: str, name: str | None) -> str:
        child = name or "The child"
        where = f" in {self.area}" if self.area else ""
        if category == "missing_episode":
            return (f"{child} was reported missing to police on {self.when}{where}. Police "
                    f"judged the risk to {name or 'the child'} while missing as {self.level}. "
                    "Children who go missing can be at risk of harm or exploitation: ask "
                    "where they were and who they were with, and tell the social worker.")
        home = f"{name}'s home" if name else "the child's home"
        return (f"Police were called to domestic abuse at {home}{where} on {self.when}. "
                f"{child} was in the home at the time. Police judged the risk of further harm "
                f"as {self.level}. {child} may be frightened, upset or tired and needs "
                "understanding and support from the adults who see them today.")

    def adult_summary(self, name: str | None, person: dict, phrase: str) -> str:
        adult = " ".join(p for p in (person.get("given_name"), person.get("family_name"))
                         if p) or "An adult"
        child = name or "the child"
        relation = f", {child}'s {person['relationship']}," if person.get("relationship") else ""
        return (f"{adult}{relation} lives in or visits {child}'s household and {phrase} "
                f"(police incident on {self.day}). Think about what this means for {child}'s "
                "safety whenever you work with the family.")
