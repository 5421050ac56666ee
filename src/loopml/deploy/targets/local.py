"""The local deploy target: model-server processes on this machine, behind the gateway.

Each revision that gets traffic runs ``max(1, ceil(n * percent / 100))`` replicas, where
``n`` is the autoscaler's count (``max(min_replicas, 1)`` until load asks for more, at most
``max_replicas``); the shadow revision runs one. A replica is
``python -m loopml.serve`` (through ``_replica``, which ties it to this process) on a free
loopback port, its output appended to ``<root>/<project>/<name>/replicas.log``.

One supervisor thread does all the process work, every ``tick_s``:

- **readiness**: a starting replica joins the routes once ``/v2/health/ready`` answers 200;
- **crashes**: an exited replica is restarted after an exponential backoff (capped), and
  the gateway routes around it meanwhile (it also marks a replica it cannot reach, which
  is then probed again before it gets traffic back);
- **rolling swap**: when traffic moves to new revisions they start first; traffic switches
  only once all of them are ready, then the old ones **drain** (out of the routes, their
  requests in flight finish) and get SIGTERM. A revision that does not start never gets
  traffic: the previous one keeps serving and the status says ``failed``;
- **autoscaling**: between ``min_replicas`` (at least one) and ``max_replicas``, on the
  requests in flight per replica (``_autoscale``: up at once past a target, down one at a
  time after a cool-down);
- **scale to zero**: after ``scale_to_zero_after_s`` without a request, every replica
  stops; ``wake`` (the gateway's activator) starts them again. ``min_replicas`` 0 starts
  a new deployment asleep.

``apply``, ``delete`` and ``wake`` only record what is wanted and nudge the supervisor;
``delete`` then waits (bounded) until the processes are gone.
"""

from __future__ import annotations

import logging
import signal
import ssl
import threading
import time
from functools import cache
from pathlib import Path

import httpx

from loopml.core.deployments import Deployment, DeploymentStatus
from loopml.core.logs import LogQuery
from loopml.core.resources import ReplicaSample
from loopml.deploy.targets._local_config import LocalTargetConfig as LocalTargetConfig
from loopml.deploy.targets._local_state import (
    LOG_NAME,
    Group,
    Key,
    Managed,
    roles_of,
    show,
    status_of,
)
from loopml.deploy.targets._meter import ProcessMeter
from loopml.deploy.targets._process import (
    Replica,
    ReplicaState,
    log_line,
    python_command,
    rotate,
)
from loopml.deploy.targets._process import tail as tail_of
from loopml.deploy.targets.base import RevisionPackage, TargetStatus
from loopml.serve.gateway.routing import Routes
from loopml.system.logfiles import newest_first

log = logging.getLogger("loopml.serve.local")
_tls_context = cache(ssl.create_default_context)


