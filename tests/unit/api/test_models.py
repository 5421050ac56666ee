"""The model registry through the real SDK against the in-process app."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.core.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidPathError,
    NotFoundError,
    PayloadTooLargeError,
    ValidationError,
)
from loopml.core.registry import ModelVersion, RegisteredModel, VersionStatus
from loopml.faces.context import AppContext
from loopml.store.orm import RunRow
from tests.tracking_rows import Run, log_model, make_run


def _ctx(http: TestClient) -> AppContext:
    ctx: AppContext = http.app.state.running.context  # type: ignore[attr-defined]
    return ctx


def _logged_run(http: TestClient, inputs: tuple[tuple[str, str], ...] = ()) -> Run:
    ctx = _ctx(http)
    run = make_run(ctx.store, inputs=inputs)
    log_model(ctx.store, ctx.artifacts, run)
    return run


def test_model_crud(client: Client) -> None:
    created = client.models.create("churn", description="who leaves", tags={"team": "ml"})
    assert (created.name, created.tags) == ("churn", {"team": "ml"})
    assert client.models.get("churn") == created
    assert client.models.update("churn", description="v2").description == "v2"
    assert [m.name for m in client.models.iter()] == ["churn"]
    with pytest.raises(AlreadyExistsError, match="'churn' already exists"):
        client.models.create("churn")
    client.models.delete("churn")
    with pytest.raises(NotFoundError, match="model 'churn' not found in project 'default'"):
        client.models.get("churn")


def test_register_alias_resolve_lineage(client: Client, http: TestClient) -> None:
    run = _logged_run(http, inputs=(("dataset", "snap-1"),))
    first = client.models.register_version("churn", run_id=run.id, description="first")
    assert (first.version, first.status) == (1, VersionStatus.READY)
    second = client.models.register_version("churn", run_id=run.id)
    assert client.models.get("churn").latest_version == 2
    assert [v.version for v in client.models.versions("churn").items] == [2, 1]
    assert client.models.versions("churn", status="FAILED").items == []
    assert client.models.get_version("churn", 1) == first

    moved = client.models.set_alias("churn", "prod", 1)
    assert moved.aliases == ["prod"]
    client.models.set_alias("churn", "prod", second.version)
    assert client.models.resolve("churn@prod").version == 2
    assert client.models.resolve("churn/1").id == first.id
    assert client.models.resolve("default:churn").version == 2
    with pytest.raises(ConflictError, match="alias 'prod'"):
        client.models.delete_version("churn", 2)

    lineage = client.models.lineage("churn", 1)
    assert lineage.run.id == run.id
    assert [(i.kind, i.ref) for i in lineage.inputs] == [("dataset", "snap-1")]
    built = client.models.built_from("dataset", "snap-1")
    assert [r.id for r in built.runs] == [run.id]
    assert [v.version for v in built.versions] == [1, 2]

    tagged = client.models.set_tag("churn", "auc", "0.91", version=1)
    assert isinstance(tagged, ModelVersion)
    assert tagged.tags == {"auc": "0.91"}
    model_tagged = client.models.set_tag("churn", "team", "ml")
    assert isinstance(model_tagged, RegisteredModel)
    assert model_tagged.tags == {"team": "ml"}
    client.models.delete_tag("churn", "auc", version=1)
    client.models.delete_tag("churn", "team")
    assert client.models.update_version("churn", 1, description="x").description == "x"

    with pytest.raises(ConflictError, match="2 version"):
        client.models.delete("churn")
    client.models.remove_alias("churn", "prod")
    client.models.delete_version("churn", 2)
    client.models.delete("churn", force=True)
    types = [e.type for e in client.events.iter(type="model.*")]
    assert types[:3] == ["model.created", "model.version.registered", "model.version.ready"]
    assert types.count("model.alias.set") == 2
    assert types[-1] == "model.deleted"


def test_tampered_model_registers_as_failed(client: Client, http: TestClient) -> None:
    run = _logged_run(http)
    artifacts = _ctx(http).artifacts
    artifacts.write_bytes(f"{run.package_prefix()}/model.onnx", b"evil")
    version = client.models.register_version("churn", run_id=run.id)
    assert version.status == VersionStatus.FAILED
    assert "'model.onnx'" in version.status_message
    with pytest.raises(ConflictError, match="only READY"):
        client.models.set_alias("churn", "prod", 1)


def test_missing_things_are_named(client: Client, http: TestClient) -> None:
    run = _logged_run(http)
    with pytest.raises(NotFoundError, match="logged no model at path 'other'"):
        client.models.register_version("churn", run_id=run.id, path="other")
    with pytest.raises(NotFoundError, match="project 'ghost' not found"):
        client.models.resolve("churn", project="ghost")
    client.models.create("churn")
    with pytest.raises(NotFoundError, match="no READY version"):
        client.models.resolve("churn")
    with pytest.raises(NotFoundError, match="no alias 'gold'"):
        client.models.resolve("churn@gold")
    with pytest.raises(NotFoundError, match="version 4 of model 'churn'"):
        client.models.get_version("churn", 4)


@pytest.mark.parametrize(
    "name", ["Bad", "a b", "../x", "x\n", "1abc", "a" * 64, "x;rm -rf", "<img src=x>"]
)
def test_bad_model_names_are_422_with_the_rule(client: Client, name: str) -> None:
    with pytest.raises(ValidationError) as err:
        client.models.create(name)
    assert "lowercase" in err.value.message or "at most 63" in err.value.message


@pytest.mark.parametrize(
    "ref", ["Churn", "churn/0", "churn@", "churn/1@x", "a:b:c", "churn@" + "x" * 64, "../etc"]
)
def test_bad_refs_are_422_with_the_grammar(client: Client, ref: str) -> None:
    with pytest.raises(ValidationError) as err:
        client.models.resolve(ref)
    assert "ref" in err.value.message


def test_a_ref_naming_a_project_is_resolved_there(client: Client, http: TestClient) -> None:
    with pytest.raises(NotFoundError, match="project 'other' not found"):
        client.models.resolve("other:churn")
    # Over HTTP the project is the URL's: a prefix is refused, not silently followed.
    response = http.get("/api/v1/projects/default/model-refs/other:churn")
    assert response.status_code == 422
    assert "drop the 'other:' prefix" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "run_id", ["../../etc/passwd", "file:///etc", "x" * 33, "ABCDEF" + "0" * 26]
)
def test_bad_run_ids_and_paths_are_refused(client: Client, http: TestClient, run_id: str) -> None:
    with pytest.raises(ValidationError):
        client.models.register_version("churn", run_id=run_id)
    run = _logged_run(http)
    for path in ["../../../etc", "/etc/passwd", "file:///etc", "mlflow-artifacts:/../"]:
        with pytest.raises((InvalidPathError, NotFoundError)):
            client.models.register_version("churn", run_id=run.id, path=path)


def test_oversized_fields_are_refused_fast(client: Client, http: TestClient) -> None:
    with pytest.raises(ValidationError, match="description"):
        client.models.create("churn", description="d" * 4001)
    too_many = {f"k{i}": "v" for i in range(10_000)}
    with pytest.raises((PayloadTooLargeError, ValidationError)):
        client.models.create("churn", tags=too_many)
    with pytest.raises(ValidationError, match="tags"):
        client.models.create("churn", tags={f"k{i}": "v" for i in range(101)})
    client.models.create("churn")
    with pytest.raises(ValidationError):
        client.models.set_tag("churn", "k", "v" * 5001)
    with pytest.raises(ValidationError):
        client.models.set_tag("churn", "k" * 251, "v")
    response = http.get("/api/v1/projects/default/models", params={"limit": 10**9})
    assert response.status_code == 422
    response = http.get(
        "/api/v1/projects/default/lineage", params={"input_kind": "dataset", "input_ref": "x" * 301}
    )
    assert response.status_code == 422


def test_gc_through_the_api(client: Client, http: TestClient) -> None:
    ctx = _ctx(http)
    client.projects.create("gone")
    run = make_run(ctx.store, "gone")
    log_model(ctx.store, ctx.artifacts, run)
    client.projects.delete("gone")  # frees the project's files itself
    orphan = make_run(ctx.store)
    ctx.artifacts.write_bytes(f"{orphan.package_prefix()}/x.bin", b"12345")
    with ctx.store.session() as session:
        session.delete(session.get(RunRow, orphan.id))
    preview = client.models.gc(dry_run=True)
    assert (preview.dry_run, preview.objects, preview.bytes) == (True, 1, 5)
    report = client.models.gc()
    assert (report.dry_run, report.objects, report.bytes) == (False, 1, 5)
    assert client.models.gc().objects == 0
