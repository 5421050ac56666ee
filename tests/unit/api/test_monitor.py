"""Monitoring routes through the real SDK on the real app: alert rules' lifecycle and the
errors a person can make, the monitoring view of a deployment with nothing served yet."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.core.errors import AlreadyExistsError, NotFoundError, ValidationError
from tests.unit.api.test_feedback import make_deployment


@pytest.fixture
def deployed(http: TestClient) -> TestClient:
    make_deployment(http.app.state.running.context)  # type: ignore[attr-defined]
    return http


def test_alert_rules_lifecycle(deployed: TestClient, client: Client) -> None:
    rule = client.monitoring.create_alert(
        "slow", deployment="churn-api", metric="latency_p95_ms", comparator=">", threshold=50
    )
    assert (rule.state, rule.clear_threshold, rule.window) == ("ok", 45.0, "1h")
    with pytest.raises(AlreadyExistsError):
        client.monitoring.create_alert(
            "slow", deployment="churn-api", metric="error_rate", comparator=">", threshold=0.1
        )
    silenced = client.monitoring.silence_alert("slow", 600)
    assert silenced.silenced_until is not None
    assert client.monitoring.silence_alert("slow", 0).silenced_until is None
    assert [r.name for r in client.monitoring.alerts(deployment="churn-api")] == ["slow"]
    assert client.monitoring.alerts(deployment="other") == []
    assert client.monitoring.deliveries("slow") == []
    client.monitoring.delete_alert("slow")
    with pytest.raises(NotFoundError):
        client.monitoring.delete_alert("slow")


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"deployment": "nope"}, NotFoundError, "deployment 'nope' not found"),
        ({"metric": "cpu"}, ValidationError, "unknown metric"),
        ({"comparator": "!="}, ValidationError, "comparator"),
        ({"window": "1w"}, ValidationError, "window"),
        ({"clear_threshold": 60.0}, ValidationError, "resolved side"),
        ({"webhook": "http://127.0.0.1:9/x"}, ValidationError, "refused"),
        ({"webhook": "ftp://example.com/x"}, ValidationError, "http:// or https://"),
    ],
)
def test_bad_rules_are_refused_and_nothing_is_stored(
    deployed: TestClient, client: Client, fields: dict[str, object], error: type, message: str
) -> None:
    body: dict[str, object] = {
        "deployment": "churn-api",
        "metric": "latency_p95_ms",
        "comparator": ">",
        "threshold": 50.0,
        **fields,
    }
    with pytest.raises(error, match=message):
        client.monitoring.create_alert("r", **body)  # type: ignore[arg-type]
    assert client.monitoring.alerts() == []


def test_the_view_of_a_deployment_before_any_traffic(deployed: TestClient, client: Client) -> None:
    view = client.monitoring.view("churn-api")
    assert (view["windows"], view["references"], view["firing"]) == ([], {}, [])
    with pytest.raises(NotFoundError):
        client.monitoring.view("nope")
    with pytest.raises(ValidationError, match="window size"):
        client.monitoring.windows("churn-api", window="7x")
    with pytest.raises(NotFoundError):
        client.monitoring.reference("churn", 1)
