"""Streams as the rest of loopml sees them: a source (``loopml.core.stream_sources``), a table.

A ``Stream`` consumes a NATS JetStream subject, a Redis stream key or a Kafka topic into a
lake table in micro-batches. Which messages a stream has committed is its ``done`` set: the
ids of the messages whose rows (or dead letters) landed, as ranges, kept only above the broker's ack
floor (below it nothing is ever delivered again). Each commit carries the whole set in its
Delta ``commitInfo`` and records it on the stream's row in the transaction that records the
commit, so a message redelivered after a crash is recognised and dropped. No I/O here.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from loopml.core.errors import NotFoundError, ValidationError
from loopml.core.features import validate_view_name
from loopml.core.lake import TABLE_NAME_PATTERN, validate_table_name
from loopml.core.stream_sources import AnySource

STREAM_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
MAX_TRANSFORM_CHARS = 20_000
DEAD_LETTER_SUFFIX = "__dead"
Source = Annotated[AnySource, Field(discriminator="type")]
Position = tuple[int, int]
"""A message's place in its stream, ordered: ``(0, sequence)`` for JetStream,
``(milliseconds, sequence)`` for a Redis stream id, ``(partition, offset)`` for Kafka."""
Floor = Position | Mapping[int, int]
"""Where a source's acks stand: one position for a stream with one order (JetStream,
Redis), or per major (a Kafka partition) the highest minor (offset) at or below which all
are acked, since one position cannot describe several partitions; a major absent from the
mapping has no known floor."""


def validate_stream_name(name: str) -> str:
    """Return ``name`` if it is a valid stream name, else raise ``ValidationError``."""
    if not isinstance(name, str) or not STREAM_NAME_PATTERN.fullmatch(name):
        raise ValidationError(
            f"invalid stream name {str(name)[:80]!r}: expected a lowercase letter followed by "
            "up to 62 lowercase letters, digits, '_' or '-' (for example 'orders-in')",
            details={"field": "name", "pattern": STREAM_NAME_PATTERN.pattern},
        )
    return name


def dead_letter_for(table: str) -> str:
    """The default dead-letter table of ``table``: ``<table>__dead``."""
    name = table + DEAD_LETTER_SUFFIX
    if not TABLE_NAME_PATTERN.fullmatch(name):
        raise ValidationError(
            f"table {table!r} is too long for the default dead-letter table {name!r}: name one "
            "with --dead-letter",
            details={"field": "dead_letter"},
        )
    return name


class StreamConfig(BaseModel):
    """What a stream is asked to do; everything but ``paused`` is fixed at creation."""

    model_config = ConfigDict(extra="forbid")
    source: Source
    table: str
    dead_letter: str
    transform: str | None = Field(
        default=None,
        max_length=MAX_TRANSFORM_CHARS,
        description="DuckDB SQL run on each micro-batch, which it reads as the table `batch`.",
    )
    batch_rows: int = Field(default=20_000, ge=1, le=1_000_000)
    batch_ms: int = Field(default=500, ge=1, le=600_000)
    redeliver_s: int = Field(
        default=60,
        ge=1,
        le=86_400,
        description="Seconds after which a message fetched and not acknowledged is delivered "
        "again (a consumer that died): JetStream's ack_wait; for Redis, how long an entry "
        "stays pending with another consumer before it is claimed; for Kafka, the "
        "max.poll.interval.ms after which a consumer that stopped fetching leaves the group "
        "and its partitions move.",
    )

    push: list[str] = Field(
        default_factory=list,
        max_length=10,
        description="Feature views (over this stream's table) whose online store gets each "
        "micro-batch's newest values per entity as it commits.",
    )

    def model_post_init(self, _context: object) -> None:
        for view in self.push:
            validate_view_name(view)
        if len(set(self.push)) != len(self.push):
            raise ValidationError(
                f"push names a feature view twice: {self.push}", details={"field": "push"}
            )
        validate_table_name(self.table)
        validate_table_name(self.dead_letter)
        if self.dead_letter == self.table:
            raise ValidationError(
                "the dead-letter table must differ from the stream's table",
                details={"field": "dead_letter"},
            )


class StreamStats(BaseModel):
    """What a stream's consumer last reported, and what its commits recorded."""

    messages: int = Field(default=0, description="Messages committed (rows or dead letters).")
    dead_letters: int = Field(default=0, description="Messages sent to the dead-letter table.")
    commits: int = Field(default=0, description="Commits made (a generation counter).")
    last_commit_at: datetime | None = None
    status: str = Field(default="stopped", description="running, paused, stopped or failing.")
    lag: int | None = Field(default=None, description="Messages in the broker not yet acked.")
    rate: float | None = Field(default=None, description="Messages per second, last interval.")
    errors: int = Field(default=0, description="Failed commits or fetches since it started.")
    last_error: str | None = Field(
        default=None, description="The consumer's last failure: what failed, why, the fix."
    )
    last_error_at: datetime | None = Field(default=None, description="When it failed.")
    heartbeat_at: datetime | None = None


