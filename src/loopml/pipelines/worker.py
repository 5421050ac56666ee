"""The worker: sweep expired leases, claim due steps, run each through an executor while
renewing its lease, and commit its result under the claim's fencing token.

One worker runs up to ``concurrency`` steps at once (on the local executor, also no more
than its CPUs' worth: a step's ``resources.cpus``, 1 when not asked), each supervised by a
thread of its own: the thread heartbeats every ``heartbeat_s`` (which also tells it when the
run is being cancelled), enforces the step's timeout, uploads the log so far, and commits
the outcome. A heartbeat or commit that finds the lease taken over stops the step and writes
nothing (RELIABILITY 19). A worker that dies leaves its steps' leases to expire; any worker's sweep
then retries them under their policy (RELIABILITY 18, 20).

Example:
    >>> worker = Worker(store, artifacts, settings, WorkerConfig(concurrency=4))
    >>> worker.run()          # until worker.stop() (the CLI calls it on SIGTERM)
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import model_validator

from loopml.core.errors import ServiceUnavailableError
from loopml.core.ids import new_id
from loopml.core.pipelines import StepError, log_key
from loopml.pipelines._capacity import REPORT_EVERY_S, cpu_limit
from loopml.pipelines._resolve import PreparedStep, outputs_exist, prepare
from loopml.pipelines._run_step import describe
from loopml.pipelines.backends import open_executor
from loopml.pipelines.base import StepExecutor, StepHandle, StepOutcome
from loopml.settings import Settings, WorkerSettings, settings_payload
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, pipeline_workers
from loopml.store import pipeline_queue as queue
from loopml.store.pipeline_queue import Beat, Claim

log = logging.getLogger("loopml.pipelines.worker")
T = TypeVar("T")


class WorkerConfig(WorkerSettings):
    """How a worker claims and supervises steps, and where its executor runs them: the
    ``worker`` settings section, checked as a whole."""

    @model_validator(mode="after")
    def _lease_outlives_heartbeats(self) -> WorkerConfig:
        if self.lease_s < 2 * self.heartbeat_s:
            raise ValueError(
                f"lease_s ({self.lease_s}) must be at least twice heartbeat_s "
                f"({self.heartbeat_s}), or a live step loses its lease between two heartbeats"
            )
        return self


def server_url(settings: Settings) -> str:
    """The address a server started with ``settings`` answers on, as its own steps reach it
    (``client.url`` may name another server, or none was set)."""
    # The server binds loopback only, so its bind address is also where it is reached.
    host = settings.server.host.strip("[]")
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{settings.server.port}"


class Worker:
    """Claims and runs pipeline steps until stopped.

    Args:
        store: the metadata database holding the queue.
        artifacts: where step logs go.
        settings: handed to each step (its database and artifact root).
        config: concurrency, lease, heartbeat, polling.
        worker_id: the name leases are taken under (default ``host:pid:random``).
        executor: where steps run (default: the one ``config.executor`` names).
        api_url: the platform's API that steps acting through it call (``deploy``);
            default ``settings.client.url``. The worker embedded in a server passes the
            server's own address (``server_url``).
    """

    def __init__(
        self,
        store: MetadataStore,
        artifacts: ArtifactStore,
        settings: Settings,
        config: WorkerConfig | None = None,
        *,
        worker_id: str | None = None,
        executor: StepExecutor | None = None,
        api_url: str | None = None,
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.config = config or WorkerConfig()
        self.id = worker_id or f"{socket.gethostname()[:100]}:{os.getpid()}:{new_id()[:6]}"
        self.executor = executor or open_executor(self.config.executor, settings)
        self.payload = settings_payload(settings)
        self.sys_path = [p for p in sys.path if p]
        self.api_url = api_url or settings.client.url
        self._active: dict[str, threading.Thread] = {}
        self._cpus: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._next_sweep = 0.0
        self._next_report = 0.0
        self._capacity: float | None = None
        self._trouble = 0

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        """Work until ``stop()``; running steps are then stopped and given back."""
        log.info(
            "pipeline worker %s started (%d at once, executor %s)",
            self.id,
            self.config.concurrency,
            self.executor.name,
        )
        try:
            while not self._stop.is_set():
                if not self.tick():
                    # Idle, or the database is away: wait longer each time it stays away.
                    self._wake.wait(self.config.poll_s * min(60, 2**self._trouble))
                    self._wake.clear()
        finally:
            self._shutdown()
            log.info("pipeline worker %s stopped", self.id)

    def stop(self) -> None:
        """Ask ``run`` to return (from a signal handler or another thread)."""
        self._stop.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def tick(self) -> bool:
        """One round: report and sweep when due, then claim while there is room. Whether it
        claimed."""
        if time.monotonic() >= self._next_report:
            self._next_report = time.monotonic() + REPORT_EVERY_S
            self.report()
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + self.config.sweep_s
            self.sweep()
        claimed = False
        while not self._stop.is_set() and self.running() < self.config.concurrency:
            free = self.free_cpus()
            if free is not None and free <= 0:
                break
            claim = self._claim(free)
            if claim is None:
                break
            claimed = True
            thread = threading.Thread(
                target=_Attempt(self, claim).run, name=f"step-{claim.step}", daemon=True
            )
            with self._lock:
                self._active[claim.step_run_id] = thread
                self._cpus[claim.step_run_id] = claim.cpus
            thread.start()
        return claimed

    def free_cpus(self) -> float | None:
        """The CPUs a step may still ask for here, when this worker's executor runs steps
        on this machine (``None``: the executor places them, as Ray does)."""
        if not self.executor.weighs_cpus:
            return None
        if self._capacity is None:
            given = self.executor.cpus_given
            self._capacity = cpu_limit(self.executor.nodes(), given, self.config.concurrency)
        with self._lock:
            return self._capacity - sum(self._cpus.values())

    def report(self) -> None:
        """Record in the store what this worker's nodes offer (``pipelines apply`` checks
        steps' resources against it)."""
        try:
            nodes = self.executor.nodes()
            with self.store.session() as session:
                pipeline_workers.report(session, self.id, self.executor.name, nodes)
        except ServiceUnavailableError as exc:
            log.warning("could not report this worker's nodes: %s", exc.message)
        except Exception:  # a report is worth less than the work: keep claiming without it
            log.exception("could not report this worker's nodes")

    def running(self) -> int:
        """How many steps this worker runs now."""
        with self._lock:
            return len(self._active)

    def sweep(self) -> int:
        """Settle expired leases now (see ``store.pipeline_queue.sweep``)."""
        try:
            with self.store.session() as session:
                settled = queue.sweep(session)
        except ServiceUnavailableError as exc:
            log.warning("sweep skipped: %s", exc.message)
            return 0
        if settled:
            log.info("settled %d expired step lease(s)", settled)
        return settled

    def _claim(self, max_cpus: float | None = None) -> Claim | None:
        try:
            with self.store.session() as session:
                claim = queue.claim(
                    session, self.id, lease_s=self.config.lease_s, max_cpus=max_cpus
                )
            if claim is not None:
                with self.store.session() as session:
                    queue.mark_run_started(session, claim.run_id)
        except ServiceUnavailableError as exc:
            if self._trouble == 0:
                log.warning("cannot claim steps: %s", exc.message)
            self._trouble = min(self._trouble + 1, 6)
            return None
        self._trouble = 0
        if claim is not None:
            log.info(
                "claimed %s/%s attempt %d (run %s)",
                claim.pipeline,
                claim.step,
                claim.attempt,
                claim.run_id,
            )
        return claim

    def _finished(self, step_run_id: str) -> None:
        with self._lock:
            self._active.pop(step_run_id, None)
            self._cpus.pop(step_run_id, None)
        self._wake.set()

    def _shutdown(self, timeout_s: float = 30.0) -> None:
        with self._lock:
            threads = list(self._active.values())
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.executor.close()


