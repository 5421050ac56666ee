"""The deployment control plane: what each deployment serves, decided and recorded.

Every change goes the same way: the spec's model references are resolved to READY versions
through the registry; a role (primary, canary, shadow) whose resolved version differs from
the revision playing it now gets a **new revision**; traffic follows the roles
(``{primary: 100 - p, canary: p}``); the packages of the revisions in use are fetched to
local disk; the store records it all with its events; the deployment's target is told to
make it so (the local target swaps replicas without dropping a request).

A deployment on an alias (``churn@champion``) is re-resolved by ``refresh`` when the alias
moves (the reconciler calls it). ``rollback`` makes an earlier revision the primary and
**pins** the spec to that revision's version, so that nothing moves it back behind the
user's back; ``update`` with ``model="churn@champion"`` follows the alias again.

Changes to deployments are serialized within this process (one lock); status reads ask the
target directly.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

from loopml import registry
from loopml.core.clock import utcnow
from loopml.core.deployments import (
    Deployment,
    DeploymentSpec,
    DeploymentStatus,
    Revision,
    validate_deployment_name,
)
from loopml.core.errors import (
    AlreadyExistsError,
    ConflictError,
    LoopmlError,
    NotFoundError,
    ValidationError,
)
from loopml.core.refs import ModelRef
from loopml.core.registry import ModelVersion, VersionStatus
from loopml.core.types import Page
from loopml.serve.deploy._packages import deployment_folder, fetch, prune
from loopml.serve.targets.base import (
    DeployTarget,
    ProvidesLogs,
    ReportsStatus,
    RevisionPackage,
    TargetStatus,
)
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore
from loopml.store import deployments as repo
from loopml.store._registry import project_row
from loopml.store.deployments import NewRevision, Role, Roles

log = logging.getLogger("loopml.serve.deploy")

SYSTEM_ACTOR = "system"


@dataclass
class _Plan:
    """What a spec resolves to: the roles, the traffic and the revisions to add."""

    roles: Roles
    traffic: dict[int, int]
    new: list[NewRevision] = field(default_factory=list)


def spec_error(exc: pydantic.ValidationError) -> ValidationError:
    """A pydantic error on a deployment spec as loopml's ``ValidationError``."""
    errors = [
        {"loc": [str(p) for p in err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)[:20]
    ]
    summary = "; ".join(f"{'.'.join(e['loc']) or 'spec'}: {e['msg']}" for e in errors[:3])
    return ValidationError(f"invalid deployment spec: {summary}", details={"errors": errors})


def follows(spec: DeploymentSpec, model: str, alias: str | None) -> bool:
    """Whether ``spec`` names ``model`` by ``alias`` (or, with ``alias`` None, by its newest
    READY version), so that it must be re-resolved when that moves."""
    refs = [spec.model, spec.shadow, spec.canary.model if spec.canary else None]
    for ref in refs:
        if ref is None:
            continue
        parsed = ModelRef.parse(ref)
        if parsed.name != model:
            continue
        if (alias is not None and parsed.alias == alias) or (alias is None and parsed.is_latest):
            return True
    return False


class DeploymentControl:
    """Creates, changes and removes deployments (see the module docstring).

    Args:
        store: the metadata store.
        artifacts: where the registry's packages are.
        targets: the enabled deploy targets by name (``local``, ``kubernetes``).
        root: where packages are fetched (``<root>/<project>/<name>/<revision>/package``).
    """

    def __init__(
        self,
        store: MetadataStore,
        artifacts: ArtifactStore,
        targets: Mapping[str, DeployTarget],
        root: Path,
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.targets = dict(targets)
        self.root = root
        self._lock = threading.RLock()
        # Why a deployment's references stopped resolving (an alias removed), until they
        # resolve again: part of its status message.
        self._unfollowed: dict[tuple[str, str], str] = {}

    # ------------------------------------------------------------------ reads

    def get(self, project: str, name: str) -> Deployment:
        """One deployment, with its status as its target reports it now."""
        with self.store.session() as session:
            deployment = repo.get(session, project, name)
        return self._live(deployment)

    def list_(self, project: str, limit: int = 100, cursor: str | None = None) -> Page[Deployment]:
        """A page of a project's deployments by name, with live status."""
        with self.store.session() as session:
            page = repo.list_(session, project, limit=limit, cursor=cursor)
        items = [self._live(d) for d in page.items]
        return Page[Deployment](items=items, next_cursor=page.next_cursor)

    def list_all(self) -> list[Deployment]:
        """Every deployment of every project, as stored."""
        with self.store.session() as session:
            return repo.list_all(session)

    def revisions(self, project: str, name: str) -> list[Revision]:
        """A deployment's whole revision history, oldest first."""
        with self.store.session() as session:
            return repo.revisions(session, project, name)

    def logs(self, project: str, name: str, tail: int) -> list[str]:
        """The last ``tail`` lines its replicas wrote (when the target keeps them)."""
        deployment = self.get(project, name)
        target = self.targets.get(deployment.spec.target)
        if isinstance(target, ProvidesLogs):
            return target.logs(deployment, tail)
        return []

    def status_of(self, deployment: Deployment) -> TargetStatus:
        """What the deployment's target says about it now."""
        target = self.targets.get(deployment.spec.target)
        if target is None:
            return TargetStatus(
                DeploymentStatus.FAILED,
                f"the {deployment.spec.target!r} target is not enabled on this server",
                0,
            )
        if isinstance(target, ReportsStatus):
            report = target.status(deployment)
        else:
            ready = target.ready_replicas(deployment)
            status = DeploymentStatus.READY if ready else DeploymentStatus.PENDING
            report = TargetStatus(status, "", ready)
        unfollowed = self._unfollowed.get((deployment.project, deployment.name))
        if unfollowed is None:
            return report
        message = "; ".join(m for m in (report.message, unfollowed) if m)
        return TargetStatus(report.status, message, report.replicas_ready)

    def _live(self, deployment: Deployment) -> Deployment:
        report = self.status_of(deployment)
        return deployment.model_copy(
            update={
                "status": report.status,
                "status_message": report.message,
                "replicas_ready": report.replicas_ready,
            }
        )

    # ------------------------------------------------------------------ changes

    def create(
        self,
        project: str,
        name: str,
        spec: Mapping[str, Any] | DeploymentSpec,
        *,
        actor: str,
        dry_run: bool = False,
    ) -> Deployment:
        """Create a deployment and start it on its target.

        With ``dry_run`` nothing is stored or started (and the target need not be enabled
        here): the answer is what would be.

        Raises:
            ValidationError: a bad name or spec.
            NotFoundError: no such project, model, version or alias.
            ConflictError: a version that is not READY, a target not enabled here.
            AlreadyExistsError: the name is taken in the project.
        """
        validate_deployment_name(name)
        with self._lock:
            with self.store.session() as session:
                project_row(session, project)
                try:
                    repo.get(session, project, name)
                except NotFoundError:
                    pass
                else:
                    raise AlreadyExistsError(
                        f"deployment {name!r} already exists in project {project!r}: update "
                        "it, or delete it first",
                        details={"project": project, "deployment": name},
                    )
            resolved = self._spec(project, spec)
            plan = self._plan(resolved, None, None, 1)
            if dry_run:
                # A preview needs no target here: the CLI renders Kubernetes objects from it.
                return self._preview(project, name, resolved.spec, plan)
            target = self._target(resolved.spec.target)
            shutil.rmtree(deployment_folder(self.root, project, name), ignore_errors=True)
            packages = self._fetch_new(project, name, plan)
            with self.store.session() as session:
                deployment = repo.create(
                    session,
                    project,
                    name,
                    spec=resolved.spec,
                    revisions=plan.new,
                    roles=plan.roles,
                    traffic=plan.traffic,
                    actor=actor,
                )
            target.apply(deployment, packages)
            return deployment

    def update(
        self, project: str, name: str, changes: Mapping[str, Any], *, actor: str
    ) -> Deployment:
        """Change spec fields (``changes`` replace them); refs are resolved again.

        Raises:
            ConflictError: a change of target (delete and create instead).
        """
        with self._lock:
            current, roles = self._current(project, name)
            merged = {**current.spec.model_dump(mode="json"), **changes}
            resolved = self._spec(project, merged)
            if resolved.spec.target != current.spec.target:
                raise ConflictError(
                    f"deployment {name!r} runs on the {current.spec.target!r} target; to move "
                    "it, delete it and create it again",
                    details={"deployment": name, "target": current.spec.target},
                )
            return self._change(current, roles, resolved, actor, change=sorted(changes))

    def scale(
        self, project: str, name: str, *, min_replicas: int, max_replicas: int, actor: str
    ) -> Deployment:
        """Set the replica bounds."""
        changes = {"min_replicas": min_replicas, "max_replicas": max_replicas}
        return self.update(project, name, changes, actor=actor)

    def rollback(self, project: str, name: str, revision: int, *, actor: str) -> Deployment:
        """Send all traffic to an earlier revision and pin the spec to its version (the
        canary is dropped, the shadow kept).

        Raises:
            NotFoundError: no such revision.
        """
        with self._lock:
            current, roles = self._current(project, name)
            target_rev = next(
                (r for r in self.revisions(project, name) if r.number == revision), None
            )
            if target_rev is None:
                raise NotFoundError(
                    f"deployment {name!r} has no revision {revision}; see `loopml deployments "
                    f"show {name}`",
                    details={"deployment": name, "revision": revision},
                )
            spec = current.spec.model_copy(
                update={"model": f"{target_rev.model}/{target_rev.version}", "canary": None}
            )
            plan = _Plan(Roles(revision, None, roles.shadow), {revision: 100})
            self._unfollowed.pop((project, name), None)
            revisions = {r.number: r for r in current.revisions} | {revision: target_rev}
            packages = self._packages(project, name, plan, revisions)
            with self.store.session() as session:
                deployment = repo.update(
                    session,
                    project,
                    name,
                    spec=spec,
                    revisions=[],
                    roles=plan.roles,
                    traffic=plan.traffic,
                    actor=actor,
                    event="deployment.rolled_back",
                    revision=revision,
                )
            self._target(spec.target).apply(deployment, packages)
            return deployment

    def delete(self, project: str, name: str, *, actor: str) -> None:
        """Delete a deployment; its target stops it (the local target waits until its
        processes are gone) and its fetched packages are removed."""
        with self._lock:
            with self.store.session() as session:
                gone = repo.delete(session, project, name, actor=actor)
            self._unfollowed.pop((project, name), None)
            self.forget(gone)

    def forget(self, deployment: Deployment) -> None:
        """Stop what a deployment that is no longer stored still runs (idempotent)."""
        target = self.targets.get(deployment.spec.target)
        if target is not None:
            target.delete(deployment)
        shutil.rmtree(
            deployment_folder(self.root, deployment.project, deployment.name), ignore_errors=True
        )

    def refresh(self, project: str, name: str, *, reason: str) -> Deployment | None:
        """Resolve the deployment's references again; when a version changed, record the new
        revisions and swap them in. ``None`` when nothing changed (or a reference no longer
        resolves, which the status then says: what serves keeps serving)."""
        with self._lock:
            current, roles = self._current(project, name)
            key = (project, name)
            try:
                plan = self._plan(self._spec(project, current.spec), current, roles, None)
            except (NotFoundError, ConflictError) as exc:
                self._unfollowed[key] = (
                    f"cannot follow its references ({exc.message}); what ran keeps serving"
                )
                self.sync(current)
                return None
            self._unfollowed.pop(key, None)
            if plan.roles == roles and plan.traffic == current.traffic:
                return None
            return self._commit(current, plan, SYSTEM_ACTOR, change=["followed"], reason=reason)

    def apply(self, deployment: Deployment) -> None:
        """Hand the deployment to its target again (after a platform restart); a failure is
        recorded as its status."""
        try:
            revisions = {r.number: r for r in deployment.revisions}
            packages = [
                fetch(
                    self.store,
                    self.artifacts,
                    self.root,
                    deployment.project,
                    deployment.name,
                    revisions[number],
                )
                for number in sorted(_in_use(deployment.traffic, deployment.shadow_revision))
            ]
            self._target(deployment.spec.target).apply(deployment, packages)
        except LoopmlError as exc:
            failed = TargetStatus(DeploymentStatus.FAILED, exc.message, 0)
            self._record_status(deployment, failed)

    def sync(self, deployment: Deployment) -> None:
        """Store what the target reports, when it changed."""
        self._record_status(deployment, self.status_of(deployment))

    # ------------------------------------------------------------------ internals

    def _record_status(self, deployment: Deployment, report: TargetStatus) -> None:
        now = (deployment.status, deployment.status_message, deployment.replicas_ready)
        if now == (report.status, report.message, report.replicas_ready):
            return
        with self.store.session() as session:
            repo.set_status(
                session,
                deployment.project,
                deployment.name,
                report.status,
                report.message,
                report.replicas_ready,
                actor=SYSTEM_ACTOR,
            )

    def _target(self, name: str) -> DeployTarget:
        target = self.targets.get(name)
        if target is None:
            raise ConflictError(
                f"the {name!r} deploy target is not enabled on this server; enabled: "
                f"{sorted(self.targets)}",
                details={"target": name, "enabled": sorted(self.targets)},
            )
        return target

    def _current(self, project: str, name: str) -> tuple[Deployment, Roles]:
        with self.store.session() as session:
            return repo.get_with_roles(session, project, name)

    def _spec(self, project: str, spec: Mapping[str, Any] | DeploymentSpec) -> _Resolved:
        """Resolve the references first (so that an unknown model is 404 whatever else is
        wrong), then check the whole spec."""
        fields = spec.model_dump(mode="json") if isinstance(spec, DeploymentSpec) else dict(spec)
        canary = fields.get("canary")
        refs = {
            "primary": fields.get("model"),
            "canary": canary.get("model") if isinstance(canary, Mapping) else None,
            "shadow": fields.get("shadow"),
        }
        versions = {
            role: self._resolve(project, ref) for role, ref in refs.items() if isinstance(ref, str)
        }
        try:
            checked = DeploymentSpec.model_validate(fields)
        except pydantic.ValidationError as exc:
            raise spec_error(exc) from None
        return _Resolved(checked, versions)

    def _resolve(self, project: str, ref: str) -> ModelVersion:
        parsed = ModelRef.parse(ref)
        if parsed.project is not None:
            raise ValidationError(
                f"invalid model reference {ref!r}: a deployment serves models of its own "
                "project; drop the 'project:' prefix",
                details={"field": "model"},
            )
        version = registry.resolve(self.store, project, parsed)
        if version.status != VersionStatus.READY:
            raise ConflictError(
                f"{ref!r} is version {version.version}, which is {version.status}: only READY "
                "versions are deployed",
                details={"ref": ref, "version": version.version, "status": version.status},
            )
        return version

    def _plan(
        self,
        resolved: _Resolved,
        current: Deployment | None,
        roles: Roles | None,
        first_number: int | None,
    ) -> _Plan:
        """The roles and traffic ``resolved`` asks for, reusing the revisions in use that
        already serve the same versions."""
        spec = resolved.spec
        in_use: dict[int, Revision] = {}
        if current is not None:
            wanted = _in_use(current.traffic, current.shadow_revision)
            in_use = {r.number: r for r in current.revisions if r.number in wanted}
        if first_number is None:
            assert current is not None
            with self.store.session() as session:
                first_number = repo.next_revision(session, current.project, current.name)
        numbers = itertools.count(first_number)
        plan = _Plan(Roles(0), {})
        refs = {
            "primary": spec.model,
            "canary": spec.canary.model if spec.canary else None,
            "shadow": spec.shadow,
        }
        now_playing = {
            "primary": roles.primary if roles else None,
            "canary": roles.canary if roles else None,
            "shadow": roles.shadow if roles else None,
        }
        chosen: dict[str, int | None] = {}
        for role, ref in refs.items():
            if ref is None:
                chosen[role] = None
                continue
            version = resolved.versions[role]
            chosen[role] = self._number_for(
                role, ref, version, now_playing[role], in_use, plan, numbers
            )
        primary = chosen["primary"]
        assert primary is not None
        plan.roles = Roles(primary, chosen["canary"], chosen["shadow"])
        percent = spec.canary.percent if spec.canary else 0
        plan.traffic = {primary: 100 - percent}
        if plan.roles.canary is not None:
            plan.traffic[plan.roles.canary] = plan.traffic.get(plan.roles.canary, 0) + percent
        return plan

    @staticmethod
    def _number_for(
        role: str,
        ref: str,
        version: ModelVersion,
        playing: int | None,
        in_use: dict[int, Revision],
        plan: _Plan,
        numbers: Iterator[int],
    ) -> int:
        same = (version.model, version.version)
        if playing in in_use and (in_use[playing].model, in_use[playing].version) == same:
            return playing
        for number, revision in sorted(in_use.items()):
            if (revision.model, revision.version) == same:
                return number
        for new in plan.new:
            if (new.model, new.version) == same:
                return new.number
        number = next(numbers)
        kind: Role = "canary" if role == "canary" else "shadow" if role == "shadow" else "primary"
        plan.new.append(NewRevision(number, version.model, version.version, ref, kind))
        return number

    def _change(
        self,
        current: Deployment,
        roles: Roles,
        resolved: _Resolved,
        actor: str,
        change: list[str],
    ) -> Deployment:
        plan = self._plan(resolved, current, roles, None)
        self._unfollowed.pop((current.project, current.name), None)
        return self._commit(current, plan, actor, change=change, spec=resolved.spec)

    def _commit(
        self,
        current: Deployment,
        plan: _Plan,
        actor: str,
        *,
        change: list[str],
        spec: DeploymentSpec | None = None,
        reason: str | None = None,
    ) -> Deployment:
        spec = spec or current.spec
        revisions = {r.number: r for r in current.revisions}
        packages = self._fetch_new(current.project, current.name, plan)
        fresh = {p.revision for p in packages}
        packages += [
            p
            for p in self._packages(current.project, current.name, plan, revisions)
            if p.revision not in fresh
        ]
        payload: dict[str, Any] = {"change": change}
        if reason is not None:
            payload["reason"] = reason
        with self.store.session() as session:
            deployment = repo.update(
                session,
                current.project,
                current.name,
                spec=spec,
                revisions=plan.new,
                roles=plan.roles,
                traffic=plan.traffic,
                actor=actor,
                **payload,
            )
        self._target(spec.target).apply(deployment, packages)
        prune(self.root, deployment)
        return deployment

    def _fetch_new(self, project: str, name: str, plan: _Plan) -> list[RevisionPackage]:
        """Fetch the packages of the plan's new revisions (afresh: a folder left by a
        change that failed to commit may hold another version)."""
        now = utcnow()
        packages = []
        for new in plan.new:
            folder = deployment_folder(self.root, project, name) / str(new.number)
            shutil.rmtree(folder, ignore_errors=True)
            revision = Revision(
                number=new.number,
                model=new.model,
                version=new.version,
                ref=new.ref,
                role=new.role,
                created_at=now,
            )
            packages.append(fetch(self.store, self.artifacts, self.root, project, name, revision))
        return packages

    def _packages(
        self, project: str, name: str, plan: _Plan, revisions: dict[int, Revision]
    ) -> list[RevisionPackage]:
        """The packages of the plan's revisions that already exist."""
        needed = _in_use(plan.traffic, plan.roles.shadow)
        new = {n.number for n in plan.new}
        return [
            fetch(self.store, self.artifacts, self.root, project, name, revisions[number])
            for number in sorted(needed - new)
        ]

    def _preview(self, project: str, name: str, spec: DeploymentSpec, plan: _Plan) -> Deployment:
        now = utcnow()
        return Deployment(
            id="",
            project=project,
            name=name,
            spec=spec,
            status=DeploymentStatus.PENDING,
            status_message="dry run: nothing was created",
            traffic=plan.traffic,
            shadow_revision=plan.roles.shadow,
            revisions=[
                Revision(
                    number=n.number,
                    model=n.model,
                    version=n.version,
                    ref=n.ref,
                    role=n.role,
                    created_at=now,
                )
                for n in plan.new
            ],
            created_at=now,
            updated_at=now,
        )


def _in_use(traffic: Mapping[int, int], shadow: int | None) -> set[int]:
    return set(traffic) if shadow is None else {*traffic, shadow}


@dataclass(frozen=True)
class _Resolved:
    """A checked spec and the versions its references name now, by role."""

    spec: DeploymentSpec
    versions: dict[str, ModelVersion]
