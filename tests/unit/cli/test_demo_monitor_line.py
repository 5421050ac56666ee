"""The demo's closing monitor line on a home where a demo ran before (issue 55, item 1): the
first run's windows (same model, same version number) hold as many labels as this run
sends, and the line stopped waiting at once, saying "528 rows, 0 labels" with no accuracy
while this run's window came to 941 rows, 119 labels, 0.95 accuracy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from loopml import projects
from loopml.cli import _demo_say
from loopml.cli._demo_data import DEPLOYMENT, MODEL, PROJECT
from loopml.client import Client
from loopml.monitor.windows import window_start
from loopml.store import monitor as rows
from tests.unit.cli.conftest import Platform, make_deployment, serve
from tests.waiting import REQUEST_GUARD_S

LABELS = 119


def _put(platform: Platform, start: datetime, count: int, labels: int, accuracy: float) -> None:
    """A 1-hour window of the demo's deployment, as the monitor leaves one."""
    quality: dict[str, Any] = {"labels": labels, "coverage": labels / count}
    if labels:
        quality["accuracy"] = accuracy
    summary = {
        "usage": {"requests": count, "errors": 0, "rows": count},
        "quality": quality,
        "drift": {"status": "off", "reason": "no reference"},
    }
    window = {
        "end": start + timedelta(hours=1), "rows": count, "labels": labels,
        "state": {}, "summary": summary,
    }  # fmt: skip
    with platform.ctx.store.session() as session:
        rows.put_window(session, PROJECT, (DEPLOYMENT, MODEL, 1, "1h", start), window)


def test_the_closing_line_waits_for_this_runs_labels_not_the_first_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve(tmp_path) as platform:
        projects.create(platform.ctx.store, PROJECT, actor="test")
        make_deployment(platform, PROJECT, DEPLOYMENT)
        hour = window_start(datetime.now(UTC), 3600)
        _put(platform, hour - timedelta(hours=1), 822, LABELS, 0.93)  # the first run's
        _put(platform, hour, 528, 0, 0.0)  # this run's: the monitor has not read its labels
        views = [0]

        def monitor_reads_the_labels(response: httpx.Response) -> None:
            # The monitor's next round counts this run's labels, once the line has looked.
            if response.request.url.path.endswith("/monitor"):
                views[0] += 1
                if views[0] == 2:
                    _put(platform, hour, 941, LABELS, 0.95)

        http = httpx.Client(
            base_url=platform.url,
            event_hooks={"response": [monitor_reads_the_labels]},
            timeout=REQUEST_GUARD_S,
        )
        with Client(http=http) as client:
            marks = _demo_say.label_marks(client)  # before this run's traffic
            _demo_say.monitored(client, 1, LABELS, promoted=False, before=marks)
    said = " ".join(capsys.readouterr().out.split())
    assert "941 rows, 119 labels, live accuracy 0.95" in said, said
