"""Step conditions (``if:``): refused at apply time unless they read one boolean, settled by
the queue on SQLite and PostgreSQL (a false condition skips the step and what follows, and the
run succeeds), and honoured by a real worker."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from loopml.core.pipelines import PipelineRun, RunStatus, SpecError, StepStatus
from loopml.pipelines import service
from loopml.pipelines.parse import parse_spec
from loopml.settings import Settings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore
from loopml.store import pipeline_queue as queue

from .conftest import running_worker, step_of, wait_run

GATED = """\
name: gated
inputs:
  go: {type: boolean, default: true}
steps:
  - {name: gate, python: "m:f", outputs: {passed: boolean, model: string}}
  - name: promote
    python: "m:f"
    if: ${{ steps.gate.outputs.passed }}
  - {name: deploy, python: "m:f", needs: [promote]}
  - {name: report, python: "m:f", needs: [gate]}
  - {name: only_if_go, python: "m:f", if: "${{ inputs.go }}"}
"""


def problems(text: str) -> list[tuple[int, str]]:
    with pytest.raises(SpecError) as caught:
        parse_spec(textwrap.dedent(text))
    return [(p["line"], p["message"]) for p in caught.value.details["problems"]]


def test_a_condition_is_an_edge_of_the_dag() -> None:
    parsed = parse_spec(GATED)
    assert parsed.needs["promote"] == ["gate"]
    assert parsed.needs["only_if_go"] == []
    assert parsed.order.index("gate") < parsed.order.index("promote")
    assert parsed.spec.step("promote").if_ == "${{ steps.gate.outputs.passed }}"


def test_a_spec_without_conditions_keeps_its_identity() -> None:
    plain = "name: p\nsteps:\n  - {name: a, python: 'm:f'}\n"
    # The hash this spec had before conditions existed: re-applying it is no new version.
    assert parse_spec(plain).spec_hash == (
        "9c4fbab48f4b75a9878f553b783cd4745d9c9cb2a29aaccddb1d81cb1f3a1ac6"
    )
    with_if = (
        "name: p\ninputs: {go: boolean}\n"
        "steps:\n  - {name: a, python: 'm:f', if: '${{ inputs.go }}'}\n"
    )
    without = with_if.replace(", if: '${{ inputs.go }}'", "")
    assert parse_spec(with_if).spec_hash != parse_spec(without).spec_hash


def test_bad_conditions_are_refused_with_their_lines() -> None:
    found = problems(
        """\
        name: p
        inputs:
          n: {type: integer, default: 1}
        steps:
          - {name: a, python: "m:f", outputs: {passed: boolean, score: number}}
          - name: b
            python: "m:f"
            if: ${{ steps.a.outputs.score }}
          - name: c
            python: "m:f"
            if: "passed is ${{ steps.a.outputs.passed }}"
          - name: d
            python: "m:f"
            if: ${{ steps.zz.outputs.passed }}
          - name: e
            python: "m:f"
            if: ${{ inputs.n }}
          - name: f
            python: "m:f"
            if: ${{ steps.f.outputs.passed }}
          - name: g
            python: "m:f"
            if: "true"
        """
    )
    lines = [line for line, _ in found]
    assert lines == [8, 11, 14, 17, 20, 23], found
    assert "must be a boolean, but ${{ steps.a.outputs.score }} is number" in found[0][1]
    assert "one reference to a boolean" in found[1][1]
    assert "unknown step 'zz'" in found[2][1]
    assert "${{ inputs.n }} is integer" in found[3][1]
    assert "references its own output" in found[4][1]
    assert "one reference to a boolean" in found[5][1]


def _start(store: MetadataStore, inputs: dict[str, object] | None = None) -> PipelineRun:
    service.apply_spec(store, "default", GATED, actor="t")
    return service.start_run(store, "default", "gated", inputs or {}, actor="t")


def _finish_claimed(store: MetadataStore, outputs: dict[str, dict[str, object]]) -> None:
    """Claim and complete steps until none is ready, with ``outputs`` per step name."""
    while True:
        with store.session() as session:
            claim = queue.claim(session, "w1", lease_s=30)
        if claim is None:
            return
        with store.session() as session:
            queue.mark_run_started(session, claim.run_id)
            assert queue.complete(
                session, claim.step_run_id, claim.token, outputs.get(claim.step, {})
            )


def _statuses(store: MetadataStore, run_id: str) -> dict[str, StepStatus]:
    found = service.get_run(store, "default", run_id)
    return {s.name: s.status for s in found.steps or []}


def test_a_false_condition_skips_the_step_and_its_dependents_and_the_run_succeeds(
    any_store: MetadataStore,
) -> None:
    run = _start(any_store, {"go": False})
    # A step whose condition reads an input is settled when the run is created.
    assert _statuses(any_store, run.id)["only_if_go"] == StepStatus.SKIPPED
    _finish_claimed(any_store, {"gate": {"passed": False, "model": "m/1"}})
    found = service.get_run(any_store, "default", run.id)
    assert found.status == RunStatus.SUCCEEDED, found.error
    statuses = {s.name: s.status for s in found.steps or []}
    assert statuses == {
        "gate": StepStatus.SUCCEEDED,
        "promote": StepStatus.SKIPPED,
        "deploy": StepStatus.SKIPPED,
        "report": StepStatus.SUCCEEDED,
        "only_if_go": StepStatus.SKIPPED,
    }
    promote = step_of(found, "promote")
    assert promote.inputs == {"if": "${{ steps.gate.outputs.passed }}", "value": False}
    assert promote.attempt == 0  # never claimed


def test_a_true_condition_lets_the_step_run(any_store: MetadataStore) -> None:
    run = _start(any_store)
    assert _statuses(any_store, run.id)["only_if_go"] == StepStatus.QUEUED
    _finish_claimed(any_store, {"gate": {"passed": True, "model": "m/1"}})
    found = service.get_run(any_store, "default", run.id)
    assert found.status == RunStatus.SUCCEEDED
    assert {s.status for s in found.steps or []} == {StepStatus.SUCCEEDED}


def test_a_missing_condition_value_skips_rather_than_guessing(any_store: MetadataStore) -> None:
    # Only `true` runs the step: an output that is absent (or not a boolean) does not.
    run = _start(any_store)
    _finish_claimed(any_store, {"gate": {"model": "m/1"}})
    statuses = _statuses(any_store, run.id)
    assert statuses["promote"] == StepStatus.SKIPPED
    assert statuses["deploy"] == StepStatus.SKIPPED


def test_a_worker_skips_a_step_whose_condition_is_false(
    store: MetadataStore,
    artifacts: ArtifactStore,
    settings: Settings,
    usercode: Callable[[str, str], Path],
    tmp_path: Path,
) -> None:
    marker = tmp_path / "promoted"
    usercode(
        "gated_steps",
        f"""
        from pathlib import Path
        from loopml.pipelines import step

        @step
        def judge(ctx, score: float):
            return {{"passed": score > 0.5}}

        @step
        def promote(ctx):
            Path({str(marker)!r}).write_text(ctx.run_id)
        """,
    )
    spec = """\
name: judged
inputs:
  score: {type: number}
steps:
  - {name: judge, python: "gated_steps:judge", with: {score: "${{ inputs.score }}"},
     outputs: {passed: boolean}}
  - {name: promote, python: "gated_steps:promote", if: "${{ steps.judge.outputs.passed }}"}
"""
    service.apply_spec(store, "default", spec, actor="t")
    with running_worker(store, artifacts, settings):
        refused = service.start_run(store, "default", "judged", {"score": 0.2}, actor="t")
        done = wait_run(store, refused.id)
        assert done.status == RunStatus.SUCCEEDED, done.error
        assert step_of(done, "promote").status == StepStatus.SKIPPED
        assert not marker.exists()
        passed = service.start_run(store, "default", "judged", {"score": 0.9}, actor="t")
        done = wait_run(store, passed.id)
        assert done.status == RunStatus.SUCCEEDED, done.error
        assert step_of(done, "promote").status == StepStatus.SUCCEEDED
        assert marker.read_text() == passed.id
