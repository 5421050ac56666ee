"""``loopml streams``: consume NATS JetStream subjects, Redis streams and Kafka topics into
lake tables."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from loopml.cli._context import project_option, state
from loopml.cli._output import (
    as_json,
    check_output,
    console,
    listing,
    output_option,
    when,
    wide_option,
)

if TYPE_CHECKING:
    from loopml.core.streams import BrokerStream, Stream

app = typer.Typer(
    help="Streams: NATS JetStream, Redis Streams and Kafka into lake tables.",
    no_args_is_help=True,
)

PROJECT = project_option("The project that owns it.")
JSON = typer.Option(False, "--json", help="Print JSON instead of text.")
NAME = typer.Argument(..., help="The stream's name.")


def _where(found: Stream) -> str:
    source = found.config.source
    if source.type == "nats":
        return f"{source.url} subject {source.subject}"
    if source.type == "kafka":
        return f"{source.url} topic {source.topic}"
    return f"{source.url} key {source.key}"


def _show(found: Stream) -> None:
    stats = found.stats
    config = found.config
    console.print(
        f"stream [bold]{found.name}[/] reads {_where(found)} into table {config.table} "
        f"(dead letters: {config.dead_letter}); batches of {config.batch_rows} rows or "
        f"{config.batch_ms} ms; {'paused' if found.paused else 'active'}",
        highlight=False,
    )
    if config.transform:
        console.print(f"transform: {config.transform}", highlight=False, markup=False)
    last = when(stats.last_commit_at) if stats.last_commit_at else "never"
    console.print(
        f"status {stats.status}; {stats.messages} messages committed ({stats.dead_letters} "
        f"dead letters) in {stats.commits} commits, last {last}; lag {_n(stats.lag)}, "
        f"rate {_n(stats.rate)}/s, errors {stats.errors}",
        highlight=False,
    )
    if stats.last_error:
        at = f" ({when(stats.last_error_at)})" if stats.last_error_at else ""
        console.print(f"last error{at}: {stats.last_error}", highlight=False, markup=False)


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _out(found: Stream, json_out: bool) -> None:
    if json_out:
        as_json(found.model_dump(mode="json"))
    else:
        _show(found)


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = NAME,
    source: str = typer.Option(
        ...,
        "--source",
        help="nats://host:port, redis://host:port/db?stream=key or kafka://host:port.",
    ),
    table_: str = typer.Option(..., "--table", help="The lake table the rows land in."),
    subject: str | None = typer.Option(
        None, "--subject", help="The NATS subject (orders.*) or the Kafka topic."
    ),
    dead_letter: str | None = typer.Option(None, "--dead-letter", help="Default <table>__dead."),
    transform: str | None = typer.Option(None, "--transform", help="SELECT ... FROM batch."),
    batch_rows: int | None = typer.Option(None, "--batch-rows", min=1, help="Rows per commit."),
    batch_ms: int | None = typer.Option(None, "--batch-ms", min=1, help="Most ms per batch."),
    redeliver_s: int | None = typer.Option(
        None, "--redeliver-s", min=1, help="Redeliver what is not acked after this (60)."
    ),
    push: list[str] = typer.Option(
        [], "--push", help="A feature view over the table to write each batch to (repeatable)."
    ),
    create_stream: bool = typer.Option(
        False,
        "--create-stream",
        help="NATS: make the JetStream stream over the subject if none captures it.",
    ),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Consume a subject or stream key into a table, exactly once, from its start."""
    with state(ctx).client() as client:
        made = client.streams.create(
            name,
            source=source,
            table=table_,
            subject=subject,
            dead_letter=dead_letter,
            transform=transform,
            batch_rows=batch_rows,
            batch_ms=batch_ms,
            redeliver_s=redeliver_s,
            push=push or None,
            create_stream=create_stream,
            project=project,
        )
    if not json_out:
        _say_broker(made, made.broker_stream)
    _out(made, json_out)


