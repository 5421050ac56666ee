"""Pipelines through the real SDK against the in-process app, whose embedded worker runs
the steps (SQLite, then PostgreSQL)."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.core.clock import utcnow
from loopml.core.errors import NotFoundError, ValidationError
from loopml.core.pipelines import RunStatus, SpecError, StepStatus
from loopml.core.step_resources import NodeShape
from loopml.settings import Settings
from loopml.store import MetadataStore, pipeline_workers
from tests.waiting import eventually

STEPS = """
import time
from loopml.pipelines import step

@step
def greet(ctx, name):
    print(f"hello {name} from attempt {ctx.attempt}")
    return {"greeting": f"hello {name}"}

@step
def nap(ctx, seconds):
    time.sleep(seconds)
"""
SPEC = """\
name: greeter
description: Says hello.
inputs:
  who: {type: string, default: world}
outputs:
  greeting: ${{ steps.greet.outputs.greeting }}
steps:
  - name: greet
    python: api_steps:greet
    with: {name: "${{ inputs.who }}"}
    outputs: {greeting: string}
"""


@pytest.fixture
def steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "api_steps.py").write_text(textwrap.dedent(STEPS))
    monkeypatch.syspath_prepend(str(folder))
    yield
    sys.modules.pop("api_steps", None)


def test_apply_run_follow_and_read_logs(steps: None, client: Client) -> None:
    applied = client.pipelines.apply(SPEC)
    assert (applied.pipeline.name, applied.version.version, applied.created) == ("greeter", 1, True)
    assert not client.pipelines.apply(SPEC + "\n# same\n").created
    assert [p.name for p in client.pipelines.list()] == ["greeter"]
    pipeline, version = client.pipelines.get("greeter")
    assert pipeline.description == "Says hello."
    assert version.spec == SPEC
    assert version.steps == ["greet"]
    run = client.pipelines.run("greeter", inputs={"who": "ada"})
    assert run.status == RunStatus.QUEUED
    done = client.pipelines.wait(run.id, timeout_s=60, poll_s=0.1)
    assert done.status == RunStatus.SUCCEEDED
    assert done.outputs == {"greeting": "hello ada"}
    assert done.steps is not None
    assert done.steps[0].inputs == {"name": "ada"}
    assert "hello ada from attempt 1" in client.pipelines.logs(run.id, "greet")
    found = client.pipelines.logs(run.id, "greet", grep="HELLO ADA FROM")
    assert found == "hello ada from attempt 1\n"
    assert client.pipelines.logs(run.id, "greet", grep="not printed") == ""
    # The printed line carries no level word: it continues the step's INFO line before it.
    info = client.pipelines.logs(run.id, "greet", level="info")
    assert "hello ada from attempt 1" in info
    assert "INFO loopml.step: step greet done" in info
    assert client.pipelines.logs(run.id, "greet", level="warning") == ""
    listed = client.pipelines.runs(pipeline="greeter", status="SUCCEEDED")
    assert [r.id for r in listed.items] == [run.id]
    assert client.pipelines.cancel(run.id).status == RunStatus.SUCCEEDED  # already over


def test_a_refused_spec_comes_back_with_its_lines(client: Client) -> None:
    bad = SPEC.replace("inputs.who", "inputs.whom").replace("outputs.greeting", "outputs.greet")
    with pytest.raises(SpecError) as caught:
        client.pipelines.apply(bad)
    problems = caught.value.details["problems"]
    assert [p["line"] for p in problems] == [6, 10]
    assert "has no output 'greet'" in problems[0]["message"]
    assert "unknown input 'whom'" in problems[1]["message"]
    assert isinstance(caught.value, ValidationError)


def test_cancelling_a_running_run(steps: None, client: Client) -> None:
    client.pipelines.apply(
        "name: sleeper\nsteps:\n  - {name: nap, python: 'api_steps:nap', with: {seconds: 60}}\n"
    )
    run = client.pipelines.run("sleeper")
    cancelling = client.pipelines.cancel(run.id)
    assert cancelling.status in (RunStatus.CANCELLING, RunStatus.CANCELLED)
    done = client.pipelines.wait(run.id, timeout_s=30, poll_s=0.1)
    assert done.status == RunStatus.CANCELLED
    assert done.steps is not None
    assert done.steps[0].status == StepStatus.CANCELLED


def test_missing_things_and_bad_input(client: Client, http: TestClient) -> None:
    with pytest.raises(NotFoundError, match="apply its spec first"):
        client.pipelines.run("nothing")
    with pytest.raises(NotFoundError):
        client.pipelines.get_run("0" * 32)
    with pytest.raises(ValidationError):
        client.pipelines.get_run("not-a-run")
    client.pipelines.apply(SPEC)
    with pytest.raises(ValidationError, match="has no input 'whom'"):
        client.pipelines.run("greeter", inputs={"whom": "x"})
    run = client.pipelines.run("greeter")
    with pytest.raises(NotFoundError, match="has no step"):
        client.pipelines.logs(run.id, "nope")
    answer = http.post("/api/v1/projects/default/pipelines", json={"spec": "x", "extra": 1})
    assert answer.status_code == 422


def test_the_log_is_plain_text_never_html(steps: None, client: Client, http: TestClient) -> None:
    client.pipelines.apply(SPEC.replace("default: world", "default: <b>x</b>"))
    run = client.pipelines.wait(client.pipelines.run("greeter").id, timeout_s=60, poll_s=0.1)
    answer = http.get(f"/api/v1/projects/default/pipeline-runs/{run.id}/steps/greet/log")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-loopml-attempt"] == "1"
    assert "hello <b>x</b>" in answer.text


def _nodes_seen(store: MetadataStore) -> list[NodeShape]:
    with store.session() as session:
        return pipeline_workers.nodes_seen(session, utcnow() - timedelta(minutes=10))


def test_resources_are_checked_at_apply_through_the_api(client: Client, settings: Settings) -> None:
    # The app's embedded worker reports this machine from its own thread once it starts:
    # an apply before that report is only warned (see test_resources_apply.py).
    store = MetadataStore(settings.database_url)
    try:
        eventually(
            lambda: _nodes_seen(store), 60, "the embedded worker's first report of its nodes"
        )
    finally:
        store.dispose()
    asks = SPEC.replace("python: ", "resources: {gpus: 64}\n    python: ", 1)
    with pytest.raises(ValidationError) as caught:
        client.pipelines.apply(asks)
    assert caught.value.message.startswith("step 'greet' asks for 64 GPUs; no node can run it")
    assert "the largest node of the workers seen in the last 10 minutes has " in (
        caught.value.message
    )
    assert caught.value.details["steps"] == {"greet": {"gpus": 64}}
    store = MetadataStore(settings.database_url)
    try:
        with store.session() as session:
            big = NodeShape(cpus=16, memory=1 << 34, gpus=64)
            pipeline_workers.report(session, "gpu-box:1", "local", [big])
    finally:
        store.dispose()
    applied = client.pipelines.apply(asks)
    assert applied.created
    assert applied.warnings == []
