"""The commit of one batch of record posts, run in a worker thread by ``RecordBatcher``.

1. Create the table's row if need be and reconcile it with its log, so that keys whose
   commit landed but was never recorded are known.
2. Claim the posts' idempotency keys (``loopml.store.ingest_keys.claim``): a landed key
   answers its post as a replay; a key another server is committing answers 409.
3. Fit each post to the table's schema on its own (a field a post never sends is null; safe
   casts), so a post that does not fit is refused alone, with the 422 of file ingest.
4. Land the rest as one commit through ``lake.ingest_arrow``, the commit carrying their keys
   in its ``commitInfo``. If that commit is refused (a ``reject`` contract), land the posts
   one by one, so that each gets its own verdict.
5. Release the keys of the posts that did not land.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
from deltalake import DeltaTable

from loopml.core.errors import ConflictError, LoopmlError, ValidationError
from loopml.core.ingest import IngestKey, RecordsCommit
from loopml.core.lake import LakeTable
from loopml.data import _delta, _tables, housekeeping, lake
from loopml.data._record_parse import RecordPost, read_typed
from loopml.data.schema import plan_cast
from loopml.settings import LakeSettings
from loopml.storage import ArtifactStore
from loopml.storage.native import NativeLocation
from loopml.store import MetadataStore, ingest_keys

log = logging.getLogger("loopml.data")

LEASE_S = 30.0
"""A key reserved longer ago than this, and not in the log, belongs to a writer that died."""
MAX_POSTS_PER_COMMIT = 1000
"""Bounds the keys one commit's log entry carries."""
_CHECK_EVERY = 8
_HINT = (
    "Send those fields with the table's types (an ISO 8601 string for a timestamp), or "
    "leave them out to send nulls"
)

Outcome = RecordsCommit | Exception


@dataclass
class BatchCommit:
    """What ``commit_batch`` did: each post's outcome, in order (its ``RecordsCommit``, or
    the error that refused it: nothing of it landed), the handle for the next batch, and
    whether the table now needs compacting."""

    outcomes: list[Outcome]
    handle: Handle | None
    compact: bool = False


@dataclass
class Handle:
    """A table's Delta log, kept open between the batches of one queue (reading a log
    afresh costs more than the commit), with the location it was opened at."""

    uri: str
    table: DeltaTable
    schema: pa.Schema | None = None
    """The table's schema after the last batch, read by the event loop's thread (the
    ``table`` itself is the commit thread's) to read the next posts with its types."""


def key_reused(key: str, rows: int, version: int | None) -> ValidationError:
    """The 422 for a key sent again with a different body."""
    where = f"landed in version {version}" if version is not None else "is being committed"
    return ValidationError(
        f"Idempotency-Key {key!r} was already used for a different body (a post of {rows} "
        f"records that {where}): send new records under a new key",
        details={"reason": "idempotency_key_reused", "key": key, "version": version},
    )


def _in_progress(key: str) -> ConflictError:
    return ConflictError(
        f"a post with Idempotency-Key {key!r} is being committed by another server; retry "
        "in a moment to get its answer",
        details={"reason": "idempotency_key_in_progress", "key": key, "retryable": True},
    )


