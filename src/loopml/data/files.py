"""File ingest: CSV, Parquet and JSON Lines read with Arrow's own readers (no Python loops).

Uploads arrive streamed. CSV and JSON Lines are read as they arrive (``read_stream``):
Arrow parses blocks while the next are still on the wire (CSV blocks side by side, see
``loopml.data._csv``), and nothing is written twice.
Parquet keeps its index at the end of the file, so ``spool`` writes it to a server-named
temporary file first (removed afterwards whatever happens) and ``read_upload`` reads that.
Either way the upload limit is enforced as bytes arrive. A filename sent by a client only
ever selects the format by its extension: it is never used as a path (RELIABILITY 6).
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Literal

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq

from loopml.core.disk import disk_full, is_disk_full
from loopml.core.errors import PayloadTooLargeError, ValidationError
from loopml.core.lake import ColumnInfo
from loopml.data import _csv, _declared
from loopml.data.schema import with_first_line
from loopml.settings import Settings

FileFormat = Literal["csv", "parquet", "jsonl"]
FORMATS: tuple[FileFormat, ...] = ("csv", "parquet", "jsonl")
_EXTENSIONS: dict[str, FileFormat] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_MEDIA_TYPES: dict[str, FileFormat] = {
    "text/csv": "csv",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/jsonlines": "jsonl",
}
_BLOCK = 16 * 1024 * 1024
_CSV_NULLS = frozenset(pcsv.ConvertOptions().null_values)
"""What Arrow's CSV reader reads as null in a column it infers: the same in a declared one."""
SPOOL_MAX_AGE_S = 6 * 3600


def infer_format(
    format: str | None, *, filename: str | None = None, content_type: str | None = None
) -> FileFormat | None:
    """The format named, else the one the file name's extension or the media type says.

    Raises:
        ValidationError: ``format`` is given and is not csv, parquet or jsonl.
    """
    if format:
        for known in FORMATS:
            if format.lower() == known:
                return known
        raise ValidationError(
            f"unknown file format {format[:40]!r}: expected one of csv, parquet, jsonl",
            details={"field": "format", "valid": list(FORMATS)},
        )
    if filename:
        found = _EXTENSIONS.get(os.path.splitext(filename.strip().lower())[1])
        if found:
            return found
    if content_type:
        return _MEDIA_TYPES.get(content_type.split(";")[0].strip().lower())
    return None


def _sniff(path: Path) -> FileFormat:
    with path.open("rb") as handle:
        head = handle.read(4)
    if head == b"PAR1":
        return "parquet"
    return "jsonl" if head.lstrip()[:1] == b"{" else "csv"


def read_upload(
    source: str | os.PathLike[str] | BinaryIO,
    format: str | None = None,
    columns: Sequence[ColumnInfo] = (),
) -> pa.RecordBatchReader:
    """Read a CSV, Parquet or JSON Lines file as a stream of Arrow record batches.

    Args:
        source: a path or an open binary file.
        format: ``csv``, ``parquet``, ``jsonl``, or ``None`` to go by the file name's
            extension, then by its first bytes.
        columns: columns read with these types instead of inferred ones (see
            ``loopml.data._declared``); the file must have each of them.

    Raises:
        ValidationError: an unknown format or column type, a file that does not parse as its
            format, a declared column missing, or a value that does not convert to its
            declared type (the rows named: at once in the first batch, else as read).
    """
    types = _declared.declared_types(columns) if columns else {}
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    fmt = infer_format(format, filename=name)
    if fmt is None:
        fmt = _sniff(Path(name)) if name else "csv"
    try:
        if fmt == "parquet":
            file = pq.ParquetFile(source)
            reader = pa.RecordBatchReader.from_batches(file.schema_arrow, file.iter_batches())
        elif fmt == "jsonl":
            reader = _jsonl(source)
        else:
            opened = _opened(name) if name else source
            reader = _csv.open_blocks(opened, text_columns=list(types))  # type: ignore[arg-type]
        if fmt == "jsonl":  # messages name the file's lines (a CSV's reader does too)
            reader = with_first_line(reader, 1)
        if types:
            reader = _declared.apply(reader, types, _CSV_NULLS if fmt == "csv" else ())
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        # UnicodeDecodeError: a header that is not UTF-8 (a binary file sent as CSV), read
        # when the declared columns are looked up.
        raise _unparsable(fmt, exc) from exc
    return reader


def _opened(path: str) -> BinaryIO:
    return open(path, "rb")  # the reader closes it


def _unparsable(fmt: str, exc: Exception) -> ValidationError:
    return ValidationError(
        f"the file does not parse as {fmt}: {str(exc)[:300]}; check the format "
        "(`loopml ingest --format csv|parquet|jsonl`; API: format=) and the file's content",
        details={"format": fmt, "reason": str(exc)[:500]},
    )


