"""``loopml streams apply``: a YAML file of streams, applied twice (the second a no-op),
then changed, and a file with an unknown field refused with a one-line message."""

from __future__ import annotations

from pathlib import Path

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
