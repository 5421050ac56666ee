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


def _chunks(data: bytes, size: int = 1000) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_csv_and_jsonl_are_read_as_they_arrive_parquet_is_spooled(tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    csv = b"a,b\n" + b"".join(b"%d,x%d\n" % (i, i) for i in range(5000))
    jsonl = b"".join(b'{"a": %d, "b": "x"}\n' % i for i in range(5000))
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"a": list(range(5000))}), sink)
    parquet = sink.getvalue().to_pybytes()
    for data, named in [(csv, "csv"), (jsonl, "jsonl"), (parquet, "parquet")]:
        for fmt in (named, None):  # named, or recognised by the first bytes
            with files.read_stream(_chunks(data), fmt, folder, 10**8) as reader:  # type: ignore[arg-type]
                assert reader.read_all().column("a").to_pylist() == list(range(5000))
                if named == "parquet":
                    assert len(list(folder.iterdir())) == 1  # spooled while read
            assert not folder.exists() or list(folder.iterdir()) == []


def test_a_stream_over_the_limit_is_a_413_wherever_it_is_read(tmp_path: Path) -> None:
    csv = b"a\n" + b"1\n" * 5000
    with (
        pytest.raises(PayloadTooLargeError),
        files.read_stream(_chunks(csv), "csv", tmp_path, 1000),
    ):
        pass


def test_a_jsonl_field_that_is_always_an_empty_object_is_a_422(tmp_path: Path) -> None:
    data = b'{"id": 1, "meta": {}}\n{"id": 2, "meta": {}}\n{"id": 3, "tags": [{}]}\n'
    with pytest.raises(ValidationError, match="'meta' holds an empty object") as caught:
        files.read_stream(_chunks(data, 7), "jsonl", tmp_path, 10**6).__enter__()
    assert caught.value.details["column"] == "meta"
    fine = b'{"id": 1, "meta": {}}\n{"id": 2, "meta": {"k": 1}}\n'
    with files.read_stream([fine], "jsonl", tmp_path, 10**6) as reader:
        assert reader.read_all().num_rows == 2
