"""The promotion gate through the real SDK against the in-process app."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.core.errors import ConflictError, GateRequiredError, NotFoundError, ValidationError
from loopml.core.gate import EvaluationReport, GatePolicy
from loopml.faces.context import AppContext
from tests.tracking_rows import log_model, make_run

EVAL = "ab" * 32
POLICY = """
thresholds:
  - {metric: roc_auc, min: 0.75}
must_beat: champion
min_delta: 0.01
"""


def _two_versions(http: TestClient, client: Client) -> None:
    ctx: AppContext = http.app.state.running.context  # type: ignore[attr-defined]
    run = make_run(ctx.store)
    log_model(ctx.store, ctx.artifacts, run)
    client.models.register_version("churn", run_id=run.id)
    client.models.register_version("churn", run_id=run.id)


def _report(auc: float) -> EvaluationReport:
    return EvaluationReport(
        eval_hash=EVAL,
        task="classification",
        primary_metric="roc_auc",
        metrics={"roc_auc": auc},
        rows=40,
        dataset="churn_snap@1",
    )


def test_policy_evaluate_gate_promote(client: Client, http: TestClient) -> None:
    _two_versions(http, client)
    assert client.models.gate_policy("churn") == GatePolicy(must_beat="champion")
    policy = client.models.set_gate_policy("churn", POLICY)
    assert client.models.gate_policy("churn") == policy

    with pytest.raises(GateRequiredError, match="has not judged it"):
        client.models.promote("churn", 1)
    client.models.save_evaluation("churn", 1, _report(0.80))
    first = client.models.gate("churn", 1)
    assert first.passed
    client.models.promote("churn", 1)

    client.models.save_evaluation("churn", 2, _report(0.805))  # better, but not by 0.01
    second = client.models.gate("churn", 2)
    assert not second.passed
    assert second.champion_version == 1
    (beat,) = [r for r in second.rules if r.rule == "must_beat"]
    assert (beat.value, beat.champion_value) == (0.805, 0.80)
    with pytest.raises(GateRequiredError, match="latest gate verdict failed"):
        client.models.promote("churn", 2)
    assert [r.passed for r in client.models.gate_results("churn", 2)] == [False]

    forced = client.models.promote("churn", 2, force=True, reason="board decision")
    assert "champion" in forced.aliases
    feed = client.events.list(type="model.promotion.forced").items
    assert [(e.payload["version"], e.payload["reason"]) for e in feed] == [(2, "board decision")]
    assert [e.payload["gate"] for e in feed] == ["failed"]


def test_gate_refusals(client: Client, http: TestClient) -> None:
    _two_versions(http, client)
    with pytest.raises(ConflictError, match="has no evaluation"):
        client.models.gate("churn", 1)
    with pytest.raises(ValidationError, match="reason"):
        client.models.promote("churn", 1, force=True)
    blank = http.put(
        "/api/v1/projects/default/models/churn/aliases/champion",
        json={"version": 1, "force_reason": " \t "},
    )
    assert blank.status_code == 422
    with pytest.raises(ValidationError, match="metric"):
        client.models.set_gate_policy("churn", "thresholds: [{metric: nope, min: 1}]")
    response = http.put(
        "/api/v1/projects/default/models/churn/gate-policy", json={"must_beat": "anyone"}
    )
    assert response.status_code == 422
    with pytest.raises(NotFoundError):
        client.models.gate_policy("ghost")
    with pytest.raises(NotFoundError, match="no gate policy"):
        client.models.delete_gate_policy("churn")
    bad = http.post(
        "/api/v1/projects/default/models/churn/versions/1/evaluations",
        json={
            "eval_hash": "not-hex",
            "task": "classification",
            "primary_metric": "f1",
            "metrics": {},
            "rows": 1,
        },
    )
    assert bad.status_code == 422
