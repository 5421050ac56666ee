"""Stream definitions without I/O: source URLs, streams files, id ranges, the ack floor."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopml.core.errors import ValidationError
from loopml.core.stream_sources import KafkaSource, NatsSource, RedisSource, parse_source
from loopml.core.streams import (
    Floor,
    StreamConfig,
    above_floor,
    dead_letter_for,
    decode_ids,
    encode_ids,
    parse_stream_specs,
    ranges_above_floor,
    ranges_with,
    under_floor,
)
from loopml.core.yamltext import load_yaml


def test_nats_source_needs_a_subject() -> None:
    assert parse_source("nats://127.0.0.1:4222", "orders.*") == NatsSource(
        url="nats://127.0.0.1:4222", subject="orders.*"
    )
    assert parse_source("nats://localhost", "orders.>").url == "nats://localhost:4222"
    with pytest.raises(ValidationError, match="needs a subject"):
        parse_source("nats://127.0.0.1:4222")
    with pytest.raises(ValidationError, match="needs a subject"):
        parse_source("nats://127.0.0.1:4222", "orders..x")


def test_redis_source_takes_its_key_from_the_query_or_the_subject() -> None:
    assert parse_source("redis://127.0.0.1:6379/2?stream=orders") == RedisSource(
        url="redis://127.0.0.1:6379/2", key="orders"
    )
    assert parse_source("redis://127.0.0.1", "k").url == "redis://127.0.0.1:6379/0"
    with pytest.raises(ValidationError, match="stream key"):
        parse_source("redis://127.0.0.1:6379/0")
    with pytest.raises(ValidationError, match="database number"):
        parse_source("redis://127.0.0.1:6379/x?stream=k")


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:4222", "file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO", "nats://"],
)
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="unsupported stream source"):
        parse_source(url, "a")


def test_credentials_in_the_url_are_refused() -> None:
    with pytest.raises(ValidationError, match="credentials"):
        parse_source("redis://user:secret@127.0.0.1:6379/0?stream=k")


def test_dead_letter_table_differs_and_fits() -> None:
    assert dead_letter_for("orders") == "orders__dead"
    with pytest.raises(ValidationError, match="too long"):
        dead_letter_for("o" * 60)
    source = parse_source("nats://127.0.0.1", "a")
    with pytest.raises(ValidationError, match="must differ"):
        StreamConfig(source=source, table="orders", dead_letter="orders")


def test_ids_round_trip_as_ranges() -> None:
    ids = {(0, n) for n in range(1, 1001)} | {(0, 2000), (5, 0), (5, 1), (6, 0)}
    ranges = encode_ids(ids)
    assert ranges == [[0, 1, 1000], [0, 2000, 2000], [5, 0, 1], [6, 0, 0]]
    assert decode_ids(ranges) == ids
    assert encode_ids([]) == []


POSITIONS = st.sets(st.tuples(st.integers(0, 3), st.integers(0, 40)), max_size=60)
FLOORS = st.one_of(
    st.none(),
    st.tuples(st.integers(-1, 4), st.integers(-1, 41)),
    st.dictionaries(st.integers(0, 4), st.integers(-1, 41), max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(
    held=POSITIONS, added=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40))), floor=FLOORS
)
def test_ranges_kept_in_step_equal_the_ranges_of_the_ids(
    held: set[tuple[int, int]], added: list[tuple[int, int]], floor: Floor | None
) -> None:
    # What a stream's committer keeps range by range (pruned by the floor, then grown by a
    # batch, in any order, repeats included) is what encoding the set of ids gives.
    ranges = encode_ids(held)
    assert ranges_above_floor(ranges, floor) == encode_ids(above_floor(held, floor))
    assert ranges_with(ranges, added) == encode_ids(held | set(added))
    assert ranges_with([], []) == []
    assert ranges == encode_ids(held)  # the inputs are left as they were


def test_floor_drops_what_is_acked() -> None:
    ids = {(0, 1), (0, 2), (0, 3), (1, 0)}
    assert above_floor(ids, (0, 2)) == {(0, 3), (1, 0)}
    assert above_floor(ids, None) == ids


ORDERS = """\
name: orders-in
source: nats://127.0.0.1:4222
subject: orders.*
table: orders
batch_ms: 100
push: [order_stats]
"""


def test_a_streams_file_holds_one_stream_or_a_list() -> None:
    (one,) = parse_stream_specs(load_yaml(ORDERS, "streams file"))
    assert (one.name, one.subject, one.batch_ms, one.push) == (
        "orders-in",
        "orders.*",
        100,
        ["order_stats"],
    )
    assert one.batch_rows is None  # left to the stream's default
    text = """\
