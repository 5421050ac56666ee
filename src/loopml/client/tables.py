"""A project's lake tables through the API: file ingest (streamed) and record ingest."""

from __future__ import annotations

import builtins
import hashlib
import os
import random
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import orjson

from loopml.client._http import Http, segment
from loopml.client.artifacts import Progress, _file_chunks
from loopml.core.contracts import Contract, ValidationReport, load_contract, parse_contract
from loopml.core.errors import (
    ConflictError,
    LoopmlError,
    ReplyTimeoutError,
    ServiceUnavailableError,
    ValidationError,
)
from loopml.core.housekeeping import CompactReport, VacuumReport
from loopml.core.ingest import RecordsCommit, validate_idempotency_key
from loopml.core.lake import LakeTable, TableCommit
from loopml.core.types import Page

if TYPE_CHECKING:
    import pyarrow as pa

_MEDIA_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}
RECORD_RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0)
"""Waits before each retry of a post of records (jittered): about 4 s in all."""


def _retryable(exc: Exception) -> bool:
    # With an idempotency key, a retry of a post that did land lands nothing: the server's
    # unavailability (503, or no connection) and a commit conflict (409) are safe to retry.
    if isinstance(exc, ServiceUnavailableError):
        return exc.details.get("retryable", True) is not False
    return type(exc) is ConflictError


def _ndjson(records: Sequence[Mapping[str, Any]] | pa.Table) -> bytes:
    rows = records.to_pylist() if hasattr(records, "to_pylist") else records
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Sequence):
        raise ValidationError(
            f"records must be a list of dicts or a pyarrow Table, got {type(records).__name__}"
        )
    if not rows:
        raise ValidationError("no records to append: pass at least one record")
    lines = []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValidationError(
                f"record {index} is a {type(row).__name__}, expected a dict of field values"
            )
        try:
            lines.append(orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY))
        except TypeError as exc:
            raise ValidationError(
                f"record {index} cannot be sent as JSON: {exc}; convert that value (to a "
                "str, int, float, bool, None, a datetime, or a list or dict of those)",
                details={"record": index},
            ) from exc
    return b"\n".join(lines)


def file_idempotency_key(
    path: str | os.PathLike[str],
    project: str,
    table: str,
    mode: str,
    *,
    format: str | None = None,
    strict: bool = False,
    schema: Mapping[str, str] | None = None,
) -> str:
    """The ``Idempotency-Key`` that names an upload of this file to this table with these
    options: ``file-`` and the SHA-256 of the file's bytes, the target and the options (what
    ``loopml ingest`` sends, so that running it again after a lost answer never appends the
    file twice)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    columns = sorted(f"{name}:{kind}" for name, kind in (schema or {}).items())
    target = [project, table, mode, format or "", f"strict={strict}", *columns]
    digest.update("\0".join(["", *target]).encode())
    return "file-" + digest.hexdigest()


_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Failures before the request left: the upload cannot have landed."""


def _cut_off(exc: ServiceUnavailableError, file: Path, project: str, table: str) -> LoopmlError:
    """The error for an upload whose connection broke after it was sent: it may have landed."""
    cause = exc.__cause__
    if (
        isinstance(exc, ReplyTimeoutError)  # its message already says it may finish there
        or isinstance(cause, _NOT_SENT)
        or not isinstance(cause, httpx.TransportError)  # the server answered
    ):
        return exc
    return ServiceUnavailableError(
        f"the connection to loopml broke before it answered the upload of {file.name} "
        f"({cause or type(cause).__name__}): the ingest may have committed. "
        f"Check with `loopml tables history {table} -p {project}`, or run the same "
        "`loopml ingest` again: its Idempotency-Key (from the file and the target) makes an "
        "upload that landed answer `already ingested` instead of appending twice.",
        details={**exc.details, "file": str(file), "may_have_committed": True},
    )


def _path(project: str, table: str = "", tail: str = "") -> str:
    base = f"/api/v1/projects/{segment(project)}/tables"
    if table:
        base = f"{base}/{segment(table)}"
    return f"{base}/{tail}" if tail else base


