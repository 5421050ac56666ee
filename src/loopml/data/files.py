"""File ingest: CSV, Parquet and JSON Lines read with Arrow's own readers (no Python loops).

Uploads arrive streamed; ``spool`` writes them to a server-named temporary file (bounded by
the upload limit, removed afterwards whatever happens) and ``read_upload`` reads that file.
A filename sent by a client only ever selects the format by its extension: it is never used
as a path (RELIABILITY 6).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Literal

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq

from loopml.core.errors import PayloadTooLargeError, ValidationError

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
    source: str | os.PathLike[str] | BinaryIO, format: str | None = None
) -> pa.RecordBatchReader:
    """Read a CSV, Parquet or JSON Lines file as a stream of Arrow record batches.

    Args:
        source: a path or an open binary file.
        format: ``csv``, ``parquet``, ``jsonl``, or ``None`` to go by the file name's
            extension, then by its first bytes.

    Raises:
        ValidationError: an unknown format, or a file that does not parse as its format.
    """
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    fmt = infer_format(format, filename=name)
    if fmt is None:
        fmt = _sniff(Path(name)) if name else "csv"
    try:
        if fmt == "parquet":
            file = pq.ParquetFile(source)
            return pa.RecordBatchReader.from_batches(file.schema_arrow, file.iter_batches())
        if fmt == "jsonl":
            return pjson.read_json(source, pjson.ReadOptions(block_size=_BLOCK)).to_reader()
        return pcsv.open_csv(source, read_options=pcsv.ReadOptions(block_size=_BLOCK))
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValidationError(
            f"the file does not parse as {fmt}: {str(exc)[:300]}; check the format "
            "(pass format=csv|parquet|jsonl) and the file's content",
            details={"format": fmt, "reason": str(exc)[:500]},
        ) from exc


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
    """
    folder.mkdir(parents=True, exist_ok=True)
    sweep_spool(folder)
    fd, name = tempfile.mkstemp(dir=folder, prefix="ingest-")
    path = Path(name)
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLargeError(
                        f"the upload is over the limit of {limit} bytes: split the file, or "
                        "raise server.max_upload_bytes",
                        details={"max_bytes": limit},
                    )
                out.write(chunk)
        yield path
    finally:
        path.unlink(missing_ok=True)
