"""The replicas' list for Prometheus: one target group per ready replica with its
deployment, revision, version and role; rewritten (atomically) only when it changes. With
real replicas: ``test_canary_auto`` (listed once ready, gone once drained) and
``tests/integration/test_prometheus.py`` (Prometheus scrapes them)."""

from __future__ import annotations

from pathlib import Path

import orjson

from loopml.deploy.scrape import ScrapeTargets, target_groups
from loopml.serve.gateway.routing import Backend, RevisionRoute, Routes


def _routes(canary_port: int | None) -> list[Routes]:
    primary = RevisionRoute(1, "churn", 3, 90, (Backend("http://127.0.0.1:41001", 1, "churn", 3),))
    revisions = [primary]
    if canary_port is not None:
        backend = Backend(f"http://127.0.0.1:{canary_port}", 2, "churn", 4)
        revisions.append(RevisionRoute(2, "churn", 4, 10, (backend,), role="canary"))
    shadow = RevisionRoute(3, "other", 1, 0, (Backend("http://127.0.0.1:41003", 3, "other", 1),))
    return [
        Routes("default", "churn", tuple(revisions), shadow=shadow),
        Routes("team", "asleep", (), asleep=True),
    ]


def test_each_ready_replica_is_one_target_group_with_its_labels() -> None:
    groups = target_groups(_routes(41002))
    assert [(g["targets"], g["labels"]["revision"], g["labels"]["role"]) for g in groups] == [
        (["127.0.0.1:41001"], "1", "primary"),
        (["127.0.0.1:41002"], "2", "canary"),
        (["127.0.0.1:41003"], "3", "shadow"),
    ]
    assert groups[1]["labels"] == {
        "project": "default",
        "deployment": "churn",
        "revision": "2",
        "model": "churn",
        "version": "4",
        "role": "canary",
    }


def test_the_file_is_replaced_only_when_the_replicas_change(tmp_path: Path) -> None:
    canary: list[int | None] = [41002]
    path = tmp_path / "prometheus" / "targets.json"
    targets = ScrapeTargets(path, lambda: _routes(canary[0]))
    assert targets.write() is True
    first = path.stat().st_ino
    assert len(orjson.loads(path.read_bytes())) == 3
    assert targets.write() is False
    assert path.stat().st_ino == first
    canary[0] = None
    assert targets.write() is True
    # A new file renamed over the old one: a reader never sees half of it.
    assert path.stat().st_ino != first
    assert [g["targets"] for g in orjson.loads(path.read_bytes())] == [
        ["127.0.0.1:41001"],
        ["127.0.0.1:41003"],
    ]
    assert sorted(p.name for p in path.parent.iterdir()) == ["targets.json"]
    path.unlink()
    assert targets.write() is True, "a file removed behind its back is written again"
