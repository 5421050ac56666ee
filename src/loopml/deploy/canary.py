"""Automatic canaries: every deployment whose canary is ``auto`` is judged against its
primary from the monitor's windows (``monitor.compare``, ``core.canary.judge``), then rolled
back (the canary dropped, its replicas drained) or promoted (the canary's reference becomes
the deployment's model, its revision and replicas kept) through the control plane. Each
decision is the change's own event, ``deployment.canary.rolled_back`` or
``deployment.canary.promoted``, carrying both revisions' figures, the policy and the reasons.

A canary is judged from when this watch first saw it (kept in the monitor's cursor table
under ``canary``, so a restart does not reset the clock), by the policy of its spec over the
``canary`` settings. The reconciler calls ``run_due`` on each of its rounds; a round judges
every ``interval_s`` at most. It needs the monitor running: without windows there are no
figures, and a canary holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from loopml.core.canary import CanaryPolicy, Decision, Figures, judge
from loopml.core.clock import as_utc, utcnow
from loopml.core.deployments import Canary, Deployment, Revision
from loopml.deploy.control import DeploymentControl
from loopml.monitor.compare import figures_since
from loopml.store import MetadataStore
from loopml.store import deployments as repo
from loopml.store import monitor as cursors

log = logging.getLogger("loopml.deploy")

CURSOR = "canary"
_NOT_POLICY = frozenset({"auto", "model", "percent"})


@dataclass(frozen=True)
class CanaryDefaults:
    """What a canary's spec leaves out: whether it is judged, and by what policy."""

    auto: bool = False
    policy: CanaryPolicy = field(default_factory=CanaryPolicy)


def policy_of(canary: Canary, defaults: CanaryDefaults) -> tuple[bool, CanaryPolicy]:
    """Whether ``canary`` is judged, and its policy: its own fields over ``defaults``."""
    fields = canary.model_dump(exclude=set(_NOT_POLICY))
    auto = defaults.auto if canary.auto is None else canary.auto
    return auto, defaults.policy.with_overrides(fields)


@dataclass(frozen=True)
class CanaryVerdict:
    """One judged canary: the decision and what it was made from."""

    project: str
    deployment: str
    decision: Decision
    details: dict[str, Any]


class CanaryWatch:
    """Judges automatic canaries and acts on the decisions (see the module docstring).

    Args:
        control: the control plane that rolls back and promotes.
        store: the metadata store (the monitor's windows and cursors).
        defaults: the ``canary`` settings as defaults.
        window: the window size whose windows are summed (the monitor's smallest).
        interval_s: the least time between two rounds of ``run_due``.
        clock: the current time (tests hand in their own).
    """

    def __init__(
        self,
        control: DeploymentControl,
        store: MetadataStore,
        defaults: CanaryDefaults,
        *,
        window: str,
        interval_s: float = 5.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.control, self.store, self.defaults = control, store, defaults
        self.window, self.interval_s, self.clock = window, interval_s, clock
        self._last = float("-inf")

    def run_due(self) -> None:
        """Judge every canary, unless the last round was less than ``interval_s`` ago."""
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return
        self._last = now
        self.run_once()

    def run_once(self) -> list[CanaryVerdict]:
        """Judge every automatic canary once, act on the decisions; what was judged."""
        verdicts = []
        for deployment in self.control.list_all():
            if deployment.spec.canary is None:
                continue
            try:
                verdict = self._judge(deployment)
            except Exception:
                log.exception(
                    "deployment %s/%s: could not judge its canary",
                    deployment.project,
                    deployment.name,
                )
                continue
            if verdict is not None:
                verdicts.append(verdict)
                self._act(verdict)
        return verdicts

    def _judge(self, deployment: Deployment) -> CanaryVerdict | None:
        project, name = deployment.project, deployment.name
        with self.store.session() as session:
            current, roles = repo.get_with_roles(session, project, name)
        canary = current.spec.canary
        if canary is None or roles.canary is None or roles.canary == roles.primary:
            return None
        auto, policy = policy_of(canary, self.defaults)
        if not auto:
            return None
        revisions = {r.number: r for r in current.revisions}
        mine, theirs = revisions[roles.canary], revisions[roles.primary]
        now = as_utc(self.clock())
        since = self._since(current, roles.canary, now)
        found = figures_since(self.store, project, name, since, self.window)
        canary_figures = found.get((mine.model, mine.version), Figures())
        stable_figures = found.get((theirs.model, theirs.version), Figures())
        elapsed = (now - since).total_seconds()
        decision = judge(canary_figures, stable_figures, policy, elapsed)
        details = {
            "canary": _side(mine, canary_figures),
            "stable": _side(theirs, stable_figures),
            "policy": policy.as_dict(),
            "since": since.isoformat(),
            "elapsed_s": round(elapsed, 3),
            "reasons": list(decision.reasons),
        }
        return CanaryVerdict(project, name, decision, details)

    def _since(self, deployment: Deployment, revision: int, now: datetime) -> datetime:
        """When this canary was first seen (recorded now if it is new)."""
        project, name = deployment.project, deployment.name
        with self.store.session() as session:
            seen = cursors.get_cursor(session, project, name, CURSOR)
            if seen.get("id") == deployment.id and seen.get("revision") == revision:
                return as_utc(datetime.fromisoformat(seen["since"]))
            value = {"id": deployment.id, "revision": revision, "since": now.isoformat()}
            cursors.set_cursor(session, project, name, CURSOR, value)
        log.info("deployment %s/%s: judging canary revision %d", project, name, revision)
        return now

    def _act(self, verdict: CanaryVerdict) -> None:
        action = verdict.decision.action
        if action == "hold":
            return
        revision = verdict.details["canary"]["revision"]
        done = self.control.end_canary(
            verdict.project,
            verdict.deployment,
            revision,
            promote=action == "promote",
            details=verdict.details,
        )
        if done is not None:
            log.info(
                "deployment %s/%s: canary revision %d %s: %s",
                verdict.project,
                verdict.deployment,
                revision,
                "promoted" if action == "promote" else "rolled back",
                "; ".join(verdict.decision.reasons),
            )


def _side(revision: Revision, figures: Figures) -> dict[str, Any]:
    return {
        "revision": revision.number,
        "model": revision.model,
        "version": revision.version,
        **figures.as_dict(),
    }
