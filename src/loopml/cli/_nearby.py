"""What to add to "model/table not found in project P": the names in P it is close to, and
the other projects (of those the caller may see) that hold that very name.

Asked through the API after the error, so it names only what the caller's token lists."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from difflib import get_close_matches
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopml.client import Client

MAX_PROJECTS = 50
"""Projects looked into for the same name (one request each)."""


def hint(client: Client, details: dict[str, Any]) -> str:
    """A sentence to append, or ``""``: ``details`` are a not-found error's."""
    from loopml.core.errors import LoopmlError

    project = details.get("project")
    kinds: dict[str, tuple[Callable[[str], Iterable[str]], Callable[[str, str], object]]] = {
        "model": (
            lambda p: (m.name for m in client.models.list(project=p, limit=1000).items),
            lambda p, n: client.models.get(n, project=p),
        ),
        "table": (
            lambda p: (t.name for t in client.tables.list(p)),
            lambda p, n: client.tables.get(p, n),
        ),
    }
    # Only "no such model/table" itself: {"project", "model"} alone, not a missing alias.
    kind = next((k for k in kinds if set(details) == {"project", k}), None)
    if kind is None or not isinstance(project, str) or not isinstance(details[kind], str):
        return ""
    name: str = details[kind]
    names, get = kinds[kind]
    try:
        close = get_close_matches(name, list(names(project)), n=3)
        elsewhere = [p for p in _others(client, project) if _exists(get, p, name)]
    except LoopmlError:
        return ""
    return _sentence(kind, name, close, elsewhere)


def _sentence(kind: str, name: str, close: list[str], elsewhere: list[str]) -> str:
    parts = []
    if close:
        parts.append("did you mean " + " or ".join(repr(c) for c in close) + "?")
    if elsewhere:
        where = ", ".join(repr(p) for p in elsewhere)
        projects = "project" if len(elsewhere) == 1 else "projects"
        parts.append(f"{kind} {name!r} exists in {projects} {where} (-p {elsewhere[0]})")
    return "; ".join(parts)


def _others(client: Client, project: str) -> list[str]:
    listed = client.projects.list(limit=MAX_PROJECTS + 1).items
    return [p.name for p in listed if p.name != project][:MAX_PROJECTS]


def _exists(get: Callable[[str, str], object], project: str, name: str) -> bool:
    from loopml.core.errors import LoopmlError

    try:
        get(project, name)
    except LoopmlError:
        return False
    return True
