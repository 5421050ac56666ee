"""``loopml tables`` and ``loopml ingest``: lake tables, and files into them."""

from __future__ import annotations

from pathlib import Path

import typer

from loopml.cli._context import project_option, state
from loopml.cli._delete import YES, deleting
from loopml.cli._output import (
    as_json,
    check_output,
    console,
    err_console,
    listing,
    output_option,
    table,
    when,
    wide_option,
)
from loopml.cli.artifacts import _bar
from loopml.core.errors import ValidationError
from loopml.core.lake import ColumnInfo

app = typer.Typer(help="List, inspect and delete a project's lake tables.", no_args_is_help=True)

PROJECT = project_option("The project that owns the table.")
JSON = typer.Option(False, "--json", help="Print JSON instead of a table (-o json).")


@app.command("list")
def list_tables(
    ctx: typer.Context,
    project: str = PROJECT,
    output: str = output_option(),
    wide: bool = wide_option(),
    json_out: bool = JSON,
) -> None:
    """List tables with their version and row count."""
    shape = check_output(output, wide, json_out)
    with state(ctx).client() as client:
        items = client.tables.list(project)
    rows = [(t.name, t.version, t.row_count, len(t.columns), when(t.updated_at)) for t in items]
    records = [t.model_dump(mode="json") for t in items]
    listing(["table", "version", "rows", "columns", "updated"], rows, shape, records=records)


@app.command("show")
def show(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The table."),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Show a table's version, row count and columns."""
    with state(ctx).client() as client:
        info = client.tables.get(project, name)
    if json_out:
        as_json(info.model_dump(mode="json"))
        return
    console.print(f"[bold]{info.name}[/]  version {info.version}, {info.row_count} rows")
    table(
        None, ["column", "type", "nullable"], [(c.name, c.type, c.nullable) for c in info.columns]
    )


@app.command("head")
def head(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The table."),
    n: int = typer.Option(10, "-n", help="How many rows (at most 1000)."),
    project: str = PROJECT,
    output: str = output_option(),
    wide: bool = wide_option(),
    json_out: bool = JSON,
) -> None:
    """Print the first rows of a table (the columns that fit, unless --wide or -o)."""
    shape = check_output(output, wide, json_out)
    with state(ctx).client() as client:
        rows = client.tables.head(project, name, n)
    columns = list(rows[0]) if rows else []
    listing(columns, [[r[c] for c in columns] for r in rows], shape, records=rows)


@app.command("history")
def history(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The table."),
    project: str = PROJECT,
    output: str = output_option(),
    wide: bool = wide_option(),
    json_out: bool = JSON,
) -> None:
    """List a table's commits, newest first."""
    shape = check_output(output, wide, json_out)
    with state(ctx).client() as client:
        commits = client.tables.history(project, name)
    rows = [
        (c.version, when(c.timestamp), c.operation, c.mode or "", c.rows_added or 0)
        for c in commits
    ]
    columns = ["version", "time", "operation", "mode", "rows added"]
    records = [c.model_dump(mode="json") for c in commits]
    listing(columns, rows, shape, required=2, records=records)


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The table."),
    project: str = PROJECT,
    yes: bool = YES,
) -> None:
    """Delete a table and all its data."""
    with deleting(
        ctx, yes, f"delete table {name!r} of project {project!r} and all its data?", "table", name
    ) as client:
        client.tables.delete(project, name)


