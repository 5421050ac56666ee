"""Declared column types on ingest: files read with them, the rows named when a value does
not convert, and a declared text column never taken for a typo'd number column."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopml.core.errors import NotFoundError, ValidationError
from loopml.core.lake import columns_from_document, parse_declarations
from loopml.data import _csv, _declared, files, lake
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore

CSV = b"age,zip,seen,spend\n20,02134,2024-01-02 10:00:00,1.5\n21,00501,,NA\n22,12345,2024-01-03,\n"


def _read(data: bytes, *declared: str, format: str = "csv") -> pa.Table:
    return files.read_upload(io.BytesIO(data), format, parse_declarations(declared)).read_all()


def test_a_declared_column_is_read_as_declared_and_the_rest_inferred() -> None:
    inferred = _read(CSV)
    assert inferred.column("zip").to_pylist() == [2134, 501, 12345]  # zeros lost

    table = _read(CSV, "zip:string", "seen:timestamp[us]", "spend:float")
    assert table.schema.field("age").type == pa.int64()
    assert table.column("zip").to_pylist() == ["02134", "00501", "12345"]
    assert table.schema.field("seen").type == pa.timestamp("us")
    assert table.column("seen").to_pylist() == [
        datetime(2024, 1, 2, 10),
        None,
        datetime(2024, 1, 3),
    ]
    # CSV's empty and NA cells are null in a declared column, as in an inferred one.
    assert table.column("spend").to_pylist() == [1.5, None, None]


def test_a_timestamp_unit_other_than_microseconds_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"declare it timestamp\[us\]"):
        _read(CSV, "seen:timestamp[s]")


def test_a_value_that_does_not_convert_refuses_the_file_naming_its_rows() -> None:
    data = b"age,name\n" + b"".join(b"%d,n\n" % i for i in range(30)) + b"forty,n\n31,n\n"
    with pytest.raises(ValidationError) as caught:
        _read(data, "age:int64")
    assert str(caught.value).startswith(
        "column 'age' is declared int64, but line 32 ('forty') does not convert to it"
    )
    [problem] = caught.value.details["columns"]
    assert problem == {
        "column": "age",
        "expected": "int64",
        "found": "string",
        "rows": [{"row": 30, "value": "forty"}],
    }


def test_rows_are_counted_across_batches_and_every_bad_one_is_found() -> None:
    values = [str(i) for i in range(1000)]
    values[7], values[613], values[650], values[998] = "x", "1.5", "many", "y"

    def batches(size: int) -> pa.RecordBatchReader:
        return pa.Table.from_pydict({"n": values}).to_reader(max_chunksize=size)

    # Not from a file: rows counted from 1.
    with pytest.raises(ValidationError, match=r"rows 8 \('x'\), 614 \('1.5'\), 651 \('many"):
        _declared.apply(batches(1000), {"n": pa.int64()})  # the first batch: at once
    values[7] = "7"
    cast = _declared.apply(batches(100), {"n": pa.int64()})
    assert cast.read_next_batch().column(0).to_pylist()[:3] == [0, 1, 2]
    with pytest.raises(ValidationError, match=r"rows 614 \('1.5'\), 651 \('many'\) do not"):
        cast.read_all()


def test_a_bad_value_in_a_later_csv_block_names_its_row_in_the_file() -> None:
    lines = [b"%d,%d" % (i, i) for i in range(400)]
    lines[350] = b"350,three-fifty"
    data = b"a,b\n" + b"\n".join(lines) + b"\n"
    reader = _csv.open_blocks(io.BytesIO(data), first_block=2000, block=700, text_columns=["b"])
    # Row 350 of the data is line 352 of the file: under the header, counted from 1.
    with pytest.raises(ValidationError, match=r"line 352 \('three-fifty'\) does not convert"):
        _declared.apply(reader, {"b": pa.int64()}).read_all()


def test_every_format_is_cast_and_a_missing_column_is_named(tmp_path: Path) -> None:
    jsonl = b'{"id": 1, "code": "7"}\n{"id": 2, "code": "8"}\n'
    table = _read(jsonl, "id:string", "code:int32", format="jsonl")
    assert table.to_pylist() == [{"id": "1", "code": 7}, {"id": "2", "code": 8}]
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"id": [1, 2]}), path)
    read = files.read_upload(path, columns=parse_declarations(["id:double"])).read_all()
    assert read.column("id").to_pylist() == [1.0, 2.0]
    with pytest.raises(ValidationError, match="declares 'ID', which the file does not have"):
        files.read_upload(path, columns=parse_declarations(["ID:double"]))


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        (["age"], "expected NAME:TYPE"),
        ([":int64"], "expected NAME:TYPE"),
        (["age:int"], "unknown column type 'int' for 'age'"),
        (["age:int64", "age:string"], "'age' is declared twice"),
    ],
)
def test_declarations_that_do_not_parse_say_why(declared: list[str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_declarations(declared)


def test_a_schema_document_is_a_mapping_or_a_list() -> None:
    expected = parse_declarations(["age:int64", "zip:string"])
    assert columns_from_document({"age": "int64", "zip": "string"}) == expected
    listed = [{"name": "age", "type": "int64"}, {"name": "zip", "type": "string"}]
    assert columns_from_document({"columns": listed}) == expected
    with pytest.raises(ValidationError, match="a mapping of column names to types"):
        columns_from_document("age:int64")


def test_a_declared_text_column_is_not_a_typo_under_strict(
    store: MetadataStore, artifacts: ArtifactStore, tmp_path: Path
) -> None:
    lines = ["zip,name", *(f"{10000 + i},n{i}" for i in range(9)), "unknown,n9"]
    source = tmp_path / "codes.csv"
    source.write_text("\n".join(lines) + "\n")

    def ingest(*declared: str) -> object:
        reader = files.read_upload(source, columns=parse_declarations(declared))
        return lake.ingest_arrow(
            store,
            artifacts,
            "default",
            "codes",
            reader,
            actor="t",
            strict=True,
            declared=[d.split(":")[0] for d in declared],
        )

    with pytest.raises(ValidationError, match=r"refused \(strict\): column 'zip'"):
        ingest()
    with pytest.raises(ValidationError, match=r"'zip' is declared int64, but line 11 \('unk"):
        ingest("zip:int64")
    with pytest.raises(NotFoundError):  # neither refusal left a table behind
        lake.get_table(store, artifacts, "default", "codes")
    commit = ingest("zip:string")
    assert (commit.rows_added, commit.warnings) == (10, [])
    table = lake.get_table(store, artifacts, "default", "codes")
    assert [(c.name, c.type) for c in table.columns] == [("zip", "string"), ("name", "string")]


def test_a_binary_file_with_declared_columns_is_a_clear_refusal() -> None:
    # Found by the contract fuzz: a PNG sent as CSV with a declared column answered 500,
    # because its header is not UTF-8 and the declared columns are looked up by name.
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x00\x00"
    with pytest.raises(ValidationError, match="does not parse as csv"):
        _read(png, "a:bool")


def test_a_row_of_a_parquet_file_is_counted_from_1_and_a_json_lines_file_by_line(
    tmp_path: Path,
) -> None:
    parquet = tmp_path / "people.parquet"
    pq.write_table(pa.table({"age": ["1", "2", "forty"]}), parquet)
    jsonl = tmp_path / "people.jsonl"
    jsonl.write_text('{"age": "1"}\n{"age": "2"}\n{"age": "forty"}\n')

    for source, where in ((parquet, "row 3"), (jsonl, "line 3")):
        with pytest.raises(ValidationError) as caught:
            files.read_upload(source, columns=parse_declarations(["age:int64"])).read_all()
        assert f"but {where} ('forty') does not convert" in caught.value.message
