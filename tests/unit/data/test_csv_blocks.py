"""CSV read in blocks parsed side by side: the same rows and types as Arrow's streaming
reader, errors that name their lines, and the edge cases of cutting at line ends."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from loopml.data import _csv


def _csv_bytes(rows: int, *, crlf: bool = False, trailing_newline: bool = True) -> bytes:
    end = "\r\n" if crlf else "\n"
    lines = ["id,name,price,when,flag"]
    lines += [
        f"{i},name {i},{i * 1.5:.2f},2024-01-{1 + i % 28:02d}T00:00:00,{str(i % 2 == 0).lower()}"
        for i in range(rows)
    ]
    text = end.join(lines) + (end if trailing_newline else "")
    return text.encode()


def _read(data: bytes, **kw: int) -> pa.Table:
    return _csv.open_blocks(io.BytesIO(data), first_block=2000, block=700, **kw).read_all()


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize(("crlf", "trailing"), [(False, True), (True, True), (False, False)])
def test_many_blocks_read_as_arrow_reads_the_whole_file(
    threads: int, crlf: bool, trailing: bool
) -> None:
    data = _csv_bytes(2000, crlf=crlf, trailing_newline=trailing)

    got = _read(data, threads=threads)

    expected = pcsv.read_csv(io.BytesIO(data))
    assert got.schema == expected.schema
    assert got.num_rows == 2000
    assert got.equals(expected.cast(got.schema))


def test_a_file_within_the_first_block_is_one_read() -> None:
    data = _csv_bytes(10)

    got = _read(data)

    assert got.equals(pcsv.read_csv(io.BytesIO(data)))


def test_types_come_from_the_first_block_and_bind_the_rest() -> None:
    data = _csv_bytes(2000).replace(b"\n1500,", b"\nnot-a-number,", 1)
    reader = _csv.open_blocks(io.BytesIO(data), first_block=2000, block=700)

    assert reader.schema.field("id").type == pa.int64()
    with pytest.raises(pa.ArrowInvalid) as caught:
        reader.read_all()
    message = str(caught.value)
    assert "not-a-number" in message
    start, end = (int(n) for n in message.rsplit("lines ", 1)[1].split(" ")[0].split("-"))
    assert start <= 1502 <= end  # line 1 is the header; id 1500 is on line 1502


def test_a_row_with_too_many_fields_in_a_later_block_names_its_lines() -> None:
    data = _csv_bytes(2000).replace(b"\n1800,name 1800,", b"\n1800,name 1800,extra,", 1)

    with pytest.raises(pa.ArrowInvalid, match=r"Expected 5 columns.*in lines \d+-\d+"):
        _read(data)


def test_blank_lines_and_a_long_line_are_read() -> None:
    rows = _csv_bytes(2000).split(b"\n")
    rows[1000] = rows[1000].replace(b"name 999", b"n" * 5000)  # longer than a block
    rows.insert(1200, b"")
    data = b"\n".join(rows)

    got = _read(data)

    assert got.num_rows == 2000
    assert got.column("name")[999].as_py() == "n" * 5000


def test_an_empty_file_does_not_parse() -> None:
    with pytest.raises(pa.ArrowInvalid, match="Empty CSV"):
        _read(b"")


def test_the_source_is_closed_when_read() -> None:
    source = io.BytesIO(_csv_bytes(2000))

    _csv.open_blocks(source, first_block=2000, block=700).read_all()

    assert source.closed
