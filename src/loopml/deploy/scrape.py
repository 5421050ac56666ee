"""The local target's replicas as a Prometheus file-based service discovery list.

Prometheus cannot know which ports the local target's replicas listen on: they are free
ports picked at each start. So the platform writes them, with their deployment, revision
and model version, to a JSON file that ``file_sd_configs`` reads (the
``loopml-replicas`` job of ``deploy/prometheus/prometheus.yml``)::

    [{"targets": ["127.0.0.1:41234"],
      "labels": {"project": "default", "deployment": "churn", "revision": "2",
                 "model": "churn", "version": "3", "role": "canary"}}]

The file is replaced atomically (a temporary file in the same folder, then a rename), so
Prometheus never reads half of it, and only when what it lists changed. A replica is listed
once it is ready and in the routes; the reconciler calls ``write`` on each of its rounds.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from loopml.serve.gateway.routing import RevisionRoute, Routes

TargetGroup = dict[str, Any]


def target_groups(routes: list[Routes]) -> list[TargetGroup]:
    """One group per ready replica, in a stable order."""
    groups = []
    for route in routes:
        shadow = (route.shadow,) if route.shadow is not None else ()
        for revision in (*route.revisions, *shadow):
            role = "shadow" if revision is route.shadow else revision.role
            groups += [_group(route, revision, role, b.url) for b in revision.backends]
    return sorted(groups, key=lambda g: (g["labels"]["deployment"], g["targets"]))


def _group(route: Routes, revision: RevisionRoute, role: str, url: str) -> TargetGroup:
    return {
        "targets": [urlsplit(url).netloc],
        "labels": {
            "project": route.project,
            "deployment": route.name,
            "revision": str(revision.number),
            "model": revision.model,
            "version": str(revision.version),
            "role": role,
        },
    }


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class ScrapeTargets:
    """Keeps ``path`` listing the replicas that ``routes`` returns.

    Args:
        path: the JSON file Prometheus reads.
        routes: every deployment's current routes (the local target's ``all_routes``).
    """

    def __init__(self, path: Path, routes: Callable[[], list[Routes]]) -> None:
        self.path = path
        self._routes = routes
        self._written: bytes | None = None

    def write(self) -> bool:
        """Write the list when it changed (or was never written); whether it was."""
        data = orjson.dumps(target_groups(self._routes()), option=orjson.OPT_INDENT_2) + b"\n"
        if data == self._written and self.path.exists():
            return False
        write_atomically(self.path, data)
        self._written = data
        return True
