"""Adaptive micro-batching: requests that arrive together run as one model call.

A model call has a fixed cost (thread hand-off, ONNX Runtime's per-run setup, a
scikit-learn pipeline's per-call checks) and a small per-row cost, so one call on 16 rows
costs far less than 16 calls on one row. ``MicroBatcher`` exploits that without making a
lone request wait:

- Requests wait in a queue. When a model thread is free, the batcher takes what is waiting
  (up to ``max_batch_size`` requests and ``max_batch_rows`` rows) and runs it as one call in
  a worker thread, so the event loop keeps accepting requests meanwhile. Requests that
  arrive during a call form the next batch.
- Adaptive waiting: the batcher keeps a moving average of how many requests it found
  together. When that is one (a lone client, or light traffic) it never waits; when
  requests have been coming in groups it waits for about that many, but never past
  ``max_wait`` after the oldest arrived. So waiting only happens where it pays.
- A failed batch fails no request by itself: the batch is re-run one request at a time, so
  only the request(s) that really fail get the error. (Inputs are checked before they are
  queued; this covers what only the model can refuse.)
- Cheap calls run inline: while model calls have been taking less than ``inline_max_s``
  (a moving average, measured on every call), a batch runs on the event loop itself. Handing
  a call to a thread and back (two wake-ups and the GIL changing hands) costs more than a
  small ONNX call; a slow model (or large batches) goes back to the thread on its own.
- ``max_batch_size=1`` turns batching off: each request is one call.
- At most ``max_queue`` requests wait or run at once; the next is refused with
  ``OverloadedError`` (503), so overload sheds load instead of growing latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from loopml.core.errors import ServiceUnavailableError

log = logging.getLogger("loopml.serve")

In = TypeVar("In")
Out = TypeVar("Out")

# Weight of the newest batch in the moving averages of requests found together and of the
# model call's duration.
_SMOOTHING = 0.3


class OverloadedError(ServiceUnavailableError):
    """Too many requests are waiting for the model; retry after a moment."""

    code = "overloaded"


@dataclass(slots=True)
class _Waiting(Generic[In, Out]):
    item: In
    rows: int
    arrived: float
    future: asyncio.Future[Out]


@dataclass(slots=True)
class _Failed:
    error: Exception


BatchObserver = Callable[[int, int, float], None]


class MicroBatcher(Generic[In, Out]):
    """Runs ``run_batch`` on groups of concurrently submitted items (see the module docs).

    Args:
        run_batch: called in a worker thread with the items of one batch; returns one
            result per item, in order.
        max_batch_size: most items per call; 1 turns batching off.
        max_wait_s: longest an item waits for others to join it.
        max_batch_rows: most rows per call (an item larger than this runs alone).
        max_queue: most items waiting or running at once.
        threads: model calls that may run at once.
        inline_max_s: calls averaging less than this run on the event loop (0: never).
        on_batch: told ``(items, rows, seconds)`` after each call, in the event loop.
    """

    def __init__(
        self,
        run_batch: Callable[[Sequence[In]], Sequence[Out]],
        *,
        max_batch_size: int = 32,
        max_wait_s: float = 0.002,
        max_batch_rows: int = 4096,
        max_queue: int = 1024,
        threads: int = 1,
        inline_max_s: float = 0.0,
        on_batch: BatchObserver | None = None,
    ) -> None:
        self._run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._max_rows = max_batch_rows
        self._max_queue = max_queue
        self._threads = threads
        self._on_batch = on_batch
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="loopml-model")
        self._pending: deque[_Waiting[In, Out]] = deque()
        self._typical = 1.0
        self._inline_max_s = inline_max_s
        # The moving average of a model call's seconds; None until the first call (which runs
        # in a thread, as the model's cost is unknown).
        self._call_s: float | None = None
        self._inflight = 0
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._bound: asyncio.AbstractEventLoop | None = None
        self._arrival = asyncio.Event()

    @property
    def inflight(self) -> int:
        """Items submitted and not yet answered."""
        return self._inflight

    async def submit(self, item: In, rows: int = 1) -> Out:
        """Queue ``item`` (of ``rows`` rows) and wait for its result.

        Raises:
            OverloadedError: ``max_queue`` items are already waiting or running.
            ServiceUnavailableError: the batcher is closed.
            Exception: whatever ``run_batch`` raised for this item.
        """
        if self._closed:
            raise ServiceUnavailableError("the model server is shutting down")
        if self._inflight >= self._max_queue:
            raise OverloadedError(
                f"{self._inflight} requests are already waiting for the model (the limit is "
                f"{self._max_queue}); retry shortly",
                details={"limit": self._max_queue},
            )
        self._inflight += 1
        try:
            if self.max_batch_size <= 1:
                return await self._run_alone(item, rows)
            loop = self._ensure_started()
            future: asyncio.Future[Out] = loop.create_future()
            self._pending.append(_Waiting(item, rows, loop.time(), future))
            self._arrival.set()
            return await future
        finally:
            self._inflight -= 1

    async def close(self, timeout_s: float = 30.0) -> None:
        """Refuse new items, let queued and running ones finish (up to ``timeout_s``), stop."""
        self._closed = True
        deadline = time.monotonic() + timeout_s
        while self._inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def runs_inline(self) -> bool:
        """Whether the next call runs on the event loop (see the module docs)."""
        return self._call_s is not None and self._call_s < self._inline_max_s

    async def _run_alone(self, item: In, rows: int) -> Out:
        started = time.perf_counter()
        if self.runs_inline:
            result = self._run_safely([item])
        else:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self._executor, self._run_safely, [item])
        seconds = time.perf_counter() - started
        if self._on_batch is not None:
            self._on_batch(1, rows, seconds)
        if isinstance(result[0], _Failed):
            raise result[0].error
        return result[0]

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._bound is not loop:
            # A new event loop (a test client's, say) gets its own queue and worker task.
            self._bound = loop
            self._pending.clear()
            self._arrival = asyncio.Event()
            self._task = loop.create_task(self._dispatch(), name="loopml-batcher")
        return loop

    async def _dispatch(self) -> None:
        slots = asyncio.Semaphore(self._threads)
        running: set[asyncio.Task[None]] = set()
        while True:
            while not self._pending:
                self._arrival.clear()
                await self._arrival.wait()
            await slots.acquire()
            await self._gather()
            batch = self._take()
            if not batch:
                slots.release()
                continue
            if self.runs_inline:
                started = time.perf_counter()
                results = self._run_safely([w.item for w in batch])
                slots.release()
                self._settle(batch, results, time.perf_counter() - started)
                # Let the requests just answered write their responses (and new ones be
                # read) before the next batch is taken.
                await asyncio.sleep(0)
                continue
            task = asyncio.get_running_loop().create_task(self._execute(batch, slots))
            running.add(task)
            task.add_done_callback(running.discard)

    async def _gather(self) -> None:
        """Wait, when requests have been coming in groups, for about a group's worth."""
        target = min(self.max_batch_size, max(1, round(self._typical)))
        if len(self._pending) >= target or self.max_wait_s <= 0:
            return
        loop = asyncio.get_running_loop()
        deadline = self._pending[0].arrived + self.max_wait_s
        while len(self._pending) < target:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._arrival.clear()
            try:
                await asyncio.wait_for(self._arrival.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list[_Waiting[In, Out]]:
        batch: list[_Waiting[In, Out]] = []
        rows = 0
        while self._pending and len(batch) < self.max_batch_size:
            waiting = self._pending[0]
            if waiting.future.done():  # its request was cancelled (the client went away)
                self._pending.popleft()
                continue
            if batch and rows + waiting.rows > self._max_rows:
                break
            batch.append(self._pending.popleft())
            rows += waiting.rows
        if batch:
            self._typical += _SMOOTHING * (len(batch) - self._typical)
        return batch

    async def _execute(self, batch: list[_Waiting[In, Out]], slots: asyncio.Semaphore) -> None:
        loop = asyncio.get_running_loop()
        items = [w.item for w in batch]
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self._run_safely, items)
        except BaseException as exc:  # the executor itself failed, or we are cancelled
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(
                        ServiceUnavailableError("the model call was interrupted")
                    )
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.exception("model batch could not run")
            return
        finally:
            slots.release()
        self._settle(batch, results, time.perf_counter() - started)

    def _settle(
        self, batch: list[_Waiting[In, Out]], results: list[Out | _Failed], seconds: float
    ) -> None:
        if self._on_batch is not None:
            self._on_batch(len(batch), sum(w.rows for w in batch), seconds)
        for waiting, result in zip(batch, results, strict=True):
            if waiting.future.done():
                continue
            if isinstance(result, _Failed):
                waiting.future.set_exception(result.error)
            else:
                waiting.future.set_result(result)

    def _run_safely(self, items: Sequence[In]) -> list[Out | _Failed]:
        """``run_batch`` on all items; if that fails, on each alone, so only the culprit fails.
        The call's own duration (not the thread hand-off's) feeds the moving average."""
        started = time.perf_counter()
        try:
            return self._run_all(items)
        finally:
            seconds = time.perf_counter() - started
            if self._call_s is None:
                self._call_s = seconds
            else:
                self._call_s += _SMOOTHING * (seconds - self._call_s)

    def _run_all(self, items: Sequence[In]) -> list[Out | _Failed]:
        try:
            results: list[Out | _Failed] = list(self._run_batch(items))
            if len(results) != len(items):
                raise RuntimeError(f"run_batch gave {len(results)} results for {len(items)}")
            return results
        except Exception as exc:
            if len(items) == 1:
                return [_Failed(exc)]
        isolated: list[Out | _Failed] = []
        for item in items:
            try:
                isolated.extend(self._run_batch([item]))
            except Exception as exc:
                isolated.append(_Failed(exc))
        return isolated
