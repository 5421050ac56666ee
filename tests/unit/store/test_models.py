"""Registry repositories (models, versions, aliases, tags) on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest

from loopml.core.errors import AlreadyExistsError, ConflictError, NotFoundError, ValidationError
from loopml.core.gate import GatePolicy, RuleOutcome
from loopml.core.promotion import AliasMove, ForcedPromotion
from loopml.core.registry import MAX_TAGS, VersionStatus
from loopml.storage import LocalArtifactStore
from loopml.store import (
    MetadataStore,
    events,
    gates,
    lineage,
    model_tags,
    model_versions,
    models,
    projects,
)
from tests.tracking_rows import Run, log_model, make_run


def _register(store: MetadataStore, tmp_path: Path, model: str = "churn", n: int = 1) -> Run:
    """``n`` PENDING versions of ``model`` (created if missing), all from one run."""
    artifacts = LocalArtifactStore(tmp_path / "artifacts")
    run = make_run(store)
    log_model(store, artifacts, run)
    with store.session() as session:
        if not any(m.name == model for m in models.list_(session, "default").items):
            models.create(session, "default", model, actor="ada")
        logged = lineage.find_logged_model(session, "default", run.id, "model")
        for _ in range(n):
            model_versions.create(session, "default", model, logged, actor="ada")
    return run


def _ready(store: MetadataStore, *numbers: int, model: str = "churn") -> None:
    with store.session() as session:
        for number in numbers:
            model_versions.set_status(
                session, "default", model, number, VersionStatus.READY, actor="ada"
            )


def _types(store: MetadataStore, prefix: str = "model.*") -> list[str]:
    with store.session() as session:
        return [e.type for e in events.list_(session, type=prefix, limit=1000).items]


def test_model_crud_and_events(store: MetadataStore) -> None:
    with store.session() as session:
        created = models.create(
            session, "default", "churn", description="who leaves", tags={"team": "ml"}, actor="ada"
        )
    assert (created.name, created.project, created.tags) == ("churn", "default", {"team": "ml"})
    assert created.latest_version is None
    with store.session() as session:
        assert models.get(session, "default", "churn") == created
        updated = models.update(session, "default", "churn", description="v2", actor="ada")
    assert updated.description == "v2"
    with store.session() as session:
        assert models.delete(session, "default", "churn", actor="ada") == 0
    with store.session() as session, pytest.raises(NotFoundError, match="model 'churn' not found"):
        models.get(session, "default", "churn")
    assert _types(store) == ["model.created", "model.updated", "model.deleted"]


def test_duplicates_bad_names_and_missing_project(store: MetadataStore) -> None:
    with store.session() as session:
        models.create(session, "default", "churn", actor="ada")
    with pytest.raises(AlreadyExistsError, match="'churn' already exists"), store.session() as s:
        models.create(s, "default", "churn", actor="ada")
    for bad in ["Churn", "a b", "../x", "a" * 64, "", "x\n"]:
        with pytest.raises(ValidationError, match="lowercase letter"), store.session() as s:
            models.create(s, "default", bad, actor="ada")
    with pytest.raises(NotFoundError, match="project 'ghost' not found"), store.session() as s:
        models.create(s, "ghost", "churn", actor="ada")
    with pytest.raises(ValidationError, match="description"), store.session() as s:
        models.create(s, "default", "big", description="d" * 4001, actor="ada")


def test_list_models_pages_by_name(store: MetadataStore) -> None:
    names = sorted(f"m{i:02d}" for i in range(7))
    with store.session() as session:
        for name in names:
            models.create(session, "default", name, actor="ada")
    seen, cursor = [], None
    while True:
        with store.session() as session:
            page = models.list_(session, "default", limit=3, cursor=cursor)
        seen += [m.name for m in page.items]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert seen == names
    with pytest.raises(ValidationError, match="cursor"), store.session() as session:
        models.list_(session, "default", cursor="../x")


def test_versions_are_numbered_and_listed_newest_first(
    store: MetadataStore, tmp_path: Path
) -> None:
    run = _register(store, tmp_path, n=3)
    with store.session() as session:
        page = model_versions.list_(session, "default", "churn", limit=2)
        assert [v.version for v in page.items] == [3, 2]
        assert page.next_cursor == "2"
        rest = model_versions.list_(session, "default", "churn", cursor=2)
        assert [v.version for v in rest.items] == [1]
        v1 = model_versions.get(session, "default", "churn", 1)
        assert (v1.status, v1.run_id, v1.project) == (VersionStatus.PENDING, run.id, "default")
        assert models.get(session, "default", "churn").latest_version == 3
    assert _types(store, "model.version.*") == ["model.version.registered"] * 3


def test_concurrent_version_creation_numbers_them_in_turn(
    store: MetadataStore, tmp_path: Path
) -> None:
    run = _register(store, tmp_path, n=0)
    with store.session() as session:
        logged = lineage.find_logged_model(session, "default", run.id, "model")
    barrier = threading.Barrier(4)
    numbers: list[int] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            barrier.wait(5)
            with store.session() as session:
                created = model_versions.create(session, "default", "churn", logged, actor="t")
            numbers.append(created.version)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(numbers) == [1, 2, 3, 4]


def test_status_settles_once(store: MetadataStore, tmp_path: Path) -> None:
    _register(store, tmp_path, n=2)
    with store.session() as session:
        failed = model_versions.set_status(
            session, "default", "churn", 1, VersionStatus.FAILED, "file 'x' missing", actor="a"
        )
        assert (failed.status, failed.status_message) == (VersionStatus.FAILED, "file 'x' missing")
        # The first verdict stands: a late READY does not flip it.
        again = model_versions.set_status(
            session, "default", "churn", 1, VersionStatus.READY, actor="a"
        )
        assert again.status == VersionStatus.FAILED
        with pytest.raises(ValidationError):
            model_versions.set_status(
                session, "default", "churn", 2, VersionStatus.PENDING, actor="a"
            )
    _ready(store, 2)
    assert _types(store, "model.version.*")[-2:] == ["model.version.failed", "model.version.ready"]


def test_aliases_move_resolve_and_guard_deletion(store: MetadataStore, tmp_path: Path) -> None:
    _register(store, tmp_path, n=3)
    _ready(store, 1, 2)
    with store.session() as session:
        models.move_alias(session, "default", "churn", AliasMove("prod", 1), actor="ada")
        moved = models.move_alias(session, "default", "churn", AliasMove("prod", 2), actor="bob")
        assert moved.aliases == ["prod"]
        assert models.get(session, "default", "churn").aliases == {"prod": 2}
        assert model_versions.resolve(session, "default", "churn@prod").version == 2
        assert model_versions.resolve(session, "default", "churn/1").version == 1
        # Bare name: the newest READY version (3 is PENDING).
        assert model_versions.resolve(session, "default", "churn").version == 2
        assert model_versions.resolve(session, "other", "default:churn").version == 2
    with store.session() as session:
        feed = events.list_(session, type="model.alias.set").items
    assert [(e.payload["from_version"], e.payload["to_version"]) for e in feed] == [
        (None, 1),
        (1, 2),
    ]
    with store.session() as session:
        with pytest.raises(ConflictError, match="alias 'prod'"):
            model_versions.delete(session, "default", "churn", 2, actor="ada")
        with pytest.raises(NotFoundError, match="no alias 'gold'"):
            model_versions.resolve(session, "default", "churn@gold")
        with pytest.raises(NotFoundError, match="version 9 of model 'churn' not found"):
            model_versions.resolve(session, "default", "churn/9")
        with pytest.raises(NotFoundError, match="model 'nope' not found"):
            model_versions.resolve(session, "default", "nope")
        with pytest.raises(ValidationError, match="invalid model reference"):
            model_versions.resolve(session, "default", "churn@@x")
    with store.session() as session:
        models.delete_alias(session, "default", "churn", "prod", actor="ada")
        model_versions.delete(session, "default", "churn", 2, actor="ada")
        with pytest.raises(NotFoundError, match="no alias 'prod'"):
            models.delete_alias(session, "default", "churn", "prod", actor="ada")
    assert "model.alias.removed" in _types(store)
    assert "model.version.deleted" in _types(store, "model.version.*")


def test_move_alias_records_the_move_the_rules_allowed(
    store: MetadataStore, tmp_path: Path
) -> None:
    _register(store, tmp_path, n=2)
    _ready(store, 1, 2)
    override = ForcedPromotion(gate="failed", gate_result_id="r1", reason="hotfix #12")
    with store.session() as session:
        forced = AliasMove("champion", 1, forced=override)
        models.move_alias(session, "default", "churn", forced, actor="ada")
        passed = AliasMove("champion", 2, gate_result_id="r2")
        models.move_alias(session, "default", "churn", passed, actor="bob")
        with pytest.raises(NotFoundError, match="version 9 of model 'churn' not found"):
            models.move_alias(session, "default", "churn", AliasMove("prod", 9), actor="ada")
    with store.session() as session:
        feed = events.list_(session, type="model.*", limit=1000).items
    moves = [
        (e.type, e.actor, e.payload) for e in feed if "promotion" in e.type or "alias" in e.type
    ]
    assert moves == [
        (
            "model.promotion.forced",
            "ada",
            {
                "model": "churn",
                "alias": "champion",
                "version": 1,
                "gate": "failed",
                "gate_result_id": "r1",
                "reason": "hotfix #12",
            },
        ),
        (
            "model.alias.set",
            "ada",
            {
                "model": "churn",
                "alias": "champion",
                "from_version": None,
                "to_version": 1,
                "forced": True,
                "reason": "hotfix #12",
            },
        ),
        (
            "model.alias.set",
            "bob",
            {
                "model": "churn",
                "alias": "champion",
                "from_version": 1,
                "to_version": 2,
                "gate_result_id": "r2",
            },
        ),
    ]


def test_latest_verdict_is_the_newest_gate_result(store: MetadataStore, tmp_path: Path) -> None:
    _register(store, tmp_path, n=1)

    def record(passed: bool) -> str:
        rule = RuleOutcome(rule="threshold", metric="roc_auc", passed=passed, message="m")
        with store.session() as session:
            return gates.record_result(
                session,
                "default",
                "churn",
                1,
                policy=GatePolicy(),
                eval_hash="ab" * 8,
                champion_version=None,
                rules=[rule],
                actor="a",
            ).id

    with store.session() as session:
        version_id = model_versions.get(session, "default", "churn", 1).id
        assert gates.latest_verdict(session, version_id) is None
    failed = record(False)
    with store.session() as session:
        verdict = gates.latest_verdict(session, version_id)
    assert verdict is not None
    assert (verdict.id, verdict.passed) == (failed, False)
    assert [(r["metric"], r["passed"], r["message"]) for r in verdict.rules] == [
        ("roc_auc", False, "m")
    ]
    passed = record(True)
    with store.session() as session:
        newest = gates.latest_verdict(session, version_id)
    assert newest is not None
    assert (newest.id, newest.passed) == (passed, True)


def test_no_ready_version_is_a_clear_not_found(store: MetadataStore, tmp_path: Path) -> None:
    _register(store, tmp_path, n=1)
    with store.session() as session, pytest.raises(NotFoundError, match="no READY version"):
        model_versions.resolve(session, "default", "churn")


def test_delete_model_with_versions_needs_force(store: MetadataStore, tmp_path: Path) -> None:
    _register(store, tmp_path, n=2)
    _ready(store, 1)
    with store.session() as session:
        models.move_alias(session, "default", "churn", AliasMove("prod", 1), actor="ada")
    with pytest.raises(ConflictError, match="2 version"), store.session() as session:
        models.delete(session, "default", "churn", actor="ada")
    with store.session() as session:
        assert models.delete(session, "default", "churn", force=True, actor="ada") == 2
    with store.session() as session:
        assert models.list_(session, "default").items == []


def test_tags_on_models_and_versions(store: MetadataStore, tmp_path: Path) -> None:
    _register(store, tmp_path, n=1)
    with store.session() as session:
        tagged = model_tags.set_model_tag(session, "default", "churn", "team", "ml", actor="a")
        assert tagged.tags == {"team": "ml"}
        version = model_tags.set_version_tag(
            session, "default", "churn", 1, "auc", "0.9", actor="a"
        )
        assert version.tags == {"auc": "0.9"}
        model_tags.delete_model_tag(session, "default", "churn", "team", actor="a")
        model_tags.delete_version_tag(session, "default", "churn", 1, "auc", actor="a")
        assert models.get(session, "default", "churn").tags == {}
        with pytest.raises(NotFoundError, match="no tag 'team'"):
            model_tags.delete_model_tag(session, "default", "churn", "team", actor="a")
        for bad in ["", "../x", ".hidden", "a b", "k" * 251]:
            with pytest.raises(ValidationError, match="invalid tag key"):
                model_tags.set_model_tag(session, "default", "churn", bad, "v", actor="a")
        with pytest.raises(ValidationError, match="at most 5000"):
            model_tags.set_model_tag(session, "default", "churn", "k", "v" * 5001, actor="a")
    with store.session() as session:
        for i in range(MAX_TAGS):
            model_tags.set_model_tag(session, "default", "churn", f"k{i}", "v", actor="a")
        # Replacing an existing tag is fine at the limit; a new key is not.
        model_tags.set_model_tag(session, "default", "churn", "k0", "w", actor="a")
        with pytest.raises(ValidationError, match="too many tags"):
            model_tags.set_model_tag(session, "default", "churn", "one-more", "v", actor="a")
    types = _types(store)
    assert {"model.tag.set", "model.tag.removed"} <= set(types)
    assert {"model.version.tag.set", "model.version.tag.removed"} <= set(types)


def test_stale_pending_versions_are_failed(store: MetadataStore, tmp_path: Path) -> None:
    _register(store, tmp_path, n=2)
    _ready(store, 2)
    with store.session() as session:
        assert (
            model_versions.fail_stale_pending(session, older_than=timedelta(hours=1), actor="s")
            == 0
        )
        assert model_versions.fail_stale_pending(session, older_than=timedelta(0), actor="s") == 1
        stale = model_versions.get(session, "default", "churn", 1)
    assert stale.status == VersionStatus.FAILED
    assert "did not finish" in stale.status_message


def test_find_logged_model_names_what_is_missing(store: MetadataStore, tmp_path: Path) -> None:
    run = _register(store, tmp_path, n=0)
    with store.session() as session:
        with pytest.raises(NotFoundError, match="logged no model at path 'other'"):
            lineage.find_logged_model(session, "default", run.id, "other")
        with pytest.raises(NotFoundError, match=r"run '0+' not found"):
            lineage.find_logged_model(session, "default", "0" * 32, "model")
        with pytest.raises(ValidationError, match="run id"):
            lineage.find_logged_model(session, "default", "../../etc", "model")
        with pytest.raises(Exception, match="Invalid path"):
            lineage.find_logged_model(session, "default", run.id, "../../etc/passwd")


def test_deleting_a_project_deletes_its_models_and_versions(
    store: MetadataStore, tmp_path: Path
) -> None:
    # Left to the cascades, SQLite deleted the run before the version that points at it.
    with store.session() as session:
        projects.create(session, "p", actor="a")
    run = make_run(store, "p")
    log_model(store, LocalArtifactStore(tmp_path / "a"), run)
    with store.session() as session:
        models.create(session, "p", "m", actor="a")
        logged = lineage.find_logged_model(session, "p", run.id, "model")
        model_versions.create(session, "p", "m", logged, actor="a")
    with store.session() as session:
        projects.delete(session, "p", actor="a")
    with store.session() as session, pytest.raises(NotFoundError, match="project 'p'"):
        models.list_(session, "p")
