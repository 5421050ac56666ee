"""Pipelines on codesets: a ``codeset`` input pinned to a version when the run is queued,
and a ``codeset.versioned`` trigger that runs the pipeline on each new version."""

from __future__ import annotations

import pytest

from loopml.core.errors import NotFoundError, ValidationError
from loopml.pipelines import automation_service as auto
from loopml.pipelines import codesets, service
from loopml.pipelines.automation import AutomationEngine
from loopml.storage import ArtifactStore
from loopml.storage.codetree import TreeLimits, build_archive, read_archive
from loopml.store import MetadataStore

SPEC = """\
name: train-code
inputs:
  code: codeset
steps:
  - {name: a, python: "m:f"}
"""
LIMITS = TreeLimits(max_bytes=10_000, max_files=10)


def register(store: MetadataStore, artifacts: ArtifactStore, name: str, text: str) -> int:
    tree = read_archive(build_archive([("train.py", text.encode(), False)]), LIMITS, "test")
    made = codesets.register_tree(store, artifacts, "default", name, tree, source="t", actor="t")
    return made.version.version


def test_a_codeset_input_is_pinned_when_the_run_is_queued(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    service.apply_spec(store, "default", SPEC, actor="t")
    with pytest.raises(NotFoundError, match="register it first"):
        service.start_run(store, "default", "train-code", {"code": "trainer"}, actor="t")
    register(store, artifacts, "trainer", "v1")
    register(store, artifacts, "trainer", "v2")
    run = service.start_run(store, "default", "train-code", {"code": "trainer"}, actor="t")
    assert run.inputs == {"code": "trainer@2"}
    older = service.start_run(store, "default", "train-code", {"code": "trainer@1"}, actor="t")
    assert older.inputs == {"code": "trainer@1"}
    with pytest.raises(ValidationError, match="expected a codeset such as"):
        service.start_run(store, "default", "train-code", {"code": "Trainer!"}, actor="t")


def test_a_codeset_versioned_trigger_runs_each_new_version(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    service.apply_spec(store, "default", SPEC, actor="t")
    register(store, artifacts, "trainer", "v1")
    register(store, artifacts, "other", "x")
    auto.create_trigger(
        store,
        "default",
        name="on-trainer",
        pipeline="train-code",
        on="codeset.versioned",
        where={"codeset": "trainer"},
        inputs={"code": "trainer"},
        concurrency="queue",
        actor="t",
    )
    engine = AutomationEngine(store)
    assert engine.tick().events == 0  # a trigger reacts to events from its creation on
    register(store, artifacts, "other", "y")  # another codeset: not this trigger's
    register(store, artifacts, "trainer", "v1")  # same content: no new version, no event
    assert engine.tick().events == 0
    register(store, artifacts, "trainer", "v2")
    assert engine.tick().events == 1
    started = [
        r for r in service.list_runs(store, "default").items if r.actor == "trigger:on-trainer"
    ]
    assert [r.inputs for r in started] == [{"code": "trainer@2"}]
