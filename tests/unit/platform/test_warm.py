"""A fresh server's first page does not build the routers' state: ``loopml up`` warms them
(``loopml.platform.warm``) while it starts listening. Counted, not timed: the endpoints whose
dependencies FastAPI builds during the first request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi.routing
import pytest
from starlette.testclient import TestClient

from loopml.platform import app as platform_app
from loopml.platform import create_app
from loopml.platform.warm import warm_routes
from loopml.portal import mount as portal_mount
from loopml.settings import Settings


def _builds_during(client: TestClient, path: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """How many endpoints' dependencies FastAPI builds while ``path`` is answered (its
    routing module's builder, counted: the app runs on the test client's own thread)."""
    builder = fastapi.routing._build_dependant_with_parameterless_dependencies
    calls = 0

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return builder(*args, **kwargs)

    monkeypatch.setattr(
        fastapi.routing, "_build_dependant_with_parameterless_dependencies", counted
    )
    answer = client.get(path)
    monkeypatch.undo()
    assert answer.status_code == 200, answer.text[:300]
    return calls


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture(autouse=True)
def fresh_process() -> None:
    """The app about to be made is its process's first: the apps of one process share the
    API's and the pages' routes (built once), so one made earlier by another test would
    have built them already. The earlier apps keep the routes they hold."""
    platform_app._api_routes.cache_clear()
    portal_mount._page_routes.cache_clear()


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warmed"])
def test_the_first_portal_page_builds_no_route_state_once_warmed(
    settings: Settings, warm: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(settings)
    if warm:
        assert warm_routes(app) >= 0
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        builds = _builds_during(client, "/", monkeypatch)
    if warm:
        assert builds == 0
    else:
        assert builds > 0  # what the warming saves: FastAPI builds them on first use
