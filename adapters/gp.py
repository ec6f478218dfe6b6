"""GP clinical system FHIR R4 -> safeguarding flags and registered-GP relationships.

Reads one resource or a Bundle of them, each validated with `fhir.resources`. Its R4B models
are used: Flag, Patient, Bundle and EpisodeOfCare did not change between R4 and R4B, and the
package's maintained releases carry no separate R4 set. A `Flag` is mapped by its coded
`code` through adapters/mappings/gp.yaml; an `EpisodeOfCare` (the practice's registration of
the patient) becomes a `registered_gp` relationship, which is what routes other agencies'
flags to the practice. The child is identified by the NHS number on the subject reference or
on its Patient (in the Bundle or contained); a flag without one is rejected, not guessed.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.episodeofcare import EpisodeOfCare
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.reference import Reference

from adapters.records import (
    Call, FlagPart, Part, RecordError, compact, idempotency_key, mapping, nhs_problem,
)
from adapters.sources import Batch, SourceError, SourceRecord, read_json

NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ETHNIC_CATEGORY = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"
ETHNIC_CODES = {"A", "B", "C", "D", "E", "F", "G", "H", "J", "K", "L", "M", "N", "P", "R", "S",
                "Z", "99"}
CONTEXT = {"Patient", "Organization", "Practitioner", "PractitionerRole", "Encounter",
           "Location"}
REJECTED_REASON = "https://flagshare.example/fhir/StructureDefinition/rejected-reason"
FLAG_STATUSES = {"active", "inactive", "entered-in-error"}


def map_resource(resource: Any, patients: dict[str, dict] | None = None,
                 table: dict | None = None) -> list[Part]:
    """One FHIR resource -> requests; `patients` are the file's Patients by reference."""
    table = table or mapping("gp")
    if not isinstance(resource, dict):
        raise RecordError([("resource", "the entry holds no FHIR resource")])
    kind = resource.get("resourceType")
    if kind == "Flag":
        return _flag(resource, patients or {}, table)
    if kind == "EpisodeOfCare":
        return _registration(resource, patients or {})
    raise RecordError([("resourceType", f"{kind!r}: this adapter reads Flag resources and "
                                        "EpisodeOfCare (GP registration) resources")])


def load(path: Path) -> Batch:
    data = read_json(path)
    if not isinstance(data, dict) or "resourceType" not in data:
        raise SourceError(f"{path}: not a FHIR resource (no resourceType)")
    if data["resourceType"] == "Bundle":
        try:
            Bundle.model_validate({**data, "entry": []})
        except (ValueError, TypeError) as exc:
            raise SourceError(f"{path}: not a valid FHIR Bundle: {exc}") from exc
        entries = [e if isinstance(e, dict) else {} for e in data.get("entry") or []]
    else:
        entries = [{"resource": data}]
    patients: dict[str, dict] = {}
    patient_entries, records = [], []
    for number, entry in enumerate(entries, 1):
        resource = entry.get("resource")
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        if kind == "Patient":
            patient_entries.append(entry)
            if entry.get("fullUrl"):
                patients[entry["fullUrl"]] = resource
            if resource.get("id"):
                patients[f"Patient/{resource['id']}"] = resource
        if kind not in CONTEXT:
            records.append(SourceRecord(number, resource))

    def write_rejected(target: Path, rejected) -> None:
        """A Bundle of the rejected resources, each entry carrying its reason, with the
        Patients they refer to, so the fixed file can be pushed again as it is."""
        bundle = {"resourceType": "Bundle", "type": "collection", "entry": patient_entries + [
            {"extension": [{"url": REJECTED_REASON, "valueString": reason}],
             "resource": record.data} for record, reason in rejected]}
        target.write_text(json.dumps(bundle, indent=2, ensure_ascii=False) + "\n",
                          encoding="utf-8")

    return Batch(records, partial(map_resource, patients=patients), write_rejected, ".json",
                 "entry")


def _flag(resource: dict, patients: dict[str, dict], table: dict) -> list[Part]:
    flag = _validated(Flag, resource)
    errors: list[tuple[str, str]] = []
    if not flag.id:
        errors.append(("Flag.id", "missing: the record's own id keys it, so re-sending a file "
                                  "never duplicates a flag"))
    if flag.status not in FLAG_STATUSES:
        errors.append(("Flag.status", f"{flag.status!r} is not active, inactive or "
                                      "entered-in-error"))
    subject = _subject(flag.subject, resource, patients, "Flag.subject", errors)
    entry = _mapped(flag, table)
    if entry is None:
        codings = ", ".join(f"{c.system}|{c.code}" + (f" ({c.display})" if c.display else "")
                            for c in flag.code.coding or []) or "no coding"
        errors.append(("Flag.code", f"no flagshare category for {codings}: add it to "
                                    "adapters/mappings/gp.yaml if it is a safeguarding flag"))
    start = _day(flag.period.start if flag.period else None, "Flag.period.start", errors)
    end = _day(flag.period.end if flag.period else None, "Flag.period.end", errors)
    _ordered(start, end, "Flag.period.end", errors)
    # An active flag's end is when it is planned to end, sent with it; a closed one's is sent
    # as it closes. A planned end alone has no start for flagshare's period to run from.
    planned_end = end if flag.status == "active" else None
    if planned_end and start is None and not errors:
        errors.append(("Flag.period.start", "missing: an active flag with a planned end "
                                            "(period.end) needs the day it runs from"))
    if errors:
        raise RecordError(errors)
    note = f" The practice's note: {flag.code.text.strip()}" if flag.code.text else ""
    create = compact({"subject": subject, "category": entry["category"],
                      "severity": entry["severity"], "summary": entry["summary"] + note,
                      "period": compact({"start": start, "end": planned_end}) if start else None,
                      "purpose": table["purpose"], "lawful_basis": table["lawful_basis"]})
    close = None
    if flag.status == "inactive":
        close = compact({"status": "inactive", "period": compact({"end": end}) if end else None})
    elif flag.status == "entered-in-error":
        close = {"status": "entered_in_error"}
    return [FlagPart(f"gp:Flag/{flag.id}", _version(flag), create, close)]


