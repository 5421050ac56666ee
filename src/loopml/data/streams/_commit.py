"""The commit of one micro-batch of a stream, run in a worker thread by the consumer.

1. Drop the messages the stream already committed (its ``done`` set): redeliveries.
2. Decode the rest (``_decode``); run the stream's SQL transform over the batch; check the
   table's contract. What cannot land goes to the dead-letter table with its reason.
3. Land through the lake's one commit path (``lake.ingest_arrow``: schema enforcement,
   contract, ``table.appended``), each commit carrying the stream's new state (``done``
   with this batch's ids, pruned below the broker's ack floor) in its Delta ``commitInfo``.
   The metadata row records that state in the transaction that records the commit, or the
   next reconcile does if the process dies in between (``loopml.data._tables``).

Dead letters are committed first, the rows second, each with the ids it settles, so a crash
between the two leaves nothing doubled: the redelivered batch finds its dead letters done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
from deltalake import DeltaTable

from loopml.core.contracts import parse_contract
from loopml.core.errors import ConflictError, LoopmlError, ValidationError
from loopml.core.lake import LakeTable, TableCommit
from loopml.core.streams import (
    Floor,
    Position,
    Stream,
    StreamState,
    above_floor,
    decode_ids,
    encode_ids,
    ranges_above_floor,
    ranges_with,
)
from loopml.data import _delta, _sandbox, _tables, contracts, housekeeping, lake
from loopml.data._record_commit import fit
from loopml.data.streams import _decode
from loopml.data.streams.base import Message
from loopml.settings import LakeSettings
from loopml.storage import ArtifactStore
from loopml.storage.native import NativeLocation
from loopml.store import MetadataStore
from loopml.store import streams as stream_rows

log = logging.getLogger("loopml.data.streams")
DEAD_SCHEMA = pa.schema(
    [
        pa.field("stream", pa.string()),
        pa.field("message_id", pa.string()),
        pa.field("subject", pa.string()),
        pa.field("payload", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("received_at", pa.timestamp("us", tz="UTC")),
    ]
)
_COMPACT_EVERY = 8
TRANSFORM_LIMITS = _sandbox.QueryLimits(memory_limit="512MB", threads=1)


class HoldLostError(ConflictError):
    """Another consumer took the stream over (this one's heartbeat went stale)."""


@dataclass
class Outcome:
    """What one micro-batch did."""

    fresh: int
    rows: int
    dead: int
    duplicates: int
    version: int | None = None


class _Writer:
    """One table's Delta log, kept open between micro-batches (reading a log afresh costs
    more than a small commit)."""

    def __init__(self, store: MetadataStore, artifacts: ArtifactStore, project: str, table: str):
        self.store, self.artifacts, self.project, self.table = store, artifacts, project, table
        self.uri: str | None = None
        self.dt: DeltaTable | None = None

    def locate(self, actor: str) -> tuple[LakeTable, NativeLocation]:
        """The table's row (created if need be), reconciled with its log."""
        row, loc = _tables.located(
            self.store, self.artifacts, self.project, self.table, True, actor
        )
        if self.dt is not None and self.uri == loc.uri:
            _delta.refresh(self.dt)
        else:
            self.dt, self.uri = _delta.open_table(loc), loc.uri
        if self.dt is not None:
            row = _tables.reconcile(self.store, row, self.dt)
        return row, loc

    def schema(self) -> pa.Schema | None:
        return None if self.dt is None else _delta.arrow_schema(self.dt)

    def write(
        self,
        rows: pa.Table,
        state: StreamState,
        actor: str,
        located: tuple[LakeTable, NativeLocation],
    ) -> TableCommit:
        try:
            commit = lake.ingest_arrow(
                self.store,
                self.artifacts,
                self.project,
                self.table,
                rows,
                actor=actor,
                commit_metadata=_delta.stream_metadata(state),
                delta_table=self.dt,
                located=located,
            )
        except Exception:
            self.dt = None  # in whatever state the failure left it: open afresh
            raise
        if self.dt is None:
            self.dt = _delta.open_table(located[1])
        return commit


class StreamCommitter:
    """Lands a stream's micro-batches exactly once; one per consumer, used from one thread.

    Args:
        store: the metadata store.
        artifacts: the artifact store holding the lake.
        settings: the lake's settings (compaction thresholds).
        stream: the stream, as defined.
        id_text: how the broker writes a message id (for the dead-letter table).
        actor: who the commits are recorded as.
        owner: the consumer holding the stream (``loopml.store.streams.claim``); checked
            before each commit, so that a consumer that lost its hold commits nothing more.
        push: gets each batch's rows before they are committed (``features.push``).
    """

    def __init__(
        self,
        store: MetadataStore,
        artifacts: ArtifactStore,
        settings: LakeSettings,
        stream: Stream,
        id_text: Callable[[Position], str],
        actor: str,
        owner: str | None = None,
        push: Callable[[pa.Table], None] | None = None,
    ) -> None:
        self.store, self.artifacts, self.settings = store, artifacts, settings
        self.push = push
        self.stream, self.actor, self.owner = stream, actor, owner
        self.id_text = id_text
        config = stream.config
        self.main = _Writer(store, artifacts, stream.project, config.table)
        self.dead = _Writer(store, artifacts, stream.project, config.dead_letter)
        self.state = StreamState(stream_id=stream.id, gen=0, done=[], messages=0, dead_letters=0)
        self.done: set[Position] = set()
        self._ranges: list[list[int]] = []
        """``encode_ids(self.done)``, kept in step with it."""
        self._duck = (
            None if config.transform is None else _sandbox.open_connection(TRANSFORM_LIMITS)
        )

    def load(self) -> StreamState:
        """Catch the metadata up with both tables' logs (a commit whose record was lost to
        a crash is recorded now), then read the stream's committed state."""
        for writer in (self.main, self.dead):
            writer.locate(self.actor)
        with self.store.session() as session:
            self.state = stream_rows.committed(session, self.stream.id)
        self.done = decode_ids(self.state.done)
        self._ranges = encode_ids(self.done)
        return self.state

    def commit(self, messages: Sequence[Message], floor: Floor | None) -> Outcome:
        """Land ``messages`` (see the module docstring); ``floor`` is the broker's ack floor.

        Raises:
            LoopmlError: storage or the database failed; nothing of the batch is acked, and
                what did commit is in ``self.done``, so a retry lands only the rest.
        """
        fresh: dict[Position, Message] = {}
        for message in messages:
            if message.id not in self.done and message.id not in fresh:
                fresh[message.id] = message
        outcome = Outcome(fresh=len(fresh), rows=0, dead=0, duplicates=len(messages) - len(fresh))
        if not fresh:
            return outcome
        self._check_hold()
        self.done = above_floor(self.done, floor)
        self._ranges = ranges_above_floor(self._ranges, floor)
        batch = list(fresh.values())
        row, loc = self.main.locate(self.actor)
        rows, kept, dead = self._rows(batch, row)
        if dead:
            self._land_dead(dead)
            outcome.dead = len(dead)
        if rows is not None and rows.num_rows:
            self._push(rows)
            try:
                outcome.version = self._land(rows, kept, (row, loc)).version
                outcome.rows = rows.num_rows
            except ValidationError as exc:  # the batch as a whole (a row-count bound)
                self._land_dead([(m, exc.message[:500]) for m in kept])
                outcome.dead += len(kept)
        # Messages a transform turned into no rows land nothing: redelivered, they would
        # again make none, so they need no record.
        return outcome

    def _check_hold(self) -> None:
        if self.owner is None:
            return
        with self.store.session() as session:
            if not stream_rows.holds(session, self.stream.id, self.owner):
                raise HoldLostError(
                    f"stream {self.stream.name!r} is held by another consumer now; this one "
                    "stops without committing"
                )

    def _rows(
        self, batch: list[Message], row: LakeTable
    ) -> tuple[pa.Table | None, list[Message], list[_decode.Dead]]:
        transform = self.stream.config.transform
        target = self.main.schema()
        rows, kept, dead = _decode.decode(batch, None if transform else target)
        if rows is None:
            return None, [], dead
        if transform is not None:
            try:
                rows = fit(self._transform(rows, transform), target)
            except _decode.BAD as exc:
                reason = f"the stream's transform failed on the batch: {str(exc)[:400]}"
                return None, [], dead + [(m, reason) for m in kept]
        if row.contract is not None and transform is None:
            rows, kept, failed = self._check(rows, kept, row)
            dead += failed
        return rows, kept, dead

    def _transform(self, rows: pa.Table, sql: str) -> pa.Table:
        assert self._duck is not None
        self._duck.register("batch", rows)
        try:
            return self._duck.execute(sql).to_arrow_table()
        finally:
            self._duck.unregister("batch")

    def _check(
        self, rows: pa.Table, kept: list[Message], row: LakeTable
    ) -> tuple[pa.Table, list[Message], list[_decode.Dead]]:
        def existing(column: str) -> pa.ChunkedArray | None:
            dataset = lake.read_dataset(self.store, self.artifacts, row.project, row.name)
            return (
                dataset.to_table(columns=[column]).column(column)
                if column in dataset.schema.names
                else None
            )

        contract = parse_contract(row.contract)
        _, good, reason = contracts.check(
            contract, rows, existing_row_count=row.row_count, existing=existing, table=row.name
        )
        bad = [i for i, ok in enumerate(good.to_pylist()) if not ok]
        if not bad:
            return rows, kept, []
        reasons = reason.to_pylist()
        failed = [(kept[i], f"contract: {reasons[i]}") for i in bad]
        bad_set = set(bad)
        return (
            rows.filter(good),
            [m for i, m in enumerate(kept) if i not in bad_set],
            failed,
        )

    def _next(self, ids: Sequence[Position], rows: int, dead: int) -> StreamState:
        return StreamState(
            stream_id=self.stream.id,
            gen=self.state.gen + 1,
            done=ranges_with(self._ranges, ids),
            messages=self.state.messages + rows + dead,
            dead_letters=self.state.dead_letters + dead,
        )

    def _advance(self, state: StreamState, ids: Sequence[Position]) -> None:
        self.state = state
        self.done.update(ids)
        self._ranges = state.done

    def _push(self, rows: pa.Table) -> None:
        """Hand the rows to ``push`` before they are committed: a crash between the two
        redelivers the batch, pushed again (a no-op) and committed; pushed after, the
        redelivery would be dropped as a duplicate, unpushed. A failure fails the commit
        (retried; the batch is never sent to the dead letters for it)."""
        if self.push is None:
            return
        try:
            self.push(rows)
        except LoopmlError as exc:
            raise LoopmlError(f"pushing to the online store failed: {exc.message}") from exc

    def _land(
        self, rows: pa.Table, kept: list[Message], located: tuple[LakeTable, NativeLocation]
    ) -> TableCommit:
        ids = [m.id for m in kept]
        state = self._next(ids, len(kept), 0)
        commit = self.main.write(rows, state, self.actor, located)
        self._advance(state, ids)
        self._maybe_compact(self.main)
        return commit

    def _land_dead(self, dead: list[_decode.Dead]) -> None:
        self._write_dead(dead, [m.id for m, _ in dead])

    def _write_dead(self, dead: list[_decode.Dead], ids: list[Position]) -> None:
        now = datetime.now(UTC)
        table = pa.table(
            {
                "stream": [self.stream.name] * len(dead),
                "message_id": [self.id_text(m.id) for m, _ in dead],
                "subject": [m.subject for m, _ in dead],
                "payload": [m.data.decode("utf-8", "replace")[:100_000] for m, _ in dead],
                "reason": [reason for _, reason in dead],
                "received_at": pa.array([now] * len(dead), pa.timestamp("us", tz="UTC")),
            },
            schema=DEAD_SCHEMA,
        )
        state = self._next(ids, 0, len(dead))
        located = self.dead.locate(self.actor)
        self.dead.write(table, state, self.actor, located)
        self._advance(state, ids)

    def _maybe_compact(self, writer: _Writer) -> None:
        # Listing a table's files costs about a small commit: look every few versions.
        if writer.dt is None or writer.dt.version() % _COMPACT_EVERY:
            return
        try:
            if housekeeping.needs_compaction(writer.dt, self.settings):
                housekeeping.maybe_compact(
                    self.store,
                    self.artifacts,
                    writer.project,
                    writer.table,
                    self.settings,
                    actor=self.actor,
                )
        except Exception:  # compaction is an optimisation; the commit stands
            log.warning("compacting %s/%s failed", writer.project, writer.table, exc_info=True)
