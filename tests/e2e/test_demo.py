"""``loopml demo`` end to end on the embedded defaults (SQLite): the shipped loop runs to a
deployed champion, live traffic and feedback flow, and a shifted batch starts a retrain
whose gate decides, with no failed request while the deployment changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.core.pipelines import RunStatus, StepStatus

from .conftest import RunningServer, running_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home: Path = tmp_path_factory.mktemp("demo-home")
    with running_server(home) as running:
        yield running


@pytest.mark.timeout(300)
def test_the_demo_runs_the_loop_to_a_champion_and_retrains_on_drift(
    server: RunningServer,
) -> None:
    from loopml.client import Client

    done = server.cli(
        "demo", "--url", server.url, "--budget-s", "4", "--canary-s", "3", timeout=280
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "champion  cancer/1 serves cancer-api" in out, out
    assert "0 failed; labels sent back" in out, out
    assert "during the retrain, 0 failed" in out, out
    assert "curl -s" in out

    with Client(server.url) as client:
        runs = client.pipelines.runs(project="demo", pipeline="retrain").items
        assert len(runs) == 2
        assert {r.status for r in runs} == {RunStatus.SUCCEEDED}
        # Both runs were started by the trigger on new rows, not by the demo.
        assert {r.actor for r in runs} == {"trigger:retrain-on-rows"}
        retrain = client.pipelines.get_run(runs[0].id, project="demo")
        steps = {s.name: s for s in retrain.steps or []}
        passed = (retrain.outputs or {}).get("passed")
        assert isinstance(passed, bool)
        champion = client.models.resolve("cancer@champion", project="demo")
        deploy = steps["deploy"]
        if passed:
            # The canary ran beside cancer/1, then the alias move rolled cancer/2 out.
            assert deploy.status == StepStatus.SUCCEEDED
            assert champion.version == 2
            assert deploy.outputs is not None
            assert deploy.outputs["canary"]["errors"] == 0
        else:
            assert deploy.status == StepStatus.SKIPPED
            assert champion.version == 1
        deployment = client.deployments.get("cancer-api", project="demo")
        assert deployment.spec.model == "cancer@champion"
        served = {r.number: r.version for r in deployment.revisions}
        assert [served[n] for n, pct in deployment.traffic.items() if pct] == [champion.version]
        row = client.tables.head("demo", "patients", 1)[0]
        row.pop("malignant")
        answer = client.deployments.predict("cancer-api", [row], project="demo")
        assert answer["predictions"][0] in (0, 1)
        feedback = client.sql("demo", "SELECT count(*) AS n FROM cancer_api__feedback")
        assert feedback.rows[0][0] == 169
