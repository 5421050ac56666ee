"""Where a stream reads: a NATS subject, a Redis stream key or a Kafka topic, each a source
type chosen by its ``type``, and the source URLs that name them. No I/O here."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from loopml.core.errors import ValidationError

SUBJECT_PATTERN = re.compile(r"^[A-Za-z0-9_\-]+(\.([A-Za-z0-9_\-]+|\*))*(\.>)?$|^>$")
"""A NATS subject: dot-separated tokens, ``*`` for one token, a final ``>`` for the rest."""
REDIS_KEY_PATTERN = re.compile(r"^[!-~]{1,200}$")
KAFKA_TOPIC_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
KAFKA_OPTIONS = frozenset(
    {
        "security.protocol",
        "sasl.mechanism",
        "sasl.username",
        "ssl.ca.location",
        "ssl.certificate.location",
        "ssl.key.location",
        "ssl.endpoint.identification.algorithm",
        "client.id",
    }
)
"""The librdkafka settings a ``kafka://`` source may carry in its query: how to reach a
real cluster, nothing secret (the definition is stored in the metadata database)."""


class NatsSource(BaseModel):
    """A JetStream subject, read by a durable pull consumer with explicit acks.

    Attributes:
        url: the server, ``nats://host:port``.
        subject: the subject (wildcards allowed) the consumer filters on; a JetStream
            stream must already capture it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["nats"] = "nats"
    url: str
    subject: str


class RedisSource(BaseModel):
    """A Redis stream key, read through a consumer group.

    Attributes:
        url: the server and database, ``redis://host:port/db``.
        key: the stream's key (created empty if missing).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["redis"] = "redis"
    url: str
    key: str


class KafkaSource(BaseModel):
    """A Kafka topic, read through a consumer group with manual offset commits.

    Attributes:
        url: the bootstrap server, ``kafka://host:port``.
        topic: the topic (it must exist).
        options: librdkafka settings for a real cluster (``KAFKA_OPTIONS``: TLS, the SASL
            mechanism and user); the SASL password is never stored here.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["kafka"] = "kafka"
    url: str
    topic: str
    options: dict[str, str] = Field(default_factory=dict)


AnySource = NatsSource | RedisSource | KafkaSource
SCHEMES = ("nats", "redis", "kafka")


def parse_source(source: str, subject: str | None = None) -> AnySource:
    """The source named by a URL: ``nats://host:port`` with ``subject``,
    ``redis://host:port/db?stream=key`` (``subject`` may name the key instead), or
    ``kafka://host:port`` with ``subject`` naming the topic (or ``?topic=``; other query
    keys are librdkafka settings from ``KAFKA_OPTIONS``).

    Raises:
        ValidationError: another scheme, credentials or a path where none is expected, a
            missing or malformed subject, key or topic, a librdkafka setting not allowed.
    """
    parts = urlsplit(source.strip())
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ValidationError(
            f"unsupported stream source {source[:100]!r}: expected nats://host:port (with a "
            "subject), redis://host:port/db?stream=key or kafka://host:port (with a topic)",
            details={"field": "source", "expected": list(SCHEMES)},
        )
    if parts.username or parts.password:
        raise ValidationError(
            "credentials in a stream source URL are not supported yet (they would be stored "
            "in the metadata database): use a broker on a trusted network",
            details={"field": "source"},
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise ValidationError(f"bad port in {source[:100]!r}", details={"field": "source"}) from exc
    if parts.scheme == "nats":
        return _nats(parts.hostname, port or 4222, parts.path, subject)
    if parts.scheme == "kafka":
        return _kafka(parts.hostname, port or 9092, parts.path, parts.query, subject)
    return _redis(parts.hostname, port or 6379, parts.path, parts.query, subject)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _nats(host: str, port: int, path: str, subject: str | None) -> NatsSource:
    if path not in ("", "/"):
        raise ValidationError("a nats:// source has no path", details={"field": "source"})
    if not subject or len(subject) > 200 or not SUBJECT_PATTERN.fullmatch(subject):
        raise ValidationError(
            f"a nats:// source needs a subject such as 'orders.*' or 'orders.>', got "
            f"{(subject or '')[:80]!r}",
            details={"field": "subject"},
        )
    return NatsSource(url=f"nats://{_host(host)}:{port}", subject=subject)


def _redis(host: str, port: int, path: str, query: str, subject: str | None) -> RedisSource:
    db = path.strip("/") or "0"
    if not db.isdigit() or int(db) > 15:
        raise ValidationError(
            f"a redis:// source's path is its database number (0-15), got {path[:40]!r}",
            details={"field": "source"},
        )
    keys = parse_qs(query).get("stream", [])
    key = keys[0] if keys else subject
    if not key or not REDIS_KEY_PATTERN.fullmatch(key):
        raise ValidationError(
            "a redis:// source needs its stream key: redis://host:port/0?stream=orders (1 to "
            "200 visible ASCII characters)",
            details={"field": "stream"},
        )
    return RedisSource(url=f"redis://{_host(host)}:{port}/{int(db)}", key=key)


def _kafka(host: str, port: int, path: str, query: str, subject: str | None) -> KafkaSource:
    if path not in ("", "/"):
        raise ValidationError("a kafka:// source has no path", details={"field": "source"})
    options = {k: v[-1] for k, v in parse_qs(query).items()}
    topic = options.pop("topic", None) or subject
    unknown = sorted(set(options) - KAFKA_OPTIONS)
    if unknown:
        secret = any("password" in k or "secret" in k for k in unknown)
        raise ValidationError(
            f"a kafka:// source does not take {unknown[0]!r}"
            + (
                " (a secret is never stored in a stream's definition: see docs/streams.md, Kafka)"
                if secret
                else f"; it takes {', '.join(sorted(KAFKA_OPTIONS))}"
            ),
            details={"field": "source"},
        )
    if not topic or not KAFKA_TOPIC_PATTERN.fullmatch(topic):
        raise ValidationError(
            "a kafka:// source needs its topic (--subject, or kafka://host:9092?topic=orders): "
            f"1 to 249 letters, digits, '.', '_' or '-', got {(topic or '')[:80]!r}",
            details={"field": "subject"},
        )
    return KafkaSource(url=f"kafka://{_host(host)}:{port}", topic=topic, options=options)
