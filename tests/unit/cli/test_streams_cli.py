"""``loopml streams apply``: a YAML file of streams, applied twice (the second a no-op),
then changed, and a file with an unknown field refused with a one-line message."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loopml.core.errors import ConfigurationError
from loopml.data.streams.consumer import StreamConsumer
from loopml.settings import LakeSettings
from loopml.store import streams as stream_rows
from loopml.wiring import open_artifact_store
from tests.unit.api.test_streams import STREAMS_FILE as FILE

from .conftest import Platform


def _batch_ms(platform: Platform) -> int:
    with platform.client() as client:
        return client.streams.get("orders-in").config.batch_ms


def test_streams_apply_creates_leaves_alone_and_updates(platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "streams.yaml"
    path.write_text(FILE)
    first = platform.cli("streams", "apply", str(path), "--project", "default")
    assert first.exit_code == 0, first.output
    assert (
        "stream orders-in created (nats://127.0.0.1:4222 subject orders.* into table orders)"
        in (first.stdout)
    )
    assert "stream clicks created (redis://127.0.0.1:6379/0 key clicks" in first.stdout
    again = platform.cli("streams", "apply", str(path))
    assert again.stdout.count(" unchanged ") == 2, again.stdout
    path.write_text(FILE.replace("batch_ms: 100", "batch_ms: 300"))
    changed = platform.cli("streams", "apply", str(path))
    assert "stream orders-in updated" in changed.stdout
    assert "stream clicks unchanged" in changed.stdout
    assert _batch_ms(platform) == 300

    path.write_text(FILE.replace("batch_ms: 100", "batch_ms: 100\n    batchrows: 5"))
    refused = platform.cli("streams", "apply", str(path))
    assert refused.exit_code != 0
    assert "streams[0] (orders-in): unknown field 'batchrows'" in str(refused.exception)
    assert _batch_ms(platform) == 300  # nothing written


@pytest.mark.nats
def test_a_consumer_that_cannot_start_says_why_in_streams_show_and_on_metrics(
    platform: Platform, nats_server: str
) -> None:
    """A subject no JetStream stream captures: the reason (and the fix) used to be printed
    only by a foreground ``streams run``; ``show`` said ``status stopped ... errors 0``."""
    subject = f"nowhere{uuid.uuid4().hex[:8]}.*"
    name = f"lost-{uuid.uuid4().hex[:6]}"
    made = platform.cli(
        "streams", "create", name, "--source", nats_server, "--subject", subject,
        "--table", "lost",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    ctx = platform.ctx
    with ctx.store.session() as session:
        stream = stream_rows.get(session, "default", name)
    consumer = StreamConsumer(ctx.store, open_artifact_store(ctx.settings), LakeSettings(), stream)
    before = datetime.now(UTC).replace(microsecond=0)
    with pytest.raises(ConfigurationError, match="nats stream add"):
        asyncio.run(consumer.run())

    shown = platform.cli("streams", "show", name)
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.stdout.split())  # as wrapped at 80 columns
    assert "status failing;" in text
    assert "errors 1" in text
    found = re.search(r"last error \(([\d-]+ [\d:]+)\): (.*)$", text)
    assert found, text
    at = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S").astimezone()
    assert before <= at <= datetime.now(UTC)
    fix = (
        f"starting: ConfigurationError: no JetStream stream captures the subject {subject!r}: "
        f"create one (nats stream add --subjects '{subject}')"
    )
    assert found.group(2) == fix

    with platform.client() as client:
        got = client.streams.get(name)
    assert (got.stats.status, got.stats.errors, got.stats.last_error) == ("failing", 1, fix)
    assert got.stats.last_error_at is not None
    text = httpx.get(f"{platform.url}/metrics", timeout=30).text
    mine = {"project": "default", "source": "nats", "stream": name, "table": "lost"}
    scraped = {
        (sample.name, tuple(sorted(set(sample.labels.items()) - set(mine.items())))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.items() >= mine.items()
    }
    assert scraped[("loopml_stream_status", (("status", "failing"),))] == 1
    assert scraped[("loopml_stream_errors_total", ())] == 1
    assert scraped[("loopml_stream_last_error_info", (("error", fix),))] == 1
    stamp = scraped[("loopml_stream_last_error_timestamp_seconds", ())]
    assert abs(stamp - got.stats.last_error_at.timestamp()) < 1