class _Attempt:
    """Supervises one claimed attempt from resolution to commit."""

    def __init__(self, worker: Worker, claim: Claim) -> None:
        self.worker = worker
        self.claim = claim
        self.config = worker.config
        self.lost = False
        self._log_sent: bytes | None = None
        self._log_key = log_key(claim.project_id, claim.run_id, claim.step, claim.attempt)

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a bug here must not kill the worker; the lease settles it
            log.exception("supervising %s/%s failed", self.claim.pipeline, self.claim.step)
            self._fail(describe(exc, user_code=False))
        finally:
            self.worker._finished(self.claim.step_run_id)

    # ------------------------------------------------------------------ writes, fenced

    def _write(self, action: Callable[[Any], T], default: T) -> T:
        """Run ``action(session)`` in a transaction, retrying while the database is
        unreachable, until the lease would have expired anyway."""
        deadline = time.monotonic() + self.config.lease_s
        pause = 0.2
        while True:
            try:
                with self.worker.store.session() as session:
                    return action(session)
            except ServiceUnavailableError as exc:
                if time.monotonic() + pause > deadline:
                    log.warning("giving up a write for %s: %s", self.claim.step, exc.message)
                    return default
                time.sleep(pause)
                pause = min(pause * 2, 2.0)

    def _beat(self) -> Beat | None:
        c = self.claim
        try:
            with self.worker.store.session() as session:
                return queue.heartbeat(session, c.step_run_id, c.token, lease_s=self.config.lease_s)
        except ServiceUnavailableError as exc:
            log.warning("heartbeat of %s failed: %s", c.step, exc.message)
            return None

    def _fail(self, error: StepError) -> None:
        c = self.claim
        data = error.model_dump(mode="json")
        done = self._write(
            lambda s: queue.fail(s, c.step_run_id, c.token, data, retryable=error.retryable), False
        )
        if not done:
            self._discarded("failure")

    def _discarded(self, what: str) -> None:
        self.lost = True
        log.warning(
            "%s/%s attempt %d lost its lease: its %s was not recorded",
            self.claim.pipeline,
            self.claim.step,
            self.claim.attempt,
            what,
        )

    # ------------------------------------------------------------------ the attempt

    def _prepare(self) -> PreparedStep | None:
        c = self.claim
        try:
            with self.worker.store.session() as session:
                context = queue.context(session, c.run_id)
            return prepare(
                self.worker.store,
                self.worker.artifacts,
                c,
                context,
                settings=self.worker.payload,
                sys_path=self.worker.sys_path,
                api_url=self.worker.api_url,
            )
        except Exception as exc:
            self._fail(describe(exc, user_code=False))
            return None

    def _cached(self, prepared: PreparedStep) -> bool:
        c = self.claim
        key = prepared.cache_key
        if key is None:
            return False
        found = self._write(lambda s: queue.cached_outputs(s, c.project_id, key), None)
        if found is None:
            return False
        outputs, source = found
        if not outputs_exist(
            self.worker.store, self.worker.artifacts, c.project, prepared.task, outputs
        ):
            self._write(lambda s: queue.forget(s, c.project_id, key), None)
            return False
        done = self._write(
            lambda s: queue.complete(s, c.step_run_id, c.token, outputs, cached_from=source), False
        )
        if done:
            log.info("%s/%s: cache hit (outputs of step run %s)", c.pipeline, c.step, source)
        else:
            self._discarded("cached result")
        return True

    def _run(self) -> None:
        c = self.claim
        prepared = self._prepare()
        if prepared is None:
            return
        started = self._write(
            lambda s: queue.start(
                s, c.step_run_id, c.token, inputs=prepared.inputs, cache_key=prepared.cache_key
            ),
            False,
        )
        if not started:
            self._discarded("start")
            return
        if self._cached(prepared):
            return
        handle = self.worker.executor.start(prepared.task)
        try:
            outcome = self._supervise(handle)
            if outcome is not None:
                self._commit(handle, outcome)
        finally:
            handle.close()

    def _supervise(self, handle: StepHandle) -> StepOutcome | None:
        c = self.claim
        began = time.monotonic()
        while True:
            wait_s = self.config.heartbeat_s
            if c.timeout_s is not None:
                wait_s = min(wait_s, max(0.0, began + c.timeout_s - time.monotonic()))
            outcome = handle.wait(wait_s)
            if outcome is not None:
                return outcome
            if self.worker.stopping:
                handle.stop()
                self._upload_log(handle)
                self._write(lambda s: queue.release(s, c.step_run_id, c.token), False)
                return None
            if c.timeout_s is not None and time.monotonic() - began >= c.timeout_s:
                handle.stop()
                return StepOutcome(
                    ok=False,
                    error=StepError(
                        type="StepTimeout",
                        message=f"step {c.step!r} ran past its timeout of {c.timeout_s:g} s "
                        "and was stopped",
                        retryable=True,
                    ),
                )
            if self._check_lease(handle):
                return None

    def _check_lease(self, handle: StepHandle) -> bool:
        """Heartbeat; stop the step when the lease is gone or the run is cancelled.
        Whether the attempt is over."""
        c = self.claim
        beat = self._beat()
        if beat is None:
            return False  # the database is unreachable: keep going, the lease may still hold
        if not beat.ok:
            handle.stop()
            self._discarded("result")
            return True
        self._upload_log(handle)
        if beat.cancelling:
            handle.stop()
            self._upload_log(handle)
            self._write(lambda s: queue.cancelled(s, c.step_run_id, c.token), False)
            log.info("%s/%s stopped: its run is being cancelled", c.pipeline, c.step)
            return True
        return False

    def _commit(self, handle: StepHandle, outcome: StepOutcome) -> None:
        c = self.claim
        beat = self._beat()
        if beat is not None and not beat.ok:
            self._discarded("result")
            return
        self._upload_log(handle)
        if outcome.ok:
            done = self._write(
                lambda s: queue.complete(s, c.step_run_id, c.token, outcome.outputs), False
            )
            if not done:
                self._discarded("result")
            return
        assert outcome.error is not None
        self._fail(outcome.error)

    def _upload_log(self, handle: StepHandle) -> None:
        if self.lost:
            return
        data = handle.read_log(self.config.step_log_max_bytes)
        if data == self._log_sent:
            return
        try:
            self.worker.artifacts.write_bytes(self._log_key, data)
            self._log_sent = data
        except Exception:  # a log is worth less than the step: keep going without it
            log.exception("could not upload the log of %s", self.claim.step)


class WorkerThread:
    """A worker running in a background thread of this process (``loopml up``)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._thread = threading.Thread(target=worker.run, name="pipeline-worker", daemon=True)

    def start(self) -> WorkerThread:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the worker: running steps are stopped and given back to the queue."""
        self.worker.stop()
        self._thread.join(timeout_s)
