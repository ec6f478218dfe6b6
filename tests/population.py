"""A seeded synthetic population for identity-linking tests.

Families in Birmingham and Sandwell with siblings, twins, half-siblings (a mother's children by
different fathers), new partners, children who move area and babies recorded before birth; and
the records each agency holds about the children, with the errors real records carry: typos in
names, nicknames, day and month transposed, missing NHS numbers, an old postcode. Every record
knows which real child it is about (`truth`), so a test can score what the service linked.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from datetime import date, timedelta

BIRMINGHAM, SANDWELL = "E08000025", "E08000028"
OUTWARD = {BIRMINGHAM: ["B12", "B23", "B31", "B44", "B8", "B14"],
           SANDWELL: ["B66", "B67", "B69", "B70", "B71"]}
AGENCIES = {BIRMINGHAM: {"gp": "GP-A", "school": "SCHOOL-A", "police": "POLICE-A",
                         "csc": "CSC-A", "midwife": "MW-A"},
            SANDWELL: {"gp": "GP-B", "school": None, "police": "POLICE-B", "csc": "CSC-B",
                       "midwife": None}}
# Formal names and the name a child may go by (checked independently of the service's list).
GIRLS = [("Amelia", "Millie"), ("Charlotte", "Lottie"), ("Elizabeth", "Lizzie"),
         ("Jessica", "Jess"), ("Rebecca", "Becky"), ("Eleanor", "Ellie"), ("Sophia", "Sophie"),
         ("Isabella", "Izzy"), ("Katherine", "Katie"), ("Evelyn", "Evie"), ("Ava", None),
         ("Aisha", None), ("Zara", None), ("Mia", None), ("Freya", None), ("Grace", None),
         ("Olivia", None), ("Maryam", None), ("Ruby", None), ("Poppy", None)]
BOYS = [("Oliver", "Ollie"), ("William", "Will"), ("Thomas", "Tom"), ("Alexander", "Alex"),
        ("Samuel", "Sam"), ("Joshua", "Josh"), ("Benjamin", "Ben"), ("Frederick", "Freddie"),
        ("Alfred", "Alfie"), ("Harrison", "Harry"), ("Noah", None), ("Leo", None),
        ("Yusuf", None), ("Muhammad", None), ("Oscar", None), ("Jack", None), ("Arthur", None),
        ("Ibrahim", None), ("George", None), ("Reuben", None)]
FAMILIES = ["Hartley", "Patel", "Khan", "Smith", "Jones", "Williams", "Brown", "Taylor",
            "Begum", "Ahmed", "Hussain", "Wilson", "Evans", "Roberts", "Walker", "Wright",
            "Robinson", "Thompson", "Hughes", "Edwards", "Green", "Clarke", "Clark", "Turner",
            "Scott", "Cooper", "Morris", "Ward", "King", "Baker", "Nowak", "O'Brien", "Murphy",
            "Kaur", "Singh", "Ali", "Mensah", "Okafor", "Campbell", "Fletcher"]
ADULT_MEN = ["Dean", "Lee", "Craig", "Wayne", "Imran", "Tariq", "Marek", "Kwame", "Gary"]


@dataclass
class Child:
    key: str
    given: str
    nickname: str | None
    family: str
    birth_date: date | None  # None while unborn
    sex: str
    nhs: str
    postcode: str
    area: str
    mother_nhs: str
    father: str
    expected_delivery: date | None = None
    moved_to: tuple[str, str] | None = None  # (area, postcode) after a move


@dataclass(frozen=True)
class Record:
    agency: str
    subject: dict
    truth: str
    errors: tuple[str, ...] = ()


@dataclass
class Population:
    children: dict[str, Child] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)
    new_partners: dict[str, str] = field(default_factory=dict)  # family key -> partner name

    def error_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.records:
            for e in r.errors:
                counts[e] = counts.get(e, 0) + 1
        return counts


def generate(seed: int = 20261123, families: int = 60, today: date = date(2026, 11, 23)
             ) -> Population:
    rng = random.Random(seed)
    pop = Population()
    used_nhs: set[str] = set()
    for f in range(families):
        _family(rng, pop, f, used_nhs, today)
    _doppelgangers(rng, pop, used_nhs)
    _records(rng, pop, today)
    return pop


def nhs_number(rng: random.Random, used: set[str]) -> str:
    """A valid NHS number in the 999 test range, not used before."""
    while True:
        body = "9994" + "".join(rng.choice(string.digits) for _ in range(5))
        check = 11 - sum(int(d) * w for d, w in zip(body, range(10, 1, -1), strict=True)) % 11
        if check == 10:
            continue
        number = body + str(0 if check == 11 else check)
        if number not in used:
            used.add(number)
            return number


def typo(rng: random.Random, name: str) -> str:
    """One keying error, never in the first letter: swap, drop, double or replace a letter."""
    letters = [i for i in range(1, len(name)) if name[i].isalpha()]
    i = rng.choice(letters)
    kind = rng.choice(["swap", "drop", "double", "replace"]) if len(name) > 3 else "replace"
    if kind == "swap" and i < len(name) - 1 and name[i + 1].isalpha():
        return name[:i] + name[i + 1] + name[i] + name[i + 2:]
    if kind == "drop":
        return name[:i] + name[i + 1:]
    if kind == "double":
        return name[:i] + name[i] + name[i:]
    replacement = rng.choice([c for c in "aeiouy" if c != name[i].lower()])
    return name[:i] + replacement + name[i + 1:]


def _postcode(rng: random.Random, area: str) -> str:
    return (f"{rng.choice(OUTWARD[area])} {rng.randint(1, 9)}"
            f"{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}")


def _family(rng: random.Random, pop: Population, f: int, used: set[str], today: date) -> None:
    area = BIRMINGHAM if rng.random() < 0.7 else SANDWELL
    family = rng.choice(FAMILIES)
    postcode = _postcode(rng, area)
    mother = nhs_number(rng, used)
    fathers = [f"F{f}a"]
    moved = None
    if rng.random() < 0.15:  # the family moves to the other area
        to = SANDWELL if area == BIRMINGHAM else BIRMINGHAM
        moved = (to, _postcode(rng, to))
    born = today - timedelta(days=rng.randint(200, 365 * 15))
    children = rng.choice([1, 2, 2, 3, 3, 4])
    half = children > 1 and rng.random() < 0.35
    for c in range(children):
        if half and c == children - 1:
            fathers.append(f"F{f}b")  # a half-sibling by the mother's later partner
        twins = c > 0 and rng.random() < 0.06
        if not twins:
            born = born + timedelta(days=rng.randint(330, 1300)) if c else born
        if born > today - timedelta(days=30):
            break
        _add_child(rng, pop, f"c{f}.{c}", family, born, area, postcode, mother, fathers[-1],
                   used, moved)
    if rng.random() < 0.3:
        pop.new_partners[f"f{f}"] = rng.choice(ADULT_MEN)
    if rng.random() < 0.2:  # pregnant: an unborn child recorded by the midwife, then born
        due = today - timedelta(days=rng.randint(20, 120))
        key = f"c{f}.u"
        _add_child(rng, pop, key, family, None, area, postcode, mother, fathers[-1], used, None)
        pop.children[key].expected_delivery = due


def _add_child(rng, pop, key, family, born, area, postcode, mother, father, used, moved):
    sex = rng.choice(["female", "male"])
    given, nickname = rng.choice(GIRLS if sex == "female" else BOYS)
    if any(c.given == given and c.mother_nhs == mother for c in pop.children.values()):
        given, nickname = rng.choice(GIRLS if sex == "female" else BOYS)
    pop.children[key] = Child(key=key, given=given, nickname=nickname, family=family,
                              birth_date=born, sex=sex, nhs=nhs_number(rng, used),
                              postcode=postcode, area=area, mother_nhs=mother, father=father,
                              moved_to=moved)


def _doppelgangers(rng: random.Random, pop: Population, used: set[str]) -> None:
    """Different children with identical names and birth dates: only a person can tell."""
    born = [c for c in pop.children.values() if c.birth_date]
    for original in rng.sample(born, 3):
        key = original.key + ".twin-name"
        pop.children[key] = Child(
            key=key, given=original.given, nickname=None, family=original.family,
            birth_date=original.birth_date, sex=original.sex, nhs=nhs_number(rng, used),
            postcode=_postcode(rng, original.area), area=original.area,
            mother_nhs=nhs_number(rng, used), father=key + ".father")


def _records(rng: random.Random, pop: Population, today: date) -> None:
    """What each agency sends, in the order it would arrive: the unborn first, births later."""
    early, later, births = [], [], []
    for child in pop.children.values():
        agencies = AGENCIES[child.area]
        if child.birth_date is None:  # recorded before birth, then born
            early.append(Record(agencies["midwife"] or "MW-A", {
                "mother_nhs_number": child.mother_nhs,
                "expected_delivery_date": child.expected_delivery.isoformat()}, child.key))
            child.birth_date = child.expected_delivery + timedelta(days=rng.randint(-16, 12))
            births.append(Record(agencies["gp"], {
                **_demographics(child, child.given, child.family, child.postcode),
                "nhs_number": child.nhs, "mother_nhs_number": child.mother_nhs}, child.key))
            continue
        has_gp = rng.random() < 0.85  # the rest are known to nobody by NHS number
        if has_gp:
            early.append(Record(agencies["gp"], {
                **_demographics(child, child.given, child.family, child.postcode),
                "nhs_number": child.nhs}, child.key))
        age = (today - child.birth_date).days // 365
        if agencies["school"] and age >= 4 and rng.random() < 0.8:
            later.append(_noisy(rng, child, agencies["school"], f"UPN-{child.key}",
                                with_nhs=False))
        if rng.random() < 0.6:
            police = _noisy(rng, child, agencies["police"], f"NOM-{child.key}", with_nhs=False)
            later.append(police)
            if rng.random() < 0.3:  # police see the child again under the same nominal id
                later.append(_noisy(rng, child, agencies["police"], f"NOM-{child.key}",
                                    with_nhs=False))
        if rng.random() < 0.3:
            later.append(_noisy(rng, child, agencies["csc"], f"CASE-{child.key}",
                                with_nhs=rng.random() < 0.5))
        if child.moved_to:
            area, postcode = child.moved_to
            moved = _noisy(rng, child, AGENCIES[area]["police"], f"NOM2-{child.key}",
                           with_nhs=False, postcode=postcode)
            births.append(Record(moved.agency, moved.subject, moved.truth,
                                 moved.errors + ("moved_area",)))
            if has_gp and rng.random() < 0.5:  # re-registers with a GP in the new area
                births.append(Record(AGENCIES[area]["gp"], {
                    **_demographics(child, child.given, child.family, postcode),
                    "nhs_number": child.nhs}, child.key, ("moved_area",)))
    for batch in (early, later, births):
        rng.shuffle(batch)
        pop.records.extend(batch)


def _noisy(rng: random.Random, child: Child, agency: str, local_id: str, *, with_nhs: bool,
           postcode: str | None = None) -> Record:
    """A record keyed by an agency's own id, with up to two of the usual errors."""
    errors = []
    given, family, born = child.given, child.family, child.birth_date
    if child.nickname and rng.random() < 0.4:
        given = child.nickname
        errors.append("nickname")
    if rng.random() < 0.25:
        family = typo(rng, family)
        errors.append("family_name_typo")
    elif not errors and rng.random() < 0.1:
        given = typo(rng, given)
        errors.append("given_name_typo")
    if len(errors) < 2 and born.day <= 12 and born.day != born.month and rng.random() < 0.2:
        born = date(born.year, born.day, born.month)
        errors.append("day_month_transposed")
    subject = {"local_id": local_id, **_demographics(child, given, family,
                                                     postcode or child.postcode)}
    subject["birth_date"] = born.isoformat()
    if with_nhs:
        subject["nhs_number"] = child.nhs
    else:
        errors.append("no_nhs_number")
    if rng.random() < 0.3:  # some systems hold no postcode or sex
        subject.pop("postcode")
        subject.pop("sex")
    return Record(agency, subject, child.key, tuple(errors))


def _demographics(child: Child, given: str, family: str, postcode: str) -> dict:
    return {"given_name": given, "family_name": family,
            "birth_date": child.birth_date.isoformat(), "sex": child.sex,
            "postcode": postcode}
