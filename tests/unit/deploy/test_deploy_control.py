"""The control plane and the reconciler on a real database (SQLite, PostgreSQL) and a real
registry, with a target that records what it is told (no processes here: those are
tests/unit/deploy/test_deploy_local.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.core.deployments import Deployment, DeploymentSpec, DeploymentStatus
from loopml.core.errors import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
    ValidationError,
)
from loopml.core.types import Event
from loopml.deploy import DeploymentControl, Reconciler
from loopml.deploy.control import follows
from loopml.deploy.targets.base import DeployTarget, RevisionPackage
from loopml.registry import register_version, remove_alias, resolve, set_alias
from loopml.storage import ArtifactStore, LocalArtifactStore
from loopml.store import MetadataStore, deployments, events, projects
from tests.tracking_rows import log_model, make_run, manifest_bytes
from tests.unit.deploy.deploy_support import PackageFiles, package_files, register_files

PROJECT = "default"


class RecordingTarget:
    """A ``DeployTarget`` that remembers every call."""

    name = "local"

    def __init__(self) -> None:
        self.applied: list[tuple[Deployment, list[RevisionPackage]]] = []
        self.deleted: list[Deployment] = []
        self.ready = 0

    def apply(self, deployment: Deployment, packages: list[RevisionPackage]) -> None:
        self.applied.append((deployment, packages))

    def delete(self, deployment: Deployment) -> None:
        self.deleted.append(deployment)

    def ready_replicas(self, deployment: Deployment) -> int:
        return self.ready


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> PackageFiles:
    return package_files(tmp_path_factory.mktemp("package") / "pkg")


@pytest.fixture
def store(database_url: str) -> Iterator[MetadataStore]:
    metadata = MetadataStore(database_url)
    metadata.upgrade()
    yield metadata
    metadata.dispose()


@pytest.fixture
def artifacts(tmp_path: Path) -> ArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def target() -> RecordingTarget:
    return RecordingTarget()


@pytest.fixture
def control(
    store: MetadataStore,
    artifacts: ArtifactStore,
    target: RecordingTarget,
    package: PackageFiles,
    tmp_path: Path,
) -> DeploymentControl:
    for _ in range(3):
        register_files(store, artifacts, package)
    local: DeployTarget = target
    return DeploymentControl(store, artifacts, {"local": local}, tmp_path / "deployments")


def _events(store: MetadataStore) -> list[Event]:
    with store.session() as session:
        return events.list_(session, type="deployment.*", limit=1000).items


def _champion(store: MetadataStore, version: int) -> None:
    set_alias(store, PROJECT, "cancer", "champion", version, actor="t", force=True, reason="t")


def test_create_resolves_references_into_revisions_and_traffic(
    control: DeploymentControl, target: RecordingTarget, store: MetadataStore
) -> None:
    spec = {
        "model": "cancer/1",
        "canary": {"model": "cancer/2", "percent": 25},
        "shadow": "cancer/3",
        "min_replicas": 2,
        "max_replicas": 4,
    }
    created = control.create(PROJECT, "churn-api", spec, actor="ada")
    assert created.status == DeploymentStatus.PENDING
    assert created.traffic == {1: 75, 2: 25}
    assert created.shadow_revision == 3
    assert [(r.number, r.version, r.role, r.ref) for r in created.revisions] == [
        (1, 1, "primary", "cancer/1"),
        (2, 2, "canary", "cancer/2"),
        (3, 3, "shadow", "cancer/3"),
    ]
    [(applied, packages)] = target.applied
    assert applied == created
    assert sorted(p.revision for p in packages) == [1, 2, 3]
    for one in packages:
        assert one.path is not None
        assert (Path(one.path) / "loopml-model.json").is_file()
        registered = resolve(store, PROJECT, f"cancer/{one.version}")
        assert one.manifest_sha256 == registered.manifest_sha256
    assert [e.type for e in _events(store)] == [
        "deployment.created",
        "deployment.revision.created",
        "deployment.revision.created",
        "deployment.revision.created",
    ]
    assert control.get(PROJECT, "churn-api").spec.canary is not None


def test_an_alias_move_makes_a_new_revision_and_nothing_else_does(
    control: DeploymentControl, target: RecordingTarget, store: MetadataStore
) -> None:
    _champion(store, 1)
    control.create(PROJECT, "churn", {"model": "cancer@champion"}, actor="ada")
    assert control.refresh(PROJECT, "churn", reason="test") is None
    before = len(_events(store))

    _champion(store, 2)
    moved = control.refresh(PROJECT, "churn", reason="alias moved")
    assert moved is not None
    assert moved.traffic == {2: 100}
    assert moved.status == DeploymentStatus.PENDING
    assert [(r.number, r.version) for r in control.revisions(PROJECT, "churn")] == [(1, 1), (2, 2)]
    applied, packages = target.applied[-1]
    assert applied == moved
    assert [p.revision for p in packages] == [2]
    new = _events(store)[before:]
    assert [e.type for e in new] == ["deployment.revision.created", "deployment.updated"]
    assert new[1].payload["change"] == ["followed"]
    assert new[1].payload["from_traffic"] == {"1": 100}
    assert new[1].payload["traffic"] == {"2": 100}
    assert control.refresh(PROJECT, "churn", reason="again") is None


def test_update_reuses_the_revisions_that_serve_the_same_version(
    control: DeploymentControl,
) -> None:
    spec = {"model": "cancer/1", "canary": {"model": "cancer/2", "percent": 10}}
    control.create(PROJECT, "churn", spec, actor="ada")
    promoted = control.update(PROJECT, "churn", {"model": "cancer/2", "canary": None}, actor="ada")
    assert promoted.traffic == {2: 100}
    assert len(control.revisions(PROJECT, "churn")) == 2
    assert promoted.spec.canary is None
    scaled = control.scale(PROJECT, "churn", min_replicas=3, max_replicas=5, actor="ada")
    assert (scaled.spec.min_replicas, scaled.spec.max_replicas) == (3, 5)
    assert scaled.traffic == {2: 100}
    with pytest.raises(ValidationError, match="min_replicas"):
        control.scale(PROJECT, "churn", min_replicas=6, max_replicas=5, actor="ada")


def test_rollback_pins_the_spec_and_keeps_the_shadow(
    control: DeploymentControl, store: MetadataStore, target: RecordingTarget
) -> None:
    _champion(store, 1)
    control.create(PROJECT, "churn", {"model": "cancer@champion", "shadow": "cancer/3"}, actor="a")
    _champion(store, 2)
    assert control.refresh(PROJECT, "churn", reason="t") is not None
    rolled = control.rollback(PROJECT, "churn", 1, actor="ada")
    assert rolled.traffic == {1: 100}
    assert rolled.shadow_revision == 2
    assert rolled.spec.model == "cancer/1"
    # Pinned: the alias no longer moves it.
    assert control.refresh(PROJECT, "churn", reason="t") is None
    assert sorted(p.revision for p in target.applied[-1][1]) == [1, 2]
    rolled_back = [e for e in _events(store) if e.type == "deployment.rolled_back"]
    assert [e.payload["revision"] for e in rolled_back] == [1]
    with pytest.raises(NotFoundError, match="no revision 9"):
        control.rollback(PROJECT, "churn", 9, actor="ada")
    # Following the alias again is a new revision (history only grows).
    followed = control.update(PROJECT, "churn", {"model": "cancer@champion"}, actor="ada")
    assert followed.traffic == {4: 100}
    assert control.revisions(PROJECT, "churn")[-1].version == 2


def test_invalid_requests_are_refused_in_a_useful_order(
    control: DeploymentControl,
    target: RecordingTarget,
    store: MetadataStore,
    artifacts: ArtifactStore,
) -> None:
    with pytest.raises(ValidationError, match="deployment name"):
        control.create(PROJECT, "Bad_Name", {"model": "cancer/1"}, actor="a")
    with pytest.raises(NotFoundError, match="project 'nope'"):
        control.create("nope", "churn", {"model": "cancer/1"}, actor="a")
    # The unknown model is reported before what else is wrong with the spec.
    with pytest.raises(NotFoundError, match="model 'ghost'"):
        control.create(PROJECT, "churn", {"model": "ghost", "min_replicas": 5}, actor="a")
    with pytest.raises(NotFoundError, match="version 7"):
        control.create(PROJECT, "churn", {"model": "cancer/7"}, actor="a")
    with pytest.raises(NotFoundError, match="no alias"):
        control.create(PROJECT, "churn", {"model": "cancer@prod"}, actor="a")
    with pytest.raises(ValidationError, match="min_replicas"):
        control.create(PROJECT, "churn", {"model": "cancer/1", "min_replicas": 5}, actor="a")
    with pytest.raises(ValidationError, match="scale_to_zero_after_s needs min_replicas 0"):
        control.create(
            PROJECT, "churn", {"model": "cancer/1", "scale_to_zero_after_s": 60}, actor="a"
        )
    with pytest.raises(ConflictError, match="'kubernetes' deploy target is not enabled"):
        control.create(PROJECT, "churn", {"model": "cancer/1", "target": "kubernetes"}, actor="a")
    run = make_run(store)
    log_model(store, artifacts, run, manifest=manifest_bytes({"model.onnx": b"other"}))
    failed = register_version(
        store, artifacts, project=PROJECT, model_name="cancer", run_id=run.id, actor="t"
    )
    assert failed.status == "FAILED"
    with pytest.raises(ConflictError, match="only READY versions"):
        control.create(PROJECT, "churn", {"model": f"cancer/{failed.version}"}, actor="a")
    assert target.applied == []
    assert _events(store) == []

    preview = control.create(PROJECT, "churn", {"model": "cancer"}, actor="a", dry_run=True)
    assert preview.revisions[0].version == 3  # the newest READY one
    assert target.applied == []
    with pytest.raises(NotFoundError):
        control.get(PROJECT, "churn")
    control.create(PROJECT, "churn", {"model": "cancer/1"}, actor="a")
    with pytest.raises(AlreadyExistsError):
        control.create(PROJECT, "churn", {"model": "cancer/1"}, actor="a")
    with pytest.raises(ConflictError, match="delete it and create it again"):
        control.update(PROJECT, "churn", {"target": "kubernetes"}, actor="a")


def test_delete_stops_the_target_and_removes_packages(
    control: DeploymentControl, target: RecordingTarget, store: MetadataStore, tmp_path: Path
) -> None:
    control.create(PROJECT, "churn", {"model": "cancer/1"}, actor="a")
    folder = tmp_path / "deployments" / PROJECT / "churn"
    assert (folder / "1" / "package").is_dir()
    control.delete(PROJECT, "churn", actor="a")
    assert [d.name for d in target.deleted] == ["churn"]
    assert not folder.exists()
    assert _events(store)[-1].type == "deployment.deleted"
    with pytest.raises(NotFoundError):
        control.delete(PROJECT, "churn", actor="a")


def test_status_is_synced_from_the_target(
    control: DeploymentControl, target: RecordingTarget, store: MetadataStore
) -> None:
    created = control.create(PROJECT, "churn", {"model": "cancer/1"}, actor="a")
    control.sync(created)
    assert [e.type for e in _events(store)].count("deployment.status") == 0
    target.ready = 2
    assert control.get(PROJECT, "churn").status == DeploymentStatus.READY  # live
    control.sync(created)
    stored = control.list_all()[0]
    assert (stored.status, stored.replicas_ready) == (DeploymentStatus.READY, 2)
    control.sync(stored)
    statuses = [e for e in _events(store) if e.type == "deployment.status"]
    assert [(e.payload["from_status"], e.payload["status"]) for e in statuses] == [
        ("pending", "ready")
    ]


def test_the_reconciler_follows_aliases_and_settles_after_a_restart(
    control: DeploymentControl, target: RecordingTarget, store: MetadataStore
) -> None:
    _champion(store, 1)
    control.create(PROJECT, "churn", {"model": "cancer@champion"}, actor="a")
    control.create(PROJECT, "pinned", {"model": "cancer/1"}, actor="a")
    reconciler = Reconciler(control, store)
    reconciler.run_once()  # settles: both handed to the target again
    assert [d.name for d, _ in target.applied[-2:]] == ["churn", "pinned"]

    _champion(store, 2)
    reconciler.run_once()
    assert control.get(PROJECT, "churn").traffic == {2: 100}
    assert control.get(PROJECT, "pinned").traffic == {1: 100}

    # Moved while no reconciler ran: the next one's settling follows it.
    _champion(store, 3)
    Reconciler(control, store).run_once()
    assert control.get(PROJECT, "churn").traffic == {3: 100}


def test_another_servers_creates_changes_and_deletes_reach_this_servers_target(
    control: DeploymentControl,
    target: RecordingTarget,
    store: MetadataStore,
    artifacts: ArtifactStore,
    tmp_path: Path,
) -> None:
    """Two servers behind one load balancer share the database: what one creates, scales,
    rolls back or deletes, the other's reconciler hands to its own target within a round,
    so both serve the deployment as stored (the multi-host test saw p1 answer 404 for
    120 s for a deployment made through p2). A round that sees no change applies nothing."""
    here_target = RecordingTarget()
    here = DeploymentControl(store, artifacts, {"local": here_target}, tmp_path / "here")
    reconciler = Reconciler(here, store)
    reconciler.run_once()
    assert here_target.applied == []

    control.create(PROJECT, "churn", {"model": "cancer/1"}, actor="elsewhere")
    reconciler.run_once()
    ((applied, packages),) = here_target.applied
    assert (applied.name, applied.traffic, [p.version for p in packages]) == (
        "churn",
        {1: 100},
        [1],
    )
    assert (tmp_path / "here").is_dir()  # its package fetched here

    reconciler.run_once()
    assert len(here_target.applied) == 1  # nothing changed: nothing applied again

    control.scale(PROJECT, "churn", min_replicas=2, max_replicas=3, actor="elsewhere")
    control.update(PROJECT, "churn", {"model": "cancer/2"}, actor="elsewhere")
    reconciler.run_once()
    latest = here_target.applied[-1][0]
    assert (latest.spec.min_replicas, latest.spec.model) == (2, "cancer/2")
    assert [latest.traffic] == [{2: 100}]

    control.delete(PROJECT, "churn", actor="elsewhere")
    reconciler.run_once()
    assert [d.name for d in here_target.deleted] == ["churn"]


class FlakyTarget(RecordingTarget):
    """A target whose next ``failures`` applies raise, as a spawn does when the host is out
    of processes or file handles (not a ``LoopmlError``, which ``apply`` records)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def apply(self, deployment: Deployment, packages: list[RevisionPackage]) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError(24, "Too many open files")
        super().apply(deployment, packages)


