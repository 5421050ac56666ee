"""Reading uploads: formats, sniffing, spooling."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopml.core.errors import PayloadTooLargeError, ValidationError
from loopml.data import files


def test_format_is_inferred_from_name_type_then_content(tmp_path: Path) -> None:
    assert files.infer_format(None, filename="x.ndjson") == "jsonl"
    assert files.infer_format(None, content_type="text/csv; charset=utf-8") == "csv"
    assert files.infer_format("Parquet") == "parquet"
    with pytest.raises(ValidationError, match="csv, parquet, jsonl"):
        files.infer_format("xlsx")
    blob = tmp_path / "blob"
    pq.write_table(pa.table({"a": [1]}), blob)
    assert files.read_upload(blob).read_all().num_rows == 1


def test_a_broken_file_is_a_422(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(ValidationError, match="does not parse as parquet"):
        files.read_upload(path)


def test_spool_removes_its_file_and_enforces_the_limit(tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    with files.spool([b"a,b\n", b"1,2\n"], folder, 100) as path:
        assert path.parent == folder
        assert path.name.startswith("ingest-")
        assert files.read_upload(path, "csv").read_all().num_rows == 1
    assert list(folder.iterdir()) == []
    with pytest.raises(PayloadTooLargeError), files.spool([b"x" * 60, b"y" * 60], folder, 100):
        pass
    assert list(folder.iterdir()) == []
