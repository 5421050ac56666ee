"""Alias moves under concurrency, deletion guards and the stale-registration sweeper."""

from __future__ import annotations

import itertools
import threading
from datetime import timedelta

import pytest

from loopml.core.errors import ConflictError
from loopml.core.registry import VersionStatus
from loopml.registry import (
    delete_model,
    delete_version,
    fail_stale_registrations,
    register_version,
    remove_alias,
    resolve,
    set_alias,
    settle_stale_registrations,
)
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, events, lineage, model_versions, models
from tests.tracking_rows import MODEL_FILES, log_model, make_run


def _versions(store: MetadataStore, artifacts: ArtifactStore, n: int) -> None:
    run = make_run(store)
    log_model(store, artifacts, run)
    for _ in range(n):
        version = register_version(
            store, artifacts, project="default", model_name="churn", run_id=run.id, actor="a"
        )
        assert version.status == VersionStatus.READY


def test_concurrent_alias_moves_one_wins_both_recorded(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    _versions(store, artifacts, 3)
    set_alias(store, "default", "churn", "prod", 1, actor="setup")
    rounds = 5
    errors: list[BaseException] = []

    def move(barrier: threading.Barrier, version: int) -> None:
        try:
            barrier.wait(5)
            set_alias(store, "default", "churn", "prod", version, actor=f"t{version}")
        except BaseException as exc:
            errors.append(exc)

    for _ in range(rounds):
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=move, args=(barrier, v)) for v in (2, 3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    with store.session() as session:
        feed = events.list_(session, type="model.alias.set", limit=1000).items
    moves = [(e.payload["from_version"], e.payload["to_version"]) for e in feed]
    assert len(moves) == 1 + 2 * rounds
    # Moves took turns: each one left the version the previous one set.
    for before, after in itertools.pairwise(moves):
        assert after[0] == before[1]
    assert resolve(store, "default", "churn@prod").version == moves[-1][1]


def test_alias_guards_version_deletion(store: MetadataStore, artifacts: ArtifactStore) -> None:
    _versions(store, artifacts, 2)
    set_alias(store, "default", "churn", "prod", 2, actor="a")
    with pytest.raises(ConflictError, match="alias 'prod'"):
        delete_version(store, "default", "churn", 2, actor="a")
    delete_version(store, "default", "churn", 1, actor="a")
    remove_alias(store, "default", "churn", "prod", actor="a")
    delete_version(store, "default", "churn", 2, actor="a")
    assert delete_model(store, "default", "churn", actor="a") == 0


def test_stale_pending_registration_is_failed_by_the_sweeper(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    # A registration killed between insert and verdict leaves its version PENDING.
    run = make_run(store)
    log_model(store, artifacts, run)
    with store.session() as session:
        models.create(session, "default", "churn", actor="a")
        logged = lineage.find_logged_model(session, "default", run.id, "model")
        model_versions.create(session, "default", "churn", logged, actor="a")
    assert fail_stale_registrations(store, older_than=timedelta(hours=1)) == 0
    assert fail_stale_registrations(store, older_than=timedelta(0)) == 1
    version = resolve(store, "default", "churn/1")
    assert version.status == VersionStatus.FAILED
    with pytest.raises(ConflictError, match="only READY"):
        set_alias(store, "default", "churn", "prod", 1, actor="a")


def test_a_registration_killed_before_its_verdict_is_verified_again(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    """The housekeeping verifies a version left PENDING again and settles it as its
    registration would have: READY when the package's files are whole, FAILED naming the
    file when one was changed; a younger one is left to its registration."""
    run = make_run(store)
    log_model(store, artifacts, run)
    log_model(store, artifacts, run, path="broken")
    with store.session() as session:
        models.create(session, "default", "churn", actor="a")
        for path in ("model", "broken"):
            logged = lineage.find_logged_model(session, "default", run.id, path)
            model_versions.create(session, "default", "churn", logged, actor="a")
    name = next(iter(MODEL_FILES))
    artifacts.write_bytes(f"{run.package_prefix('broken')}/{name}", b"changed after it was logged")
    assert settle_stale_registrations(store, artifacts, older_than=timedelta(hours=1)) == 0
    assert settle_stale_registrations(store, artifacts, older_than=timedelta(0)) == 2
    whole, changed = resolve(store, "default", "churn/1"), resolve(store, "default", "churn/2")
    assert (whole.status, whole.status_message) == (VersionStatus.READY, "")
    assert changed.status == VersionStatus.FAILED
    assert name in changed.status_message
    # Settled: the hour's sweep has nothing left, and a second round changes nothing.
    assert fail_stale_registrations(store, older_than=timedelta(0)) == 0
    assert settle_stale_registrations(store, artifacts, older_than=timedelta(0)) == 0