def test_a_change_that_failed_to_reach_this_servers_target_is_tried_again(
    control: DeploymentControl, store: MetadataStore, artifacts: ArtifactStore, tmp_path: Path
) -> None:
    """A hand-over that raised is tried each round until it goes through, at the platform's
    start as after another server's change: it was recorded as seen, and the change waited
    for the deployment's next one."""
    control.create(PROJECT, "churn", {"model": "cancer/1"}, actor="elsewhere")
    here_target = FlakyTarget(failures=2)
    here = DeploymentControl(store, artifacts, {"local": here_target}, tmp_path / "here")
    reconciler = Reconciler(here, store)

    reconciler.run_once()  # settling fails, then the round's retry
    assert here_target.applied == []
    reconciler.run_once()
    assert [d.spec.min_replicas for d, _ in here_target.applied] == [1]

    here_target.failures = 1
    control.scale(PROJECT, "churn", min_replicas=2, max_replicas=3, actor="elsewhere")
    reconciler.run_once()
    assert len(here_target.applied) == 1
    reconciler.run_once()
    reconciler.run_once()  # applied once, then nothing changed
    assert [d.spec.min_replicas for d, _ in here_target.applied] == [1, 2]


class AwayStore:
    """The artifact store, but its reads raise while ``away`` (an object store that does
    not answer: what an S3 store raises then)."""

    def __init__(self, inner: ArtifactStore) -> None:
        self.inner = inner
        self.away = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def open(self, key: str) -> object:
        if self.away:
            raise ServiceUnavailableError("the object store did not answer")
        return self.inner.open(key)


