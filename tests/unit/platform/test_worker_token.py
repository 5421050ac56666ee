"""With authentication on, the server's embedded worker acts through the API (the ``deploy``
step) with a token of the server's own user, made at start and revoked at stop; with it off,
or with a ``LOOPML_TOKEN`` of the server's own, no such token is made; with ``server.worker``
off, neither the worker nor its token."""

from __future__ import annotations

import threading
from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import SecretStr

from loopml.auth import service
from loopml.platform import create_api_app
from loopml.settings import Settings
from loopml.store import users


def _settings(tmp_path: Path, migrated_database_url: str, *, auth: bool) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database={"url": migrated_database_url},
        artifacts={"root": str(tmp_path / "artifacts")},
        auth={"enabled": auth},
    )


def test_the_embedded_worker_gets_a_server_token_for_the_servers_life(
    tmp_path: Path, migrated_database_url: str
) -> None:
    app = create_api_app(_settings(tmp_path, migrated_database_url, auth=True))
    store = app.state.running.context.store
    with TestClient(app):
        made = service.list_tokens(store, service.SERVER_USER)
        assert [(t.name, t.revoked_at) for t in made] == [("embedded-worker", None)]
        user = next(u for u in service.list_users(store) if u.name == service.SERVER_USER)
        assert user.platform_admin
        with store.session() as session:  # `loopml up` still says there is no admin yet
            assert users.count_admins(session) == 0
    after = service.list_tokens(store, service.SERVER_USER)
    assert len(after) == 1
    assert after[0].revoked_at is not None  # revoked when the server stopped


def test_no_server_token_with_authentication_off_or_a_token_of_its_own(
    tmp_path: Path, migrated_database_url: str
) -> None:
    off = create_api_app(_settings(tmp_path, migrated_database_url, auth=False))
    with TestClient(off):
        pass
    own = _settings(tmp_path, migrated_database_url, auth=True).model_copy(
        update={"token": SecretStr("lml_given")}
    )
    with TestClient(create_api_app(own)):
        pass
    store = off.state.running.context.store
    assert service.SERVER_USER not in {u.name for u in service.list_users(store)}


def test_a_server_with_its_worker_off_runs_no_worker_and_makes_no_token(
    tmp_path: Path, migrated_database_url: str
) -> None:
    settings = _settings(tmp_path, migrated_database_url, auth=True)
    settings = settings.model_copy(
        update={"server": settings.server.model_copy(update={"worker": False})}
    )
    app = create_api_app(settings)
    with TestClient(app):
        assert "pipeline-worker" not in {t.name for t in threading.enumerate()}
    store = app.state.running.context.store
    assert service.SERVER_USER not in {u.name for u in service.list_users(store)}
