"""Record ingest on real Delta tables: reading posts, the group commit, idempotency keys and
crash recovery, on SQLite and PostgreSQL, a local folder and moto's S3 server."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import orjson
import pyarrow as pa
import pytest

from loopml.core import layout
from loopml.core.errors import (
    ConflictError,
    ServiceUnavailableError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from loopml.core.ingest import IngestKey, RecordsCommit
from loopml.core.lake import ColumnInfo
from loopml.data import _delta, _tables, lake, validation
from loopml.data.records import RecordBatcher, RecordPost, read_post
from loopml.settings import LakeSettings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, ingest_keys, projects

ACTOR = "tester"
NDJSON = "application/x-ndjson"
T = TypeVar("T")


def _body(*records: dict[str, Any]) -> bytes:
    return b"\n".join(orjson.dumps(r) for r in records)


def _post(*records: dict[str, Any], key: str | None = None) -> RecordPost:
    return read_post(_body(*records), NDJSON, key=key, max_records=1000)


def _run(
    store: MetadataStore,
    artifacts: ArtifactStore,
    scenario: Callable[[RecordBatcher], Awaitable[T]],
    **settings: Any,
) -> T:
    """Run ``scenario`` against a batcher in a fresh event loop, closing it afterwards."""
    knobs = {"records_batch_ms": 30.0, **settings}

    async def main() -> T:
        batcher = RecordBatcher(store, artifacts, LakeSettings(**knobs))
        try:
            return await asyncio.wait_for(scenario(batcher), timeout=60)
        finally:
            await batcher.close()

    return asyncio.run(main())


def _append(batcher: RecordBatcher, post: RecordPost) -> Awaitable[RecordsCommit]:
    return batcher.append("default", "events", post, actor=ACTOR)


def _ids(store: MetadataStore, artifacts: ArtifactStore) -> list[int]:
    data = lake.read_dataset(store, artifacts, "default", "events").to_table(columns=["id"])
    return sorted(data.column("id").to_pylist())


# ---------------------------------------------------------------- reading posts


def test_a_json_array_and_ndjson_read_to_the_same_types() -> None:
    records = [{"id": 1, "at": "2024-01-01T10:00:00", "tags": ["a"]}, {"id": 2, "x": 1.5}]
    array = read_post(orjson.dumps(records), "application/json; charset=utf-8", max_records=10)
    lines = read_post(_body(*records), "application/jsonl", max_records=10)
    assert array.records.equals(lines.records)
    assert array.records.schema.field("at").type == pa.timestamp("s")
    assert array.records.column("x").to_pylist() == [None, 1.5]
    assert array.body_sha256 != lines.body_sha256


@pytest.mark.parametrize(
    ("body", "media", "message"),
    [
        (b'{"id": 1}\n\n{"id": }\n', NDJSON, r"record 1 \(line 3\) is not valid"),
        (b'{"id": 1}\n[1, 2]\n', NDJSON, r"record 1 \(line 2\) is not valid: it is not a JSON obj"),
        (b'{"id": 1}\n"text"\n', NDJSON, "record 1 .* not a JSON object"),
        (b'[{"id": 1}, 5]', "application/json", "record 1 is a JSON number, expected an object"),
        (b'{"id": 1}', "application/json", "expected a JSON array of objects, got a JSON object"),
        (b'[{"id": 1},', "application/json", "the body is not valid JSON"),
        (b"  \n ", NDJSON, "the body holds no records"),
        (b"[]", "application/json", "the body holds no records"),
        (b"{}\n{}\n", NDJSON, "the records have no fields"),
        (b'{"id": 1, "ID": 2}\n', NDJSON, "repeated column name"),
        (b'{"id": "\xff"}\n', NDJSON, "not UTF-8"),
        (b'{"id": 1, "meta": {}}\n', NDJSON, "'meta' holds an empty object"),
    ],
)
def test_a_malformed_post_is_refused_with_what_and_where(
    body: bytes, media: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        read_post(body, media, max_records=10)


def test_the_media_type_the_record_count_and_the_key_are_checked() -> None:
    with pytest.raises(UnsupportedMediaTypeError, match="application/x-ndjson"):
        read_post(b"id\n1\n", "text/csv", max_records=10)
    with pytest.raises(ValidationError, match="more than the limit of 2"):
        read_post(_body({"id": 1}, {"id": 2}, {"id": 3}), NDJSON, max_records=2)
    for bad in ("", "has space", "x" * 201, "é"):
        with pytest.raises(ValidationError, match="invalid Idempotency-Key"):
            read_post(_body({"id": 1}), NDJSON, key=bad, max_records=10)
    assert read_post(_body({"id": 1}), NDJSON, key="x" * 200, max_records=10).key == "x" * 200


# ---------------------------------------------------------------- idempotency


def test_a_post_retried_three_times_with_one_key_lands_once(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    async def scenario(batcher: RecordBatcher) -> list[RecordsCommit]:
        return [await _append(batcher, _post({"id": 1}, {"id": 2}, key="k-1")) for _ in range(4)]

    first, *retries = _run(store, artifacts, scenario)
    assert (first.version, first.rows, first.replayed) == (0, 2, False)
    assert [(r.version, r.rows, r.replayed) for r in retries] == [(0, 2, True)] * 3
    assert lake.get_table(store, artifacts, "default", "events").version == 0
    assert _ids(store, artifacts) == [1, 2]


def test_concurrent_retries_with_one_key_land_once(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    async def scenario(batcher: RecordBatcher) -> list[RecordsCommit]:
        await _append(batcher, _post({"id": 0}))
        post = _post({"id": 1}, {"id": 2}, key="k-1")
        return list(await asyncio.gather(*[_append(batcher, post) for _ in range(4)]))

    answers = _run(store, artifacts, scenario, records_batch_ms=200.0)
    assert {a.version for a in answers} == {1}
    assert sorted(a.replayed for a in answers) == [False, True, True, True]
    assert _ids(store, artifacts) == [0, 1, 2]
    assert lake.get_table(store, artifacts, "default", "events").version == 1


def test_a_key_reused_for_another_body_is_refused_and_lands_nothing(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    async def scenario(batcher: RecordBatcher) -> ValidationError:
        await _append(batcher, _post({"id": 1}, key="k-1"))
        with pytest.raises(ValidationError) as later:
            await _append(batcher, _post({"id": 2}, key="k-1"))
        return later.value

    refused = _run(store, artifacts, scenario)
    assert "already used for a different body" in refused.message
    assert refused.details["version"] == 0
    assert _ids(store, artifacts) == [1]


def test_a_key_reused_while_its_post_waits_is_refused(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    async def scenario(batcher: RecordBatcher) -> list[RecordsCommit | BaseException]:
        first = asyncio.ensure_future(_append(batcher, _post({"id": 1}, key="k-1")))
        await asyncio.sleep(0)
        other = _append(batcher, _post({"id": 2}, key="k-1"))
        return list(await asyncio.gather(first, other, return_exceptions=True))

    landed, refused = _run(store, artifacts, scenario, records_batch_ms=200.0)
    assert isinstance(landed, RecordsCommit)
    assert isinstance(refused, ValidationError)
    assert "already used for a different body" in refused.message
    assert _ids(store, artifacts) == [1]


def _commit_behind_the_store(
    store: MetadataStore, artifacts: ArtifactStore, post: RecordPost, key: IngestKey
) -> None:
    """A Delta commit carrying ``key``, never recorded: a server that died in between."""
    with store.session() as session:
        project_id = projects.get(session, "default").id
    table = lake.get_table(store, artifacts, "default", "events")
    loc = artifacts.native_location(layout.lake_table_prefix(project_id, table.id))
    _delta.write(loc, post.records.to_reader(), "append", metadata=_delta.keys_metadata([key]))


def test_a_key_whose_commit_was_never_recorded_is_known_after_reconcile(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    post = _post({"id": 1}, {"id": 2}, key="k-1")
    landed = IngestKey(key="k-1", body_sha256=post.body_sha256, rows=2)

    async def scenario(batcher: RecordBatcher) -> RecordsCommit:
        await _append(batcher, _post({"id": 0}))
        _commit_behind_the_store(store, artifacts, post, landed)
        with store.session() as session:
            assert ingest_keys.find(session, "default", "events", ["k-1"]) == {}
        return await _append(batcher, post)

    retry = _run(store, artifacts, scenario)
    assert (retry.version, retry.rows, retry.replayed) == (1, 2, True)
    assert _ids(store, artifacts) == [0, 1, 2]
    with store.session() as session:
        found = ingest_keys.find(session, "default", "events", ["k-1"])
    assert found["k-1"].version == 1


def test_a_commit_recorded_past_an_unrecorded_one_records_its_keys_too(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    """A writer that reconciled before another died mid-commit records that commit's keys
    with its own, so the row never moves past a key it does not know."""
    post = _post({"id": 1}, key="k-1")

    async def first(batcher: RecordBatcher) -> None:
        await _append(batcher, _post({"id": 0}))

    _run(store, artifacts, first)
    row, loc = _tables.locate(store, artifacts, "default", "events")
    dt = _delta.open_table(loc)
    assert dt is not None
    assert row.version == dt.version() == 0
    landed = IngestKey(key="k-1", body_sha256=post.body_sha256, rows=1)
    _commit_behind_the_store(store, artifacts, post, landed)
    commit_id = _delta.write(loc, pa.table({"id": [2]}).to_reader(), "append", table=dt)
    _tables.record(store, row, loc, commit_id, "append", ACTOR, dt)
    with store.session() as session:
        assert ingest_keys.find(session, "default", "events", ["k-1"])["k-1"].version == 1

    async def retry(batcher: RecordBatcher) -> RecordsCommit:
        return await _append(batcher, post)

    assert _run(store, artifacts, retry).replayed
    assert _ids(store, artifacts) == [0, 1, 2]


def test_a_key_another_server_is_committing_gets_409_until_its_lease_ends(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    post = _post({"id": 1}, key="k-1")
    reserved = IngestKey(key="k-1", body_sha256=post.body_sha256, rows=1)

    async def scenario(batcher: RecordBatcher) -> None:
        await _append(batcher, _post({"id": 0}))
        with store.session() as session:
            assert ingest_keys.claim(session, "default", "events", [reserved], lease_s=30) == {}
        with pytest.raises(ConflictError, match="being committed by another server"):
            await _append(batcher, post)

    _run(store, artifacts, scenario)
    with store.session() as session:  # that server died: once the lease is over, it is free
        assert ingest_keys.claim(session, "default", "events", [reserved], lease_s=0) == {}
    assert _ids(store, artifacts) == [0]


# ---------------------------------------------------------------- batching


def test_concurrent_posts_share_commits_and_every_record_lands_once(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    async def scenario(batcher: RecordBatcher) -> list[RecordsCommit]:
        posts = [_post({"id": 2 * i}, {"id": 2 * i + 1}, key=f"k-{i}") for i in range(30)]
        return list(await asyncio.gather(*[_append(batcher, p) for p in posts]))

    answers = _run(store, artifacts, scenario, records_batch_ms=100.0)
    versions = {a.version for a in answers}
    assert len(versions) < 30
    assert lake.get_table(store, artifacts, "default", "events").version == max(versions)
    assert _ids(store, artifacts) == list(range(60))
    assert sum(a.batch_rows or 0 for a in answers if a.batch_rows) >= 60


def test_a_commit_starts_as_soon_as_enough_rows_wait(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    async def scenario(batcher: RecordBatcher) -> float:
        started = time.monotonic()
        await _append(batcher, _post(*[{"id": i} for i in range(10)]))
        return time.monotonic() - started

    assert _run(store, artifacts, scenario, records_batch_rows=10, records_batch_ms=60_000) < 30


def test_a_commit_starts_at_the_latest_after_the_wait(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    async def scenario(batcher: RecordBatcher) -> list[RecordsCommit]:
        first = asyncio.ensure_future(_append(batcher, _post({"id": 1})))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(_append(batcher, _post({"id": 2})))
        return list(await asyncio.gather(first, second))

    first, second = _run(store, artifacts, scenario, records_batch_ms=400.0)
    assert first.version == second.version == 0  # both waited for the timer: one commit
    assert first.batch_rows == second.batch_rows == 2


def test_a_commit_starts_once_the_posts_of_the_last_round_are_back(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    """Three clients in lockstep: after a first round, the commit starts when the third post
    arrives, without waiting for the timer (a minute here) or for enough rows."""

    async def round_of(batcher: RecordBatcher, size: int, first: int) -> set[int]:
        posts = [_post(*[{"id": first + 10 * c + i} for i in range(size)]) for c in range(3)]
        answers = await asyncio.gather(*[_append(batcher, p) for p in posts])
        return {a.version for a in answers}

    async def scenario(batcher: RecordBatcher) -> list[set[int]]:
        return [await round_of(batcher, 2, 0), await round_of(batcher, 1, 100)]

    rounds = _run(store, artifacts, scenario, records_batch_rows=6, records_batch_ms=60_000)
    assert rounds == [{0}, {1}]
    assert len(_ids(store, artifacts)) == 9


def test_posts_beyond_the_backlog_get_503_and_the_rest_land(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    async def scenario(batcher: RecordBatcher) -> list[RecordsCommit | BaseException]:
        posts = [_append(batcher, _post({"id": i})) for i in range(30)]
        return list(await asyncio.gather(*posts, return_exceptions=True))

    answers = _run(store, artifacts, scenario, records_batch_rows=1)
    refused = [a for a in answers if isinstance(a, ServiceUnavailableError)]
    landed = [i for i, a in enumerate(answers) if isinstance(a, RecordsCommit)]
    assert refused
    assert all(a.details["retryable"] for a in refused)
    assert len(landed) + len(refused) == 30
    assert _ids(store, artifacts) == landed


def test_closing_commits_the_posts_still_waiting(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    async def scenario(batcher: RecordBatcher) -> RecordsCommit:
        waiting = asyncio.ensure_future(_append(batcher, _post({"id": 1}, {"id": 2})))
        await asyncio.sleep(0.1)
        assert not waiting.done()  # the timer is a minute away
        await batcher.close()
        with pytest.raises(ServiceUnavailableError, match="shutting down"):
            await _append(batcher, _post({"id": 3}))
        return await waiting

    landed = _run(store, artifacts, scenario, records_batch_ms=60_000)
    assert (landed.version, landed.rows) == (0, 2)
    assert _ids(store, artifacts) == [1, 2]


def test_a_burst_over_many_tables_keeps_a_bounded_number_of_logs_open(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    async def scenario(batcher: RecordBatcher) -> list[bool]:
        for n in range(40):  # the first post creates the table, the second keeps its log
            for _ in range(2):
                await batcher.append("default", f"t{n}", _post({"id": n}), actor=ACTOR)
        return [batcher.schema_hint("default", f"t{n}") is not None for n in range(40)]

    kept = _run(store, artifacts, scenario, records_batch_ms=0.0)
    # The oldest idle tables' logs were let go; the latest are kept for their next posts.
    assert not any(kept[:7])
    assert all(kept[-32:])


def test_a_table_fed_by_records_is_compacted_in_the_background(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    async def scenario(batcher: RecordBatcher) -> None:
        for i in range(10):
            await _append(batcher, _post({"id": i}))

    _run(store, artifacts, scenario, compact_min_files=4)
    operations = [c.operation for c in lake.history(store, artifacts, "default", "events")]
    assert "OPTIMIZE" in operations
    assert operations.count("WRITE") == 10
    assert _ids(store, artifacts) == list(range(10))


# ---------------------------------------------------------------- one post's verdict


def test_a_post_that_does_not_fit_fails_alone(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    seed = pa.table({"id": [0], "name": ["a"]})
    lake.ingest_arrow(store, artifacts, "default", "events", seed, actor=ACTOR)

    async def scenario(batcher: RecordBatcher) -> list[RecordsCommit | BaseException]:
        good = _post({"id": 1}, {"id": 2, "name": "b"})  # a field never sent is null
        bad = _post({"id": "three"})
        return list(
            await asyncio.gather(
                _append(batcher, good), _append(batcher, bad), return_exceptions=True
            )
        )

    landed, refused = _run(store, artifacts, scenario, records_batch_ms=200.0)
    assert isinstance(landed, RecordsCommit)
    assert (landed.version, landed.batch_rows) == (1, 2)
    assert isinstance(refused, ValidationError)
    assert refused.details["columns"][0]["column"] == "id"
    assert refused.details["columns"][0]["rows"] == [{"row": 0, "value": "three"}]
    assert _ids(store, artifacts) == [0, 1, 2]


def test_a_reject_contract_refuses_only_the_offending_post(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    seed = pa.table({"id": [0], "amount": [1.0]})
    lake.ingest_arrow(store, artifacts, "default", "events", seed, actor=ACTOR)
    rules = {"columns": {"amount": {"min": 0}}, "on_fail": "reject"}
    validation.set_contract(store, "default", "events", rules, actor=ACTOR)

    async def scenario(batcher: RecordBatcher) -> list[RecordsCommit | BaseException]:
        posts = [
            _post({"id": 1, "amount": 2.0}, key="good-1"),
            _post({"id": 2, "amount": -5.0}, key="bad"),
            _post({"id": 3, "amount": 3.0}, key="good-2"),
        ]
        return list(
            await asyncio.gather(*[_append(batcher, p) for p in posts], return_exceptions=True)
        )

    good, bad, other = _run(store, artifacts, scenario, records_batch_ms=200.0)
    assert isinstance(good, RecordsCommit)
    assert isinstance(other, RecordsCommit)
    assert {good.version, other.version} == {1, 2}  # the shared commit was refused: one each
    assert isinstance(bad, ValidationError)
    assert bad.details["report"]["rows_failed"] == 1
    assert _ids(store, artifacts) == [0, 1, 3]
    with store.session() as session:  # the refused post's key is free for a fixed retry
        assert sorted(ingest_keys.find(session, "default", "events", ["good-1", "bad"])) == [
            "good-1"
        ]


def test_iso_strings_land_in_a_timestamp_column(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    columns = [ColumnInfo(name="id", type="int64"), ColumnInfo(name="at", type="timestamp[us]")]
    lake.create_table(store, artifacts, "default", "events", columns=columns, actor=ACTOR)

    async def scenario(batcher: RecordBatcher) -> RecordsCommit:
        with pytest.raises(ValidationError, match="'at' expected timestamp"):
            await _append(batcher, _post({"id": 1, "at": "not a time"}))
        return await _append(batcher, _post({"id": 1, "at": "2024-01-01T10:00:00.250"}))

    assert _run(store, artifacts, scenario).version == 1
    data = lake.read_dataset(store, artifacts, "default", "events").to_table()
    assert data.column("at").to_pylist() == [datetime(2024, 1, 1, 10, 0, 0, 250_000)]


def test_a_new_table_needs_a_type_for_every_field(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    async def scenario(batcher: RecordBatcher) -> RecordsCommit:
        with pytest.raises(ValidationError, match=r"\['note'\] hold only nulls"):
            await _append(batcher, _post({"id": 1, "note": None}))
        return await _append(batcher, _post({"id": 1, "note": None}, {"id": 2, "note": "x"}))

    assert _run(store, artifacts, scenario).version == 0
    assert _ids(store, artifacts) == [1, 2]


def test_the_body_hash_is_of_the_bytes_sent() -> None:
    body = _body({"id": 1})
    assert read_post(body, NDJSON, max_records=1).body_sha256 == hashlib.sha256(body).hexdigest()


def test_a_post_read_with_the_table_schema_matches_one_read_without() -> None:
    """The schema hint only speeds reading: where the records do not parse with its types,
    they are read as without it, and the schema check refuses them the same way."""
    schema = pa.schema([("id", pa.int64()), ("at", pa.timestamp("s")), ("x", pa.float64())])
    body = _body({"id": 1, "at": "2024-05-01T10:00:00", "x": 2}, {"id": 2, "extra": True})
    hinted = read_post(body, NDJSON, max_records=10, schema=schema).records
    assert hinted.schema.field("at").type == pa.timestamp("s")
    assert hinted.schema.field("x").type == pa.float64()  # 2 read as a double
    assert hinted.column("extra").to_pylist() == [None, True]  # kept: the check refuses it
    wrong = _body({"id": "one", "at": "2024-05-01T10:00:00"})
    plain = read_post(wrong, NDJSON, max_records=10)
    assert read_post(wrong, NDJSON, max_records=10, schema=schema).records == plain.records
    strict = pa.schema([pa.field("id", pa.int64(), nullable=False)])
    assert read_post(
        _body({"x": 1}), NDJSON, max_records=10, schema=strict
    ).records.column_names == ["x"]