def test_an_alias_move_whose_package_could_not_be_fetched_is_followed_once_it_can(
    control: DeploymentControl, store: MetadataStore, artifacts: ArtifactStore, tmp_path: Path
) -> None:
    """The event that moved the alias is behind the reconciler's cursor once read: a switch
    that raised is tried each round (the status says so meanwhile), where it used to wait
    for the alias's next move and the deployment kept serving the old version."""
    _champion(store, 1)
    away = AwayStore(artifacts)
    here_target = RecordingTarget()
    here = DeploymentControl(store, away, {"local": here_target}, tmp_path / "here")  # type: ignore[arg-type]
    here.create(PROJECT, "churn", {"model": "cancer@champion"}, actor="ada")
    reconciler = Reconciler(here, store)
    reconciler.run_once()

    away.away = True
    _champion(store, 2)
    reconciler.run_once()
    reconciler.run_once()
    waiting = here.get(PROJECT, "churn")
    assert [r.version for r in waiting.revisions if r.role == "primary"] == [1]
    assert "could not switch to what its references name now" in waiting.status_message
    assert "the object store did not answer" in waiting.status_message

    away.away = False
    reconciler.run_once()
    followed = here.get(PROJECT, "churn")
    primary = next(r for r in followed.revisions if r.number == max(followed.traffic))
    assert (primary.version, followed.traffic) == (2, {primary.number: 100})
    assert "could not switch" not in followed.status_message
    assert here_target.applied[-1][0].traffic == followed.traffic