class Tables:
    """``client.tables``: list, show, head, history, delete, ingest files, and housekeeping."""

    def __init__(self, http: Http) -> None:
        self._http = http

    def list(self, project: str = "default") -> list[LakeTable]:
        """A project's tables, by name."""
        data = self._http.json("GET", _path(project))
        return [LakeTable.model_validate(item) for item in data["items"]]

    def get(self, project: str, table: str) -> LakeTable:
        """One table: version, row count, columns."""
        return LakeTable.model_validate(self._http.json("GET", _path(project, table)))

    def create(
        self,
        project: str,
        table: str,
        *,
        columns: builtins.list[dict[str, Any]] | None = None,
        description: str = "",
    ) -> LakeTable:
        """Create a table; with ``columns`` (``{"name", "type"}`` each) it starts empty."""
        body: dict[str, Any] = {"name": table, "description": description}
        if columns is not None:
            body["columns"] = columns
        return LakeTable.model_validate(self._http.json("POST", _path(project), json=body))

    def delete(self, project: str, table: str) -> None:
        """Delete a table and its data."""
        self._http.request("DELETE", _path(project, table))

    def history(self, project: str, table: str, *, limit: int = 100) -> builtins.list[TableCommit]:
        """A table's commits, newest first."""
        data = self._http.json("GET", _path(project, table, "history"), params={"limit": limit})
        return [TableCommit.model_validate(item) for item in data["items"]]

    def head(self, project: str, table: str, n: int = 10) -> builtins.list[dict[str, Any]]:
        """The first ``n`` rows, as dicts."""
        data = self._http.json("GET", _path(project, table, "head"), params={"n": n})
        rows: builtins.list[dict[str, Any]] = data["rows"]
        return rows

    def ingest_file(
        self,
        project: str,
        table: str,
        path: str | os.PathLike[str],
        *,
        mode: str = "append",
        format: str | None = None,
        progress: Progress | None = None,
        strict: bool = False,
        schema: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> TableCommit:
        """Stream a CSV, Parquet or JSON Lines file into a table as one commit.

        Args:
            path: the file; its extension picks the format unless ``format`` is given.
            mode: ``append`` or ``overwrite``.
            format: ``csv``, ``parquet`` or ``jsonl``.
            progress: called with each chunk's size as it is sent.
            strict: refuse a file with a column of numbers but for a few values (by
                default it lands, and ``warnings`` of the commit name those rows).
            schema: column name to Arrow type (``{"age": "int64", "zip": "string"}``): these
                columns are read with these types instead of inferred ones (see
                ``loopml.core.lake.STORED_TYPE_PATTERN`` for the types).
            idempotency_key: makes a retry land once: an upload under a key that already
                landed in the table answers that commit (``replayed``) and writes nothing
                (``file_idempotency_key`` derives one from the file and the target).

        Raises:
            ValidationError: the file does not match the table's schema, or a value does
                not convert to its declared type (``details`` names the columns, expected
                and found types and first offending rows).
            ServiceUnavailableError: the server was not reached, or the connection broke
                after the upload was sent (``details.may_have_committed``: check the
                table's history, or retry under the same key).
        """
        file = Path(path)
        params: builtins.list[tuple[str, str]] = [("mode", mode)]
        if format:
            params.append(("format", format))
        if strict:
            params.append(("strict", "true"))
        params += [("column", f"{name}:{kind}") for name, kind in (schema or {}).items()]
        headers = {
            "Content-Type": _MEDIA_TYPES.get(format or "", "application/octet-stream"),
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(file.name)}",
        }
        if idempotency_key is not None:
            headers["Idempotency-Key"] = validate_idempotency_key(idempotency_key)
        with file.open("rb") as handle:
            headers["Content-Length"] = str(os.fstat(handle.fileno()).st_size)
            try:
                data = self._http.json(
                    "POST",
                    _path(project, table, "files"),
                    params=params,
                    content=_file_chunks(handle, progress),
                    headers=headers,
                )
            except ServiceUnavailableError as exc:
                raise _cut_off(exc, file, project, table) from exc.__cause__
        return TableCommit.model_validate(data)

    def append_records(
        self,
        project: str,
        table: str,
        records: Sequence[Mapping[str, Any]] | pa.Table,
        *,
        idempotency_key: str | None = None,
    ) -> RecordsCommit:
        """Append records to a table (the first post creates it) and wait until they are
        durably committed.

        The server gathers posts that arrive together into one commit; this post's records
        land whole or not at all. Connection errors, 503 and commit conflicts are retried a
        few times, under the same idempotency key, so a retry never lands twice.

        Args:
            records: a list of dicts (one per record), or a pyarrow Table; sent as NDJSON.
                Keep a post under the server's body limit (``server.max_body_bytes``); use
                ``ingest_file`` for bulk data.
            idempotency_key: makes retries land once; by default a new UUID for this call,
                which covers this call's own retries. Pass a key of your own (an event id,
                a hash of the records) to make retries from anywhere land once.

        Returns:
            Where the records landed; ``replayed`` is true when a post with the same key
            and records had already landed (nothing was appended).

        Raises:
            ValidationError: records that do not fit the table (``details.columns`` names
                the columns), that fail a ``reject`` contract, or a key already used for
                other records.
            ServiceUnavailableError: the server stayed unreachable through the retries.
        """
        key = uuid.uuid4().hex if idempotency_key is None else idempotency_key
        headers = {
            "Content-Type": "application/x-ndjson",
            "Idempotency-Key": validate_idempotency_key(key),
        }
        body = _ndjson(records)
        delays = iter(RECORD_RETRY_DELAYS_S)
        while True:
            try:
                data = self._http.json(
                    "POST", _path(project, table, "records"), content=body, headers=headers
                )
                return RecordsCommit.model_validate(data)
            except (ServiceUnavailableError, ConflictError) as exc:
                delay = next(delays, None)
                if delay is None or not _retryable(exc):
                    raise
                time.sleep(delay * random.uniform(1.0, 1.5))  # noqa: S311 (jitter)

    def compact(self, project: str, table: str) -> CompactReport:
        """Rewrite a table's small files into large ones (a new version, the same rows)."""
        data = self._http.json("POST", _path(project, table, "compact"))
        return CompactReport.model_validate(data)

    def vacuum(
        self,
        project: str,
        table: str,
        *,
        retention_hours: int | None = None,
        dry_run: bool = False,
    ) -> VacuumReport:
        """Free the files of versions older than the retention (the server's default when
        ``None``); versions that a run or a dataset snapshot references keep theirs."""
        params: dict[str, Any] = {"dry_run": dry_run}
        if retention_hours is not None:
            params["retention_hours"] = retention_hours
        data = self._http.json("POST", _path(project, table, "vacuum"), params=params)
        return VacuumReport.model_validate(data)

    def set_contract(
        self, project: str, table: str, contract: Contract | dict[str, Any] | str | Path
    ) -> Contract:
        """Replace a table's validation contract.

        Args:
            contract: a ``Contract``, its dict, YAML/JSON text, or a ``Path`` to a ``.yaml``
                or ``.json`` file (read with YAML's safe loader: no tags run code).

        Raises:
            ValidationError: an invalid contract (checked here first), a regex RE2 refuses,
                or a quarantine contract whose ``<table>__rejected`` name is too long.
        """
        if isinstance(contract, Path):
            contract = load_contract(contract.read_text(encoding="utf-8"))
        elif isinstance(contract, str):
            contract = load_contract(contract)
        elif isinstance(contract, dict):
            contract = parse_contract(contract)
        body = contract.model_dump(mode="json", exclude_none=True)
        data = self._http.json("PUT", _path(project, table, "contract"), json=body)
        return Contract.model_validate(data)

    def get_contract(self, project: str, table: str) -> Contract:
        """A table's validation contract (``NotFoundError`` when it has none)."""
        return Contract.model_validate(self._http.json("GET", _path(project, table, "contract")))

    def delete_contract(self, project: str, table: str) -> None:
        """Drop a table's validation contract."""
        self._http.request("DELETE", _path(project, table, "contract"))

    def reports(
        self, project: str, table: str, *, limit: int = 100, cursor: str | None = None
    ) -> Page[ValidationReport]:
        """A table's validation reports, newest first; pass ``next_cursor`` for more."""
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        data = self._http.json("GET", _path(project, table, "reports"), params=params)
        return Page[ValidationReport].model_validate(data)
