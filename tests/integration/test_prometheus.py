"""Debian's Prometheus scraping a running platform with the shipped configuration
(``deploy/prometheus/prometheus.yml``): the platform's ``/metrics`` and, through the file
the platform writes for ``file_sd_configs``, its replica's. PromQL over Prometheus's HTTP
API counts the requests sent; every query of the shipped Grafana dashboard
(``deploy/grafana/loopml.json``) runs there, on metrics a real scrape exposes.

The shipped configuration is used as it is, but for what a test must change: the scrape
interval (1 s), the platform's address, and the targets file's path (this test's home).
"""

from __future__ import annotations

import math
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from loopml.client import Client
from loopml.core.alerts import AlertRuleSpec
from loopml.core.deployments import DeploymentStatus
from loopml.monitor.service import create_rule
from loopml.settings import Settings
from tests.conftest import free_port
from tests.unit.deploy.deploy_support import (
    Platform,
    cancer_frame,
    fit,
    register_model,
    replica_processes,
    wait_until,
)
from tests.waiting import REQUEST_GUARD_S

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "loopml.json"
NAME = "scraped"
DASHBOARD_NAME = "dashboard"
SENT = 40
METRIC = re.compile(r"\bloopml_[a-z0-9_]+")


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The platform on a port, its monitor quick, with one deployment of one replica."""
    home = tmp_path_factory.mktemp("prometheus-home")
    settings = Settings(
        home=home,
        database={"url": f"sqlite:///{home / 'loopml.db'}"},
        artifacts={"root": str(home / "artifacts")},
        monitor={"interval_s": 0.5, "lag_s": 2, "windows": ["1h"]},
    )
    running = Platform(settings)
    running.start()
    try:
        register_model(running.settings, running.store, running.artifacts, fit(1.0))
        running.serving.control.create("default", NAME, {"model": "cancer/1"}, actor="t")
        wait_until(
            lambda: running.serving.control.get("default", NAME).status == DeploymentStatus.READY,
            90,
            "the deployment did not become ready",
        )
        yield running
    finally:
        running.stop()
    assert replica_processes() == [], "replicas outlived the platform"


@pytest.fixture(scope="module")
def prometheus(
    prometheus_binary: Path, platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Prometheus on a free port with the shipped configuration pointed at ``platform``."""
    folder = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load(CONFIG.read_text())
    config["global"]["scrape_interval"] = "1s"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    jobs["loopml"]["static_configs"] = [{"targets": [f"127.0.0.1:{platform.port}"]}]
    discovery = jobs["loopml-replicas"]["file_sd_configs"][0]
    discovery["files"] = [str(platform.settings.home / "prometheus" / "targets.json")]
    discovery["refresh_interval"] = "1s"
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (folder / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                str(prometheus_binary),
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def ready() -> bool:
            assert process.poll() is None, (folder / "prometheus.log").read_text()[-3000:]
            try:
                return (
                    httpx.get(
                        f"{url}/-/ready", trust_env=False, timeout=REQUEST_GUARD_S
                    ).status_code
                    == 200
                )
            except httpx.HTTPError:
                return False

        wait_until(ready, 30, "Prometheus did not get ready")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _query(prometheus: str, promql: str, at: float | None = None) -> list[dict[str, Any]]:
    params = {"query": promql} if at is None else {"query": promql, "time": f"{at:.3f}"}
    answer = httpx.get(
        f"{prometheus}/api/v1/query", params=params, trust_env=False, timeout=REQUEST_GUARD_S
    )
    body = answer.json()
    assert answer.status_code == 200, (promql, body)
    assert body["status"] == "success", (promql, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _value(prometheus: str, promql: str, at: float | None = None) -> float | None:
    found = _query(prometheus, promql, at)
    return float(found[0]["value"][1]) if found else None


def _newest_sample(prometheus: str, selector: str) -> float:
    """The time of the newest sample of a range selector's series (Unix seconds)."""
    series = _query(prometheus, selector)
    times = [float(at) for found in series for at, _ in found["values"]]
    assert times, (selector, series)
    return max(times)


def _predict(platform: Platform, http: httpx.Client, row: int, name: str = NAME) -> str:
    frame, _ = cancer_frame()
    answer = http.post(
        f"{platform.url}/deployments/{name}/predict",
        json={"instances": [frame.iloc[row].to_dict()]},
    )
    assert answer.status_code == 200, answer.text
    inference_id: str = answer.json()["inference_id"]
    return inference_id


def test_prometheus_counts_the_requests_on_the_platform_and_the_replica(
    platform: Platform, prometheus: str
) -> None:
    gateway = f'loopml_gateway_requests_total{{deployment="{NAME}"}}'
    replica = f'loopml_model_rows_total{{job="loopml-replicas", deployment="{NAME}"}}'
    with httpx.Client(timeout=30, trust_env=False) as http:
        _predict(platform, http, 0)  # the series start here
        wait_until(lambda: _value(prometheus, f"sum({gateway})") == 1, 30, "no first scrape")
        # The replica was found through the file the platform wrote, with its labels.
        promql = f'up{{job="loopml-replicas", deployment="{NAME}"}}'
        up = wait_until(lambda: _query(prometheus, promql), 30, "the replica was not found")
        assert len(up) == 1, up
        labels = up[0]["metric"]
        assert (labels["revision"], labels["version"], labels["role"]) == ("1", "1", "primary")
        assert up[0]["value"][1] == "1"
        sent_from = time.time()
        for row in range(SENT):
            _predict(platform, http, row)
            time.sleep(0.05)
        sent_to = time.time()
        sent_s = sent_to - sent_from
    total = f"sum({gateway})"
    wait_until(lambda: _value(prometheus, total) == SENT + 1, 30, "Prometheus missed requests")
    wait_until(lambda: _value(prometheus, f"sum({replica})") == SENT + 1, 30, "replica missed")
    time.sleep(2.5)  # two more scrapes at the final count
    # Evaluated at the newest sample, so that Prometheus extrapolates nothing past it; before
    # the first sample it extrapolates towards zero by (first value / increase) of the
    # sampled interval: 1 of the 41 counted.
    # The newest sample's time, from the samples themselves: an instant query at a moment
    # when a scrape had just failed (a 1 s scrape of a busy platform can) finds the series
    # stale and answers nothing.
    last = _newest_sample(prometheus, f"{gateway}[1m]")
    increase = _value(prometheus, f"sum(increase({gateway}[1m]))", last)
    rate = _value(prometheus, f"sum(rate({gateway}[1m]))", last)
    assert increase is not None
    assert rate is not None
    assert SENT <= increase <= SENT + 1.01, increase
    assert rate == pytest.approx(increase / 60, rel=1e-6)
    # Over the seconds the requests were sent, the rate was about what the client sent: the
    # 3 s rates over exactly those seconds (evaluated then, not "now", which the waits above
    # put a varying time later).
    span = math.ceil(sent_s) + 6
    promql = f"max_over_time(sum(rate({gateway}[3s]))[{span}s:1s])"
    burst = _value(prometheus, promql, sent_to + 3)
    assert burst is not None
    # margin: not a wall-clock bound but a ratio of two rates measured in the same run (the
    # client's own and Prometheus's), with half of it to spare for the scrapes' edges.
    assert burst >= 0.5 * SENT / sent_s, (burst, SENT / sent_s)


def _scraped_names(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def _exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def test_the_grafana_dashboard_queries_what_the_platform_exposes(
    platform: Platform, prometheus: str
) -> None:
    dashboard = orjson.loads(DASHBOARD.read_bytes())
    assert dashboard["uid"] == "loopml"
    exprs = _exprs(dashboard)
    assert len(exprs) >= 12
    # A deployment of its own: the counting test counts every request to NAME's, in any order.
    control = platform.serving.control
    control.create("default", DASHBOARD_NAME, {"model": "cancer/1"}, actor="t")
    wait_until(
        lambda: control.get("default", DASHBOARD_NAME).status == DeploymentStatus.READY,
        90,
        f"deployment {DASHBOARD_NAME} did not become ready",
    )
    # Traffic with labels, and an alert rule: every monitoring panel but drift gets data (a
    # version whose run consumed no dataset has no reference, so no drift figures).
    spec = AlertRuleSpec(
        name="slow",
        deployment=DASHBOARD_NAME,
        metric="latency_p99_ms",
        comparator=">",
        threshold=1e6,
    )
    create_rule(platform.store, "default", spec, actor="t")
    _, target = cancer_frame()
    with httpx.Client(timeout=30, trust_env=False) as http, Client(platform.url) as client:
        labels = [
            {
                "inference_id": _predict(platform, http, row, DASHBOARD_NAME),
                "label": int(target[row]),
            }
            for row in range(20)
        ]
        client.predictions.feedback_many(DASHBOARD_NAME, labels)
        # One failed request, for the error panels.
        bad = http.post(
            f"{platform.url}/deployments/{DASHBOARD_NAME}/predict", json={"instances": [{}]}
        )
        assert bad.status_code == 422, bad.text
    names = _scraped_names(
        httpx.get(f"{platform.url}/metrics", trust_env=False, timeout=REQUEST_GUARD_S).text
    )
    # The reconciler lists a ready replica for Prometheus on its next round (every 0.5 s),
    # which may come after the requests above: wait for it, or its metrics look missing.
    targets = platform.settings.home / "prometheus" / "targets.json"

    def listed_replica() -> list[dict[str, Any]] | None:
        groups: list[dict[str, Any]] = orjson.loads(targets.read_bytes())
        ours = [g for g in groups if g["labels"]["deployment"] == DASHBOARD_NAME]
        return groups if ours else None

    listed = wait_until(listed_replica, 30, f"{targets} to list the replica of {DASHBOARD_NAME}")
    for group in listed:
        url = f"http://{group['targets'][0]}/metrics"
        names |= _scraped_names(httpx.get(url, trust_env=False, timeout=REQUEST_GUARD_S).text)
    queried = {name for _, expr in exprs for name in METRIC.findall(expr)}
    assert queried - names == set(), "the dashboard queries metrics nobody exposes"
    for variable in dashboard["templating"]["list"]:
        assert set(METRIC.findall(variable["query"]["query"])) <= names

    def substituted(expr: str) -> str:
        for name, value in (("$__rate_interval", "1m"), ("$project", ".*"), ("$deployment", ".*")):
            expr = expr.replace(name, value)
        return expr

    def every_panel_has_data() -> bool:
        empty = {title for title, expr in exprs if not _query(prometheus, substituted(expr))}
        return empty <= {"Drift share", "Drift score per column"}

    wait_until(every_panel_has_data, 45, "dashboard panels without data")
    accuracy = _value(prometheus, f'loopml_monitor_accuracy{{deployment="{DASHBOARD_NAME}"}}')
    assert accuracy is not None
    assert accuracy > 0.8
    # The series stays from round to round (issue 55: it came and went with the newest
    # window's labels): every scrape over several monitor rounds has it, as the "Live
    # accuracy" panel's range query reads it.
    [(_, live)] = [(t, e) for t, e in exprs if t == "Live accuracy"]
    scraped = f"count_over_time(({substituted(live)})[8s:1s])"

    def every_scrape_has_it() -> bool:
        found = _value(prometheus, scraped)
        return found is not None and found >= 8

    wait_until(every_scrape_has_it, 30, f"8 consecutive seconds of {live} ({scraped})")
    reach = _value(prometheus, f'loopml_monitor_accuracy_seconds{{deployment="{DASHBOARD_NAME}"}}')
    assert reach is not None
    # From the start of the oldest labelled window read: this clock hour's (or, if the hour
    # turned during the test, the one before).
    assert 0 < reach <= 2 * 3600, reach