def test_the_reconciler_stops_what_vanished_with_its_project(
    control: DeploymentControl,
    target: RecordingTarget,
    store: MetadataStore,
    package: PackageFiles,
    artifacts: ArtifactStore,
) -> None:
    with store.session() as session:
        projects.create(session, "fraud", actor="a")
    register_files(store, artifacts, package, project="fraud")
    control.create("fraud", "scorer", {"model": "cancer/1", "min_replicas": 0}, actor="a")
    reconciler = Reconciler(control, store)
    reconciler.run_once()
    with store.session() as session:
        projects.delete(session, "fraud", actor="a")
    reconciler.run_once()
    assert [(d.project, d.name) for d in target.deleted] == [("fraud", "scorer")]


def test_follows_names_the_references_that_move() -> None:
    spec = DeploymentSpec(model="churn@champion", shadow="other", canary=None)
    assert follows(spec, "churn", "champion")
    assert not follows(spec, "churn", "challenger")
    assert follows(spec, "other", None)
    assert not follows(DeploymentSpec(model="churn/3"), "churn", None)


def test_a_removed_alias_keeps_what_runs_and_says_so(
    control: DeploymentControl, target: RecordingTarget, store: MetadataStore
) -> None:
    _champion(store, 1)
    control.create(PROJECT, "churn", {"model": "cancer@champion"}, actor="a")
    remove_alias(store, PROJECT, "cancer", "champion", actor="t")
    applied = len(target.applied)
    assert control.refresh(PROJECT, "churn", reason="alias removed") is None
    assert len(target.applied) == applied
    shown = control.get(PROJECT, "churn")
    assert shown.traffic == {1: 100}
    assert "cannot follow its references" in shown.status_message
    assert "has no alias 'champion'" in shown.status_message
    assert "cannot follow" in control.list_all()[0].status_message  # stored too

    _champion(store, 2)
    assert control.refresh(PROJECT, "churn", reason="alias back") is not None
    assert "cannot follow" not in control.get(PROJECT, "churn").status_message


