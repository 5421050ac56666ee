"""File ingests with an ``Idempotency-Key``: a retried upload lands once (issue 51).

The mechanism is record posts' (``loopml.store.ingest_keys``, ``loopml.data._delta``'s
``keys_metadata``): the key is reserved before the write, the commit carries it in its
``commitInfo``, and the transaction that records the commit, or the reconcile after a
crash between the two, marks it landed. A retry after a crash or a lost answer first
reconciles the table, then finds the key landed and answers that commit again.

A file is streamed into the table as it arrives, so its bytes cannot be compared before
the write: the key stands for the file (``loopml ingest`` derives it from the file's
SHA-256 and the target), and the upload's options (format, mode, declared columns,
strictness) are what tells a retry from a different upload under the same key.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence

from loopml.core.clock import utcnow
from loopml.core.errors import ConflictError, LoopmlError, ValidationError
from loopml.core.ingest import IngestKey, validate_idempotency_key
from loopml.core.lake import LakeTable, TableCommit
from loopml.data import _delta, _tables
from loopml.storage import ArtifactStore
from loopml.storage.native import NativeLocation
from loopml.store import MetadataStore, ingest_keys

log = logging.getLogger("loopml.data")

LEASE_S = 300.0
"""A file's key reserved longer ago than this, and not in the log, belongs to a writer that
died: a retry takes it over. Longer than record posts' lease, as an upload streams."""

Write = Callable[[Mapping[str, str], tuple[LakeTable, NativeLocation]], TableCommit]
"""Writes the file to the table located so, its commit carrying these ``commitInfo``
entries (``lake.ingest_arrow``'s ``commit_metadata`` and ``located``)."""


def upload_options(fmt: str | None, mode: str, strict: bool, columns: Sequence[str]) -> list[str]:
    """An upload's options as ``ingest_once`` compares them (``columns``: ``NAME:TYPE``)."""
    return [fmt or "sniffed", mode, f"strict={strict}", *sorted(columns)]


def fingerprint(options: Sequence[str]) -> str:
    """What a retry must repeat besides the key: the upload's options, hashed."""
    return hashlib.sha256("\n".join(["file", *options]).encode()).hexdigest()


def ingest_once(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    table: str,
    key: str,
    options: Sequence[str],
    *,
    actor: str,
    write: Write,
) -> TableCommit:
    """Run ``write`` unless an upload under ``key`` already landed in the table; then answer
    that commit again (``replayed``), writing nothing.

    Raises:
        ValidationError: a bad key, or a key already used with other options.
        ConflictError: an upload under the key is being committed now (retryable).
    """
    validate_idempotency_key(key)
    want = IngestKey(key=key, body_sha256=fingerprint(options), rows=0)
    row, loc = _located(store, artifacts, project, table, actor)
    with store.session() as session:
        held = ingest_keys.claim(session, project, table, [want], lease_s=LEASE_S).get(key)
    if held is not None:
        return _answer(store, artifacts, row, want, held)
    try:
        return write(_delta.keys_metadata([want]), (row, loc))
    except BaseException:
        _release(store, artifacts, project, table, key)
        raise


def _located(
    store: MetadataStore, artifacts: ArtifactStore, project: str, table: str, actor: str
) -> tuple[LakeTable, NativeLocation]:
    # Reconciled first, so a key whose commit landed but was never recorded is known.
    row, loc = _tables.located(store, artifacts, project, table, True, actor)
    dt = _delta.open_table(loc)
    return (row if dt is None else _tables.reconcile(store, row, dt)), loc


def _answer(
    store: MetadataStore, artifacts: ArtifactStore, row: LakeTable, want: IngestKey, held: IngestKey
) -> TableCommit:
    if held.body_sha256 != want.body_sha256:
        where = f"landed in version {held.version}" if held.landed else "is being committed"
        raise ValidationError(
            f"Idempotency-Key {want.key!r} was already used for another upload (one that "
            f"{where}, with other options: format, mode, columns or strict): send a "
            "different file or options under a new key",
            details={"reason": "idempotency_key_reused", "key": want.key},
        )
    if not held.landed:
        raise ConflictError(
            f"an upload with Idempotency-Key {want.key!r} is being committed now; retry in a "
            "moment to get its answer",
            details={"reason": "idempotency_key_in_progress", "key": want.key, "retryable": True},
        )
    _, loc = _tables.locate(store, artifacts, row.project, row.name, pending=True)
    dt = _delta.open_table(loc)
    assert dt is not None, "a key landed in a version of the table"
    recent = _delta.history(dt, dt.version() - held.version + 1)
    commit = next((c for c in recent if c.version == held.version), None)
    if commit is None:  # its log entry expired (the log's retention): the version is known
        return TableCommit(
            version=held.version, timestamp=utcnow(), operation="WRITE", replayed=True
        )
    return commit.model_copy(update={"replayed": True})


def _release(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    table: str,
    key: str,
) -> None:
    try:
        # A commit that landed but failed to be recorded keeps its key: reconcile first.
        row, loc = _tables.locate(store, artifacts, project, table, pending=True)
        dt = _delta.open_table(loc)
        if dt is not None:
            _tables.reconcile(store, row, dt)
        with store.session() as session:
            ingest_keys.release(session, project, table, [key])
    except LoopmlError as exc:  # gone with its half-made table, or freed by the lease
        log.debug("the Idempotency-Key of a failed upload to %s/%s: %s", project, table, exc)