class _Batch:
    def __init__(
        self,
        store: MetadataStore,
        artifacts: ArtifactStore,
        settings: LakeSettings,
        project: str,
        table: str,
        actor: str,
        posts: Sequence[RecordPost],
        handle: Handle | None,
    ) -> None:
        self.store, self.artifacts, self.settings = store, artifacts, settings
        self.project, self.table, self.actor = project, table, actor
        self.posts = posts
        self.handle = handle
        self.outcomes: list[Outcome | None] = [None] * len(posts)
        self.claimed: list[int] = []
        self.version_before = -1
        self.located: tuple[LakeTable, NativeLocation] | None = None
        """The table's row (reconciled) and location, for the batch's first commit only:
        after it the row is out of date."""

    def run(self) -> BatchCommit:
        try:
            self._reconcile()
            if any(post.key is not None for post in self.posts):
                self._claim()
            self._land(None if self.handle is None else _delta.arrow_schema(self.handle.table))
        except Exception as exc:
            self.handle = None  # in whatever state the failure left it: open afresh
            self.outcomes = [exc if o is None else o for o in self.outcomes]
        finally:
            self._release()
        if self.handle is not None:
            try:
                self.handle.schema = _delta.arrow_schema(self.handle.table)
            except Exception:  # only a hint for reading posts; the commit stands
                self.handle.schema = None
        outcomes = [o if o is not None else RuntimeError("no outcome") for o in self.outcomes]
        return BatchCommit(outcomes, self.handle, self._compaction_due())

    def _compaction_due(self) -> bool:
        if self.handle is None or not any(isinstance(o, RecordsCommit) for o in self.outcomes):
            return False
        # Listing the table's files costs about as much as a small commit: look once every
        # few versions (the threshold is tens of files, so a few more do not matter).
        if self.handle.table.version() // _CHECK_EVERY == self.version_before // _CHECK_EVERY:
            return False
        try:
            return housekeeping.needs_compaction(self.handle.table, self.settings)
        except LoopmlError:
            return False

    def _reconcile(self) -> None:
        """Bring the table's row (created if need be) and ``self.handle`` up to its log."""
        row, loc = _tables.located(
            self.store, self.artifacts, self.project, self.table, True, self.actor
        )
        if self.handle is not None and self.handle.uri == loc.uri:
            _delta.refresh(self.handle.table)
        else:
            dt = _delta.open_table(loc)
            self.handle = None if dt is None else Handle(loc.uri, dt)
        if self.handle is not None:
            row = _tables.reconcile(self.store, row, self.handle.table)
            self.version_before = self.handle.table.version()
        self.located = (row, loc)

    def _claim(self) -> None:
        keyed = [i for i, post in enumerate(self.posts) if post.key is not None]
        wanted = [self._key(i) for i in keyed]
        with self.store.session() as session:
            held = ingest_keys.claim(session, self.project, self.table, wanted, lease_s=LEASE_S)
        for i in keyed:
            post = self.posts[i]
            assert post.key is not None
            have = held.get(post.key)
            if have is None:
                self.claimed.append(i)
            elif have.body_sha256 != post.body_sha256:
                version = have.version if have.landed else None
                self.outcomes[i] = key_reused(post.key, have.rows, version)
            elif have.landed:
                self.outcomes[i] = RecordsCommit(
                    table=self.table, version=have.version, rows=have.rows, replayed=True
                )
            else:
                self.outcomes[i] = _in_progress(post.key)

    def _key(self, i: int) -> IngestKey:
        post = self.posts[i]
        assert post.key is not None
        return IngestKey(key=post.key, body_sha256=post.body_sha256, rows=post.records.num_rows)

    def _land(self, target: pa.Schema | None) -> None:
        fitted: dict[int, pa.Table] = {}
        for i, post in enumerate(self.posts):
            if self.outcomes[i] is not None:
                continue
            try:
                fitted[i] = fit_post(post, target)
            except ValidationError as exc:
                self.outcomes[i] = exc
                continue
            target = fitted[i].schema if target is None else target
        if not fitted:
            return
        try:
            self._commit(fitted)
        except ValidationError as exc:
            if len(fitted) == 1:
                self.outcomes[next(iter(fitted))] = exc
                return
            log.info(
                "a batch of %d posts to %s was refused; landing them one by one",
                len(fitted),
                self.table,
            )
            for i, records in fitted.items():
                try:
                    self._commit({i: records})
                except ValidationError as one:
                    self.outcomes[i] = one

    def _commit(self, fitted: dict[int, pa.Table]) -> None:
        keys = [self._key(i) for i in fitted if self.posts[i].key is not None]
        commit = lake.ingest_arrow(
            self.store,
            self.artifacts,
            self.project,
            self.table,
            pa.concat_tables(fitted.values()),
            actor=self.actor,
            commit_metadata=_delta.keys_metadata(keys),
            delta_table=None if self.handle is None else self.handle.table,
            located=self.located,
        )
        self.located = None
        for i in fitted:
            self.outcomes[i] = RecordsCommit(
                table=self.table,
                version=commit.version,
                rows=self.posts[i].records.num_rows,
                batch_rows=commit.rows_added,
            )

    def _release(self) -> None:
        lost = [
            key
            for i in self.claimed
            if not isinstance(self.outcomes[i], RecordsCommit)
            and (key := self.posts[i].key) is not None
        ]
        if not lost:
            return
        try:
            # A commit that landed but failed to be recorded must keep its keys: reconcile
            # records them first, and release drops only the keys still reserved.
            self._reconcile()
            with self.store.session() as session:
                ingest_keys.release(session, self.project, self.table, lost)
        except Exception as exc:  # best effort: the lease frees them anyway
            log.warning(
                "could not release %d idempotency keys of %s/%s (%s); they free themselves "
                "after %.0f s",
                len(lost),
                self.project,
                self.table,
                exc,
                LEASE_S,
            )