def _registration(resource: dict, patients: dict[str, dict]) -> list[Part]:
    episode = _validated(EpisodeOfCare, resource)
    errors: list[tuple[str, str]] = []
    if not episode.id:
        errors.append(("EpisodeOfCare.id", "missing: the record's own id keys it"))
    subject = _subject(episode.patient, resource, patients, "EpisodeOfCare.patient", errors)
    start = _day(episode.period.start if episode.period else None,
                 "EpisodeOfCare.period.start", errors)
    end = _day(episode.period.end if episode.period else None, "EpisodeOfCare.period.end",
               errors)
    if start is None and not any(f == "EpisodeOfCare.period.start" for f, _ in errors):
        errors.append(("EpisodeOfCare.period.start", "missing: when the registration began"))
    _ordered(start, end, "EpisodeOfCare.period.end", errors)
    if errors:
        raise RecordError(errors)
    body = compact({"subject": subject, "kind": "registered_gp", "start": start, "end": end})
    return [Call("/v1/relationships", body, idempotency_key(
        "gp", f"EpisodeOfCare/{episode.id}", f"v{_version(episode)}"))]


def _validated(model, resource: dict):
    try:
        return model.model_validate(resource)
    except (ValueError, TypeError) as exc:
        found = getattr(exc, "errors", None)
        if not callable(found):
            raise RecordError([(resource.get("resourceType", "resource"), str(exc))]) from exc
        raise RecordError([
            (".".join([model.__name__, *(str(p) for p in e["loc"])]), e["msg"])
            for e in found()[:10]]) from exc


def _subject(ref: Reference, resource: dict, patients: dict[str, dict], field: str,
             errors: list[tuple[str, str]]) -> dict:
    """The child named the contract's way, from the reference or the Patient it points to."""
    patient = None
    if ref.reference:
        if ref.reference.startswith("#"):
            patient = next((r for r in resource.get("contained") or []
                            if isinstance(r, dict) and r.get("id") == ref.reference[1:]), None)
        elif ref.reference in patients:
            patient = patients[ref.reference]
        elif _not_a_patient(ref.reference):
            errors.append((field, f"refers to {ref.reference}, not a patient"))
            return {}
    nhs = None
    if ref.identifier and ref.identifier.system == NHS_SYSTEM:
        nhs = ref.identifier.value
    details: dict = {}
    if patient is not None:
        try:
            model = Patient.model_validate(patient)
        except (ValueError, TypeError) as exc:
            errors.append((field, f"its Patient is not valid FHIR: {exc}"))
            return {}
        nhs = nhs or next((i.value for i in model.identifier or []
                           if i.system == NHS_SYSTEM), None)
        details = _demographics(model)
    if not nhs:
        errors.append((field, f"no NHS number: neither the reference nor its Patient in this "
                              f"file has an identifier with system {NHS_SYSTEM}"))
        return {}
    if problem := nhs_problem(nhs):
        errors.append((field, problem))
        return {}
    return {"nhs_number": nhs, **details}


def _not_a_patient(reference: str) -> bool:
    """A relative or absolute reference to another kind of resource (Location/1, ...)."""
    parts = reference.split("/")
    return not reference.startswith("urn:") and len(parts) >= 2 and parts[-2] != "Patient"


def _demographics(patient: Patient) -> dict:
    names = patient.name or []
    name = next((n for n in names if n.use == "official"), names[0] if names else None)
    address = (patient.address or [None])[0]
    ethnicity = None
    for extension in patient.extension or []:
        if extension.url == ETHNIC_CATEGORY and extension.valueCodeableConcept:
            ethnicity = next((c.code for c in extension.valueCodeableConcept.coding or []
                              if c.code in ETHNIC_CODES), None)
    return compact({
        "given_name": (name.given or [None])[0] if name else None,
        "family_name": name.family if name else None,
        "birth_date": patient.birthDate,
        "sex": patient.gender,
        "postcode": address.postalCode if address else None,
        "ethnicity": ethnicity,
    })


def _mapped(flag: Flag, table: dict) -> dict | None:
    for coding in flag.code.coding or []:
        for entry in table["codes"]:
            if coding.system == entry["system"] and coding.code == entry["code"]:
                return entry
    return None


def _day(value, field: str, errors: list[tuple[str, str]]) -> date | None:
    if value is None or isinstance(value, datetime):
        return value.date() if value else None
    if isinstance(value, date):
        return value
    errors.append((field, f"{value!r} is not a full date"))
    return None


def _ordered(start: date | None, end: date | None, field: str,
             errors: list[tuple[str, str]]) -> None:
    """Checked before anything is sent: a flag's end goes in the PATCH that closes it, after
    the flag is published, where a refusal would leave the flag active."""
    if start and end and end < start:
        errors.append((field, "is before the start date"))


def _version(resource) -> str:
    return (resource.meta.versionId if resource.meta and resource.meta.versionId else "1")
