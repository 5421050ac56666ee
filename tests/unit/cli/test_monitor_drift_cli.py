"""``loopml monitor``'s drift table: each column's figure and threshold, and beside them the
p-value that decides (a young window's distances pass 0.1 by chance without drifting)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from loopml.monitor import sequential
from loopml.monitor.drift import DriftConfig
from loopml.monitor.reference import Reference, profile_table
from loopml.monitor.reference_store import save_reference
from loopml.monitor.sketch import reduce
from loopml.monitor.windows import empty_state, summarize, window_start
from loopml.store import monitor as monitor_rows

from .conftest import Platform, make_deployment


def test_the_drift_table_shows_the_p_value_beside_each_figure(platform: Platform) -> None:
    make_deployment(platform, "default")
    rng = np.random.default_rng(5)
    names = ["a", "b", "c"]
    train = pa.table({n: rng.normal(0, 1, 5_000) for n in names})
    profile = profile_table(train, dict.fromkeys(names, "numeric"), task="regression")
    reference = Reference(status="ready", source="dataset d@1, train split", profile=profile)
    save_reference(platform.ctx.store, "default", "cancer", 1, reference)
    state = empty_state()
    rows = pa.table({n: rng.normal(0, 1, 40) for n in names})  # 40 unshifted: a young window
    for n in names:
        state["features"][n] = reduce(profile.features[n], rows[n]).model_dump()
    state["sequential"] = sequential.piece(profile.features, rows)
    state["usage"]["rows"] = 40
    summary = summarize(state, reference, 3600, DriftConfig())
    start = window_start(datetime.now(UTC), 3600)
    window = {
        "end": start + timedelta(hours=1), "rows": 40, "labels": 0,
        "state": state, "summary": summary,
    }  # fmt: skip
    with platform.ctx.store.session() as session:
        key = ("churn-api", "cancer", 1, "1h", start)
        monitor_rows.put_window(session, "default", key, window)

    shown = platform.cli("monitor", "churn-api")
    assert shown.exit_code == 0, shown.output
    text = shown.stdout
    # The first look's share of p_value (DriftConfig.level), over the 3 columns.
    # (half of it: the sequential test spends the other half, drift_sequential_share).
    assert "drift: 0/3 columns (0%); drifted: score past threshold and p < 3.1e-05" in text
    assert "judged at 40 rows, look 1 (again once the rows grow 10 %)" in text
    found = summary["drift"]["sequential"]
    assert found["alarm"] is False
    line = (
        f"sequential: nearest {found['column']} {found['score']} {found['direction']}, "
        f"CUSUM {found['cusum']:.1f} of {found['threshold']:.1f} at 40 rows"
    )
    assert line in text
    assert max(len(line) for line in text.splitlines()) <= 80
    header = next(line for line in text.splitlines() if "column" in line and "score" in line)
    assert " p " in header
    columns = {c["column"]: c for c in summary["drift"]["columns"]}
    for name, column in columns.items():
        row = next(line for line in text.splitlines() if line.startswith(f"│ {name} "))
        cells = [cell.strip() for cell in row.strip("│").split("│")]
        assert cells[1] == f"{column['score']:.3g}"  # the distance, as before
        assert cells[3] == f"{column['p_value']:.3g}"  # as the portal writes it (issue 55)
        assert cells[4] == "no"
