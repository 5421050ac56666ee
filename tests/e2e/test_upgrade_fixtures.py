"""Each release's fixture home (``tests/fixtures/homes/<version>-<revision>/``, made by
``scripts/make_upgrade_fixture.py``) upgraded by this loopml, on SQLite and on PostgreSQL,
then served: its project, runs, models, users and token are there, and its deployment,
applied again, answers the predictions the fixture recorded for the same rows."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from loopml.store import head_revision
from tests.upgrade_rows import copy_rows, counts, upgrade_to

from .conftest import LOOPML, RunningServer, base_env, running_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]

FIXTURES = Path(__file__).parents[1] / "fixtures" / "homes"
HOMES = sorted(p for p in FIXTURES.iterdir() if (p / "expected.json").is_file())


def _expected(fixture: Path) -> dict[str, Any]:
    expected: dict[str, Any] = json.loads((fixture / "expected.json").read_text())
    return expected


def _home(fixture: Path, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(fixture / "home", home)
    # git keeps no file modes but the executable bit: the install secret is checked out
    # readable by all, which loopml refuses to use (as it should), so give it back its 0600.
    for secret in (home / "secrets").glob("*"):
        secret.chmod(0o600)
    return home


def _db_upgrade(home: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [*LOOPML, "db", "upgrade"],
        env={**base_env(home), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert head_revision() in done.stdout
    return done.stdout


def _serves(server: RunningServer, expected: dict[str, Any]) -> None:
    from loopml.client import Client

    project, model = expected["project"], expected["model"]
    with Client(server.url, timeout=60) as client:
        assert project in {p.name for p in client.projects.list().items}
        assert expected["run"] in {r.id for r in client.runs.iter(project=project)}
        assert client.runs.list_artifacts(expected["run"], project=project).items
        assert client.models.versions(model, project=project).items
        assert set(expected["users"]) <= {u.name for u in client.users.list()}
        token = client.tokens.find(expected["token_prefix"])
        assert (token.user, token.revoked_at) == (expected["users"][0], None)
        # The fixture's own deployment, applied again by the upgraded platform.
        name = expected["deployment"]
        client.deployments.wait(name, timeout_s=240, project=project)
        answer = client.deployments.predict(name, expected["rows"], project=project)
    assert answer["predictions"] == pytest.approx(expected["predictions"])


def test_there_is_a_fixture_of_this_release() -> None:
    """A release (a version) ships its fixture; migrations added between releases are
    tested by upgrading the last release's fixture to the head."""
    from loopml import __version__

    assert list(FIXTURES.glob(f"{__version__}-*/expected.json")), (
        f"make release {__version__}'s fixture: python scripts/make_upgrade_fixture.py"
    )


@pytest.mark.parametrize("fixture", HOMES, ids=[p.name for p in HOMES])
def test_a_fixture_holds_rows_in_every_table_of_its_schema(fixture: Path, tmp_path: Path) -> None:
    """Every table that the fixture's schema revision has (as Alembic makes it, so none can
    be missing from the file) holds at least one row: an upgrade is tested on data in all
    of them. A table added since is filled by the next release's fixture, which the script
    refuses to write with any table empty (``test_there_is_a_fixture_of_this_release``
    asks for it); until then ``tests/unit/store/test_migrations_with_data.py`` puts rows in
    it."""
    revision = _expected(fixture)["revision"]
    made = f"sqlite:///{tmp_path / 'schema.db'}"
    upgrade_to(made, revision)
    held = counts(f"sqlite:///{fixture / 'home' / 'loopml.db'}")
    assert sorted(held) == sorted(counts(made)), f"{fixture.name}: not the tables of {revision}"
    assert [name for name, rows in held.items() if rows == 0] == [], fixture.name


@pytest.mark.parametrize("fixture", HOMES, ids=[p.name for p in HOMES])
def test_a_fixture_home_upgrades_and_serves_on_sqlite(fixture: Path, tmp_path: Path) -> None:
    expected = _expected(fixture)
    home = _home(fixture, tmp_path)
    before = counts(f"sqlite:///{home / 'loopml.db'}")
    _db_upgrade(home, {})
    after = counts(f"sqlite:///{home / 'loopml.db'}")
    assert {name: after.get(name) for name in before} == before
    with running_server(home) as server:
        _serves(server, expected)


@pytest.mark.postgres
@pytest.mark.parametrize("fixture", HOMES, ids=[p.name for p in HOMES])
def test_a_fixture_home_upgrades_and_serves_on_postgresql(
    fixture: Path, tmp_path: Path, postgres_url: str
) -> None:
    expected = _expected(fixture)
    home = _home(fixture, tmp_path)
    sqlite = f"sqlite:///{home / 'loopml.db'}"
    upgrade_to(postgres_url, expected["revision"])
    copied = copy_rows(sqlite, postgres_url)
    assert copied == counts(sqlite)
    env = {"LOOPML_DATABASE_URL": postgres_url}
    _db_upgrade(home, env)
    (home / "loopml.db").unlink()
    with running_server(home, env) as server:
        _serves(server, expected)
