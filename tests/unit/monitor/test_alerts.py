"""Alert rules: the state machine with its hysteresis, webhook targets, and rules evaluated
by the monitor's round over real windows, notifying a real HTTP server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest

from loopml.core.alerts import AlertRuleSpec, metric_value, step
from loopml.core.errors import ValidationError
from loopml.monitor import service
from loopml.monitor.webhooks import WebhookRefused, check_target, deliver
from tests.conftest import serving

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _spec(**fields: Any) -> AlertRuleSpec:
    base = {
        "name": "errors",
        "deployment": "churn-api",
        "metric": "error_rate",
        "comparator": ">",
        "threshold": 0.05,
    }
    return AlertRuleSpec.model_validate({**base, **fields})


def _run(spec: AlertRuleSpec, values: list[float | None], every_s: float = 60) -> list[Any]:
    state, since = "ok", None
    out = []
    for i, value in enumerate(values):
        moved = step(spec, state, since, value, T0 + timedelta(seconds=every_s * i))
        state, since = moved.state, moved.since
        out.append((moved.state, moved.event))
    return out


def test_a_value_wavering_at_the_threshold_fires_once_and_resolves_once() -> None:
    spec = _spec(clear_threshold=0.03)
    values = [0.01, 0.06, 0.049, 0.051, 0.04, 0.06, 0.02, 0.06]
    seen = _run(spec, values)
    assert [event for _, event in seen] == [
        None,
        "alert.firing",
        None,  # 0.049: under the threshold, above the clear threshold: still firing
        None,
        None,
        None,
        "alert.resolved",  # 0.02 < 0.03
        "alert.firing",
    ]
    assert [state for state, _ in seen][:6] == ["ok"] + ["firing"] * 5


def test_for_keeps_a_rule_pending_until_it_held_long_enough() -> None:
    spec = _spec(for_s=120)
    seen = _run(spec, [0.1, 0.1, 0.01, 0.1, 0.1, 0.1, None, 0.1])
    assert [s for s, _ in seen] == [
        "pending",
        "pending",
        "ok",  # back under: the clock restarts
        "pending",
        "pending",
        "firing",
        "firing",  # no value (no traffic): held
        "firing",
    ]
    assert [e for _, e in seen].count("alert.firing") == 1


def test_a_lower_bound_rule_and_its_default_clear_threshold() -> None:
    spec = _spec(metric="accuracy", comparator="<", threshold=0.8)
    assert spec.clear() == pytest.approx(0.88)
    seen = _run(spec, [0.9, 0.7, 0.85, 0.89])
    assert [e for _, e in seen] == [None, "alert.firing", None, "alert.resolved"]
    with pytest.raises(ValueError, match="resolved side"):
        _spec(clear_threshold=0.1)
    with pytest.raises(ValueError, match="unknown metric"):
        _spec(metric="cpu")


def test_metric_values_come_from_a_window_summary() -> None:
    summary = {
        "usage": {"error_rate": 0.2, "latency_p95_ms": None, "roles": {}},
        "drift": {"status": "ready", "judged": 2, "share": 0.5, "columns": []},
        "quality": {"labels": 0, "coverage": 0.0},
    }
    assert metric_value(summary, "error_rate") == 0.2
    assert metric_value(summary, "latency_p95_ms") is None
    assert metric_value(summary, "drift_share") == 0.5
    assert metric_value(summary, "accuracy") is None


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:9000/hook",
        "http://[::1]/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://localhost/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_webhooks_to_internal_addresses_are_refused(url: str) -> None:
    with pytest.raises(WebhookRefused, match="refused"):
        check_target(url)
    assert deliver(url, {"text": "x"}, attempts=1).outcome == "refused"


def test_an_allow_list_admits_a_named_internal_target_only() -> None:
    assert check_target("http://127.0.0.1:9000/h", ["127.0.0.1"])
    assert check_target("http://10.1.2.3/h", ["10.0.0.0/8"])
    with pytest.raises(WebhookRefused):
        check_target("http://169.254.169.254/", ["10.0.0.0/8"])
    with pytest.raises(ValidationError, match=r"http:// or https://"):
        check_target("file:///etc/passwd")
    assert check_target("https://hooks.example.com/x", resolve=lambda _: ["93.184.215.14"])
    with pytest.raises(WebhookRefused, match=r"169\.254\.169\.254"):
        check_target("https://rebind.example.com/x", resolve=lambda _: ["169.254.169.254"])


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []
    answers: ClassVar[list[int]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(_Hook.answers.pop(0) if _Hook.answers else 200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def hook() -> Iterator[str]:
    _Hook.received, _Hook.answers = [], []
    with serving(HTTPServer(("127.0.0.1", 0), _Hook)) as url:
        yield f"{url}/hook"


def test_a_delivery_retries_server_errors_then_lands(hook: str) -> None:
    _Hook.answers = [503, 500]
    done = deliver(hook, {"text": "x"}, allow=["127.0.0.1"], attempts=3, sleep=lambda _: None)
    assert (done.outcome, done.attempts, done.status) == ("delivered", 3, 200)
    assert len(_Hook.received) == 3
    _Hook.answers = [404]
    failed = deliver(hook, {"text": "x"}, allow=["127.0.0.1"], attempts=3, sleep=lambda _: None)
    assert (failed.outcome, failed.attempts, failed.error) == ("failed", 1, "HTTP 404")


def test_a_rule_with_an_internal_webhook_is_refused_at_creation(store_ctx: Any) -> None:
    spec = _spec(webhook="http://169.254.169.254/hook")
    with pytest.raises(WebhookRefused):
        service.create_rule(store_ctx.store, "default", spec, actor="t")
    assert service.list_rules(store_ctx.store, "default") == []


def test_each_new_deployment_gets_the_default_rules_once(store_ctx: Any) -> None:
    from loopml.monitor.engine import Monitor
    from loopml.store import deployments, events
    from tests.unit.api.test_feedback import make_deployment

    store, settings = store_ctx.store, store_ctx.settings.monitor

    def server_round() -> None:
        """One round of a server's monitor, then the server stops (releasing the lease)."""
        monitor = Monitor(store, store_ctx.artifacts, settings)
        assert not monitor.tick().skipped
        monitor.stop()

    server_round()
    rules = {r.name: r for r in service.list_rules(store, "default", "churn-api")}
    assert set(rules) == {
        "churn-api-errors",
        "churn-api-latency",
        "churn-api-restarts",
        "churn-api-drift",
    }
    errors = rules["churn-api-errors"]
    assert (errors.metric, errors.comparator, errors.threshold, errors.for_s) == (
        "error_rate",
        ">",
        0.05,
        300,
    )
    assert rules["churn-api-restarts"].severity == "critical"
    drift = rules["churn-api-drift"]
    assert (drift.metric, drift.comparator, drift.threshold, drift.for_s, drift.window) == (
        "drift_share",
        ">",
        0.5,
        600,
        "1h",
    )
    with store.session() as session:
        made = events.list_(session, type="alert.rule.created").items
    assert {(e.subject, e.actor) for e in made} == {(name, "monitor") for name in rules}

    # A rule the user deleted stays deleted, across rounds and a restarted monitor.
    service.delete_rule(store, "default", "churn-api-latency", actor="t")
    server_round()
    left = {r.name for r in service.list_rules(store, "default", "churn-api")}
    assert left == {"churn-api-errors", "churn-api-restarts", "churn-api-drift"}

    # A new deployment of the same name is a new deployment: it gets the missing default,
    # and the rules that are still there are kept as they are.
    service.silence_rule(store, "default", "churn-api-errors", seconds=600, actor="t")
    with store.session() as session:
        deployments.delete(session, "default", "churn-api", actor="t")
    make_deployment(store_ctx)
    server_round()
    again = {r.name: r for r in service.list_rules(store, "default", "churn-api")}
    assert set(again) == set(rules)
    assert again["churn-api-errors"].silenced_until is not None


def test_no_default_rules_when_the_setting_is_empty(store_ctx: Any) -> None:
    from loopml.monitor.engine import Monitor

    settings = store_ctx.settings.monitor.model_copy(update={"default_rules": []})
    Monitor(store_ctx.store, store_ctx.artifacts, settings).tick()
    assert service.list_rules(store_ctx.store, "default") == []


def test_a_default_rule_on_an_unknown_metric_is_refused_when_settings_load() -> None:
    from pydantic import ValidationError as SettingsError

    from loopml.settings import Settings

    with pytest.raises(SettingsError, match="unknown metric 'cpu'"):
        Settings(monitor={"default_rules": [{"suffix": "hot", "metric": "cpu", "threshold": 1}]})
