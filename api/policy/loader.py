"""Load and validate the information-sharing agreements in the policy directory."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from api.policy.schema import (
    AGENCY_KINDS,
    Area,
    CategoryPolicy,
    Defaults,
    PlainLanguage,
    PolicyFile,
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

    def rule(self, rule_id: str):
        for cat in self.categories.values():
            if cat.publish.id == rule_id:
                return cat.publish
            for r in cat.share:
                if r.id == rule_id:
                    return r
        return None


def load_policy(directory: Path) -> Policy:
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))
    if not files:
        raise PolicyError(f"{directory}: no policy files (*.yaml)")
    digest = hashlib.sha256()
    agreements: list[str] = []
    defaults: Defaults | None = None
    plain: PlainLanguage | None = None
    areas: dict[str, Area] = {}
    categories: dict[str, CategoryPolicy] = {}
    owner: dict[str, str] = {}  # category or rule id -> file that defined it
    for path in files:
        raw = path.read_bytes()
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
        for area in parsed.areas:
            areas[area.code] = area
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
    return Policy(
        version=digest.hexdigest()[:16],
        agreements=tuple(agreements),
        defaults=defaults or Defaults(),
        plain_language=plain or PlainLanguage(),
        areas=areas,
        categories=categories,
        files=tuple(p.name for p in files),
    )


def _parse(path: Path, raw: bytes) -> PolicyFile:
    try:
        data = yaml.safe_load(raw)
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
            lines.append(f"{path}: {key}: {err['msg']}")
        raise PolicyError("\n".join(lines)) from exc


__all__ = ["AGENCY_KINDS", "Policy", "PolicyError", "load_policy"]
