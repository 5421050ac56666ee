"""Feedback on served predictions: the real app and SDK, the real feedback table, and the
SQL join with a prediction log written by a real model server's sink."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.core.deployments import DeploymentSpec
from loopml.core.errors import NotFoundError, ValidationError
from loopml.faces.context import AppContext
from loopml.packaging import load_model, package_model
from loopml.platform import create_api_app
from loopml.predictions.http_sink import HttpPredictionSink
from loopml.serve import ModelRuntime, create_model_app
from loopml.settings import Settings
from loopml.store import deployments
from tests.unit.predictions.test_predlog_http import serve_platform

URL = "/deployments/churn-api/feedback"
PROJECT_URL = "/api/v1/projects/default/deployments/churn-api/feedback"


def make_deployment(ctx: AppContext, name: str = "churn-api", project: str = "default") -> None:
    """A deployment as the control plane records it (its replicas are not the point here)."""
    with ctx.store.session() as session:
        deployments.create(
            session,
            project,
            name,
            spec=DeploymentSpec(model="churn/1", min_replicas=0),
            revisions=[deployments.NewRevision(1, "churn", 1, "churn/1", "primary")],
            roles=deployments.Roles(primary=1),
            traffic={1: 100},
            actor="test",
        )


@pytest.fixture
def deployed(http: TestClient) -> TestClient:
    make_deployment(http.app.state.running.context)  # type: ignore[attr-defined]
    return http


def _feedback(client: Client, project: str = "default") -> list[dict[str, Any]]:
    query = "SELECT * FROM churn_api__feedback ORDER BY inference_id, row_index"
    return client.sql(project, query).records()


def test_a_label_and_a_batch_of_labels_land_in_the_feedback_table(
    deployed: TestClient, client: Client
) -> None:
    one = deployed.post(URL, json={"inference_id": "a1", "label": "churn"})
    assert one.status_code == 201, one.text
    assert one.json() == {
        "deployment": "churn-api",
        "table": "churn_api__feedback",
        "accepted": 1,
        "version": 0,
        "replayed": False,
    }
    items = [
        {"inference_id": "b1", "label": 1},
        {"inference_id": "b2", "label": 1.0},
        {"inference_id": "b3", "label": True, "row_index": 2},
        {"inference_id": "b4", "label": 2.5},
    ]
    many = client.predictions.feedback_many("churn-api", items)
    assert (many.accepted, many.version, many.replayed) == (4, 1, False)
    single = client.predictions.feedback("churn-api", "c1", False, project="default")
    assert single.accepted == 1

    rows = _feedback(client)
    assert [(r["inference_id"], r["row_index"], r["label"], r["label_value"]) for r in rows] == [
        ("a1", 0, "churn", None),
        ("b1", 0, "1", 1.0),
        ("b2", 0, "1", 1.0),  # 1.0 and 1 are the same label
        ("b3", 2, "true", 1.0),
        ("b4", 0, "2.5", 2.5),
        ("c1", 0, "false", 0.0),
    ]
    assert all(r["received_at"] for r in rows)


def test_the_project_route_and_the_idempotency_key(deployed: TestClient, client: Client) -> None:
    body = {"items": [{"inference_id": "x1", "label": "stay"}, {"inference_id": "x2", "label": 0}]}
    headers = {"Idempotency-Key": "labels-2024-01-01"}
    first = deployed.post(PROJECT_URL, json=body, headers=headers)
    again = deployed.post(PROJECT_URL, json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["replayed"] is True
    assert "Idempotent-Replayed" not in first.headers
    other = deployed.post(PROJECT_URL, json={"inference_id": "x3", "label": 1}, headers=headers)
    assert other.status_code == 422
    assert "already used for a different body" in other.json()["error"]["message"]
    assert len(_feedback(client)) == 2


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"inference_id": "has space", "label": 1}, "inference_id"),
        ({"inference_id": "", "label": 1}, "inference_id"),
        ({"inference_id": "x" * 129, "label": 1}, "inference_id"),
        ({"inference_id": "../../etc/passwd", "label": 1}, "inference_id"),
        ({"inference_id": "a1", "label": None}, "label"),
        ({"inference_id": "a1", "label": {"class": 1}}, "label"),
        ({"inference_id": "a1", "label": [1, 2]}, "label"),
        ({"inference_id": "a1", "label": ""}, "label"),
        ({"inference_id": "a1", "label": 10**400}, "label"),  # no double holds it
        ({"inference_id": "a1"}, "label"),
        ({"inference_id": "a1", "label": 1, "row_index": -1}, "row_index"),
        ({"inference_id": "a1", "label": 1, "extra": 1}, "extra"),
        ({"items": []}, "items"),
        ({"items": [{"inference_id": "a1", "label": 1}], "inference_id": "a2"}, "inference_id"),
        ([{"inference_id": "a1", "label": 1}], "body"),
    ],
)
def test_bad_labels_are_422_and_change_nothing(
    deployed: TestClient, client: Client, body: Any, where: str
) -> None:
    response = deployed.post(URL, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert where in response.text
    with pytest.raises(NotFoundError):
        _feedback(client)


def test_more_than_10000_labels_in_one_post_are_refused(settings: Settings) -> None:
    roomy = settings.model_copy(
        update={"server": settings.server.model_copy(update={"max_body_bytes": 4 * 1024 * 1024})}
    )
    with TestClient(create_api_app(roomy), base_url="http://127.0.0.1") as http:
        make_deployment(http.app.state.running.context)  # type: ignore[attr-defined]
        items = [{"inference_id": f"i{n}", "label": n % 2} for n in range(10_001)]
        refused = http.post(URL, json={"items": items})
        assert refused.status_code == 422, refused.text
        assert "at most 10000 items" in refused.text
        accepted = http.post(URL, json={"items": items[:10_000]})
        assert accepted.status_code == 201, accepted.text
        assert accepted.json()["accepted"] == 10_000


def test_unknown_or_invalid_deployments_and_projects(deployed: TestClient) -> None:
    label = {"inference_id": "a1", "label": 1}
    missing = deployed.post("/deployments/other/feedback", json=label)
    assert missing.status_code == 404
    assert "deployment 'other' not found" in missing.json()["error"]["message"]
    elsewhere = deployed.post("/api/v1/projects/nope/deployments/churn-api/feedback", json=label)
    assert elsewhere.status_code == 404
    invalid = deployed.post("/deployments/Bad_Name/feedback", json=label)
    assert invalid.status_code == 422
    assert "invalid deployment name" in invalid.json()["error"]["message"]
    as_text = deployed.post(
        URL, content=orjson.dumps(label), headers={"Content-Type": "text/plain"}
    )
    assert as_text.status_code == 403  # a form type: refused as cross-site (test_csrf.py)
    signed = {"Content-Type": "text/plain", "Authorization": "Bearer lm_x"}
    assert deployed.post(URL, content=orjson.dumps(label), headers=signed).status_code == 415


def test_the_sdk_checks_labels_before_sending(client: Client) -> None:
    with pytest.raises(ValidationError, match="more than 10000"):
        client.predictions.feedback_many("churn-api", [{"inference_id": "a", "label": 1}] * 10_001)
    with pytest.raises(ValidationError, match="invalid feedback"):
        client.predictions.feedback_many("churn-api", [{"inference_id": "a b", "label": 1}])


# ---------------------------------------------------------------------- the SQL join


def _small_model(dest: Path) -> ModelRuntime:
    from sklearn import datasets
    from sklearn.linear_model import LogisticRegression

    bunch = datasets.load_breast_cancer(as_frame=True)
    frame = bunch.data.iloc[:, :4]
    model = LogisticRegression(max_iter=500).fit(frame, bunch.target)
    package = package_model(model, dest, sample=frame)
    return ModelRuntime(load_model(package.path, manifest_sha256=package.manifest_sha256))


def test_feedback_joins_the_prediction_log_by_inference_id_in_sql(tmp_path: Path) -> None:
    runtime = _small_model(tmp_path / "model")
    names = runtime.input_names
    with serve_platform(tmp_path / "platform") as platform:
        make_deployment(platform.counter.app.state.running.context)  # type: ignore[attr-defined]
        sink = HttpPredictionSink(platform.url, "default", "churn-api", flush_ms=0)
        app = create_model_app(
            runtime, deployment="churn-api", model_name="churn", version=1, sink=sink
        )
        answers = []
        with TestClient(app, base_url="http://127.0.0.1") as server:
            for i in range(6):
                row = dict(
                    zip(names, [10.0 + i, 15.0 + i, 70.0 + 10 * i, 400.0 + 150 * i], strict=True)
                )
                response = server.post("/predict", json={"instances": [row]})
                assert response.status_code == 200, response.text
                answers.append(response.json())
        assert sink.close().delivered == 6

        with Client(platform.url) as client:
            labels = {a["inference_id"]: (i % 2) for i, a in enumerate(answers[:4])}
            client.predictions.feedback_many(
                "churn-api", [{"inference_id": k, "label": v} for k, v in labels.items()]
            )
            result = client.sql(
                "default",
                "SELECT p.prediction, f.label FROM churn_api__predictions p "
                "JOIN churn_api__feedback f USING (inference_id)",
            )
            by_id = client.sql(
                "default",
                "SELECT inference_id, p.prediction, f.label FROM churn_api__predictions p "
                "JOIN churn_api__feedback f USING (inference_id, row_index) ORDER BY 1",
            ).records()

    assert result.columns == [("prediction", "VARCHAR"), ("label", "VARCHAR")]
    assert sorted(map(tuple, result.rows)) == sorted(
        (str(a["predictions"][0]), str(labels[a["inference_id"]])) for a in answers[:4]
    )
    assert by_id == [
        {
            "inference_id": a["inference_id"],
            "prediction": str(a["predictions"][0]),
            "label": str(labels[a["inference_id"]]),
        }
        for a in sorted(answers[:4], key=lambda a: a["inference_id"])
    ]
