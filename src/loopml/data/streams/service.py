"""Defining streams: create, apply (a YAML file), list, show, pause, resume, delete.

A definition is checked whole before it is stored: the source URL and subject or key, the
table names, and the transform (one sandboxed ``SELECT`` that reads only ``batch``). The
consumer itself is started by the supervisor (``loopml up``, ``loopml worker``) or by
``loopml streams run``.
"""

from __future__ import annotations

import logging

from loopml.core.errors import ConfigurationError, ServiceUnavailableError, ValidationError
from loopml.core.stream_sources import KafkaSource, NatsSource, parse_source
from loopml.core.streams import (
    MAX_SPECS_CHARS,
    Stream,
    StreamApplied,
    StreamConfig,
    StreamCreated,
    StreamDeleted,
    StreamsApplied,
    StreamSpec,
    dead_letter_for,
    parse_stream_specs,
    validate_stream_name,
)
from loopml.core.yamltext import load_yaml
from loopml.data import _sandbox
from loopml.data.streams.base import consumer_name, ensure_broker_stream, remove_broker_consumer
from loopml.settings import StreamsSettings
from loopml.store import MetadataStore
from loopml.store import streams as stream_rows

log = logging.getLogger("loopml.data.streams")


def check_transform(sql: str) -> str:
    """``sql`` if it is one safe ``SELECT`` that reads only the micro-batch, ``batch``.

    Raises:
        ValidationError: another statement, a refused function, or another table read.
    """
    refs = _sandbox.check_query(_sandbox.checker(), sql)
    others = sorted({ref.alias for ref in refs} - {"batch"})
    if others:
        raise ValidationError(
            f"a stream's transform reads only its micro-batch, the table `batch`; it reads "
            f"{others}: join other tables later, in a pipeline step",
            details={"field": "transform", "tables": others},
        )
    return sql


def create(
    store: MetadataStore,
    project: str,
    name: str,
    *,
    source: str,
    table: str,
    subject: str | None = None,
    dead_letter: str | None = None,
    transform: str | None = None,
    batch_rows: int | None = None,
    batch_ms: int | None = None,
    redeliver_s: int | None = None,
    push: list[str] | None = None,
    create_stream: bool = False,
    actor: str,
) -> StreamCreated:
    """Define a stream (see ``loopml.core.stream_sources.parse_source`` for ``source``). With
    ``create_stream``, a NATS source's JetStream stream is made first when none captures
    the subject (``loopml-<project>-<name>``, over exactly that subject); the answer's
    ``broker_stream`` says which one it reads.

    Raises:
        ValidationError: a bad name, source, subject, table name, transform or bound, or
            a ``push`` view that does not read ``table`` (one not applied yet is accepted,
            and pushed to once it is).
        NotFoundError: no such project.
        AlreadyExistsError: the project has a stream of that name.
        ServiceUnavailableError: ``create_stream`` and the broker cannot be reached.
        ConflictError: ``create_stream`` and the broker refused the new stream.
    """
    spec = StreamSpec.model_construct(
        name=name,
        source=source,
        table=table,
        subject=subject,
        dead_letter=dead_letter,
        transform=transform,
        batch_rows=batch_rows,
        batch_ms=batch_ms,
        redeliver_s=redeliver_s,
        push=push,
    )
    config = build_config(store, project, spec)
    broker = None
    if create_stream:
        # Before the row, so a broker that refuses leaves no definition behind; a stream
        # made for a name already taken is found and reused by the next try.
        broker = ensure_broker_stream(config.source, f"loopml-{project}-{name}")
    with store.session() as session:
        made = stream_rows.create(session, project, name, config, actor=actor)
    return StreamCreated(**made.model_dump(), broker_stream=broker)


def build_config(store: MetadataStore, project: str, spec: StreamSpec) -> StreamConfig:
    """The checked configuration a definition asks for (defaults filled in).

    Raises:
        ValidationError: see ``create``.
    """
    validate_stream_name(spec.name)
    if spec.transform is not None:
        check_transform(spec.transform)
    fields: dict[str, object] = {
        "source": parse_source(spec.source, spec.subject),
        "table": spec.table,
        "dead_letter": spec.dead_letter or dead_letter_for(spec.table),
        "transform": spec.transform,
    }
    for key in ("batch_rows", "batch_ms", "redeliver_s", "push"):
        if getattr(spec, key):
            fields[key] = getattr(spec, key)
    config = _config(fields)
    if config.push:
        from loopml.data.features.push import check_push

        check_push(store, project, config.table, config.push)
    return config