streams:
  - {name: a, source: "redis://127.0.0.1:6379/0?stream=k", table: t}
  - {name: b, source: "nats://127.0.0.1", subject: x.>, table: u, transform: SELECT 1}
"""
    assert [s.name for s in parse_stream_specs(load_yaml(text, "f"))] == ["a", "b"]
    listed = "- {name: c, source: nats://h, subject: s, table: t}"
    assert [s.name for s in parse_stream_specs(load_yaml(listed, "f"))] == ["c"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (ORDERS + "batchrows: 5\n", "unknown field 'batchrows'; a stream has name, source"),
        ("streams:\n  - {name: a, source: s, table: t, colour: red}", r"streams\[0\] \(a\)"),
        ("name: a\nsource: nats://h\n", "table: Field required"),
        (ORDERS.replace("batch_ms: 100", "batch_ms: 0"), "batch_ms: Input should be greater"),
        (ORDERS.replace("batch_ms: 100", "batch_ms: lots"), "batch_ms: Input should be a valid"),
        ("streams: []", "a list of 1 to"),
        ("just text", "expected one stream"),
        ("streams: [{name: a, source: s, table: t}]\nextra: 1", "only the key 'streams'"),
        (
            "streams: [{name: a, source: s, table: t}, {name: a, source: s, table: u}]",
            "more than once",
        ),
        ("streams: [{name: a, source: s, table: t}, 5]", r"streams\[1\]: expected a mapping"),
    ],
)
def test_a_bad_streams_file_names_the_entry_and_field(text: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        parse_stream_specs(load_yaml(text, "streams file"))


def test_yaml_tags_are_never_run() -> None:
    with pytest.raises(ValidationError, match="not valid YAML"):
        load_yaml("!!python/object/apply:os.system ['true']", "streams file")


def test_a_kafka_source_names_its_topic_and_carries_only_settings_that_are_not_secret() -> None:
    assert parse_source("kafka://127.0.0.1:9092", "orders") == KafkaSource(
        url="kafka://127.0.0.1:9092", topic="orders"
    )
    tls = parse_source("kafka://broker?topic=o.v1&security.protocol=SSL&ssl.ca.location=/ca")
    assert tls == KafkaSource(
        url="kafka://broker:9092",
        topic="o.v1",
        options={"security.protocol": "SSL", "ssl.ca.location": "/ca"},
    )
    with pytest.raises(ValidationError, match="topic"):
        parse_source("kafka://127.0.0.1:9092")
    with pytest.raises(ValidationError, match="topic"):
        parse_source("kafka://127.0.0.1:9092", "no/slash")
    with pytest.raises(ValidationError, match="never stored"):
        parse_source("kafka://b:9092?sasl.password=x", "t")
    with pytest.raises(ValidationError, match="does not take 'debug'"):
        parse_source("kafka://b:9092?debug=all", "t")


def test_a_floor_per_partition_drops_each_partitions_acked_ids() -> None:
    ids = {(0, 5), (0, 6), (1, 2), (2, 0)}
    assert above_floor(ids, {0: 5, 1: 2}) == {(0, 6), (2, 0)}
    assert under_floor((1, 2), {1: 2})
    assert not under_floor((2, 0), {1: 2})
    assert under_floor((0, 2), (0, 2))
    assert not under_floor((0, 3), (0, 2))
    assert not under_floor((0, 0), None)
