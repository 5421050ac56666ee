"""The apps of one process share the API's and the portal's route objects (built once), and
each still serves its own platform: what one app's requests do, another's never see."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from loopml.api.mlflow._route import MlflowRoute
from loopml.api.routes.all import MODULES as API_MODULES
from loopml.client import Client
from loopml.platform import create_api_app, create_app
from loopml.portal.pages import ROUTERS as PAGE_ROUTERS
from loopml.settings import Settings


def _settings(root: Path) -> Settings:
    return Settings(
        home=root / "home",
        database={"url": f"sqlite:///{root / 'loopml.db'}"},
        artifacts={"root": str(root / "artifacts")},
    )


def test_two_apps_share_their_routes_and_keep_their_own_platforms(tmp_path: Path) -> None:
    first, second = create_app(_settings(tmp_path / "a")), create_app(_settings(tmp_path / "b"))
    # The MLflow layer's routes are shared by a cache of their own; the others are not
    # shared but for the API's routers and the portal's pages.
    mine = [r for r in first.router.routes if not isinstance(r, MlflowRoute)]
    others = {id(r) for r in second.router.routes}
    shared = [r for r in mine if id(r) in others]
    # Each API router and each page router, as included once for the process.
    assert len(shared) == len(API_MODULES) + len(PAGE_ROUTERS), f"{len(shared)} of {len(mine)}"
    with (
        TestClient(first, base_url="http://127.0.0.1") as one,
        TestClient(second, base_url="http://127.0.0.1") as other,
    ):
        Client(http=one).projects.create("only-in-a")
        Client(http=other).projects.create("only-in-b")
        assert [p.name for p in Client(http=one).projects.iter()] == ["default", "only-in-a"]
        assert [p.name for p in Client(http=other).projects.iter()] == ["default", "only-in-b"]
        # A portal page, through the shared page routes, reads its own app's platform too.
        page = other.get("/")
        assert page.status_code == 200, page.text[:500]
        assert "only-in-b" in page.text, page.text[:2000]
        assert "only-in-a" not in page.text, page.text[:2000]


def test_an_api_app_made_after_another_serves_its_first_request(tmp_path: Path) -> None:
    """The shared routes are built by the first app's first request (FastAPI builds an
    included router on its first match); an app made later serves at once."""
    for name in ("a", "b"):
        with TestClient(
            create_api_app(_settings(tmp_path / name)), base_url="http://127.0.0.1"
        ) as http:
            answer = http.get("/api/v1/projects/default")
            assert answer.status_code == 200, answer.text
