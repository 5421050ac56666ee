"""Training through a server: ``loopml.train_model`` over HTTP, then evaluation, the gate
(scoring the champion on the challenger's eval set on the server) and promotion."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_wine

from loopml.client import Client
from loopml.core.datasets import SplitSpec
from loopml.core.errors import GateRequiredError
from loopml.data import datasets, lake
from loopml.faces.context import AppContext
from loopml.sdk.training import train_model


def _snapshots(http: TestClient) -> None:
    ctx: AppContext = http.app.state.running.context  # type: ignore[attr-defined]
    frame = load_wine(as_frame=True).frame
    frame.columns = [f"c{i}" for i in range(frame.shape[1] - 1)] + ["label"]
    noisy = frame.copy()
    noisy["label"] = np.random.default_rng(3).permutation(noisy["label"].to_numpy())
    for name, rows in (("wine", frame), ("wine_noise", noisy)):
        lake.ingest_arrow(
            ctx.store, ctx.artifacts, "default", name, pa.Table.from_pandas(rows), actor="t"
        )
        datasets.create_version(
            ctx.store,
            ctx.artifacts,
            "default",
            f"{name}_snap",
            name,
            split=SplitSpec(eval_fraction=0.3, seed=1, stratify="label"),
            actor="t",
        )


def test_train_register_gate_promote_over_http(client: Client, http: TestClient) -> None:
    _snapshots(http)
    good = train_model(
        "wine_snap",
        target="label",
        task="classification",
        budget_s=3,
        max_iter=4,
        register_as="wine",
        client=client,
    )
    assert good.version is not None
    assert good.evaluation is not None
    assert good.evaluation.eval_hash == good.eval_hash
    assert good.evaluation.metrics["accuracy"] > 0.8
    assert good.evaluation.latency is not None
    assert client.models.gate("wine", 1).passed
    client.models.promote("wine", 1)

    bad = train_model(
        "wine_noise_snap",
        target="label",
        task="classification",
        budget_s=2,
        max_iter=2,
        register_as="wine",
        client=client,
    )
    assert bad.version is not None
    # Scored on the champion's snapshot, then judged: the server scores the champion on
    # the same eval set and the shuffled-label model loses.
    client.models.evaluate("wine", 2, dataset="wine_snap@1")
    verdict = client.models.gate("wine", 2, eval_hash=good.eval_hash)
    assert not verdict.passed
    assert verdict.eval_hash == good.eval_hash
    with pytest.raises(GateRequiredError):
        client.models.promote("wine", 2)
    hashes = {e.report.eval_hash for e in client.models.evaluations("wine", 1)}
    assert good.eval_hash in hashes