class LocalDeployTarget:
    """Runs deployments as supervised model-server processes (see the module docstring).

    Args:
        root: the folder for each deployment's log (``<root>/<project>/<name>/``); the
            control plane fetches packages under the same root.
        config: how replicas are run and supervised.
    """

    name = "local"

    def __init__(self, root: Path, config: LocalTargetConfig | None = None) -> None:
        self.root = root
        self.config = config or LocalTargetConfig()
        self._command = python_command(self.config.python)
        self._lock = threading.Lock()
        self._managed: dict[Key, Managed] = {}
        self._nudge = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Plain HTTP to replicas; one TLS context per process (its CA file loads in 17 ms).
        self._probe = httpx.Client(
            timeout=self.config.probe_timeout_s, trust_env=False, verify=_tls_context()
        )
        self._meter = ProcessMeter()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the supervisor thread (idempotent)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="loopml-local-target", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop every replica (SIGTERM, then SIGKILL after ``stop_timeout_s``) and the thread."""
        self._stop.set()
        self._nudge.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        else:
            self._stop_everything()
        self._probe.close()

    # ------------------------------------------------------------------ DeployTarget

    def apply(self, deployment: Deployment, packages: list[RevisionPackage]) -> None:
        """Record what ``deployment`` should run; the supervisor makes it so."""
        key = (deployment.project, deployment.name)
        leaving = self._managed.get(key)
        if leaving is not None and leaving.deleting:
            # A deployment of the same name is still stopping: let it go first.
            leaving.gone.wait(self.config.drain_timeout_s + self.config.stop_timeout_s + 5)
        with self._lock:
            managed = self._managed.get(key)
            if managed is None or managed.deleting:
                folder = self.root / deployment.project / deployment.name
                folder.mkdir(parents=True, exist_ok=True)
                managed = Managed(deployment, folder, self.config.autoscale)
                managed.want(deployment, packages)
                self._managed[key] = managed
            else:
                managed.want(deployment, packages)
            # Publish the routes now, not at the next tick: a deployment that starts scaled to
            # zero reads ``scaled_to_zero`` at once, and the gateway must already know it then.
            now = time.monotonic()
            self._plan(managed, now)
            self._settle(managed, now)
        self._nudge.set()

    def delete(self, deployment: Deployment) -> None:
        """Stop the deployment's replicas and wait (bounded) until they are gone."""
        with self._lock:
            managed = self._managed.get((deployment.project, deployment.name))
            if managed is None:
                return
            managed.deleting = True
            managed.routes = None
        self._nudge.set()
        limit = self.config.drain_timeout_s + self.config.stop_timeout_s + 5
        if self._thread is not None:
            managed.gone.wait(limit)
            return
        deadline = time.monotonic() + limit
        while not managed.gone.is_set() and time.monotonic() < deadline:
            self._tick()
            time.sleep(self.config.tick_s)

    def ready_replicas(self, deployment: Deployment) -> int:
        """Replicas of the deployment answering now."""
        managed = self._managed.get((deployment.project, deployment.name))
        if managed is None:
            return 0
        with self._lock:
            return sum(len(g.ready()) for g in managed.groups.values())

    def status(self, deployment: Deployment) -> TargetStatus:
        """Where the deployment stands on this machine."""
        managed = self._managed.get((deployment.project, deployment.name))
        if managed is None:
            return TargetStatus(DeploymentStatus.PENDING, "not started on this server yet", 0)
        with self._lock:
            return status_of(managed, self.config.failed_after)

    def logs(self, deployment: Deployment, tail: int, query: LogQuery | None = None) -> list[str]:
        """The last ``tail`` lines of the deployment's ``replicas.log`` that ``query`` keeps."""
        path = self.root / deployment.project / deployment.name / LOG_NAME
        if query is None or query.everything:
            return tail_of(path, tail)
        return query.last(newest_first(path), tail)

    def resources(self) -> list[ReplicaSample]:
        """CPU, memory, connections and restarts of every running replica, now."""
        with self._lock:
            running = [
                (managed.key, replica, pid)
                for managed in self._managed.values()
                for group in managed.groups.values()
                for replica in group.replicas
                if (pid := replica.pid) is not None
            ]
        samples = [self._meter.sample(key, replica, pid) for key, replica, pid in running]
        self._meter.keep({pid for _, _, pid in running})
        return [s for s in samples if s is not None]

    # ------------------------------------------------------------------ RouteSource

    def routes(self, project: str, name: str) -> Routes | None:
        """The deployment's published routes (no lock: the snapshot is immutable)."""
        managed = self._managed.get((project, name))
        return None if managed is None or managed.deleting else managed.routes

    def all_routes(self) -> list[Routes]:
        return [m.routes for m in list(self._managed.values()) if m.routes is not None]

    def touch(self, project: str, name: str) -> None:
        managed = self._managed.get((project, name))
        if managed is not None:
            managed.last_request = time.monotonic()

    def wake(self, project: str, name: str) -> None:
        with self._lock:
            managed = self._managed.get((project, name))
            if managed is None or managed.deleting:
                return
            managed.last_request = time.monotonic()
            if managed.asleep:
                managed.asleep = False
                log_line(managed.log_path, "woken by a request: starting replicas")
        self._nudge.set()

    # ------------------------------------------------------------------ supervisor

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception:
                log.exception("local target: supervisor round failed; retrying")
            self._nudge.wait(self.config.tick_s)
            self._nudge.clear()
        self._stop_everything()

    def _tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            for managed in list(self._managed.values()):
                self._plan(managed, now)
                for group in list(managed.groups.values()):
                    self._act(managed, group, now)
            starting = [
                r
                for m in self._managed.values()
                for g in m.groups.values()
                for r in g.replicas
                if r.state == ReplicaState.STARTING
                or (r.state == ReplicaState.READY and r.backend is not None and r.backend.failed)
            ]
        answers = {id(r): self._is_ready(r) for r in starting}
        with self._lock:
            for managed in list(self._managed.values()):
                for group in managed.groups.values():
                    for replica in group.replicas:
                        if id(replica) in answers:
                            self._probed(managed, group, replica, answers[id(replica)], now)
                self._settle(managed, now)

    def _plan(self, managed: Managed, now: float) -> None:
        """Decide each revision's wanted replica count, and switch traffic when ready."""
        spec = managed.deployment.spec
        if managed.deleting:
            for group in managed.groups.values():
                group.wanted = 0
            return
        idle_after = spec.scale_to_zero_after_s
        if (
            idle_after is not None
            and not managed.asleep
            and now - managed.last_request >= idle_after
            and managed.inflight() == 0
        ):
            managed.asleep = True
            log_line(managed.log_path, f"no request for {idle_after} s: scaling to zero")
        if managed.asleep:
            managed.scaler.reset(max(spec.min_replicas, 1), now)
            managed.serving = dict(managed.desired)
            managed.serving_shadow = managed.desired_shadow
            for group in managed.groups.values():
                group.wanted = 0
            return
        managed.autoscale(now)
        wanted = managed.wanted_replicas()
        self._switch(managed, wanted)
        for revision in wanted:
            if revision not in managed.groups:
                managed.groups[revision] = Group(managed.packages[revision])
        for revision, group in managed.groups.items():
            group.wanted = wanted.get(revision, 0)

    def _switch(self, managed: Managed, wanted: dict[int, int]) -> None:
        """Move traffic to the wanted revisions once they are all ready; until then the
        revisions serving now keep their replicas."""
        if managed.serving != managed.desired:
            if all(managed.ready_count(r) >= wanted[r] for r in managed.desired):
                before = managed.serving
                managed.serving = dict(managed.desired)
                log_line(managed.log_path, f"traffic {show(before)} -> {show(managed.serving)}")
            else:
                for revision in managed.serving:
                    group = managed.groups.get(revision)
                    wanted.setdefault(revision, group.wanted if group else 1)
        if managed.serving_shadow != managed.desired_shadow:
            shadow = managed.desired_shadow
            if shadow is None or managed.ready_count(shadow) >= 1:
                managed.serving_shadow = shadow
            elif managed.serving_shadow is not None:
                wanted.setdefault(managed.serving_shadow, 1)

    def _act(self, managed: Managed, group: Group, now: float) -> None:
        """Reap, restart, start and stop the replicas of one revision."""
        for replica in group.replicas:
            code = replica.poll()
            if code is not None:
                self._exited(managed, group, replica, code, now)
        while len(group.replicas) < group.wanted:
            group.replicas.append(Replica(group.package, len(group.replicas)))
        for replica in group.replicas:
            if replica.index < group.wanted:
                self._keep(managed, replica, now)
            else:
                self._retire(managed, replica, now)
            late = now - replica.started_at > self.config.start_timeout_s
            if replica.state == ReplicaState.STARTING and late:
                log_line(managed.log_path, f"{replica.label}: not ready in time, killed")
                replica.signal(signal.SIGKILL)
        group.replicas = [
            r for r in group.replicas if r.index < group.wanted or r.state != ReplicaState.STOPPED
        ]

    def _keep(self, managed: Managed, replica: Replica, now: float) -> None:
        if replica.state == ReplicaState.WAITING and now >= replica.retry_at:
            rotate(managed.log_path, self.config.log_max_bytes)
            replica.package = managed.packages.get(replica.package.revision, replica.package)
            replica.spawn(
                self._command,
                managed.log_path,
                self.config.host,
                managed.deployment.name,
                now,
                extra=self._server_args(managed, replica.package.revision),
            )
            log_line(
                managed.log_path,
                f"{replica.label}: started pid {replica.pid} on port {replica.port}",
            )
        elif replica.state == ReplicaState.DRAINING and replica.backend is not None:
            # Wanted again before it stopped (a scale-up or rollback): it serves again.
            replica.state = ReplicaState.READY
            replica.since = now
        elif replica.state == ReplicaState.STOPPED:
            replica.state = ReplicaState.WAITING
            replica.retry_at = now

    def _server_args(self, managed: Managed, revision: int) -> list[str]:
        args = list(self.config.server_args)
        if self.config.log_url is not None:
            role = roles_of(managed.deployment).get(revision, "primary")
            args += ["--log-url", self.config.log_url, "--log-project", managed.key[0]]
            args += [
                "--log-role",
                role,
                "--log-close-timeout-s",
                f"{self.config.log_close_timeout_s:g}",
            ]
        return args

    def _retire(self, managed: Managed, replica: Replica, now: float) -> None:
        state = replica.state
        cfg = self.config
        if state == ReplicaState.READY:
            replica.state = ReplicaState.DRAINING
            replica.since = now
        elif state == ReplicaState.DRAINING:
            backend = replica.backend
            idle = backend is None or backend.load == 0
            waited = now - replica.since
            if (waited >= cfg.drain_grace_s and idle) or waited >= cfg.drain_timeout_s:
                replica.signal(signal.SIGTERM)
                replica.state = ReplicaState.STOPPING
                replica.since = now
                log_line(managed.log_path, f"{replica.label}: drained, stopping")
        elif state == ReplicaState.STARTING:
            replica.signal(signal.SIGTERM)
            replica.state = ReplicaState.STOPPING
            replica.since = now
        elif state == ReplicaState.WAITING:
            replica.state = ReplicaState.STOPPED
        elif state == ReplicaState.STOPPING and now - replica.since >= cfg.stop_timeout_s:
            replica.signal(signal.SIGKILL)

    def _exited(
        self, managed: Managed, group: Group, replica: Replica, code: int, now: float
    ) -> None:
        state = replica.state
        pid = replica.pid
        replica.reaped()
        if state in (ReplicaState.STOPPING, ReplicaState.DRAINING):
            replica.state = ReplicaState.STOPPED
            log_line(managed.log_path, f"{replica.label}: pid {pid} stopped (status {code})")
            return
        if state == ReplicaState.READY and now - replica.ready_at >= self.config.stable_after_s:
            replica.failures = 0
        replica.failures += 1
        replica.restarts += 1
        group.streak += 1
        delay = min(
            self.config.backoff_initial_s * 2 ** (replica.failures - 1), self.config.backoff_max_s
        )
        replica.state = ReplicaState.WAITING
        replica.retry_at = now + delay
        ran = now - replica.started_at
        log_line(
            managed.log_path,
            f"{replica.label}: pid {pid} exited with status {code} after {ran:.1f} s; "
            f"restarting in {delay:.1f} s",
        )
        if state == ReplicaState.STARTING:
            group.last_error = _last_words(managed.log_path)

    def _is_ready(self, replica: Replica) -> bool:
        try:
            response = self._probe.get(f"{replica.url}/v2/health/ready")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _probed(
        self, managed: Managed, group: Group, replica: Replica, ready: bool, now: float
    ) -> None:
        if replica.state == ReplicaState.STARTING and ready:
            replica.mark_ready(now)
            group.streak = 0
            group.last_error = ""
            took = now - replica.started_at
            log_line(managed.log_path, f"{replica.label}: ready after {took:.1f} s")
        elif replica.state == ReplicaState.READY and replica.backend is not None:
            if ready:
                replica.backend.failed = False
                replica.probe_failures = 0
                return
            replica.probe_failures += 1
            if replica.probe_failures * self.config.tick_s >= 2.0:
                log_line(managed.log_path, f"{replica.label}: stopped answering, killed")
                replica.signal(signal.SIGKILL)

    def _settle(self, managed: Managed, now: float) -> None:
        """Drop what is gone, and publish the routes."""
        for revision, group in list(managed.groups.items()):
            if group.wanted == 0 and not group.replicas:
                del managed.groups[revision]
        if managed.deleting:
            if not managed.groups:
                self._managed.pop(managed.key, None)
                managed.gone.set()
            return
        managed.routes = Routes(
            project=managed.key[0],
            name=managed.key[1],
            revisions=tuple(
                managed.route(revision, weight)
                for revision, weight in sorted(managed.serving.items())
                if weight > 0
            ),
            shadow=(
                managed.route(managed.serving_shadow, 0)
                if managed.serving_shadow is not None
                else None
            ),
            asleep=managed.asleep,
            auth=managed.deployment.spec.auth,
            features=managed.deployment.spec.features,
        )

    def _stop_everything(self) -> None:
        """SIGTERM every replica, wait up to ``stop_timeout_s``, then SIGKILL the rest."""
        with self._lock:
            replicas = [
                r for m in self._managed.values() for g in m.groups.values() for r in g.replicas
            ]
            for managed in self._managed.values():
                managed.routes = None
        for replica in replicas:
            replica.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.stop_timeout_s
        for replica in replicas:
            while replica.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            replica.signal(signal.SIGKILL)
            replica.reaped()
            replica.state = ReplicaState.STOPPED


def _last_words(path: Path) -> str:
    """The last lines a replica wrote before dying (the reason, usually)."""
    lines = [line for line in tail_of(path, 20) if "[loopml]" not in line]
    return " | ".join(line.strip() for line in lines[-3:])[:500]
