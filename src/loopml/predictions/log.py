"""``PredictionLog``: the platform's own prediction log, appending through its record batcher
(no HTTP), in the same rows as a replica's ``HttpPredictionSink``.

Two things feed it, both on the platform's event loop and both only enqueueing:

- ``log_answer(answer)``, the gateway's answer hook (``Gateway.on_answer``), for every
  ``Answer`` a gateway saw, the platform's own or a gateway process's (through its report):
  each successful inference answer a client got, with its revision's role (``primary`` or
  ``canary``; the local target's replicas do not log themselves, so a replica killed
  mid-load loses no answered row), and each shadow answer to a copy of a request (role
  ``shadow``: its inputs as the client sent them, its predictions as the shadow answered);
- ``sink(project)``, a ``PredictionSink`` for a model server running inside the platform.

What is queued is turned into Arrow on the log's own thread, ``BUILD_AHEAD`` entries at a
time as they come, and a background task appends it per deployment to
``prediction_table(deployment)`` through ``RecordBatcher.append``, ``max_batch`` rows at a
time or ``flush_ms`` after the first of them arrived. ``close`` appends everything
still queued; call it before the batcher's own ``close``. Wiring, in the app's lifespan::

    log = PredictionLog(records)
    gateway.on_answer = log.log_answer
    ...
    await log.close()          # then: await records.close()
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loopml.core.deployments import prediction_table
from loopml.core.errors import DiskFullError, LoopmlError, ValidationError
from loopml.core.names import validate_project_name
from loopml.core.predictions import ROLES
from loopml.predictions import _rows as _predrows
from loopml.predictions.intake import PredictionRecord, PredictionSink

if TYPE_CHECKING:
    import pyarrow as pa

    from loopml.data.records import RecordBatcher
    from loopml.predictions.intake import Answer

log = logging.getLogger("loopml.predictions.log")

ACTOR = "prediction-log"
"""Who the log's appends are recorded as."""

_Build = Callable[[], list[_predrows.Row]]
_Entry = tuple[str, str, int, _Build]
_Built = tuple[dict[tuple[str, str], "pa.Table"], int]

BUILD_AHEAD = 256
"""Queued entries handed to the log's thread at a time, to become Arrow before their append.
Built all at the append, once a second under load, 2,000-6,000 answers at 30-50 us each
took a third of a core the serving path shares for a few hundred milliseconds: the requests
answered then made the serving p99 (issue 53, ``bench/serving_tail.py``). A few
milliseconds of work every tenth of a second costs the same CPU without the spells."""


@dataclass(frozen=True)
class LogStats:
    """What the log has done so far, in rows.

    Attributes:
        appended: rows committed to their tables.
        dropped: rows not queued (an answer counts as one): the queue was full, or
            the log was closed.
        refused: rows a table refused (its schema was changed by hand).
        skipped: answers not logged: errors, or bodies that could not be read.
        pending: rows queued or being appended now (an answer counts as one).
    """

    appended: int
    dropped: int
    refused: int
    skipped: int
    pending: int


class _Sink:
    """A ``PredictionSink`` for a model server inside the platform."""

    def __init__(self, log: PredictionLog, project: str, role: str | None) -> None:
        self._log, self._project, self._role = log, project, role

    def record(self, record: PredictionRecord) -> None:
        role = self._role

        def build() -> list[_predrows.Row]:
            return _predrows.record_rows(record, role)

        self._log._add(self._project, record.deployment, record.rows, build)