class Stream(BaseModel):
    """A stream source of a project, with its consumer's last report."""

    id: str
    project: str
    name: str
    config: StreamConfig
    paused: bool
    stats: StreamStats
    actor: str
    created_at: datetime
    updated_at: datetime


class BrokerStream(BaseModel):
    """The broker's own stream a NATS source reads: the JetStream stream capturing its
    subject, made by ``create_stream`` when none did."""

    name: str
    created: bool = Field(description="Made now; otherwise it captured the subject already.")


class StreamCreated(Stream):
    """A stream just defined; ``broker_stream`` says which JetStream stream it reads when
    ``create_stream`` was asked (``None`` otherwise, and for Redis, whose key is made with
    the consumer group)."""

    broker_stream: BrokerStream | None = None


class StreamDeleted(Stream):
    """A stream just deleted: its tables and the broker's messages stay; its consumer on the
    broker (the JetStream durable, the Redis group) is removed with it."""

    broker_consumer: str = Field(
        description="`removed`; `none` (the broker held none); or `left on the broker "
        "(why): how to remove it` when the broker could not be reached."
    )


class StreamSpec(BaseModel):
    """A stream's definition as written: ``loopml streams create``'s options, one entry of
    a ``loopml streams apply`` file, the body of ``POST .../streams``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=63, json_schema_extra={"pattern": STREAM_NAME_PATTERN.pattern})
    source: str = Field(
        max_length=500,
        description="nats://host:port (with `subject`), redis://host:port/db?stream=key or "
        "kafka://host:port (with `subject` naming the topic).",
    )
    subject: str | None = Field(
        default=None,
        max_length=200,
        description="The NATS subject (wildcards allowed), a Redis stream's key, or a Kafka topic.",
    )
    table: str = Field(max_length=63, json_schema_extra={"pattern": TABLE_NAME_PATTERN.pattern})
    dead_letter: str | None = Field(
        default=None,
        max_length=63,
        json_schema_extra={"pattern": TABLE_NAME_PATTERN.pattern},
        description="The dead-letter table (default `<table>__dead`).",
    )
    transform: str | None = Field(
        default=None,
        max_length=MAX_TRANSFORM_CHARS,
        description="One SELECT over `batch`, the micro-batch, run before the commit.",
    )
    batch_rows: int | None = Field(default=None, ge=1, le=1_000_000)
    batch_ms: int | None = Field(default=None, ge=1, le=600_000)
    redeliver_s: int | None = Field(
        default=None, ge=1, le=86_400, description="Redeliver what is not acked after this."
    )
    push: list[str] | None = Field(
        default=None,
        max_length=10,
        description="Feature views over `table` whose online store gets each batch's newest "
        "values per entity as it commits.",
    )
    create_stream: bool = Field(
        default=False,
        description="NATS: make the JetStream stream over `subject` when none captures it "
        "(named `loopml-<project>-<name>`); the answer's `broker_stream` names the one read.",
    )


FIXED_ON_UPDATE = ("source", "table", "redeliver_s")
"""What an apply may not change on an existing stream: its committed message ids are
positions in that broker's stream, rows of that table, and the broker-side consumer keeps
the redelivery delay it was made with. Delete the stream and create it under a new name."""
MAX_SPECS_CHARS = 200_000
MAX_SPECS = 100


def parse_stream_specs(data: Any) -> list[StreamSpec]:
    """The stream definitions in a parsed YAML document: one stream's mapping, a list of
    them, or a mapping whose only key ``streams`` holds that list.

    Raises:
        ValidationError: another shape, an unknown or missing field, a bad value, or a
            name given twice; the message says which entry and which field.
    """
    entries = data
    if isinstance(data, dict) and "streams" in data:
        extra = sorted(str(k) for k in data if k != "streams")
        if extra:
            raise ValidationError(
                f"a streams file has only the key 'streams' at its top, not {extra}",
                details={"field": extra[0]},
            )
        entries = data["streams"]
    elif isinstance(data, dict):
        entries = [data]
    if not isinstance(entries, list) or not entries or len(entries) > MAX_SPECS:
        raise ValidationError(
            f"expected one stream (a mapping with name, source, table, ...) or a list of 1 "
            f"to {MAX_SPECS} of them under 'streams'",
            details={"field": "streams"},
        )
    specs = [_spec(i, entry) for i, entry in enumerate(entries)]
    names = [s.name for s in specs]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise ValidationError(
            f"the file defines stream {doubled[0]!r} more than once",
            details={"field": "name", "names": doubled},
        )
    return specs


def _spec(index: int, entry: Any) -> StreamSpec:
    where = f"streams[{index}]"
    if not isinstance(entry, dict):
        raise ValidationError(
            f"{where}: expected a mapping with name, source, table, ..., got "
            f"{type(entry).__name__}",
            details={"field": where},
        )
    if isinstance(entry.get("name"), str):
        where = f"{where} ({entry['name'][:63]})"
    try:
        return StreamSpec.model_validate(entry)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "stream"
        if first["type"] == "extra_forbidden":
            known = ", ".join(StreamSpec.model_fields)
            message = f"{where}: unknown field {field!r}; a stream has {known}"
        else:
            message = f"{where}: {field}: {first['msg']}"
        raise ValidationError(message, details={"field": field, "entry": index}) from None


class StreamApplied(BaseModel):
    """One stream of an apply and what the apply did to it."""

    stream: Stream
    action: Literal["created", "updated", "unchanged"]
    broker_stream: BrokerStream | None = Field(
        default=None, description="The JetStream stream read, where `create_stream` asked."
    )


class StreamsApplied(BaseModel):
    """The answer to ``POST .../streams/apply``, in the file's order."""

    items: list[StreamApplied]