def _signed(store: MetadataStore, artifacts: ArtifactStore, inputs: list[tuple[str, str]]) -> int:
    """A new READY version of ``cancer`` whose recorded signature takes ``inputs``."""
    run = make_run(store)
    columns = [{"name": n, "type": t} for n, t in inputs]
    outputs = [{"name": "label", "type": "integer"}]
    signature = {"inputs": columns, "outputs": outputs, "task": "classification"}
    log_model(store, artifacts, run, signature=signature)
    version = register_version(
        store, artifacts, project=PROJECT, model_name="cancer", run_id=run.id, actor="t"
    )
    assert version.status == "READY"
    return version.version


def test_a_canary_or_shadow_that_cannot_take_the_primarys_requests_is_refused(
    control: DeploymentControl,
    target: RecordingTarget,
    store: MetadataStore,
    artifacts: ArtifactStore,
) -> None:
    four = [("tenure", "integer"), ("plan", "string"), ("spend", "float"), ("calls", "integer")]
    champion = _signed(store, artifacts, four)
    three = _signed(store, artifacts, four[:3])
    retyped = _signed(store, artifacts, [*four[:3], ("calls", "string")])
    widened = _signed(store, artifacts, [*four[:3], ("calls", "float")])
    _champion(store, champion)
    spec = {"model": "cancer@champion", "canary": {"model": f"cancer/{three}", "percent": 20}}

    for dry_run in (True, False):
        with pytest.raises(ConflictError) as refused:
            control.create(PROJECT, "churn", spec, actor="a", dry_run=dry_run)
        assert refused.value.message == (
            f"the canary cancer/{three} cannot take the requests of the primary "
            f"cancer/{champion}: it refuses 'calls', which the primary's requests carry. Its "
            "share of the requests would fail with 422; deploy a canary with the same inputs "
            "(same names, types and order), or serve it as its own deployment"
        )
    with pytest.raises(ConflictError, match=r"types differ: 'calls' is string \(the primary's"):
        control.create(
            PROJECT, "churn", {"model": "cancer@champion", "shadow": f"cancer/{retyped}"}, actor="a"
        )
    assert target.applied == []

    # A float column takes the primary's integers; a version without a recorded signature
    # is not judged.
    created = control.create(
        PROJECT, "churn", {"model": "cancer@champion", "shadow": f"cancer/{widened}"}, actor="a"
    )
    assert created.shadow_revision is not None
    control.update(PROJECT, "churn", {"canary": {"model": "cancer/1", "percent": 10}}, actor="a")
    with pytest.raises(ConflictError, match=f"the canary cancer/{three} cannot take"):
        control.update(
            PROJECT, "churn", {"canary": {"model": f"cancer/{three}", "percent": 10}}, actor="a"
        )
    with pytest.raises(ConflictError, match=f"the canary cancer/{three} cannot take"):
        control.check(
            PROJECT,
            {"model": "cancer@champion", "canary": {"model": f"cancer/{three}", "percent": 5}},
        )

    # An alias that moves to a version the shadow cannot follow keeps what runs, and says why.
    _champion(store, three)
    assert control.refresh(PROJECT, "churn", reason="alias moved") is None
    shown = control.get(PROJECT, "churn")
    assert f"the shadow cancer/{widened} cannot take the requests" in shown.status_message


def test_settling_removes_the_folders_a_killed_delete_left(
    control: DeploymentControl, store: MetadataStore, tmp_path: Path
) -> None:
    control.create(PROJECT, "churn", {"model": "cancer/1"}, actor="a")
    control.create(PROJECT, "gone", {"model": "cancer/1"}, actor="a")
    kept = tmp_path / "deployments" / PROJECT / "churn"
    left = tmp_path / "deployments" / PROJECT / "gone"
    assert (kept / "1" / "package").is_dir()
    assert (left / "1" / "package").is_dir()
    # A platform killed between a delete's commit and its clean-up: the row is gone, its
    # fetched packages are not.
    with store.session() as session:
        deployments.delete(session, PROJECT, "gone", actor="a")
    Reconciler(control, store).run_once()
    assert not left.exists()
    assert (kept / "1" / "package").is_dir()