def _say_broker(stream: Stream, broker: BrokerStream | None) -> None:
    """Which JetStream stream a ``create_stream`` read: made now, or found."""
    where = stream.config.source
    if broker is not None and where.type == "nats":
        how = "created over" if broker.created else "already captures"
        console.print(f"JetStream stream {broker.name} {how} {where.subject!r}", highlight=False)


@app.command("apply")
def apply(
    ctx: typer.Context,
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="YAML: a stream, or a list under 'streams'."
    ),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Create or update the streams a YAML file defines (the fields of `streams create`):
    all or none; an unchanged stream is left alone."""
    with state(ctx).client() as client:
        applied = client.streams.apply(file.read_text(encoding="utf-8"), project=project)
    if json_out:
        as_json(applied.model_dump(mode="json"))
        return
    for item in applied.items:
        _say_broker(item.stream, item.broker_stream)
        console.print(
            f"stream {item.stream.name} {item.action} ({_where(item.stream)} into table "
            f"{item.stream.config.table})",
            highlight=False,
            soft_wrap=True,
        )


@app.command("list")
def list_(
    ctx: typer.Context,
    project: str = PROJECT,
    output: str = output_option(),
    wide: bool = wide_option(),
    json_out: bool = JSON,
) -> None:
    """The project's streams with their status, lag, rate and errors."""
    shape = check_output(output, wide, json_out)
    with state(ctx).client() as client:
        found = client.streams.list(project)
    rows = [
        [
            s.name,
            s.config.source.type,
            s.config.table,
            s.stats.status,
            s.stats.messages,
            s.stats.dead_letters,
            _n(s.stats.lag),
            _n(s.stats.rate),
            s.stats.errors,
        ]
        for s in found
    ]
    columns = ["name", "source", "table", "status", "messages", "dead", "lag", "rate/s", "errors"]
    records = [s.model_dump(mode="json") for s in found]
    listing(columns, rows, shape, required=2, records=records)


@app.command("show")
def show(
    ctx: typer.Context, name: str = NAME, project: str = PROJECT, json_out: bool = JSON
) -> None:
    """One stream in full."""
    with state(ctx).client() as client:
        _out(client.streams.get(name, project=project), json_out)


@app.command("pause")
def pause(ctx: typer.Context, name: str = NAME, project: str = PROJECT) -> None:
    """Commit what the consumer holds, then stop fetching."""
    with state(ctx).client() as client:
        client.streams.pause(name, project=project)
    console.print(f"stream {name} paused", highlight=False)


@app.command("resume")
def resume(ctx: typer.Context, name: str = NAME, project: str = PROJECT) -> None:
    """Fetch again, where the acks left off."""
    with state(ctx).client() as client:
        client.streams.resume(name, project=project)
    console.print(f"stream {name} resumed", highlight=False)


@app.command("delete")
def delete(ctx: typer.Context, name: str = NAME, project: str = PROJECT) -> None:
    """Delete the definition and its consumer on the broker; its tables and the broker's
    messages stay."""
    with state(ctx).client() as client:
        gone = client.streams.delete(name, project=project)
    consumer = {
        "removed": "its consumer on the broker removed",
        "none": "the broker held no consumer of it",
    }.get(gone.broker_consumer, f"its consumer {gone.broker_consumer}")
    console.print(f"stream {name} deleted; {consumer}", highlight=False)


@app.command("run")
def run(ctx: typer.Context, name: str = NAME, project: str = PROJECT) -> None:
    """Run the stream's consumer in the foreground, against the configured metadata
    database (server side, like `loopml worker`). SIGTERM or Ctrl-C commits what it
    holds and stops."""
    from loopml.data.streams import service as streams
    from loopml.platform.stream_process import run as run_consumer
    from loopml.wiring import open_metadata_store

    settings = state(ctx).settings
    store = open_metadata_store(settings)
    try:
        stream_id = streams.get(store, project, name).id
    finally:
        store.dispose()
    raise typer.Exit(run_consumer(settings, stream_id))
