"""Record ingest: posts of JSON records gathered into few commits, each answered once durable.

A post is a JSON array of objects or NDJSON (one object per line), read with Arrow's JSON
reader (``read_post``, in ``loopml.data._record_parse``).

``RecordBatcher`` is a group commit per table: the posts to one table wait together and land
as one Delta commit (through ``loopml.data.lake.ingest_arrow``: schema enforcement and
contracts apply; compaction follows in the background). One commit per table is in flight
at a time; posts arriving meanwhile wait for the next one, which starts

- as soon as ``lake.records_batch_rows`` records are waiting;
- or as soon as as many posts are waiting as were in flight together during the previous
  round: clients that wait for their answer before posting again are all back, and waiting
  longer would only add latency;
- and at the latest ``lake.records_batch_ms`` after the first of them arrived, or after
  the commit in flight ended, whichever is later. Posts that arrive during a commit thus
  wait briefly for the posters just answered: clients that post, wait and post again all
  share the next commit instead of splitting into groups that alternate, which would pay a
  commit's fixed cost (most of its time) for half the records.

Each post is answered only once its commit is recorded, and lands whole or not at all: a
post that does not fit the table is refused alone (see ``loopml.data._record_commit``).

An ``Idempotency-Key`` makes a retried post land once: a retry that arrives while the first
post waits or commits shares its answer; one that arrives later finds the key recorded and
gets the first answer again, with ``replayed`` set, and nothing is appended.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from functools import partial

import anyio.to_thread
import pyarrow as pa

from loopml.core.errors import ServiceUnavailableError
from loopml.core.ingest import RecordsCommit
from loopml.core.lake import validate_table_name
from loopml.core.names import validate_project_name
from loopml.data import housekeeping
from loopml.data._record_commit import (
    MAX_POSTS_PER_COMMIT,
    BatchCommit,
    Handle,
    commit_batch,
    key_reused,
)
from loopml.data._record_parse import RecordPost as RecordPost
from loopml.data._record_parse import media_kind as media_kind
from loopml.data._record_parse import read_post as read_post
from loopml.settings import LakeSettings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore

log = logging.getLogger("loopml.data")
_IDLE_S = 300.0
_MAX_IDLE = 32
"""Idle queues kept (each holds its table's Delta log open, 0.1-0.2 MB): a burst of posts to
many tables must not keep every table's log for ``_IDLE_S`` (issue 36)."""
BACKLOG_BATCHES = 20
"""Posts to a table with this many batches' worth of records waiting get 503 (memory bound)."""


@dataclass
class _Waiting:
    post: RecordPost
    future: asyncio.Future[RecordsCommit]


@dataclass
class _Queue:
    """The posts to one table from one actor, and the commit of theirs in flight."""

    project: str
    table: str
    actor: str
    pending: list[_Waiting] = field(default_factory=list)
    rows: int = 0
    timer: asyncio.TimerHandle | None = None
    committing: int = 0
    """Posts in the commit in flight (0: none)."""
    due: bool = False
    """Commit the pending posts as soon as the commit in flight ends."""
    peak: int = 0
    """Most posts waiting or committing together since the last commit started."""
    expected: int = 0
    """``peak`` as it was when the last commit started: the posts likely to come back."""
    idle_since: float = 0.0
    handle: Handle | None = None


def _without_frames(exc: BaseException) -> BaseException:
    """``exc`` without the tracebacks of it and what caused it: their frames hold the
    batch's records (megabytes of Arrow buffers) in a reference cycle with the exception,
    which only Python's rarer full collections free; a burst of refused posts grew the
    server by about 4.5 MB each (issue 36). The 422 the post gets needs no frames."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        link.__traceback__ = None
        link = link.__cause__ or link.__context__
    return exc


def _retrieve(future: asyncio.Future[RecordsCommit]) -> None:
    # A waiter that went away (client disconnected) leaves no one to read the exception;
    # reading it here keeps asyncio from logging it as lost.
    if not future.cancelled():
        future.exception()


class RecordBatcher:
    """Group commit of record posts, per table; see the module docstring.

    Lives in one event loop (the server's): ``append`` and ``close`` are called from it,
    and the commits run in worker threads.

    Args:
        store: the metadata store.
        artifacts: the artifact store holding the lake.
        settings: the batching knobs (``records_batch_rows``, ``records_batch_ms``) and the
            compaction settings (a table is compacted in the background when a commit
            leaves it with too many small files).
    """

    def __init__(
        self, store: MetadataStore, artifacts: ArtifactStore, settings: LakeSettings
    ) -> None:
        self._store = store
        self._artifacts = artifacts
        self._settings = settings
        self._queues: dict[tuple[str, str, str], _Queue] = {}
        self._keys: dict[tuple[str, str, str], _Waiting] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._compacting: set[tuple[str, str]] = set()
        self._closing = False

    async def append(
        self, project: str, table: str, post: RecordPost, *, actor: str
    ) -> RecordsCommit:
        """Land ``post`` in ``table`` (created by the first post) and answer once it is
        durably committed.

        Raises:
            ValidationError: bad names; records that do not fit the table (``details``
                names the columns) or fail a ``reject`` contract; a key already used for
                a different body.
            NotFoundError: no such project.
            ConflictError: another server is committing a post with the same key; retry.
            ServiceUnavailableError: the server is shutting down, or storage failed; retry.
        """
        validate_project_name(project)
        validate_table_name(table)
        if self._closing:
            raise ServiceUnavailableError(
                "the server is shutting down and takes no more records; retry",
                details={"retryable": True},
            )
        if post.key is not None:
            first = self._keys.get((project, table, post.key))
            if first is not None:
                if first.post.body_sha256 != post.body_sha256:
                    raise key_reused(post.key, first.post.records.num_rows, None)
                result = await asyncio.shield(first.future)
                return result.model_copy(update={"replayed": True, "batch_rows": None})
        queue = self._queue(project, table, actor)
        backlog = BACKLOG_BATCHES * self._settings.records_batch_rows
        if queue.pending and queue.rows + post.records.num_rows > backlog:
            raise ServiceUnavailableError(
                f"more than {backlog} records are waiting to be committed to table {table!r}: "
                "the lake is slower than the posts; retry later",
                details={"retryable": True, "waiting_rows": queue.rows},
            )
        waiting = _Waiting(post, asyncio.get_running_loop().create_future())
        waiting.future.add_done_callback(_retrieve)
        if post.key is not None:
            self._keys[(project, table, post.key)] = waiting
        self._enqueue(queue, waiting)
        try:
            return await asyncio.shield(waiting.future)
        finally:
            # A refusal's traceback holds this frame, whose future holds the refusal: a
            # cycle that would keep the post's records until a full collection.
            del waiting, post

    def schema_hint(self, project: str, table: str) -> pa.Schema | None:
        """The table's schema as this server's last commit to it left it (``None`` if
        unknown), to read posts with its types (see ``read_post``); only a hint, since
        another writer may have changed it since."""
        for (p, t, _), queue in self._queues.items():
            if p == project and t == table and queue.handle is not None:
                return queue.handle.schema
        return None

    @property
    def waiting(self) -> int:
        """Posts waiting for their commit or in one, over all tables."""
        return sum(len(q.pending) + q.committing for q in self._queues.values())

    async def close(self) -> None:
        """Take no more posts, commit every waiting one now, and wait for all answers."""
        self._closing = True
        for queue in list(self._queues.values()):
            self._flush(queue)
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _queue(self, project: str, table: str, actor: str) -> _Queue:
        queue = self._queues.get((project, table, actor))
        if queue is None:
            self._forget_idle()
            queue = self._queues[(project, table, actor)] = _Queue(project, table, actor)
        return queue

    def _forget_idle(self) -> None:
        # An idle queue holds its table's log open; a table posted to again within a few
        # minutes keeps it, so that the log is not read afresh.
        now = asyncio.get_running_loop().time()
        idle = [
            (queue.idle_since, name)
            for name, queue in self._queues.items()
            if not queue.pending and not queue.committing
        ]
        idle.sort()
        for rank, (since, name) in enumerate(idle):
            if now - since > _IDLE_S or len(idle) - rank > _MAX_IDLE:
                del self._queues[name]

    def _enqueue(self, queue: _Queue, waiting: _Waiting) -> None:
        queue.pending.append(waiting)
        queue.rows += waiting.post.records.num_rows
        queue.peak = max(queue.peak, len(queue.pending) + queue.committing)
        if self._ready(queue):
            self._flush(queue)
        elif queue.timer is None and not queue.committing:
            self._arm(queue)

    def _arm(self, queue: _Queue) -> None:
        delay = self._settings.records_batch_ms / 1000
        queue.timer = asyncio.get_running_loop().call_later(delay, self._flush, queue)

    def _ready(self, queue: _Queue) -> bool:
        """Whether the pending posts need not wait for the timer: enough records, or as
        many posts as were in flight together last time (the clients are all back)."""
        return (
            queue.rows >= self._settings.records_batch_rows
            or len(queue.pending) >= MAX_POSTS_PER_COMMIT
            or 0 < queue.expected <= len(queue.pending)
        )

    def _flush(self, queue: _Queue) -> None:
        if queue.timer is not None:
            queue.timer.cancel()
            queue.timer = None
        if queue.committing:
            queue.due = True
            return
        if not queue.pending:
            return
        batch = queue.pending[:MAX_POSTS_PER_COMMIT]
        queue.pending = queue.pending[MAX_POSTS_PER_COMMIT:]
        queue.rows -= sum(w.post.records.num_rows for w in batch)
        queue.expected, queue.peak = queue.peak, len(queue.pending)
        queue.committing, queue.due = len(batch), bool(queue.pending)
        task = asyncio.get_running_loop().create_task(self._commit(queue, batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _commit(self, queue: _Queue, batch: list[_Waiting]) -> None:
        posts = [w.post for w in batch]
        try:
            result: BatchCommit = await anyio.to_thread.run_sync(
                commit_batch,
                self._store,
                self._artifacts,
                self._settings,
                queue.project,
                queue.table,
                queue.actor,
                posts,
                queue.handle,
            )
        except Exception as exc:  # a bug, not a verdict: every post of the batch gets it
            log.exception("record batch for %s/%s failed", queue.project, queue.table)
            result = BatchCommit([exc] * len(batch), None)
        finally:
            # anyio's worker thread lets go of its call's arguments only after it has
            # handed the result back: emptied here, the list no longer holds the records
            # (the CI saw one refused post's 2 MB still alive when its 422 went out).
            posts.clear()
        queue.handle = result.handle
        for waiting, outcome in zip(batch, result.outcomes, strict=True):
            if waiting.post.key is not None:
                self._keys.pop((queue.project, queue.table, waiting.post.key), None)
            if not isinstance(outcome, RecordsCommit):
                _without_frames(outcome)
            if waiting.future.done():
                continue
            if isinstance(outcome, RecordsCommit):
                waiting.future.set_result(outcome)
            else:
                waiting.future.set_exception(outcome)
        queue.committing = 0
        queue.idle_since = asyncio.get_running_loop().time()
        if queue.pending and (queue.due or self._closing or self._ready(queue)):
            self._flush(queue)
        elif queue.pending and queue.timer is None:
            self._arm(queue)
        if result.compact:
            self._compact(queue)

    def _compact(self, queue: _Queue) -> None:
        """Compact the table in the background (one compaction per table at a time); the
        appends go on meanwhile, which Delta allows."""
        name = (queue.project, queue.table)
        if name in self._compacting:
            return
        self._compacting.add(name)

        async def compact() -> None:
            try:
                await anyio.to_thread.run_sync(
                    partial(
                        housekeeping.maybe_compact,
                        self._store,
                        self._artifacts,
                        queue.project,
                        queue.table,
                        self._settings,
                        actor=queue.actor,
                    )
                )
            finally:
                self._compacting.discard(name)

        task = asyncio.get_running_loop().create_task(compact())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
