"""Children's social care export -> statutory plan flags, transfers and pickups.

Rows are shaped like the Children in Need census (child id, NHS number, CP plan dates and
category of abuse, CIN plan dates and primary need) with looked-after periods added. Each
plan a row starts opens a flag; an end date closes it (PATCH, status inactive), found through
the adapter's state file because the case system never held the flag's id. `transfer_out`
rows record a move to another area; `transfer_in_accept` rows pick up a transfer another area
made, by the id its `transfer.created` event carried.

The UPN is read by schools, not by this contract: it is left in the export and not sent.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from adapters.records import (
    Call, Fields, FlagPart, Part, compact, identify_child, idempotency_key, long_date, mapping,
)
from adapters.sources import Batch, csv_batch

ROW_TYPES = {"child": "child", "transfer_out": "transfer_out",
             "transfer_in_accept": "transfer_in_accept"}
PLAN_COLUMNS = (("child_protection_plan", "CPPstartDate", "CPPendDate"),
                ("child_in_need", "CINPlanStartDate", "CINPlanEndDate"),
                ("looked_after_child", "CLAstartDate", "CLAendDate"))
TRANSFER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def map_row(row: dict, table: dict | None = None) -> list[Part]:
    table = table or mapping("social_care")
    f = Fields(row)
    kind = f.code("RowType", ROW_TYPES, "row type")
    version = f.text("Version", required=False) or "1"
    if kind == "transfer_in_accept":
        return _accept(f)
    if kind is None:
        f.check()
    subject = _subject(f, table)
    if kind == "transfer_out":
        return _transfer(f, table, subject, version)
    return _plans(f, table, subject, version)


def load(path: Path) -> Batch:
    return csv_batch(path, map_row)


def _subject(f: Fields, table: dict) -> dict:
    disabilities = f.text("Disabilities", required=False)
    words = []
    for code in re.split(r"[\s;,]+", disabilities or ""):
        if code and (word := f.code_value("Disabilities", code, table["disabilities"],
                                          "disability code")):
            words.append(word)
    subject = compact({
        "nhs_number": f.nhs("NHSnumber", required=False),
        "local_id": f.text("LAchildID"),
        "given_name": f.text("GivenName", required=False),
        "family_name": f.text("FamilyName", required=False),
        "birth_date": f.date("PersonBirthDate", required=False),
        "sex": f.code("GenderCurrent", table["genders"], "gender", required=False),
        "ethnicity": f.code("Ethnicity", table["ethnicities"], "ethnicity", required=False),
        "disability": ", ".join(words) or None,
    })
    identify_child(f, subject, "NHSnumber")
    return subject


def _plans(f: Fields, table: dict, subject: dict, version: str) -> list[Part]:
    name = subject.get("given_name") or "The child"
    parts: list[Part] = []
    found = []
    for category, start_column, end_column in PLAN_COLUMNS:
        start, end = f.date(start_column, required=False), f.date(end_column, required=False)
        f.ordered(start, end, end_column)
        if end and not start:
            f.error(start_column, f"is needed to close the plan that {end_column} ends")
        if start:
            found.append((category, start, end))
    abuse = need = legal = None
    if any(c == "child_protection_plan" for c, _, _ in found):
        abuse = f.code("InitialCategoryOfAbuse", table["categories_of_abuse"],
                       "category of abuse")
    if any(c == "child_in_need" for c, _, _ in found):
        need = f.code("PrimaryNeedCode", table["primary_needs"], "primary need",
                      required=False)
    if any(c == "looked_after_child" for c, _, _ in found):
        legal = f.code("LegalStatus", table["legal_statuses"], "legal status", required=False)
    if not found and not f.errors:
        f.error("CPPstartDate", "the row has no child protection plan, child in need plan or "
                                "looked-after start date: nothing to send")
    f.check()
    for category, start, end in found:
        summary = _summary(category, name, start, abuse, need, legal)
        plan = table["plans"][category]
        parts.append(FlagPart(
            f"social-care:{subject['local_id']}:{category}:{start.isoformat()}", version,
            compact({"subject": subject, "category": category, "severity": plan["severity"],
                     "summary": summary, "period": {"start": start.isoformat()},
                     "purpose": plan["purpose"], "lawful_basis": table["lawful_basis"]}),
            {"status": "inactive", "period": {"end": end.isoformat()}} if end else None))
    return parts


def _summary(category: str, name: str, start: date, abuse: str | None, need: str | None,
             legal: str | None) -> str:
    since = long_date(start)
    if category == "child_protection_plan":
        return (f"{name} has had a child protection plan since {since} because of {abuse}. "
                f"Everyone working with {name} should know the plan is in place, play their "
                "part in it and tell the social worker about any new worry.")
    if category == "child_in_need":
        because = f", mainly because of {need}" if need else ""
        return (f"{name} has had a child in need plan with children's social care since "
                f"{since}{because}. Agencies working with {name} are part of the plan and "
                "should tell the social worker anything that affects it.")
    under = f" under {legal}" if legal else ""
    return (f"{name} has been looked after by the local authority (in care) since {since}"
            f"{under}. Speak to the social worker before sharing anything with the family, "
            "and tell them about any concern.")


def _transfer(f: Fields, table: dict, subject: dict, version: str) -> list[Part]:
    to_area = f.area("TransferToArea")
    plan = f.code("TransferPlan", table["transfer_plans"], "plan")
    notified = f.moment("TransferNotifiedAt")
    body = compact({"subject": subject, "to_area": to_area, "plan": plan,
                    "notified_at": notified.isoformat() if notified else None,
                    "receiving_agency": f.text("TransferReceivingAgency", required=False),
                    "reason": f.text("TransferReason", required=False)})
    f.check()
    return [Call("/v1/transfers", body, idempotency_key(
        "social-care", subject["local_id"], "transfer", to_area, notified.isoformat(),
        f"v{version}"))]


def _accept(f: Fields) -> list[Part]:
    transfer_id = f.text("FlagshareTransferID")
    if transfer_id and not TRANSFER_ID.match(transfer_id):
        f.error("FlagshareTransferID", f"{transfer_id!r} is not a flagshare transfer id")
    f.check()
    return [Call(f"/v1/transfers/{transfer_id}/accept", None,
                 idempotency_key("social-care", "accept", transfer_id))]
