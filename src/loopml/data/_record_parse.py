"""Reading a post of records: a JSON array of objects or NDJSON, into Arrow.

Both forms are read by Arrow's JSON reader (an array is turned into NDJSON first), so the
same records get the same types whichever form they came in. A malformed post is refused
with a message naming the record and line.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass

import orjson
import pyarrow as pa
import pyarrow.json as pjson

from loopml.core.errors import UnsupportedMediaTypeError, ValidationError
from loopml.core.ingest import JSON_MEDIA_TYPE, NDJSON_MEDIA_TYPES, validate_idempotency_key
from loopml.data.schema import check_names

_ARROW_ROW = re.compile(r" in row (\d+)$")


@dataclass(frozen=True)
class RecordPost:
    """One post's records, read and typed, with what identifies the post.

    Attributes:
        records: the records as an Arrow table (one column per field), types inferred.
        body_sha256: SHA-256 of the body as sent, to tell a retry from a different post.
        key: the post's idempotency key, if it has one.
        ndjson: the records as NDJSON, to read them again with the table's types where
            the inferred ones do not fit (an ISO 8601 string into a timestamp column).
    """

    records: pa.Table
    body_sha256: str
    key: str | None = None
    ndjson: bytes = b""


def media_kind(content_type: str | None) -> str:
    """``json`` or ``ndjson`` for a Content-Type a post may have; 415 for any other."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media == JSON_MEDIA_TYPE or (media.startswith("application/") and media.endswith("+json")):
        return "json"
    if media in NDJSON_MEDIA_TYPES:
        return "ndjson"
    expected = " or ".join([f"{JSON_MEDIA_TYPE} (an array of objects)", *NDJSON_MEDIA_TYPES])
    raise UnsupportedMediaTypeError(
        f"records must be sent as {expected} (one object per line); got "
        f"{media[:100] or 'no Content-Type'!r}",
        details={"expected": [JSON_MEDIA_TYPE, *NDJSON_MEDIA_TYPES]},
    )


def read_post(
    body: bytes,
    content_type: str | None,
    *,
    key: str | None = None,
    max_records: int,
    schema: pa.Schema | None = None,
) -> RecordPost:
    """Read a post's body (a JSON array of objects, or NDJSON) into Arrow.

    Args:
        schema: the table's schema as last seen, if known: the records are read with its
            types first, which is several times faster than inferring them. Where they do
            not parse as those types the types are inferred, as without it, so the answer
            (a 422 naming the columns, or the records) is the same either way.

    Raises:
        UnsupportedMediaTypeError: the Content-Type is neither JSON nor NDJSON.
        ValidationError: a bad key, an empty body, malformed JSON (the message names the
            record and line), a record that is not an object, records without fields or
            with bad field names, text holding NUL, or more than ``max_records`` records.
    """
    kind = media_kind(content_type)
    if key is not None:
        validate_idempotency_key(key)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(
            f"the body is not UTF-8 text (invalid byte at offset {exc.start}): JSON must be "
            "sent as UTF-8",
            details={"offset": exc.start},
        ) from exc
    if not body.strip():
        raise _empty()
    ndjson = _array_as_ndjson(body) if kind == "json" else body
    records = _read_known(ndjson, schema)
    if records is None:
        records = _read_ndjson(ndjson)
    if records.num_rows == 0:
        raise _empty()
    if records.num_columns == 0:
        raise ValidationError(
            'the records have no fields: send objects such as {"id": 1, "amount": 2.5}',
            details={"reason": "no_fields"},
        )
    if records.num_rows > max_records:
        raise ValidationError(
            f"the post holds {records.num_rows} records, more than the limit of {max_records}: "
            "split it, or ingest the records as a file (POST .../tables/{table}/files)",
            details={"records": records.num_rows, "limit": max_records},
        )
    check_names(records.schema)
    _check_types(records.schema)
    if b"\\u0000" in ndjson:  # JSON writes NUL only escaped: else there is none
        _refuse_nul(ndjson)
    sha256 = hashlib.sha256(body).hexdigest()
    return RecordPost(records=records, body_sha256=sha256, key=key, ndjson=ndjson)


def _check_types(schema: pa.Schema) -> None:
    for field in schema:
        if _has_empty_object(field.type):
            raise ValidationError(
                f"field {field.name!r} holds an empty object ({{}}) in every record that has "
                "it: Parquet cannot store an object without fields; leave the field out, or "
                "send null",
                details={"column": field.name},
            )


