"""Reading console forms: each problem named against its field, in the words the GOV.UK Design
System uses, for the error summary at the top of the page and the message beside the field."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from fastapi import Request
from pydantic import TypeAdapter, ValidationError

from api.identity.schemas import NhsNumberDigits

_NHS = TypeAdapter(NhsNumberDigits)


async def fields(request: Request) -> dict[str, str]:
    """The text fields of a posted form, or of the query string for a GET form."""
    data = await request.form() if request.method == "POST" else request.query_params
    return {k: v for k, v in data.items() if isinstance(v, str)}


@dataclass
class Errors:
    """Field id -> message, in the order they were found (the order of the form)."""

    by_field: dict[str, str] = field(default_factory=dict)

    def add(self, field_id: str, message: str) -> None:
        self.by_field.setdefault(field_id, message)

    def __bool__(self) -> bool:
        return bool(self.by_field)

    def summary(self) -> list[dict]:
        return [{"text": m, "href": f"#{f}"} for f, m in self.by_field.items()]

    def message(self, field_id: str) -> dict | None:
        text = self.by_field.get(field_id)
        return {"text": text} if text else None


def text(value: str | None, field_id: str, errors: Errors, *, required: str | None = None,
         max_length: int = 200) -> str | None:
    """Trimmed text, or None when blank; `required` is the message when it must be given."""
    value = (value or "").strip()
    if not value:
        if required:
            errors.add(field_id, required)
        return None
    if "\x00" in value:
        errors.add(field_id, "Remove the unprintable character")
    elif len(value) > max_length:
        errors.add(field_id, f"Must be {max_length} characters or fewer")
    return value


def nhs_number(value: str | None, field_id: str, errors: Errors) -> str | None:
    value = (value or "").replace(" ", "").strip()
    if not value:
        return None
    try:
        return _NHS.validate_python(value)
    except ValidationError:
        errors.add(field_id, "Enter a valid NHS number, like 999 000 0018")
        return None


def date_parts(fields: dict[str, str], name: str) -> dict[str, str]:
    """The day, month and year boxes of the GOV.UK date input named `name`."""
    return {part: fields.get(f"{name}-{part}", "") for part in ("day", "month", "year")}


def date_input(parts: dict[str, str | None], field_id: str, label: str,
               errors: Errors, *, required: bool = False, past: bool = False) -> date | None:
    """A GOV.UK date input (day, month, year boxes) as a date, or None when all are blank."""
    day, month, year = ((parts.get(k) or "").strip() for k in ("day", "month", "year"))
    if not (day or month or year):
        if required:
            errors.add(f"{field_id}-day", f"Enter {label}")
        return None
    missing = [name for name, v in (("day", day), ("month", month), ("year", year)) if not v]
    if missing:
        errors.add(f"{field_id}-{missing[0]}",
                   f"{label[0].upper()}{label[1:]} must include a {' and '.join(missing)}")
        return None
    try:
        value = date(int(year), int(month), int(day))
    except ValueError:
        errors.add(f"{field_id}-day", f"{label[0].upper()}{label[1:]} must be a real date")
        return None
    if not 1900 <= value.year <= 2200:
        errors.add(f"{field_id}-year", f"{label[0].upper()}{label[1:]} must have a 4-digit year")
        return None
    if past and value > date.today():
        errors.add(f"{field_id}-day", f"{label[0].upper()}{label[1:]} must be in the past")
        return None
    return value


def date_items(parts: dict[str, str | None], field_id: str, errors: Errors) -> list[dict]:
    """The three boxes of a GOV.UK date input, refilled, marked red when the date is wrong."""
    wrong = any(k.startswith(field_id + "-") for k in errors.by_field)
    return [{"name": name, "label": name.capitalize(), "value": parts.get(name) or "",
             "classes": f"govuk-input--width-{width}" + (" govuk-input--error" if wrong else ""),
             "id": f"{field_id}-{name}"}
            for name, width in (("day", 2), ("month", 2), ("year", 4))]


def date_error(field_id: str, errors: Errors) -> dict | None:
    for key, message in errors.by_field.items():
        if key.startswith(field_id + "-"):
            return {"text": message}
    return None