@app.command("compact")
def compact(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The table."),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Rewrite a table's small files into large ones (a new version with the same rows)."""
    with state(ctx).client() as client:
        report = client.tables.compact(project, name)
    if json_out:
        as_json(report.model_dump(mode="json"))
        return
    console.print(
        f"compacted [bold]{name}[/]: {report.files_before} files ({report.bytes_before} bytes) "
        f"-> {report.files_after} files ({report.bytes_after} bytes), version {report.version}"
    )


@app.command("vacuum")
def vacuum(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The table."),
    project: str = PROJECT,
    retention_hours: int | None = typer.Option(
        None, "--retention-hours", help="Keep files of the last N hours (server default: 168)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what would be freed."),
    json_out: bool = JSON,
) -> None:
    """Free the storage of old versions; versions a run or a snapshot references are kept."""
    with state(ctx).client() as client:
        report = client.tables.vacuum(
            project, name, retention_hours=retention_hours, dry_run=dry_run
        )
    if json_out:
        as_json(report.model_dump(mode="json"))
        return
    verb = "would free" if report.dry_run else "freed"
    kept = ", ".join(map(str, report.kept_versions)) or "none"
    console.print(
        f"{verb} {report.files_deleted} files ({report.bytes_freed} bytes) of [bold]{name}[/] "
        f"older than {report.retention_hours} h; referenced versions kept: {kept}"
    )


def ingest(
    ctx: typer.Context,
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    table_name: str = typer.Option(..., "--table", "-t", help="The table to write to."),
    project: str = PROJECT,
    mode: str = typer.Option("append", "--mode", help="append or overwrite."),
    format: str | None = typer.Option(None, "--format", help="csv, parquet or jsonl."),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="Refuse a file with a column of numbers but for a few values (a typo that "
        "would make a new column text); by default it lands with a warning naming them.",
    ),
    schema: list[str] = typer.Option(
        [],
        "--schema",
        "-s",
        help="Column types instead of inferred ones: NAME:TYPE[,NAME:TYPE...] (age:int64,"
        "zip:string), or a YAML/JSON file of them (@FILE, or a file's path). Repeatable.",
    ),
    again: bool = typer.Option(
        False,
        "--again",
        help="Append the file even if this same file already landed in this table (by "
        "default, running the same ingest again is answered by the commit that holds it).",
    ),
) -> None:
    """Ingest a CSV, Parquet or JSON Lines file into a table (created on first ingest).

    Types are inferred from the file unless --schema declares them; a value that does not
    convert to its declared type refuses the file, naming its rows. The upload carries an
    Idempotency-Key derived from the file and the target, so running the same ingest again
    (after a lost answer) never appends it twice.
    """
    from loopml.client.tables import file_idempotency_key

    declared = {c.name: c.type for c in declared_columns(schema)}
    size = file.stat().st_size
    key = None
    if not again:
        key = file_idempotency_key(
            file, project, table_name, mode, format=format, strict=strict, schema=declared
        )
    with state(ctx).client() as client, _bar(f"ingest {file.name}", size) as bar:
        commit = client.tables.ingest_file(
            project,
            table_name,
            file,
            mode=mode,
            format=format,
            progress=bar,
            strict=strict,
            schema=declared,
            idempotency_key=key,
        )
    if commit.replayed:
        console.print(
            f"already ingested: version {commit.version} of {table_name} holds this file "
            f"({commit.rows_added or 0} rows); nothing was appended (--again appends it again)",
            highlight=False,
        )
        return
    console.print(
        f"ingested [bold]{commit.rows_added or 0}[/] rows into {table_name} "
        f"(version {commit.version})"
    )
    for warning in commit.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    if commit.warnings:
        err_console.print(
            "(declare the column's type with --schema NAME:TYPE to read it as such, naming "
            "the rows that do not convert; --strict refuses such a file)",
            highlight=False,
            soft_wrap=True,
        )


def declared_columns(values: list[str]) -> list[ColumnInfo]:
    """``--schema`` values as columns: ``NAME:TYPE`` lists, or YAML/JSON files of them.

    Raises:
        ValidationError: a declaration that does not parse, an unknown type, a column
            declared twice, or a file that cannot be read.
    """
    from loopml.core.lake import check_declared, columns_from_document, parse_declarations
    from loopml.core.yamltext import load_yaml

    found: list[ColumnInfo] = []
    for value in values:
        path = Path(value[1:] if value.startswith("@") else value)
        if value.startswith("@") or path.is_file():
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValidationError(f"--schema: cannot read {path}: {exc}") from None
            found += columns_from_document(load_yaml(text, f"schema {path}"))
        else:
            found += parse_declarations(p.strip() for p in value.split(",") if p.strip())
    return check_declared(found)


contract_app = typer.Typer(help="Set, show and drop a table's validation contract.")
app.add_typer(contract_app, name="contract", no_args_is_help=True)


@contract_app.command("set")
def contract_set(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The table."),
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, readable=True, help="The contract, YAML or JSON."
    ),
    project: str = PROJECT,
) -> None:
    """Set a table's validation contract from a YAML or JSON file (read safely)."""
    from loopml.core.contracts import load_contract

    contract = load_contract(file.read_text(encoding="utf-8"))
    with state(ctx).client() as client:
        client.tables.set_contract(project, name, contract)
    console.print(f"contract of [bold]{name}[/] set (on_fail: {contract.on_fail})")


@contract_app.command("show")
def contract_show(
    ctx: typer.Context, name: str = typer.Argument(..., help="The table."), project: str = PROJECT
) -> None:
    """Print a table's validation contract as JSON."""
    with state(ctx).client() as client:
        contract = client.tables.get_contract(project, name)
    as_json(contract.model_dump(mode="json", exclude_none=True))


@contract_app.command("delete")
def contract_delete(
    ctx: typer.Context, name: str = typer.Argument(..., help="The table."), project: str = PROJECT
) -> None:
    """Drop a table's validation contract: appends are no longer checked."""
    with state(ctx).client() as client:
        client.tables.delete_contract(project, name)
    console.print(f"contract of [bold]{name}[/] dropped")


@app.command("reports")
def reports(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The table."),
    limit: int = typer.Option(20, "--limit", "-n", help="How many (at most 1000)."),
    project: str = PROJECT,
    output: str = output_option(),
    wide: bool = wide_option(),
    json_out: bool = JSON,
) -> None:
    """List a table's validation reports, newest first."""
    shape = check_output(output, wide, json_out)
    with state(ctx).client() as client:
        page = client.tables.reports(project, name, limit=limit)
    rows = [
        (
            when(r.created_at),
            "passed" if r.passed else f"failed ({r.on_fail})",
            ", ".join(sorted({f"{f.column}:{f.rule}" if f.column else f.rule for f in r.failures})),
            r.rows_checked,
            r.rows_failed,
            "" if r.version is None else r.version,
        )
        for r in page.items
    ]
    columns = ["time", "result", "rules", "rows", "failed", "version"]
    records = [r.model_dump(mode="json") for r in page.items]
    listing(columns, rows, shape, required=2, records=records)
