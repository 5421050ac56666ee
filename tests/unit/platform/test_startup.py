"""What a server wires at startup, checked without starting it."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopml.platform.startup import build_context, build_worker
from loopml.settings import Settings


def test_the_embedded_worker_takes_the_worker_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LOOPML_WORKER_CONCURRENCY", "5")
    monkeypatch.setenv("LOOPML_WORKER_LEASE_S", "30")
    ctx = build_context(Settings(home=tmp_path / "home"))
    try:
        worker = build_worker(ctx)
    finally:
        ctx.store.dispose()

    assert worker.config.concurrency == 5
    assert worker.config.lease_s == 30
    assert worker.config.heartbeat_s == Settings().worker.heartbeat_s
