"""The background thread of an active run: sends heartbeats and buffered metric points."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from loopml.core.errors import ConflictError, LoopmlError, ServiceUnavailableError
from loopml.core.runs import MAX_METRICS_PER_BATCH, LogBatch, MetricPoint

if TYPE_CHECKING:
    from loopml.train.tracking.backend import TrackingBackend

log = logging.getLogger("loopml.sdk")

# Past this many unsent points (the server is down for long), new ones block the training
# loop on a synchronous flush instead of growing memory without bound.
MAX_BUFFERED = 100 * MAX_METRICS_PER_BATCH


class Pump:
    """Buffers metric points and sends them, with heartbeats, from a daemon thread.

    Points are sent in order, in batches of at most 1,000. A batch that fails because the
    backend is unreachable stays buffered and is retried; any other failure is raised to
    the training code at its next ``add`` or at ``stop``.
    """

    def __init__(
        self,
        backend: TrackingBackend,
        run_id: str,
        *,
        heartbeat_interval_s: float,
        flush_interval_s: float,
    ) -> None:
        self._backend = backend
        self._run_id = run_id
        self._heartbeat_interval_s = heartbeat_interval_s
        self._flush_interval_s = flush_interval_s
        self._buffer: list[MetricPoint] = []
        self._buffer_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._error: LoopmlError | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"loopml-run-{run_id[:8]}")
        self._thread.daemon = True
        self._lost_warned = False

    def start(self) -> None:
        """Start the background thread."""
        self._thread.start()

    def add(self, points: Sequence[MetricPoint]) -> None:
        """Buffer points; a full batch (1,000 points) is sent at once from the caller."""
        self._raise_pending()
        with self._buffer_lock:
            self._buffer.extend(points)
            size = len(self._buffer)
        if size >= MAX_METRICS_PER_BATCH:
            self.flush(block=size >= MAX_BUFFERED)

    def flush(self, *, block: bool = True) -> None:
        """Send every buffered point, in batches of at most 1,000."""
        if not self._send_lock.acquire(blocking=block):
            return  # the background thread is sending already
        try:
            self._send_all()
        finally:
            self._send_lock.release()
        self._raise_pending()

    def stop(self) -> None:
        """Stop the thread, then send what is left (raising if it cannot be sent)."""
        self._stopping.set()
        self._thread.join(timeout=30)
        self.flush()
        with self._buffer_lock:
            left = len(self._buffer)
        if left:
            raise ServiceUnavailableError(
                f"{left} metric points of run {self._run_id} could not be sent to "
                f"{self._backend.where}",
                details={"run_id": self._run_id, "unsent": left},
            )

    def _send_all(self) -> None:
        while True:
            with self._buffer_lock:
                batch = self._buffer[:MAX_METRICS_PER_BATCH]
            if not batch:
                return
            try:
                self._backend.log_batch(self._run_id, LogBatch(metrics=batch))
            except ServiceUnavailableError as exc:
                log.warning("metrics of run %s not sent yet, will retry: %s", self._run_id, exc)
                return
            except LoopmlError as exc:
                self._error = exc  # refused: raise it to the training code, drop the batch
            with self._buffer_lock:
                del self._buffer[: len(batch)]

    def _raise_pending(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _beat(self) -> None:
        try:
            self._backend.heartbeat(self._run_id)
        except ConflictError as exc:
            if not self._lost_warned:
                log.warning("run %s: %s", self._run_id, exc.message)
                self._lost_warned = True
        except LoopmlError as exc:
            log.warning("heartbeat of run %s failed, will retry: %s", self._run_id, exc)

    def _loop(self) -> None:
        next_beat = time.monotonic() + self._heartbeat_interval_s
        tick = min(self._flush_interval_s, self._heartbeat_interval_s)
        while not self._stopping.wait(tick):
            if time.monotonic() >= next_beat:
                self._beat()
                next_beat = time.monotonic() + self._heartbeat_interval_s
            if self._send_lock.acquire(blocking=False):
                try:
                    self._send_all()
                except Exception:
                    log.exception("sending metrics of run %s failed", self._run_id)
                finally:
                    self._send_lock.release()