def _refuse_nul(ndjson: bytes) -> None:
    """Refuse the first record whose text holds NUL (U+0000), naming it and its field: text
    values may not hold NUL anywhere in loopml (``docs/api.md``), the lake's included."""
    for index, line in enumerate(ndjson.splitlines()):
        if b"\\u0000" not in line:
            continue
        field = _nul_at(orjson.loads(line), "")
        if field is not None:
            raise ValidationError(
                f"record {index}: field {field[:200]!r} holds the NUL character (U+0000), "
                "which text values may not contain; remove it, or send the value as a number "
                "or in a file if it is binary",
                details={"record": index, "field": field[:200]},
            )


def _nul_at(value: object, path: str) -> str | None:
    """The path of the first string in ``value`` that holds NUL (``a.b[2]``), else ``None``."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        items = ((f"{path}.{key}" if path else key, item) for key, item in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{n}]", item) for n, item in enumerate(value))
    else:
        return None
    for where, item in items:
        found = _nul_at(item, where)
        if found is not None:
            return found
    return None


def _has_empty_object(kind: pa.DataType) -> bool:
    if pa.types.is_struct(kind):
        return kind.num_fields == 0 or any(_has_empty_object(f.type) for f in kind)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _has_empty_object(kind.value_type)
    return False


def _empty() -> ValidationError:
    return ValidationError(
        "the body holds no records: send a JSON array of objects, or NDJSON (one object per line)",
        details={"reason": "empty"},
    )


def _array_as_ndjson(body: bytes) -> bytes:
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(
            f"the body is not valid JSON: {exc}", details={"reason": str(exc)[:300]}
        ) from exc
    if not isinstance(items, list):
        raise ValidationError(
            f"expected a JSON array of objects, got a JSON {_json_type(items)}: wrap a single "
            "record in [ ], or send NDJSON (Content-Type: application/x-ndjson)",
            details={"reason": "not_an_array"},
        )
    if not items:
        raise _empty()
    for index, item in enumerate(items):
        if type(item) is not dict:
            raise ValidationError(
                f"record {index} is a JSON {_json_type(item)}, expected an object",
                details={"record": index},
            )
    return b"\n".join([orjson.dumps(item) for item in items])


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _read_ndjson(body: bytes) -> pa.Table:
    options = pjson.ReadOptions(block_size=len(body) + 1, use_threads=False)
    try:
        return pjson.read_json(io.BytesIO(body), options)
    except pa.ArrowInvalid as exc:
        raise _malformed(body, str(exc)) from exc


def _read_known(ndjson: bytes, schema: pa.Schema | None) -> pa.Table | None:
    # A field not sent reads as nulls, which a non-nullable column refuses: there the
    # inferred read lets the schema check name the missing field.
    if schema is None or not all(field.nullable for field in schema):
        return None
    options = pjson.ReadOptions(block_size=len(ndjson) + 1, use_threads=False)
    parse = pjson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
    try:
        return pjson.read_json(io.BytesIO(ndjson), options, parse)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def read_typed(post: RecordPost, schema: pa.Schema) -> pa.Table | None:
    """The post's records read again with ``schema``'s types for the fields it names (JSON
    has no timestamps: ISO 8601 strings become timestamps), or ``None`` where they do not
    parse as those types."""
    options = pjson.ReadOptions(block_size=len(post.ndjson) + 1, use_threads=False)
    parse = pjson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
    try:
        return pjson.read_json(io.BytesIO(post.ndjson), options, parse)
    except pa.ArrowInvalid:
        return None


def _malformed(body: bytes, reason: str) -> ValidationError:
    found = _ARROW_ROW.search(reason)
    cause = _ARROW_ROW.sub("", reason.removeprefix("JSON parse error: "))
    if "changed from object to" in cause:
        cause = "it is not a JSON object"
    if found is None:
        return ValidationError(
            f"the records are not valid NDJSON: {cause[:300]}", details={"reason": cause[:300]}
        )
    record = int(found.group(1))
    # Arrow counts records; blank lines are skipped, so the line may be further down.
    lines = [i for i, line in enumerate(body.split(b"\n")) if line.strip()]
    line = lines[record] + 1 if record < len(lines) else None
    where = f"record {record} (line {line})" if line else f"record {record}"
    return ValidationError(
        f"{where} is not valid: {cause[:300]}; send one JSON object per line",
        details={"record": record, "line": line, "reason": cause[:300]},
    )
