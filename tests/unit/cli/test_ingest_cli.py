"""``loopml ingest`` against a real platform: a warning naming the rows when a few values
made a new column text, ``--strict`` to refuse such a file, ``--schema`` to declare types
(inline or from a YAML/JSON file)."""

from __future__ import annotations

import json
import socketserver
from pathlib import Path

from typer.testing import CliRunner

from loopml.cli import main
from tests.conftest import serving

from .conftest import Platform


def _people(path: Path, bad: str = "forty") -> Path:
    lines = ["age,zip,name", *(f"{20 + i},0{2134 + i},n{i}" for i in range(9)), f"{bad},02200,n9"]
    path.write_text("\n".join(lines) + "\n")
    return path


def _table(platform: Platform, name: str) -> dict[str, str]:
    shown = platform.cli("tables", "show", name, "--json")
    assert shown.exit_code == 0, shown.output
    return {c["name"]: c["type"] for c in json.loads(shown.stdout)["columns"]}


def test_ingest_warns_refuses_with_strict_and_reads_a_declared_schema(
    platform: Platform, tmp_path: Path
) -> None:
    people = _people(tmp_path / "people.csv")

    strict = platform.cli("ingest", str(people), "-t", "strict_people", "--strict")
    assert strict.exit_code == 1
    assert "refused (strict): column 'age' is stored as text: line 11 ('forty') is not a" in str(
        strict.exception
    )
    assert "strict_people" not in platform.cli("tables", "list", "-o", "csv").stdout

    warned = platform.cli("ingest", str(people), "-t", "people")
    assert warned.exit_code == 0, warned.output
    assert "ingested 10 rows into people" in warned.stdout
    assert (
        "warning: column 'age' is stored as text: line 11 ('forty') is not a number"
        in warned.stderr
    )
    assert "--schema NAME:TYPE" in warned.stderr
    assert _table(platform, "people") == {"age": "string", "zip": "int64", "name": "string"}

    refused = platform.cli("ingest", str(people), "-t", "typed", "--schema", "age:int64")
    assert refused.exit_code == 1
    assert "column 'age' is declared int64, but line 11 ('forty') does not convert" in str(
        refused.exception
    )
    assert "typed" not in platform.cli("tables", "list", "-o", "csv").stdout

    fixed = _people(tmp_path / "fixed.csv", bad="29")
    typed = platform.cli("ingest", str(fixed), "-t", "typed", "-s", "age:int16,zip:string")
    assert typed.exit_code == 0, typed.output
    assert typed.stderr == ""  # nothing inferred as text by accident
    assert _table(platform, "typed") == {"age": "int16", "zip": "string", "name": "string"}
    head = json.loads(platform.cli("tables", "head", "typed", "-n", "1", "-o", "json").stdout)
    assert head == [{"age": 20, "zip": "02134", "name": "n0"}]  # the leading zero kept


def test_ingest_reads_a_schema_file_and_explains_a_bad_one(
    platform: Platform, tmp_path: Path
) -> None:
    fixed = _people(tmp_path / "fixed.csv", bad="29")
    schema = tmp_path / "schema.yaml"
    schema.write_text("age: double\nzip: string\n")
    done = platform.cli("ingest", str(fixed), "-t", "from_file", "--schema", f"@{schema}")
    assert done.exit_code == 0, done.output
    assert _table(platform, "from_file") == {"age": "double", "zip": "string", "name": "string"}
    listed = tmp_path / "schema.json"
    listed.write_text('{"columns": [{"name": "zip", "type": "string"}]}')
    again = platform.cli("ingest", str(fixed), "-t", "from_file", "-s", str(listed))
    assert again.exit_code == 0, again.output  # zip read as text, age inferred: it fits

    for bad, message in [
        ("age", "expected NAME:TYPE"),
        ("age:integer", "unknown column type 'integer' for 'age'"),
        ("age:int64,age:string", "column 'age' is declared twice"),
        ("weight:double", "the schema declares 'weight', which the file does not have"),
        (f"@{tmp_path / 'none.yaml'}", "--schema: cannot read"),
    ]:
        result = platform.cli("ingest", str(fixed), "-t", "bad_schema", "-s", bad)
        assert result.exit_code == 1, (bad, result.output)
        assert message in str(result.exception), (bad, result.exception)


class _HangsUp(socketserver.StreamRequestHandler):
    """Reads a whole request, then closes the connection without answering: a server that
    died (or a proxy that dropped the connection) after the upload was sent."""

    def handle(self) -> None:
        length = 0
        while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        self.rfile.read(length)
        self.server.uploads += 1  # type: ignore[attr-defined]


def test_a_connection_cut_after_the_upload_says_it_may_have_committed_and_how_to_check(
    tmp_path: Path,
) -> None:
    """Issue 51, item 4: it said "cannot reach loopml ... Is the server running?"."""
    people = _people(tmp_path / "people.csv")
    server = socketserver.TCPServer(("127.0.0.1", 0), _HangsUp)
    server.uploads = 0  # type: ignore[attr-defined]
    with serving(server) as url:
        environment = {"LOOPML_CLIENT_URL": url, "COLUMNS": "200"}
        result = CliRunner().invoke(
            main.app, ["ingest", str(people), "-t", "people", "-p", "shop"], env=environment
        )
    assert server.uploads == 1  # type: ignore[attr-defined]
    assert result.exit_code == 1
    said = str(result.exception)
    assert "the ingest may have committed" in said
    assert "`loopml tables history people -p shop`" in said
    assert "Is the server running?" not in said


def test_the_same_ingest_run_again_lands_once_unless_asked_again(
    platform: Platform, tmp_path: Path
) -> None:
    """Issue 51, item 4: `loopml ingest` sends an Idempotency-Key from the file and target."""
    people = _people(tmp_path / "people.csv", bad="40")
    first = platform.cli("ingest", str(people), "-t", "once")
    assert first.exit_code == 0, first.output
    assert "ingested 10 rows into once (version 0)" in first.stdout
    again = platform.cli("ingest", str(people), "-t", "once")
    assert again.exit_code == 0, again.output
    assert "already ingested: version 0 of once holds this file (10 rows)" in again.stdout
    with platform.client() as client:
        assert client.tables.get("default", "once").row_count == 10
    forced = platform.cli("ingest", str(people), "-t", "once", "--again")
    assert forced.exit_code == 0, forced.output
    assert "ingested 10 rows into once (version 1)" in forced.stdout
