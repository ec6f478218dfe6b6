"""Load and validate the information-sharing agreements in the policy directory."""

from __future__ import annotations

import hashlib
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from api.policy.schema import (
    AGENCY_KINDS,
    Area,
    CategoryPolicy,
    Defaults,
    HouseholdRiskRule,
    PlainLanguage,
    PolicyFile,
    SiblingRule,
)


class PolicyError(Exception):
    """A policy file is unreadable or invalid; the message names the file and the key."""


@dataclass(frozen=True)
class Policy:
    version: str  # content hash of every file, cited by each decision
    agreements: tuple[str, ...]
    defaults: Defaults
    plain_language: PlainLanguage
    areas: dict[str, Area]
    categories: dict[str, CategoryPolicy]
    files: tuple[str, ...] = field(default=())
    # None: no household-risk or sibling alerts are raised at all.
    household_risk: HouseholdRiskRule | None = None
    siblings: SiblingRule | None = None

    def rule(self, rule_id: str):
        for cat in self.categories.values():
            if cat.publish.id == rule_id:
                return cat.publish
            for r in cat.share:
                if r.id == rule_id:
                    return r
        return None


def load_policy(directory: Path) -> Policy:
    try:  # hidden files are editor and OS debris (.#lock links, ._ resource forks), not policy
        files = sorted(p for p in directory.iterdir()
                       if p.suffix in (".yaml", ".yml") and not p.name.startswith("."))
    except OSError as exc:
        raise PolicyError(f"{directory}: cannot read the policy directory: {exc}") from exc
    if not files:
        raise PolicyError(f"{directory}: no policy files (*.yaml)")
    digest = hashlib.sha256()
    agreements: list[str] = []
    defaults: Defaults | None = None
    plain: PlainLanguage | None = None
    areas: dict[str, Area] = {}
    categories: dict[str, CategoryPolicy] = {}
    owner: dict[str, str] = {}  # category or rule id -> file that defined it
    single: dict[str, object] = {}  # sections a partnership states once
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise PolicyError(f"{path}: cannot read: {exc}") from exc
        digest.update(path.name.encode() + b"\0" + raw + b"\0")
        parsed = _parse(path, raw)
        if parsed.agreement:
            agreements.append(parsed.agreement)
        if parsed.defaults:
            if defaults is not None:
                raise PolicyError(f"{path}: defaults: already set in {owner['defaults']}")
            defaults, owner["defaults"] = parsed.defaults, path.name
        if parsed.plain_language:
            if plain is not None:
                raise PolicyError(f"{path}: plain_language: already set in {owner['plain']}")
            plain, owner["plain"] = parsed.plain_language, path.name
        for section in ("household_risk", "siblings"):
            if (value := getattr(parsed, section)) is not None:
                if section in single:
                    raise PolicyError(f"{path}: {section}: already set in {owner[section]}")
                single[section], owner[section] = value, path.name
        for area in parsed.areas:
            if area.code in areas:
                raise PolicyError(f"{path}: areas: {area.code} already listed in "
                                  f"{owner['area:' + area.code]}")
            areas[area.code], owner["area:" + area.code] = area, path.name
        for name, cat in parsed.categories.items():
            if name in categories:
                raise PolicyError(f"{path}: categories.{name}: already defined in {owner[name]}")
            for rule_id in [cat.publish.id, *(r.id for r in cat.share)]:
                if ("rule:" + rule_id) in owner:
                    raise PolicyError(
                        f"{path}: categories.{name}: rule id {rule_id} already used in "
                        f"{owner['rule:' + rule_id]}"
                    )
                owner["rule:" + rule_id] = path.name
            categories[name], owner[name] = cat, path.name
    if not categories:
        raise PolicyError(f"{directory}: no categories defined in any policy file")
    _check_categories_named(single, categories, owner)
    return Policy(
        version=digest.hexdigest()[:16],
        agreements=tuple(agreements),
        defaults=defaults or Defaults(),
        plain_language=plain or PlainLanguage(),
        areas=areas,
        categories=categories,
        files=tuple(p.name for p in files),
        household_risk=single.get("household_risk"),
        siblings=single.get("siblings"),
    )


def _check_categories_named(single: dict, categories: dict, owner: dict) -> None:
    """A household or sibling rule naming an unknown category is a typo, not a narrowing."""
    named = {"household_risk": lambda r: r.history, "siblings": lambda r: r.plan_categories}
    for section, listed in named.items():
        if section in single:
            for name in listed(single[section]):
                if name not in categories:
                    raise PolicyError(f"{owner[section]}: {section}: category {name!r} is not "
                                      "defined in any policy file")


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice: PyYAML would silently keep the last one."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges may be overridden by explicit keys
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the base loader reports unhashable keys
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _parse(path: Path, raw: bytes) -> PolicyFile:
    try:
        data = yaml.load(raw, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"{path}: the top level must be a mapping of keys")
    try:
        return PolicyFile.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"] if "[" not in str(p))
            got = err.get("input")
            got = f" (got {got!r})" if isinstance(got, (str, int, float)) else ""
            lines.append(f"{path}: {key}: {err['msg']}{got}")
        raise PolicyError("\n".join(lines)) from exc


__all__ = ["AGENCY_KINDS", "Policy", "PolicyError", "load_policy"]