def fit_post(post: RecordPost, target: pa.Schema | None) -> pa.Table:
    """The post's records cast to ``target`` (see ``fit``); where their inferred types do
    not fit, read again with the table's types (an ISO 8601 string into a timestamp)."""
    try:
        return fit(post.records, target)
    except ValidationError:
        typed = None if target is None else read_typed(post, target)
        if typed is None:
            raise
    try:
        return fit(typed, target)
    except ValidationError:
        return fit(post.records, target)  # raises the error of the types as sent


def fit(records: pa.Table, target: pa.Schema | None) -> pa.Table:
    """``records`` cast to ``target`` (the table's schema; ``None`` for a new table).

    A field the records never carry is null, as it is for a record of the post that omits
    it, so how records are grouped into posts does not matter.

    Raises:
        ValidationError: a field that is not in the table, of a type that does not convert
            safely (``details.columns``, as for file ingest), or, for a new table, a field
            with only nulls, whose type cannot be inferred.
    """
    if target is None:
        untyped = [f.name for f in records.schema if pa.types.is_null(f.type)]
        if untyped:
            raise ValidationError(
                f"the fields {untyped} hold only nulls in the table's first records, so their "
                "type cannot be inferred: send values for them, or create the table with its "
                "columns first",
                details={
                    "columns": [{"column": n, "expected": None, "found": "null"} for n in untyped]
                },
            )
        return records
    for field in target:
        if field.name not in records.column_names and field.nullable:
            records = records.append_column(field, pa.nulls(records.num_rows, field.type))
    sample = records.slice(0, 10_000).combine_chunks().to_batches()
    plan_cast(target, records.schema, sample[0] if sample else None, _HINT)
    try:
        return records.select(target.names).cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValidationError(
            f"a value does not convert to the table's type without loss: {str(exc)[:300]}",
            details={"reason": str(exc)[:500]},
        ) from exc


def commit_batch(
    store: MetadataStore,
    artifacts: ArtifactStore,
    settings: LakeSettings,
    project: str,
    table: str,
    actor: str,
    posts: Sequence[RecordPost],
    handle: Handle | None = None,
) -> BatchCommit:
    """Land a batch of posts (with distinct keys) in ``table``; see the module docstring.

    The table is not compacted here (the posts' answers would wait for it): the result
    says when it is due, and the caller compacts it in the background.

    Args:
        handle: the table as the previous batch left it, if any; no other thread may use
            it meanwhile.
    """
    return _Batch(store, artifacts, settings, project, table, actor, posts, handle).run()