def _jsonl(source: str | os.PathLike[str] | BinaryIO) -> pa.RecordBatchReader:
    table = pjson.read_json(source, pjson.ReadOptions(block_size=_BLOCK))
    for field in table.schema:
        if _has_empty_struct(field.type):
            # Parquet cannot store a struct without fields: the native writer would fail
            # half-way with an error that reads as the server's (it was a 503).
            raise ValidationError(
                f"field {field.name!r} holds an empty object ({{}}) in every line that has "
                "it, and Parquet cannot store an object without fields: leave the field "
                "out, send null, or give the object at least one field",
                details={"column": field.name, "reason": "empty_object"},
            )
    return table.to_reader()


def _has_empty_struct(kind: pa.DataType) -> bool:
    if pa.types.is_struct(kind):
        return kind.num_fields == 0 or any(_has_empty_struct(f.type) for f in kind)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_map(kind):
        return _has_empty_struct(kind.value_type)
    return False


class _UploadStream(io.RawIOBase):
    """A streamed upload as a read-only binary file that counts what it has read and raises
    ``PayloadTooLargeError`` past ``limit`` bytes (Arrow's readers pull from it)."""

    def __init__(self, chunks: Iterable[bytes], limit: int, head: bytes = b"") -> None:
        self._chunks = iter(chunks)
        self._buffer = head
        self._limit = limit
        self._size = len(head)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._size += len(chunk)
            if self._size > self._limit:
                raise _too_large(self._limit)
            self._buffer = chunk
        size = min(len(buffer), len(self._buffer))
        buffer[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"the upload is over the limit of {limit} bytes: split the file, or raise "
        "server.max_upload_bytes",
        details={"max_bytes": limit},
    )


def _first_bytes(chunks: Iterator[bytes], size: int) -> bytes:
    head = b""
    while len(head) < size:
        chunk = next(chunks, None)
        if chunk is None:
            break
        head += chunk
    return head


@contextmanager
def read_stream(
    chunks: Iterable[bytes],
    format: FileFormat | None,
    folder: Path,
    limit: int,
    columns: Sequence[ColumnInfo] = (),
) -> Iterator[pa.RecordBatchReader]:
    """Read a streamed upload as Arrow record batches, parsing it as it arrives.

    CSV and JSON Lines are read straight from the stream; Parquet (named, or recognised by
    its first bytes) is spooled under ``folder`` first (see the module docstring). Reading
    the stream past ``limit`` bytes raises ``PayloadTooLargeError``, whenever that happens:
    a writer consuming the reader must let it through (``cast_batches`` does). ``columns``
    are read with their declared types, as ``read_upload`` reads them.

    Raises:
        ValidationError: a file that does not parse as its format.
        PayloadTooLargeError: more than ``limit`` bytes arrived.
    """
    source = iter(chunks)
    head = b""
    if format is None:
        head = _first_bytes(source, 4)
        format = "parquet" if head[:4] == b"PAR1" else None
    if format == "parquet":
        with spool(_prepend(head, source), folder, limit) as path:
            yield read_upload(path, format, columns)
        return
    if format is None:
        format = "jsonl" if head.lstrip()[:1] == b"{" else "csv"
    stream = io.BufferedReader(_UploadStream(source, limit, head), buffer_size=1 << 20)
    yield read_upload(stream, format, columns)


def _prepend(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest


def spool_folder(settings: Settings) -> Path:
    """Where uploads wait while they are read: under the server's home, never a client path."""
    return settings.home / "tmp" / "ingest"


def sweep_spool(folder: Path, max_age_s: float = SPOOL_MAX_AGE_S) -> int:
    """Remove spooled files older than ``max_age_s`` (left by a killed server)."""
    cutoff = time.time() - max_age_s
    removed = 0
    for entry in folder.glob("ingest-*"):
        try:
            if entry.lstat().st_mtime < cutoff:
                entry.unlink()
                removed += 1
        except OSError:
            continue
    return removed


@contextmanager
def spool(chunks: Iterable[bytes], folder: Path, limit: int) -> Iterator[Path]:
    """Write ``chunks`` to a new server-named file under ``folder``; yields its path and
    deletes it when the block ends, however it ends.

    Raises:
        PayloadTooLargeError: more than ``limit`` bytes arrived.
        DiskFullError: the disk holding ``folder`` is full.
    """
    path: Path | None = None
    try:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            sweep_spool(folder)
            fd, name = tempfile.mkstemp(dir=folder, prefix="ingest-")
            path = Path(name)
            size = 0
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(limit)
                    out.write(chunk)
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full("the uploaded file", str(folder), store="spool") from exc
            raise
        yield Path(name)
    finally:
        if path is not None:
            path.unlink(missing_ok=True)
