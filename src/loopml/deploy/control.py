"""The deployment control plane: what each deployment serves, decided and recorded.

Every change goes the same way: the spec's model references are resolved to READY versions;
a role (primary, canary, shadow) whose resolved version differs from the revision playing it
gets a **new revision**; traffic follows the roles (``{primary: 100 - p, canary: p}``); the
packages in use are fetched to local disk; the store records it all with its events; the
target is told to make it so (the local target swaps replicas without dropping a request).

``refresh`` re-resolves a deployment on an alias when it moves (the reconciler calls it);
``reapply`` hands a target what another server changed. ``rollback`` makes an earlier
revision the primary and **pins** the spec to its version, so that nothing moves it back
behind the user's back; ``update`` with ``model="churn@champion"`` follows the alias again.
Changes are serialized within this process (one lock); status reads ask the target directly.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loopml.core.deployments import (
    Deployment,
    DeploymentSpec,
    DeploymentStatus,
    Revision,
    validate_deployment_name,
)
from loopml.core.errors import AlreadyExistsError, ConflictError, LoopmlError, NotFoundError
from loopml.core.logs import LogQuery
from loopml.core.types import Page
from loopml.deploy._packages import (
    deployment_folder,
    fetch,
    fetch_new,
    prune,
    remove_unstored,
)
from loopml.deploy._plan import Plan, Resolved, in_use_revisions, make_plan, preview, resolve_spec
from loopml.deploy._plan import follows as follows
from loopml.deploy.targets.base import (
    DeployTarget,
    ProvidesLogs,
    ReportsStatus,
    RevisionPackage,
    TargetStatus,
)
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore
from loopml.store import deployments as repo
from loopml.store.deployments import Roles
from loopml.store.project_lookup import project_id

log = logging.getLogger("loopml.deploy")

SYSTEM_ACTOR = "system"


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
        # Why a deployment's references stopped resolving, until they do: in its status.
        self._unfollowed: dict[tuple[str, str], str] = {}

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

    def list_in(self, projects: Sequence[str], *, limit_each: int) -> list[Deployment]:
        """The first ``limit_each`` deployments of each of ``projects`` (one query), with
        live status but **without** their revisions (``revisions`` empty): for lists."""
        with self.store.session() as session:
            found = repo.list_in(session, projects, limit_each=limit_each, revisions=False)
        return [self._live(d) for d in found]

    def list_all(self) -> list[Deployment]:
        """Every deployment of every project, as stored."""
        with self.store.session() as session:
            return repo.list_all(session)

    def revisions(self, project: str, name: str) -> list[Revision]:
        """A deployment's whole revision history, oldest first."""
        with self.store.session() as session:
            return repo.revisions(session, project, name)

    def logs(self, project: str, name: str, tail: int, query: LogQuery | None = None) -> list[str]:
        """The last ``tail`` lines its replicas wrote that ``query`` keeps (if kept at all)."""
        deployment = self.get(project, name)
        target = self.targets.get(deployment.spec.target)
        if isinstance(target, ProvidesLogs):
            return target.logs(deployment, tail, query)
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

    def check(self, project: str, spec: Mapping[str, Any] | DeploymentSpec) -> None:
        """Raise what ``create`` or ``update`` would refuse ``spec`` for (its references, its
        fields, a canary or shadow that cannot take the primary's requests); a preview."""
        resolve_spec(self.store, project, spec)

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
                project_id(session, project)  # NotFoundError before the name is looked at
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
            resolved = resolve_spec(self.store, project, spec)
            plan = make_plan(resolved, None, None, 1)
            if dry_run:
                # A preview needs no target here: the CLI renders Kubernetes objects from it.
                return preview(project, name, resolved.spec, plan)
            target = self._target(resolved.spec.target)
            shutil.rmtree(deployment_folder(self.root, project, name), ignore_errors=True)
            packages = fetch_new(self.store, self.artifacts, self.root, project, name, plan.new)
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
            resolved = resolve_spec(self.store, project, merged)
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
            plan = Plan(Roles(revision, None, roles.shadow), {revision: 100})
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

    def end_canary(
        self, project: str, name: str, revision: int, *, promote: bool, details: dict[str, Any]
    ) -> Deployment | None:
        """Promote the canary ``revision`` to primary (the spec's model becomes the canary's
        reference) or drop it, recording ``details`` in the event
        (``deployment.canary.promoted`` or ``deployment.canary.rolled_back``). ``None`` when
        ``revision`` is no longer the canary, or its reference moved to another version."""
        with self._lock:
            current, roles = self._current(project, name)
            if current.spec.canary is None or roles.canary != revision:
                return None
            changes: dict[str, Any] = {"canary": None}
            if promote:
                changes["model"] = current.spec.canary.model
            merged = {**current.spec.model_dump(mode="json"), **changes}
            resolved = resolve_spec(self.store, project, merged)
            judged = next(r for r in current.revisions if r.number == revision)
            primary = resolved.versions["primary"]
            if promote and (primary.model, primary.version) != (judged.model, judged.version):
                return None
            event: repo.UpdateEvent = (
                "deployment.canary.promoted" if promote else "deployment.canary.rolled_back"
            )
            return self._change(
                current, roles, resolved, SYSTEM_ACTOR, sorted(changes), event, details
            )

    def delete(self, project: str, name: str, *, actor: str) -> None:
        """Delete it: its target stops it (waiting for its processes), its packages go."""
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
        folder = deployment_folder(self.root, deployment.project, deployment.name)
        shutil.rmtree(folder, ignore_errors=True)

    def remove_orphans(self) -> list[str]:
        """Remove the package folders of deployments no longer stored (``project/name`` of
        each), left by a platform killed mid-delete or between a create's fetch and commit."""
        with self._lock:  # a create fetches into its folder before its row exists
            stored = {(d.project, d.name) for d in self.list_all()}
            return remove_unstored(self.root, stored)

    def refresh(self, project: str, name: str, *, reason: str) -> Deployment | None:
        """Resolve the deployment's references again; when a version changed, record the new
        revisions and swap them in. ``None`` when nothing changed (or a reference no longer
        resolves, which the status then says: what serves keeps serving)."""
        with self._lock:
            current, roles = self._current(project, name)
            key = (project, name)
            try:
                resolved = resolve_spec(self.store, project, current.spec, check_features=False)
                plan = make_plan(resolved, current, roles, self._next_number(current))
            except (NotFoundError, ConflictError) as exc:
                why = f"cannot follow its references ({exc.message}); what ran keeps serving"
                self._unfollowed[key] = why
                self.sync(current)
                return None
            self._unfollowed.pop(key, None)
            if plan.roles == roles and plan.traffic == current.traffic:
                return None
            return self._commit(current, plan, SYSTEM_ACTOR, change=["followed"], reason=reason)

    def unfollowed(self, project: str, name: str, why: str) -> None:
        """Say ``why`` in the deployment's status until its references are followed."""
        self._unfollowed[(project, name)] = why

    def reapply(self, project: str, name: str) -> None:
        """Hand the deployment as stored now (changed through another server) to its target;
        read under the lock, so an older copy never undoes a change made here meanwhile."""
        with self._lock, contextlib.suppress(NotFoundError):  # gone: the sync forgets it
            current, _ = self._current(project, name)
            self.apply(current)
            prune(self.root, current)

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
                for number in sorted(
                    in_use_revisions(deployment.traffic, deployment.shadow_revision)
                )
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

    def _next_number(self, current: Deployment) -> int:
        with self.store.session() as session:
            return repo.next_revision(session, current.project, current.name)

    def _current(self, project: str, name: str) -> tuple[Deployment, Roles]:
        with self.store.session() as session:
            return repo.get_with_roles(session, project, name)

    def _change(
        self,
        current: Deployment,
        roles: Roles,
        resolved: Resolved,
        actor: str,
        change: list[str],
        event: repo.UpdateEvent = "deployment.updated",
        details: dict[str, Any] | None = None,
    ) -> Deployment:
        plan = make_plan(resolved, current, roles, self._next_number(current))
        self._unfollowed.pop((current.project, current.name), None)
        return self._commit(
            current, plan, actor, change=change, spec=resolved.spec, event=event, details=details
        )

    def _commit(
        self,
        current: Deployment,
        plan: Plan,
        actor: str,
        *,
        change: list[str],
        spec: DeploymentSpec | None = None,
        reason: str | None = None,
        event: repo.UpdateEvent = "deployment.updated",
        details: dict[str, Any] | None = None,
    ) -> Deployment:
        spec = spec or current.spec
        revisions = {r.number: r for r in current.revisions}
        packages = fetch_new(
            self.store, self.artifacts, self.root, current.project, current.name, plan.new
        )
        fresh = {p.revision for p in packages}
        packages += [
            p
            for p in self._packages(current.project, current.name, plan, revisions)
            if p.revision not in fresh
        ]
        payload: dict[str, Any] = {**(details or {}), "change": change}
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
                event=event,
                **payload,
            )
        self._target(spec.target).apply(deployment, packages)
        prune(self.root, deployment)
        return deployment

    def _packages(
        self, project: str, name: str, plan: Plan, revisions: dict[int, Revision]
    ) -> list[RevisionPackage]:
        """The packages of the plan's revisions that already exist."""
        needed = in_use_revisions(plan.traffic, plan.roles.shadow)
        new = {n.number for n in plan.new}
        return [
            fetch(self.store, self.artifacts, self.root, project, name, revisions[number])
            for number in sorted(needed - new)
        ]