def apply(store: MetadataStore, project: str, text: str, *, actor: str) -> StreamsApplied:
    """Create or update the streams a YAML file defines, all or none: a stream that does
    not exist is created, one whose configuration differs is updated (its consumer commits
    what it holds and restarts with the new one), an equal one is left alone.

    Raises:
        ValidationError: bad YAML, an unknown field, a bad value (each names its entry).
        ConflictError: a change to a stream's source, table or redelivery delay, or a
            ``create_stream`` the broker refused.
        NotFoundError: no such project.
        ServiceUnavailableError: a ``create_stream`` whose broker cannot be reached.
    """
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_SPECS_CHARS:
        raise ValidationError(
            f"expected a streams file of 1 to {MAX_SPECS_CHARS} characters",
            details={"field": "spec"},
        )
    specs = parse_stream_specs(load_yaml(text, "streams file"))
    configs = [(spec, build_config(store, project, spec)) for spec in specs]
    # Before the rows, as ``create`` does: a broker that refuses leaves no definition.
    brokers = [
        ensure_broker_stream(config.source, f"loopml-{project}-{spec.name}")
        if spec.create_stream
        else None
        for spec, config in configs
    ]
    with store.session() as session:
        items = [
            StreamApplied(stream=made, action=action, broker_stream=broker)
            for (made, action), broker in zip(
                (
                    stream_rows.put(session, project, spec.name, config, actor=actor)
                    for spec, config in configs
                ),
                brokers,
                strict=True,
            )
        ]
    return StreamsApplied(items=items)


def _config(fields: dict[str, object]) -> StreamConfig:
    from pydantic import ValidationError as PydanticError

    try:
        return StreamConfig.model_validate(fields)
    except PydanticError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "stream"
        raise ValidationError(
            f"invalid stream definition: {where}: {first['msg']}", details={"field": where}
        ) from None


def list_streams(store: MetadataStore, project: str) -> list[Stream]:
    """A project's streams, by name, with their consumers' last reports."""
    with store.session() as session:
        return stream_rows.list_(session, project)


def get(store: MetadataStore, project: str, name: str) -> Stream:
    """One stream; ``NotFoundError`` when absent."""
    with store.session() as session:
        return stream_rows.get(session, project, name)


def set_paused(
    store: MetadataStore, project: str, name: str, paused: bool, *, actor: str
) -> Stream:
    """Pause (the consumer commits what it holds and stops fetching) or resume a stream."""
    with store.session() as session:
        return stream_rows.set_paused(session, project, name, paused, actor=actor)


def delete(
    store: MetadataStore,
    project: str,
    name: str,
    *,
    actor: str,
    secrets: StreamsSettings | None = None,
) -> StreamDeleted:
    """Delete a stream's definition and its consumer on the broker (``broker_consumer``
    says what became of it); its tables and the broker's messages stay. A broker that
    cannot be reached leaves its consumer, with the way to remove it by hand: the
    definition is deleted all the same (a stream is often deleted because its broker is
    gone). ``secrets``: the server's stream settings, for the broker's login."""
    with store.session() as session:
        gone = stream_rows.delete(session, project, name, actor=actor)
    try:
        found = remove_broker_consumer(gone, secrets)
    except (ConfigurationError, ServiceUnavailableError) as exc:
        left = f"left on the broker ({exc}): {_removal_hint(gone)}"
        log.warning("stream %s/%s deleted; its consumer was %s", project, name, left)
        return StreamDeleted(**gone.model_dump(), broker_consumer=left)
    return StreamDeleted(**gone.model_dump(), broker_consumer="removed" if found else "none")


def _removal_hint(stream: Stream) -> str:
    source, consumer = stream.config.source, consumer_name(stream)
    if isinstance(source, NatsSource):
        return (
            f"nats --server {source.url} consumer rm "
            f"<the stream capturing {source.subject}> {consumer}"
        )
    if isinstance(source, KafkaSource):
        server = source.url.removeprefix("kafka://")
        return f"kafka-consumer-groups.sh --bootstrap-server {server} --delete --group {consumer}"
    return f"redis-cli -u {source.url} XGROUP DESTROY {source.key} {consumer}"
