"""The order of work at `loopml up` (issue 53): what runs before health answers, what is
deferred until it does, and that the ML stack is imported by neither. Read from the start-up
timeline `loopml up --verbose` prints; it asserts the order, never a duration."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.waiting import eventually

from .conftest import running_server

pytestmark = pytest.mark.e2e

# Health answers once the port listens: the database is created or checked before it, and
# the gateway processes in front (health comes through them) are spawned before the
# platform is even imported, so that their start overlaps its own.
BEFORE_HEALTH = [
    "settings read",
    "database checked",
    "gateway processes spawned",
    "platform imported",
    "app built",
    "database ready",
    "serving started",
    "gateway processes started",
    "listening",
]
# Then the deferred start opens: once health first answered ready, or a second after the
# port listens when no probe came (a loaded machine can delay the harness's first poll).
OPENED = {"health answered", "no health probe yet"}
# What health does not need: the embedded worker and its fork server, the automation
# engine, stream consumers, the monitor's first round and the routes' warm-up.
AFTER_HEALTH = ["worker started", "automation, streams and monitor started", "routes warmed"]
# The ML stack and the engines the first request that needs them loads (importtime: each of
# them 0.1-1 s of CPU, pandas alone about 0.3 s).
HEAVY = (
    "pandas",
    "duckdb",
    "scipy",
    "sklearn",
    "onnx",
    "onnxruntime",
    "skl2onnx",
    "lightgbm",
    "xgboost",
    "flaml",
    "ray",
    "torch",
)

_LINE = re.compile(r"^startup +[\d.]+ s +cpu +[\d.]+ s +(.+?)(?:  \+(.*))?$")


@dataclass(frozen=True)
class Step:
    name: str
    imported: frozenset[str]


def _steps(log: Path) -> list[Step]:
    steps = []
    for line in log.read_text(errors="replace").splitlines():
        match = _LINE.match(line)
        if match:
            steps.append(Step(match[1], frozenset((match[2] or "").split())))
    return steps


def _all_steps(log: Path) -> list[Step] | None:
    steps = _steps(log)
    return steps if {step.name for step in steps} >= set(AFTER_HEALTH) else None


def test_health_waits_for_the_database_and_for_nothing_it_does_not_need(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with running_server(home, None, "--verbose") as server:
        log = server.home / "server.log"
        steps = eventually(
            lambda: _all_steps(log),
            90,
            "the deferred start-up steps in the timeline",
            describe=lambda: log.read_text(errors="replace"),
        )
    names = [step.name for step in steps]
    assert names[: len(BEFORE_HEALTH)] == BEFORE_HEALTH, names
    assert names[len(BEFORE_HEALTH)] in OPENED, names
    assert sorted(names[len(BEFORE_HEALTH) + 1 :]) == sorted(AFTER_HEALTH), names
    before = set().union(*(step.imported for step in steps[: len(BEFORE_HEALTH)]))
    assert sorted(m for m in HEAVY if m in before) == []
