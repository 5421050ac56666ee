"""The reconciler: keeps what runs in line with what the control plane recorded.

A background thread that, every ``interval_s``:

- **settles** once after a (re)start: the package folders of deployments no longer stored
  (a delete killed before its clean-up) are removed; each stored deployment's references
  are resolved again (an alias that moved while the platform was down is followed) and the
  deployment is handed to its target, which starts its replicas again;
- **follows** the event feed from where it started: ``model.alias.set`` and
  ``model.alias.removed`` re-resolve the deployments on that alias, ``model.version.ready``
  those on the model's newest version (``churn``); a changed version is rolled out; a
  switch that raised (the new package could not be fetched: the object store was away) is
  tried again each round until it goes through, with the deployment's status saying so;
- **syncs** each deployment's status from its target into the store (an event when it
  changes), and stops what still runs for deployments that disappeared behind its back
  (their project was deleted, or another server deleted them); a deployment created or
  changed through another server sharing the database (scaled, its traffic split, rolled
  back) is handed to this server's target too, so that every server behind a load balancer
  serves every deployment as it is stored (a hand-over that raised is tried again each
  round until it goes through);
- runs the **tasks** it was given (judging canaries, listing replicas for Prometheus),
  each on its own: one that fails does not stop the others.

Nothing here raises: a failed round is logged and the next one tries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from loopml.core.deployments import Deployment
from loopml.core.errors import LoopmlError, NotFoundError
from loopml.core.types import Event
from loopml.deploy.control import DeploymentControl, follows
from loopml.store import MetadataStore, events
from loopml.store import deployments as repo

log = logging.getLogger("loopml.deploy")

_FOLLOWED = ("model.alias.set", "model.alias.removed", "model.version.ready")
_PAGE = 500

Key = tuple[str, str]


class Reconciler:
    """Follows the event feed and target status for the control plane (see the module
    docstring).

    Args:
        control: the control plane whose deployments it keeps running.
        store: the metadata store (the event feed).
        interval_s: time between rounds.
        tasks: called at the end of each round.
    """

    def __init__(
        self,
        control: DeploymentControl,
        store: MetadataStore,
        *,
        interval_s: float = 0.5,
        tasks: Sequence[Callable[[], object]] = (),
    ) -> None:
        self.control = control
        self.store = store
        self.interval_s = interval_s
        self.tasks = list(tasks)
        self._cursor: int | None = None
        self._settled = False
        self._known: dict[Key, Deployment] = {}
        self._unapplied: set[Key] = set()
        self._unfollowed: dict[Key, str] = {}
        """Deployments whose switch to a moved reference raised, with the event's reason."""
        self._synced = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Settle now (re-apply every deployment), then keep following in a thread."""
        self.run_once()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="loopml-reconciler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following (what runs keeps running until its target is closed)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.run_once()

    def run_once(self) -> None:
        """One round: settle (until it has worked once), follow, sync, then the tasks."""
        try:
            if self._cursor is None:
                with self.store.session() as session:
                    self._cursor = repo.latest_event_id(session)
            if not self._settled:
                self._settle()
                self._settled = True
            self._follow()
            self._follow_again()
            self._sync()
        except Exception:
            log.exception("deployment reconciler: round failed; retrying")
        for task in self.tasks:
            try:
                task()
            except Exception:
                log.exception("deployment reconciler: %r failed; retrying next round", task)

    def _settle(self) -> None:
        orphans = self.control.remove_orphans()
        if orphans:
            log.info("removed the packages of deleted deployments: %s", ", ".join(orphans))
        for deployment in self.control.list_all():
            try:
                changed = self.control.refresh(
                    deployment.project, deployment.name, reason="platform start"
                )
                if changed is None:
                    self.control.apply(deployment)
            except Exception:
                log.exception("deployment %s/%s: could not start it", *_key(deployment))
                self._unapplied.add(_key(deployment))

    def _follow(self) -> None:
        assert self._cursor is not None
        while True:
            with self.store.session() as session:
                page = events.list_(session, type="model.*", cursor=str(self._cursor), limit=_PAGE)
            relevant = [e for e in page.items if e.type in _FOLLOWED]
            if relevant:
                self._react(relevant)
            if page.items:
                self._cursor = page.items[-1].id
            if page.next_cursor is None:
                return

    def _react(self, batch: list[Event]) -> None:
        deployments = self.control.list_all()
        for event in batch:
            model = event.payload.get("model")
            if event.project is None or not isinstance(model, str):
                continue
            alias = event.payload.get("alias") if event.type.startswith("model.alias") else None
            if event.type.startswith("model.alias") and not isinstance(alias, str):
                continue
            for deployment in deployments:
                if deployment.project != event.project:
                    continue
                if not follows(deployment.spec, model, alias if isinstance(alias, str) else None):
                    continue
                try:
                    self.control.refresh(
                        deployment.project, deployment.name, reason=f"{event.type} #{event.id}"
                    )
                except NotFoundError:
                    continue  # deleted meanwhile
                except Exception as exc:
                    log.exception(
                        "deployment %s/%s: could not follow %s; trying again each round",
                        *_key(deployment),
                        event.type,
                    )
                    self._unfollowed[_key(deployment)] = f"{event.type} #{event.id}"
                    self.control.unfollowed(*_key(deployment), _switch_failed(exc))

    def _follow_again(self) -> None:
        """Retry the switches that raised: the event that asked for one is behind the cursor,
        and the deployment's next event may never come."""
        for key, reason in list(self._unfollowed.items()):
            try:
                self.control.refresh(*key, reason=reason)
            except NotFoundError:
                pass  # deleted meanwhile
            except Exception as exc:
                log.debug("deployment %s/%s: following %s failed again: %s", *key, reason, exc)
                self.control.unfollowed(*key, _switch_failed(exc))
                continue
            del self._unfollowed[key]

    def _sync(self) -> None:
        deployments = self.control.list_all()
        now = {_key(d): d for d in deployments}
        for key, gone in self._known.items():
            if key not in now:
                self.control.forget(gone)
        failed: set[Key] = set()
        for key, deployment in now.items():
            before = self._known.get(key)
            # The first round's settling applied every deployment (but those it failed on).
            changed = self._synced and (before is None or _desired(before) != _desired(deployment))
            if not changed and key not in self._unapplied:
                continue
            try:
                self.control.reapply(*key)
            except Exception:
                log.exception("deployment %s/%s: could not apply its change", *key)
                failed.add(key)
        # Tried again next round: recorded as known and nothing more, a change that failed
        # to apply here waited for the deployment's next change.
        self._unapplied = failed
        self._synced = True
        self._known = now
        for deployment in deployments:
            try:
                self.control.sync(deployment)
            except NotFoundError:
                continue  # deleted meanwhile; forgotten next round
            except Exception:
                log.exception("deployment %s/%s: could not record its status", *_key(deployment))


def _switch_failed(exc: Exception) -> str:
    """The status message of a deployment whose switch to a moved reference raised."""
    why = exc.message if isinstance(exc, LoopmlError) else f"{type(exc).__name__}: {exc}"
    return (
        f"could not switch to what its references name now ({why[:300]}); trying again, "
        "and what ran keeps serving"
    )


def _desired(deployment: Deployment) -> dict[str, object]:
    """What a deployment asks its target to run (not what the target reports back)."""
    return deployment.model_dump(
        include={"id", "spec", "traffic", "shadow_revision", "canary_revision", "revisions"}
    )


def _key(deployment: Deployment) -> Key:
    return (deployment.project, deployment.name)