class PredictionLog:
    """The platform's prediction log; see the module docstring.

    Lives in one event loop (the platform's): ``log_answer``, ``sink(...).record`` and
    ``close`` are called from it.

    Args:
        batcher: the app's record batcher (``Running.records`` in ``loopml.faces.context``).
        max_batch: most rows per append.
        flush_ms: longest a queued row waits for others. Each append is a table commit
            (a Delta file and a catalog row) on the platform's own CPU, which the gateway
            shares: under load, one commit a second costs far less than five.
        max_queue: most rows queued; more are dropped and counted.
        on_disk_full: told how many rows a full disk refused (the ``/metrics`` counter);
            they are dropped, with one warning per full spell, and serving goes on.
    """

    def __init__(
        self,
        batcher: RecordBatcher,
        *,
        max_batch: int = 5000,
        flush_ms: float = 1000.0,
        max_queue: int = 100_000,
        on_disk_full: Callable[[int], None] | None = None,
    ) -> None:
        self._batcher = batcher
        self._max_batch, self._max_queue, self._flush_s = max_batch, max_queue, flush_ms / 1000
        self._queue: list[_Entry] = []  # not yet handed to the thread
        self._built: list[asyncio.Future[_Built]] = []  # handed, for the next append
        self._queued = 0  # rows in both, not yet taken by an append
        self._sending = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._appended = self._dropped = self._refused = self._skipped = 0
        self._on_disk_full = on_disk_full
        self._full_rows = 0  # rows refused in the current full spell; 0: none
        # One thread, so that the entries are built, and their rows appended, in order.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prediction-log")

    @property
    def stats(self) -> LogStats:
        """The counts so far."""
        return LogStats(
            appended=self._appended,
            dropped=self._dropped,
            refused=self._refused,
            skipped=self._skipped,
            pending=self._queued + self._sending,
        )

    def sink(self, project: str, *, role: str | None = None) -> PredictionSink:
        """A ``PredictionSink`` that logs a model server's predictions to ``project``."""
        validate_project_name(project)
        if role is not None and role not in ROLES:
            raise ValidationError(f"role must be one of {list(ROLES)}, got {role!r}")
        return _Sink(self, project, role)

    def log_answer(self, answer: Answer) -> None:
        """The gateway's answer hook (``AnswerHook``), the log's one intake for what a gateway
        saw: queue ``answer`` to become rows with its role; an error answer is counted
        (``skipped``), not logged. Only queues: the bodies are read later, in the log's thread.
        """
        self._add(answer.project, answer.deployment, 1, lambda: _predrows.answer_rows(answer))

    async def close(self) -> LogStats:
        """Append everything queued, wait for it, and take nothing more."""
        self._closing = True
        self._flush()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._thread.shutdown(wait=False)
        return self.stats

    # ------------------------------------------------------------------ internals

    def _add(self, project: str, deployment: str, rows: int, build: _Build) -> None:
        if self._closing or self._queued + rows > self._max_queue:
            self._dropped += rows
            return
        self._queue.append((project, deployment, rows, build))
        self._queued += rows
        if self._queued >= self._max_batch:
            self._flush()
            return
        if len(self._queue) >= BUILD_AHEAD:
            self._build_ahead()
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._flush_s, self._flush)

    def _build_ahead(self) -> None:
        """Hand the queued entries to the log's thread, to become Arrow tables."""
        taken, self._queue = self._queue, []
        loop = asyncio.get_running_loop()
        self._built.append(loop.run_in_executor(self._thread, _tables, taken))

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._queue:
            self._build_ahead()
        if not self._built:
            return
        built, self._built = self._built, []
        rows, self._queued = self._queued, 0
        self._sending += rows
        task = asyncio.get_running_loop().create_task(self._append(built, rows))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _append(self, built: list[asyncio.Future[_Built]], queued: int) -> None:
        try:
            tables, skipped = _merged(await asyncio.gather(*built))
            self._skipped += skipped
            await asyncio.gather(
                *(self._append_one(project, name, t) for (project, name), t in tables.items())
            )
        except Exception:  # a bug: these rows are lost, the server goes on
            log.exception("the prediction log could not append %d rows", queued)
            self._refused += queued
        finally:
            self._sending -= queued

    async def _append_one(self, project: str, table: str, records: pa.Table) -> None:
        from loopml.data.records import RecordPost

        try:
            await self._batcher.append(
                project, table, RecordPost(records=records, body_sha256=""), actor=ACTOR
            )
        except DiskFullError as exc:
            self._refused += records.num_rows
            self._disk_full(records.num_rows, exc)
            return
        except LoopmlError as exc:
            self._refused += records.num_rows
            log.warning(
                "prediction log: %d rows refused by %s/%s: %s",
                records.num_rows,
                project,
                table,
                exc.message,
            )
            return
        self._appended += records.num_rows
        if self._full_rows:
            log.warning(
                "prediction log: written again; %d rows were dropped while the disk was full",
                self._full_rows,
            )
            self._full_rows = 0

    def _disk_full(self, rows: int, exc: DiskFullError) -> None:
        if self._on_disk_full is not None:
            self._on_disk_full(rows)
        if not self._full_rows:
            log.warning(
                "prediction log: %s; predictions are still answered, their rows dropped "
                '(counted in loopml_disk_full_refusals_total{store="prediction_log"}) until '
                "space returns",
                exc.message,
            )
        self._full_rows += rows


def _merged(parts: Sequence[_Built]) -> _Built:
    """The tables built ahead as one per (project, prediction table), and their skips."""
    if len(parts) == 1:
        return parts[0]
    import pyarrow as pa

    grouped: dict[tuple[str, str], list[pa.Table]] = {}
    for tables, _ in parts:
        for key, table in tables.items():
            grouped.setdefault(key, []).append(table)
    merged = {key: pa.concat_tables(tables) for key, tables in grouped.items()}
    return merged, sum(skipped for _, skipped in parts)


def _tables(taken: list[_Entry]) -> _Built:
    """The queued entries' rows as one Arrow table per (project, prediction table), and how
    many entries gave no rows (answers that were errors or unreadable)."""
    grouped: dict[tuple[str, str], list[_predrows.Row]] = {}
    skipped = 0
    for project, deployment, _, build in taken:
        try:
            table = prediction_table(deployment)
            rows = build()
        except Exception:
            log.exception("prediction log: could not read a prediction of %r", deployment)
            rows = []
        if not rows:
            skipped += 1
            continue
        grouped.setdefault((project, table), []).extend(rows)
    return {key: _predrows.to_arrow(rows) for key, rows in grouped.items()}, skipped
