"""The permission table covers every route of the app, and nothing else."""

from __future__ import annotations

from pathlib import Path

from loopml.auth.permissions import (
    MLFLOW_PREFIXES,
    MLFLOW_PROJECT,
    PERMISSIONS,
    Action,
    rule_for,
)
from loopml.platform import create_api_app
from loopml.platform.route_table import iter_api_routes
from loopml.settings import Settings


def _routes(tmp_path: Path) -> set[tuple[str, str]]:
    app = create_api_app(Settings(home=tmp_path / "home"))
    return {(method, path) for method, path, _ in iter_api_routes(app)}


def test_every_route_has_a_permission_entry(tmp_path: Path) -> None:
    missing = sorted(route for route in _routes(tmp_path) if rule_for(*route) is None)
    assert missing == [], (
        "add these routes to loopml/auth/permissions.py (under their router module's list)"
    )


def test_mlflow_routes_act_in_the_mlflow_project_by_method(tmp_path: Path) -> None:
    mlflow = {r for r in _routes(tmp_path) if r[1].startswith(MLFLOW_PREFIXES)}
    assert mlflow, "the MLflow API is mounted"
    assert set(PERMISSIONS).isdisjoint(mlflow)
    search = rule_for("POST", "/api/2.0/mlflow/runs/search")
    assert search is not None
    assert (search.action, search.project_param) == (Action.READ, MLFLOW_PROJECT)
    assert rule_for("POST", "/api/2.0/mlflow/runs/log-batch").action == Action.WRITE  # type: ignore[union-attr]
    assert rule_for("GET", "/ajax-api/2.0/mlflow/experiments/get").action == Action.READ  # type: ignore[union-attr]
    deleted = rule_for("DELETE", "/api/2.0/mlflow-artifacts/artifacts/{artifact_path:path}")
    assert deleted is not None
    assert deleted.action == Action.ADMIN


def test_a_project_s_mlflow_routes_act_in_the_project_of_their_path(tmp_path: Path) -> None:
    routes = _routes(tmp_path)
    root = "/mlflow/projects/{project}"
    mine = {(m, p.removeprefix(root)) for m, p in routes if p.startswith(root + "/")}
    assert mine == {r for r in routes if r[1].startswith(MLFLOW_PREFIXES)}
    search = rule_for("POST", root + "/ajax-api/2.0/mlflow/runs/search")
    assert search is not None
    assert (search.action, search.project_param) == (Action.READ, "project")
    upload = rule_for("PUT", root + "/api/2.0/mlflow-artifacts/artifacts/{path:path}")
    assert upload is not None
    assert (upload.action, upload.project_param) == (Action.WRITE, "project")
    assert rule_for("GET", root + "/elsewhere") is None


def test_no_entry_names_a_route_that_does_not_exist(tmp_path: Path) -> None:
    assert sorted(set(PERMISSIONS) - _routes(tmp_path)) == []


def test_reads_need_viewer_writes_editor_deletes_admin() -> None:
    for (method, path), rule in PERMISSIONS.items():
        if rule.action in (Action.READ, Action.WRITE, Action.ADMIN):
            if method == "GET":  # reads: viewer (members, which name users: admin)
                assert rule.action != Action.WRITE, path
            if method == "DELETE" and "/aliases/" not in path and "/tags/" not in path:
                assert rule.action == Action.ADMIN, path
            if method in ("POST", "PUT", "PATCH"):
                assert rule.action != Action.READ or path.endswith(("/sql", "/search")), path
    assert rule_for("POST", "/api/v1/gc").action == Action.PLATFORM  # type: ignore[union-attr]
    assert rule_for("HEAD", "/api/v1/health").action == Action.PUBLIC  # type: ignore[union-attr]
    assert rule_for("GET", "/api/v1/nowhere") is None


def test_every_narrowing_names_a_parameter_its_route_has(tmp_path: Path) -> None:
    # A misspelt parameter would match nothing, and a narrowed token would be refused there.
    import re
    import typing

    from pydantic import BaseModel

    from loopml.auth.permissions import Source

    app = create_api_app(Settings(home=tmp_path / "home"))
    routes = {(method, path): route for method, path, route in iter_api_routes(app)}
    for (method, path), rule in PERMISSIONS.items():
        if rule.resource is None:
            continue
        if rule.resource.source is Source.BODY:
            hints = typing.get_type_hints(routes[(method, path)].endpoint)
            hints.pop("return", None)
            bodies = [h for h in hints.values() if isinstance(h, type) and issubclass(h, BaseModel)]
            assert [rule.resource.param in b.model_fields for b in bodies] == [True], path
        else:
            assert rule.resource.param in re.findall(r"\{(\w+)", path), path
        assert (rule.resource.source is Source.RUN) == (rule.resource.param == "run_id"), path
    run_routes = [r for (_, p), r in PERMISSIONS.items() if "/runs/{run_id:run_id}" in p]
    assert run_routes
    assert all(r.resource is not None and r.resource.kind == "experiment" for r in run_routes)
