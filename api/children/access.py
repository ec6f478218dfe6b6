"""The `access` section of the policy (policies/access.yaml): the purposes a read may state,
which reads notify the owning children's social care, and which reads are silent.

The policy loader validates every file, this section included, at start-up, but keeps only the
sharing parts on `Policy`; the section is read here from the same files.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

import yaml
from fastapi import Depends, Request

from api.policy.loader import PolicyError
from api.policy.schema import AccessPolicy
from api.problems import invalid


@lru_cache(maxsize=8)
def load_access(policy_dir: Path, categories: frozenset[str]) -> AccessPolicy:
    """The one `access` section among the policy files (defaults when none has one)."""
    found: list[tuple[str, dict]] = []
    for path in sorted(policy_dir.iterdir()):
        if path.suffix not in (".yaml", ".yml") or path.name.startswith("."):
            continue
        data = yaml.safe_load(path.read_bytes())
        if isinstance(data, dict) and data.get("access") is not None:
            found.append((path.name, data["access"]))
    if len(found) > 1:
        raise PolicyError(f"{policy_dir / found[1][0]}: access: already set in {found[0][0]}")
    if not found:
        return AccessPolicy()
    name, section = found[0]
    access = AccessPolicy.model_validate(section)
    unknown = sorted(set(access.notify.categories) - categories)
    if unknown:
        raise PolicyError(f"{policy_dir / name}: access.notify.categories: unknown "
                          f"categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}")
    return access


async def get_access(request: Request) -> AccessPolicy:
    """The section for the app's policy: read from disk once (`create_app` reads it at start-up),
    then from the cache, so this runs on the event loop instead of the thread pool."""
    state = request.app.state
    return load_access(Path(state.settings.policy_dir), frozenset(state.policy.categories))


AccessDep = Annotated[AccessPolicy, Depends(get_access)]


def check_listed_purpose(access: AccessPolicy, purpose: str) -> None:
    """A read states one of the purposes the policy lists (the audit log records it)."""
    if purpose not in access.purposes:
        raise invalid("purpose", "not a purpose the policy lists for reading a child: "
                      + ", ".join(access.purposes))
