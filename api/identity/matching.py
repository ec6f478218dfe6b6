"""How alike two person records are, with the reason for every point.

Names are normalised (case, accents, punctuation, double-barrelled parts), then compared for
nicknames (the `nicknames` dataset), sound (metaphone and NYSIIS from `jellyfish`) and spelling
(optimal string alignment and Jaro-Winkler from `rapidfuzz`). Birth dates count when equal,
with day and month transposed, or one digit apart. The score ranks search results and decides
what is queued as a possible match; it never merges anything by itself.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Protocol

import jellyfish
from nicknames import NickNamer
from rapidfuzz.distance import OSA, JaroWinkler

# Points per field. A record with the same family name and birth date reaches QUEUE_AT on its
# own; every other combination needs corroboration (given name, postcode).
FAMILY = {"exact": 3.0, "shared_part": 2.0, "sounds_alike": 2.0, "spelling": 2.0,
          "different": -1.0}
GIVEN = {"exact": 3.0, "nickname": 2.5, "sounds_alike": 2.0, "spelling": 2.0, "initial": 1.0,
         "different": -3.0}
BIRTH = {"exact": 4.0, "day_month_transposed": 2.5, "one_digit": 2.0, "different": -5.0}
POSTCODE = {"exact": 1.5, "same_district": 0.75}
SEX_DIFFERENT = -3.0
QUEUE_AT = 7.0  # a possible match for a MASH practitioner to confirm or reject
SEARCH_AT = 5.0  # shown as a search candidate
# British diminutives the (US-curated) `nicknames` dataset lacks.
EXTRA_FORMS = {
    "isabella": {"izzy", "issy", "bella"}, "isabelle": {"izzy", "issy", "belle"},
    "katherine": {"katie", "kate", "kat"}, "catherine": {"katie", "kate", "cath"},
    "alfred": {"alfie"}, "evelyn": {"evie"}, "matilda": {"tilly", "tilda"},
    "harriet": {"hattie"}, "theodore": {"theo"}, "florence": {"florrie"},
    "muhammad": {"mohammed", "mohammad", "mo"}, "mohammed": {"muhammad", "mohammad", "mo"},
}


class Demographics(Protocol):
    given_name: str | None
    family_name: str | None
    birth_date: date | None
    sex: str | None
    postcode: str | None


@dataclass(frozen=True)
class Evidence:
    field: str
    match: str
    points: float


@dataclass(frozen=True)
class Score:
    total: float
    evidence: tuple[Evidence, ...]

    def reasons(self) -> list[dict]:
        return [{"field": e.field, "match": e.match} for e in self.evidence]


def score(a: Demographics, b: Demographics) -> Score:
    """Points for each field both records hold; a field either lacks says nothing."""
    evidence = []
    for field, compare, points in (("family_name", family_match, FAMILY),
                                   ("given_name", given_match, GIVEN),
                                   ("birth_date", birth_date_match, BIRTH)):
        left, right = getattr(a, field), getattr(b, field)
        if left is not None and right is not None:
            how = compare(left, right)
            evidence.append(Evidence(field, how, points[how]))
    if a.postcode and b.postcode:
        how = postcode_match(a.postcode, b.postcode)
        if how:
            evidence.append(Evidence("postcode", how, POSTCODE[how]))
    if a.sex in ("male", "female") and b.sex in ("male", "female") and a.sex != b.sex:
        evidence.append(Evidence("sex", "different", SEX_DIFFERENT))
    return Score(round(sum(e.points for e in evidence), 2), tuple(evidence))


def normalise(name: str) -> str:
    """Lower case, accents dropped, anything but letters and digits a single space."""
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w]|_", " ", bare).split())


def family_match(a: str, b: str) -> str:
    x, y = normalise(a), normalise(b)
    if x.replace(" ", "") == y.replace(" ", ""):
        return "exact"
    if set(x.split()) & set(y.split()):
        return "shared_part"  # Hartley-Jones and Hartley
    # Two records keyed by two agencies may each carry one slip: two edits apart still count
    # for a surname of four letters or more with the same first letter.
    return _alike(x.replace(" ", ""), y.replace(" ", ""), slips=2)


def given_match(a: str, b: str) -> str:
    x, y = normalise(a), normalise(b)
    # Only the first given name: middle names are recorded by some agencies and not others.
    x, y = (x.split() or [""])[0], (y.split() or [""])[0]
    if x == y:
        return "exact"
    if len(x) == 1 or len(y) == 1:
        return "initial" if x[0] == y[0] else "different"
    if y in _name_forms(x) or x in _name_forms(y):
        return "nickname"
    # A nickname on one record and a misspelt formal name on the other (Lottie, Charlote).
    if any(_spelling(form, y) for form in _name_forms(x) - {x}) or any(
            _spelling(form, x) for form in _name_forms(y) - {y}):
        return "nickname"
    return _alike(x, y)


def birth_date_match(a: date, b: date) -> str:
    if a == b:
        return "exact"
    if a.year == b.year and (a.month, a.day) == (b.day, b.month):
        return "day_month_transposed"
    if OSA.distance(_digits(a), _digits(b)) == 1:
        return "one_digit"
    return "different"


def _digits(d: date) -> str:
    """YYYYMMDD, eight digits for any year (strftime drops the zeros of years before 1000)."""
    return f"{d.year:04d}{d.month:02d}{d.day:02d}"


def birth_date_variants(d: date) -> set[date]:
    """Every date that would still score on birth date: the blocking key for candidates."""
    out = {d}
    try:
        out.add(date(d.year, d.day, d.month))
    except ValueError:
        pass
    text = _digits(d)
    edits = {text[:i] + c + text[i + 1:] for i in range(8) for c in "0123456789"}
    edits |= {text[:i] + text[i + 1] + text[i] + text[i + 2:] for i in range(7)}
    for edit in edits:
        try:
            out.add(date(int(edit[:4]), int(edit[4:6]), int(edit[6:])))
        except ValueError:
            continue
    return out


def postcode_match(a: str, b: str) -> str | None:
    x, y = a.upper().replace(" ", ""), b.upper().replace(" ", "")
    if x == y:
        return "exact"
    if x[:-3] == y[:-3]:
        return "same_district"  # the outward code, e.g. B31
    return None


def _alike(x: str, y: str, slips: int = 1) -> str:
    if x.isascii() and y.isascii() and x.isalpha() and y.isalpha() and (
            jellyfish.metaphone(x) == jellyfish.metaphone(y)
            or jellyfish.nysiis(x) == jellyfish.nysiis(y)):
        return "sounds_alike"
    return "spelling" if _spelling(x, y, slips) else "different"


def _spelling(x: str, y: str, slips: int = 1) -> bool:
    """One keying slip (two in a name of eight letters or more, or when `slips` allows two),
    or nearly the same letters in the same order."""
    distance = OSA.distance(x, y)
    if distance <= 1 or JaroWinkler.normalized_similarity(x, y) >= 0.93:
        return True
    two_allowed = max(len(x), len(y)) >= 8 or (
        slips >= 2 and min(len(x), len(y)) >= 4 and x[0] == y[0])
    return distance == 2 and two_allowed


@lru_cache(maxsize=1)
def _namer() -> NickNamer:
    return NickNamer()


@lru_cache(maxsize=4096)
def _name_forms(name: str) -> frozenset[str]:
    """The name, its nicknames and the formal names it is a nickname of."""
    namer = _namer()
    extra = EXTRA_FORMS.get(name, set()) | {
        formal for formal, short in EXTRA_FORMS.items() if name in short}
    return frozenset({name} | namer.nicknames_of(name) | namer.canonicals_of(name) | extra)
