"""Every URL the CLI or the portal prints for a deployment answers (no 404): the predict and
V2 URLs, the feedback URL, the deployment's page; and the URLs ``loopml demo`` names."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from loopml.cli import _endpoints, monitor
from loopml.client import Client
from loopml.core.deployments import Deployment
from loopml.platform import create_app
from loopml.portal.pages import deployments as page
from loopml.settings import Settings
from tests.conftest import free_port
from tests.unit.deploy.deploy_support import package_files, register_files
from tests.waiting import eventually

from .conftest import Platform


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The whole app as ``loopml up`` serves it (API, portal, gateway routes)."""
    home: Path = tmp_path_factory.mktemp("portal")
    settings = Settings(
        home=home,
        database={"url": f"sqlite:///{home / 'loopml.db'}"},
        artifacts={"root": str(home / "artifacts")},
        server={"streams": False, "automation_interval_s": 3600},
        monitor={"enabled": False},
    )
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started or not thread.is_alive(), 60, "the platform to start")
    assert server.started, "the platform's thread ended before it started"
    try:
        running = Platform(f"http://127.0.0.1:{port}", app.state.running.context)
        package = package_files(home / "pkg")
        with Client(running.url) as client:
            client.projects.create("shop")
            for project in ("default", "shop"):
                ctx = running.ctx
                register_files(ctx.store, ctx.artifacts, package, name="cancer", project=project)
                client.deployments.create("api", model="cancer/1", min_replicas=0, project=project)
        yield running
    finally:
        server.should_exit = True
        thread.join(30)


def _printed(url: str, project: str) -> dict[str, str]:
    """The URLs the CLI (``loopml deploy``, ``loopml monitor``) and the portal print."""
    predict = _endpoints.predict_url(url, project, "api")
    shown = {
        "cli predict": predict,
        "cli v2": f"{predict.removesuffix('/predict')}/v2/models/api/infer",
        "cli feedback": url + _endpoints.feedback_path(project, "api"),
        "page": url + page.page_url(project, "api"),
    }
    shown.update(
        {f"portal {k}": v for k, v in page.endpoints(url, _deployment(url, project)).items()}
    )
    return shown


def _deployment(url: str, project: str) -> Deployment:
    with Client(url) as client:
        return client.deployments.get("api", project=project)


@pytest.mark.parametrize("project", ["default", "shop"])
def test_every_url_printed_for_a_deployment_answers(portal: Platform, project: str) -> None:
    answers = {}
    with httpx.Client(timeout=30) as http:
        for what, url in _printed(portal.url, project).items():
            method = "GET" if what in ("page", "portal v2_metadata") else "POST"
            body = {"instances": [{"x": 1}]} if "feedback" not in what else {}
            answers[what] = (url, http.request(method, url, json=body).status_code)

    assert {what: a for what, a in answers.items() if a[1] == 404} == {}


def test_the_monitor_names_the_feedback_url_of_the_deployments_project(portal: Platform) -> None:
    window = {"summary": {"quality": {"labels": 0}}}

    said = monitor._quality(window, _endpoints.feedback_path("shop", "api"))

    feedback = "/api/v1/projects/shop/deployments/api/feedback"
    assert said == f"live quality: no labels yet (POST them to {feedback})"


def test_the_urls_the_demo_prints_answer(portal: Platform) -> None:
    with httpx.Client(timeout=30) as http:
        for path in ("/docs", "/api/v1/openapi.json"):
            assert http.get(portal.url + path).status_code == 200, path


def test_the_demo_names_its_portal_page_and_its_curl_line_has_no_float_noise(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from loopml.cli import _demo_say

    row = {"mean radius": 0.9309000000000001, "texture": 12.5, "scanner": "a", "n": 3}
    _demo_say.urls("http://127.0.0.1:8765", row, 61.0)
    printed = capsys.readouterr().out
    portal_line = next(line for line in printed.splitlines() if "portal" in line)
    page_path = page.page_url(_demo_say.PROJECT, _demo_say.DEPLOYMENT)
    assert portal_line.split() == ["portal", f"http://127.0.0.1:8765{page_path}"]
    curl = printed.splitlines()[-1]
    assert '"mean radius":0.9309,' in curl, curl
    assert '"texture":12.5,"scanner":"a","n":3' in curl, curl


@pytest.mark.parametrize("project", ["default", "shop"])
def test_every_url_loopml_deploy_prints_answers(
    portal: Platform, project: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with Client(portal.url) as client:
        _endpoints.show(client, client.deployments.get("api", project=project))
    printed = capsys.readouterr().out
    urls = set(re.findall(r"https?://[^\s']+", printed))

    assert [line.split()[0] for line in printed.splitlines()[:4]] == [
        "predict",
        "V2",
        "feedback",
        "status",
    ]
    assert len(urls) == 3, printed
    with httpx.Client(timeout=30) as http:
        answers = {url: http.post(url, json={}).status_code for url in urls}
    assert {url: s for url, s in answers.items() if s == 404} == {}
