"""Messages to rows: JSON bodies read by Arrow, each bad message sorted out with its reason.

A batch's bodies are joined into NDJSON and read at once (with the table's types when it
has a schema: several times faster than inferring them). When the read or the fit to the
table fails, the batch is split in halves until each failing message stands alone, so one
poison message costs about two reads of its batch and never holds up the others.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import orjson
import pyarrow as pa
import pyarrow.json as pjson

from loopml.core.errors import ValidationError
from loopml.data._record_commit import fit
from loopml.data.schema import check_names
from loopml.data.streams.base import Message

BAD = (ValidationError, pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)
Dead = tuple[Message, str]
"""A message that cannot land, and why."""


class PoisonError(ValidationError):
    """A message that is not one JSON object."""


def _one_line(message: Message) -> bytes:
    # NDJSON needs one object per line: a body printed over several lines is re-serialised.
    try:
        value = orjson.loads(message.data)
    except orjson.JSONDecodeError as exc:
        raise PoisonError(f"the message is not valid JSON: {exc}") from None
    if type(value) is not dict:
        raise PoisonError("the message is JSON but not an object")
    return orjson.dumps(value)


def _ndjson(messages: Sequence[Message]) -> bytes:
    body = b"\n".join([m.data for m in messages])
    if body.count(b"\n") == len(messages) - 1 and b"\r" not in body:
        return body
    lines = [_one_line(m) if b"\n" in m.data or b"\r" in m.data else m.data for m in messages]
    return b"\n".join(lines)


def read(messages: Sequence[Message], hint: pa.Schema | None) -> pa.Table:
    """The messages' bodies as one Arrow table, a row per message, in order.

    Args:
        hint: the types to read the fields with (fields it does not name are inferred).

    Raises:
        PoisonError, pa.ArrowInvalid: a body that is not one JSON object, or a field whose
            values do not parse as ``hint``'s type.
    """
    body = _ndjson(messages)
    options = pjson.ReadOptions(block_size=max(len(body) + 1, 1 << 16), use_threads=False)
    if hint is not None and all(f.nullable for f in hint):
        parse = pjson.ParseOptions(explicit_schema=hint, unexpected_field_behavior="infer")
        table = pjson.read_json(io.BytesIO(body), options, parse)
    else:
        table = pjson.read_json(io.BytesIO(body), options)
    if table.num_rows != len(messages):
        raise PoisonError(
            f"expected one JSON object per message; {len(messages)} messages read as "
            f"{table.num_rows} records (an empty message?)"
        )
    if table.num_columns == 0:
        raise PoisonError('the message has no fields: send an object such as {"id": 1}')
    check_names(table.schema)
    return table


Attempt = Callable[[Sequence[Message]], pa.Table]


def sort_out(messages: Sequence[Message], attempt: Attempt) -> tuple[list[pa.Table], list[Dead]]:
    """``attempt`` on all of ``messages``; where it fails, on halves, down to single
    messages, which are dead with the failure's reason. Returns the good pieces in order."""
    try:
        return [attempt(messages)], []
    except BAD as exc:
        if len(messages) == 1:
            return [], [(messages[0], _reason(exc))]
    mid = len(messages) // 2
    left, left_dead = sort_out(messages[:mid], attempt)
    right, right_dead = sort_out(messages[mid:], attempt)
    return left + right, left_dead + right_dead


def _reason(exc: Exception) -> str:
    text = exc.message if isinstance(exc, ValidationError) else str(exc)
    return text.removeprefix("JSON parse error: ")[:500]


def decode(
    messages: Sequence[Message], target: pa.Schema | None
) -> tuple[pa.Table | None, list[Message], list[Dead]]:
    """The rows of ``messages`` fitted to ``target`` (the table's schema; ``None`` before the
    table has one), the messages they came from (in row order) and the dead ones.

    Raises:
        ValidationError: never for one message's fault; only if nothing can be inferred.
    """

    def attempt(part: Sequence[Message]) -> pa.Table:
        return fit(read(part, target), target)

    pieces, dead = sort_out(messages, attempt)
    if not pieces:
        return None, [], dead
    dead_ids = {id(m) for m, _ in dead}
    kept = [m for m in messages if id(m) not in dead_ids]
    if target is None and len({p.schema for p in pieces}) > 1:
        # A new table: the pieces' inferred types may differ; the first piece decides, and
        # what does not fit it is sorted out as for an existing table.
        return decode(messages, pieces[0].schema)
    return pa.concat_tables(pieces), kept, dead