class StreamState(BaseModel):
    """What a commit records for its stream: the committed ids above the ack floor."""

    model_config = ConfigDict(frozen=True)
    stream_id: str
    gen: int
    done: list[list[int]]
    """Ranges ``[major, first_minor, last_minor]``, sorted, of committed message ids."""
    messages: int
    dead_letters: int


def encode_ids(ids: Iterable[Position]) -> list[list[int]]:
    """``ids`` as sorted ranges ``[major, first_minor, last_minor]`` of consecutive minors."""
    return _coalesced([major, minor, minor] for major, minor in sorted(ids))


def _coalesced(ranges: Iterable[list[int]]) -> list[list[int]]:
    """Sorted ``ranges`` (repeats and overlaps allowed), those of one major that overlap or
    touch joined into one; each range returned is a new list."""
    out: list[list[int]] = []
    for major, first, last in ranges:
        if out and out[-1][0] == major and first <= out[-1][2] + 1:
            if last > out[-1][2]:
                out[-1][2] = last
        else:
            out.append([major, first, last])
    return out


def ranges_above_floor(ranges: Sequence[Sequence[int]], floor: Floor | None) -> list[list[int]]:
    """``encode_ids(above_floor(decode_ids(ranges), floor))``, computed range by range."""
    out: list[list[int]] = []
    for major, first, last in ranges:
        if isinstance(floor, tuple):
            if major < floor[0]:
                continue
            if major == floor[0]:
                first = max(first, floor[1] + 1)
        elif floor is not None and major in floor:
            first = max(first, floor[major] + 1)
        if first <= last:
            out.append([major, first, last])
    return out


def ranges_with(ranges: Sequence[Sequence[int]], ids: Iterable[Position]) -> list[list[int]]:
    """``encode_ids(decode_ids(ranges) | set(ids))`` for ``ranges`` as ``encode_ids`` makes
    them, without decoding them: only ``ids`` are sorted, and a broker delivers them nearly
    in order already, which the sort takes in about one pass (a stream's commit record grew
    with every batch, and sorting all of it was most of a commit's cost)."""
    singles = ([major, minor, minor] for major, minor in sorted(ids))
    return _coalesced(heapq.merge(map(list, ranges), singles))


def decode_ids(ranges: Iterable[Iterable[int]]) -> set[Position]:
    """The ids that ``encode_ids`` ranges stand for."""
    out: set[Position] = set()
    for major, first, last in (tuple(r) for r in ranges):
        out.update((major, minor) for minor in range(first, last + 1))
    return out


def above_floor(ids: Iterable[Position], floor: Floor | None) -> set[Position]:
    """The ids above ``floor`` (all of them when there is none)."""
    if floor is None:
        return set(ids)
    if isinstance(floor, tuple):
        return {i for i in ids if i > floor}
    return {i for i in ids if i[0] not in floor or i[1] > floor[i[0]]}


def under_floor(position: Position, floor: Floor | None) -> bool:
    """Whether ``position`` is at or below ``floor`` (acked, never delivered again)."""
    if floor is None:
        return False
    if isinstance(floor, tuple):
        return position <= floor
    return position[0] in floor and position[1] <= floor[position[0]]


def stream_not_found(project: str, name: str) -> NotFoundError:
    """The error for a stream the project does not have, with the command that lists them."""
    return NotFoundError(
        f"stream {name!r} not found in project {project!r}: see `loopml streams list`",
        details={"project": project, "stream": name},
    )
