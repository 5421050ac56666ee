"""Stream definitions without I/O: source URLs, id ranges, the ack floor."""

from __future__ import annotations

import pytest

from loopml.core.errors import ValidationError
from loopml.core.streams import (
    NatsSource,
    RedisSource,
    StreamConfig,
    above_floor,
    dead_letter_for,
    decode_ids,
    encode_ids,
    parse_source,
)


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


def test_floor_drops_what_is_acked() -> None:
    ids = {(0, 1), (0, 2), (0, 3), (1, 0)}
    assert above_floor(ids, (0, 2)) == {(0, 3), (1, 0)}
    assert above_floor(ids, None) == ids
