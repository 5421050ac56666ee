"""The Kafka SASL password: a server setting handed to the consumer process and its
librdkafka client, never stored in a stream's definition (issue 52)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from loopml.core.stream_sources import KafkaSource, parse_source
from loopml.data.streams import service
from loopml.data.streams.backends.kafka import KafkaStreamSource, client_config
from loopml.data.streams.base import open_source
from loopml.platform.stream_supervisor import StreamSupervisor
from loopml.settings import Settings, StreamsSettings
from loopml.store import MetadataStore

PASSWORD = "pw-3f9c1e"
SASL_URL = (
    "kafka://broker:9093?security.protocol=SASL_SSL&sasl.mechanism=SCRAM-SHA-512"
    "&sasl.username=loopml&ssl.ca.location=/etc/ca.pem"
)


def test_the_password_joins_the_client_config_of_a_source_naming_a_sasl_user() -> None:
    source = parse_source(SASL_URL, "orders")
    assert isinstance(source, KafkaSource)
    config = client_config(source, SecretStr(PASSWORD))
    assert config["sasl.password"] == PASSWORD
    assert config["sasl.username"] == "loopml"
    assert config["bootstrap.servers"] == "broker:9093"


def test_a_source_without_sasl_never_gets_the_password() -> None:
    source = parse_source("kafka://broker:9093?security.protocol=SSL", "orders")
    assert isinstance(source, KafkaSource)
    assert "sasl.password" not in client_config(source, SecretStr(PASSWORD))
    assert "sasl.password" not in client_config(parse_source(SASL_URL, "orders"))  # type: ignore[arg-type]


def test_the_environment_variable_reaches_the_consumer_s_librdkafka_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOOPML_STREAMS_KAFKA_SASL_PASSWORD", PASSWORD)
    settings = Settings()
    assert PASSWORD not in repr(settings)
    source = open_source(parse_source(SASL_URL, "orders"), "loopml-s", 5, settings.streams)
    assert isinstance(source, KafkaStreamSource)
    assert source._settings()["sasl.password"] == PASSWORD  # no connection before open


def test_the_supervisor_hands_the_password_to_its_consumer_processes(
    store: MetadataStore, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path, streams=StreamsSettings(kafka_sasl_password=PASSWORD))
    supervisor = StreamSupervisor(store, settings)
    try:
        written = supervisor._workdir() / "settings.json"
        assert written.stat().st_mode & 0o077 == 0
        # What the consumer process reads (loopml.platform.stream_process.main).
        read = Settings.model_validate(json.loads(written.read_text(encoding="utf-8")))
    finally:
        supervisor.stop()
    assert read.streams.kafka_sasl_password is not None
    assert read.streams.kafka_sasl_password.get_secret_value() == PASSWORD


def test_the_stored_definition_never_holds_the_password(store: MetadataStore) -> None:
    from loopml.store import projects

    with store.session() as session:
        projects.create(session, "p", actor="test")
    made = service.create(
        store, "p", "s1", source=SASL_URL, subject="orders", table="orders", actor="test"
    )
    shown = service.get(store, "p", "s1")
    assert made.config.source.options["sasl.username"] == "loopml"  # type: ignore[union-attr]
    for stream in (made, shown):
        assert PASSWORD not in stream.model_dump_json()
        assert "sasl.password" not in stream.model_dump_json()
