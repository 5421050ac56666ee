"""A fine-tuned text model served through a deployment: tokenized in the replica, asked
through the gateway with tritonclient (a V2 ``BYTES`` tensor) and with ``/predict`` records,
answering what the package answers in-process; then a canary of a second text version,
whose traffic split and prediction log (texts in, labels out) cover both revisions.

One platform serves the module, with two fine-tunes registered as versions 1 and 2."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from loopml.client import Client
from loopml.core.deployments import DeploymentStatus
from loopml.core.errors import NotFoundError, ValidationError
from loopml.registry.packages import load_version
from loopml.sdk.training import train_model
from tests.text_data import TINY, ingest_reviews, reviews
from tests.unit.deploy.deploy_support import (
    Platform,
    home_settings,
    replica_processes,
    running_platform,
    wait_until,
)

pytest.importorskip("torch")
httpclient = pytest.importorskip("tritonclient.http")
pytestmark = pytest.mark.timeout(300)

TEXTS = ["the film was superb and lovely", "honestly the plot was awful", "", "the cast"]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """A platform with ``sentiment`` 1 (10 epochs) and 2 (4 epochs, another seed)."""
    settings = home_settings(tmp_path_factory.mktemp("text-home"))
    ingest_reviews(settings, "reviews", reviews(160), stratify="sentiment")
    for epochs, seed in ((10, 0), (4, 1)):
        train_model(
            "reviews_snap",
            target="sentiment",
            task="text-classification",
            params={"method": "finetune", "epochs": epochs, "tiny": TINY},
            seed=seed,
            register_as="sentiment",
            settings=settings,
        )
    with running_platform(settings) as running:
        yield running
    assert replica_processes() == [], "replicas outlived the platform"


def _ready(platform: Platform, name: str) -> None:
    def ready() -> bool:
        status = platform.serving.control.get("default", name)
        assert status.status != DeploymentStatus.FAILED, status.status_message
        return status.status == DeploymentStatus.READY

    wait_until(ready, 120, f"the text deployment {name} did not become ready")


def test_text_model_through_a_deployment(platform: Platform, tmp_path: Path) -> None:
    _, loaded = load_version(
        platform.store, platform.artifacts, "default", "sentiment/1", tmp_path / "local"
    )
    expected = loaded.predict_proba(pd.DataFrame({"review": TEXTS}))
    platform.serving.control.create("default", "reviews", {"model": "sentiment/1"}, actor="t")
    _ready(platform, "reviews")
    base = f"{platform.url}/deployments/reviews"
    client = httpclient.InferenceServerClient(base.removeprefix("http://"))
    try:
        metadata = client.get_model_metadata("reviews")
        assert metadata["inputs"] == [{"name": "review", "datatype": "BYTES", "shape": [-1]}]
        tensor = httpclient.InferInput("review", [len(TEXTS)], "BYTES")
        tensor.set_data_from_numpy(np.array(TEXTS, dtype=np.object_), binary_data=False)
        asked = [
            httpclient.InferRequestedOutput(n, binary_data=False)
            for n in ("predict", "predict_proba")
        ]
        result = client.infer(
            "reviews", [tensor], outputs=asked, headers={"Content-Type": "application/json"}
        )
        assert result.as_numpy("predict").tolist()[:2] == ["pos", "neg"]
        np.testing.assert_allclose(result.as_numpy("predict_proba"), expected, atol=1e-5)
    finally:
        client.close()

    with httpx.Client(timeout=60, trust_env=False) as http:
        answer = http.post(f"{base}/predict", json={"instances": [{"review": t} for t in TEXTS]})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["predictions"][:2] == ["pos", "neg"]
        np.testing.assert_allclose(body["probabilities"], expected, atol=1e-5)
        wrong = http.post(f"{base}/predict", json={"instances": [{"review": 3}]})
        assert wrong.status_code == 422
        assert "review" in wrong.text
    platform.serving.control.delete("default", "reviews", actor="t")


def _logged(platform: Platform, table: str) -> list[dict[str, object]]:
    """The prediction log's rows so far (none before its first rows land)."""
    query = (
        "SELECT inference_id, row_index, model_version, role, inputs, prediction "
        f"FROM {table} ORDER BY inference_id, row_index"
    )
    with Client(platform.url) as client:
        try:
            return client.sql("default", query).records()
        except (NotFoundError, ValidationError):  # no table yet, or no columns yet
            return []


def test_a_text_canary_splits_traffic_and_both_revisions_log_texts(platform: Platform) -> None:
    spec = {"model": "sentiment/1", "canary": {"model": "sentiment/2", "percent": 50}}
    created = platform.serving.control.create("default", "split", spec, actor="t")
    assert created.traffic == {1: 50, 2: 50}
    _ready(platform, "split")
    sent: dict[str, tuple[str, list[str]]] = {}  # inference id: version, predictions
    lock = threading.Lock()

    def send(requests: int) -> None:
        with httpx.Client(timeout=60, trust_env=False) as http:
            for _ in range(requests):
                answer = http.post(
                    f"{platform.url}/deployments/split/predict",
                    json={"instances": [{"review": t} for t in TEXTS[:2]]},
                )
                assert answer.status_code == 200, answer.text
                body = answer.json()
                with lock:
                    sent[body["inference_id"]] = (
                        answer.headers["x-loopml-model-version"],
                        body["predictions"],
                    )

    workers = [threading.Thread(target=send, args=(30,)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    counts = Counter(version for version, _ in sent.values())
    assert sum(counts.values()) == 60
    # 60 requests at 50 %: each side gets 30 +- 4 sigma (sigma 3.9).
    assert set(counts) == {"1", "2"}, counts
    assert all(abs(n - 30) <= 16 for n in counts.values()), counts

    rows = wait_until(
        lambda: (found := _logged(platform, "split__predictions")) and len(found) == 120 and found,
        30,
        "the prediction log did not get every row",
    )
    logged_versions: Counter[int] = Counter()
    for row in rows:
        version, predictions = sent[str(row["inference_id"])]
        index = int(str(row["row_index"]))
        assert row["model_version"] == int(version)
        assert row["role"] == ("canary" if version == "2" else "primary"), row
        assert json.loads(str(row["inputs"])) == {"review": TEXTS[index]}
        assert row["prediction"] == predictions[index]
        logged_versions[int(version)] += 1
    assert logged_versions == {int(v): 2 * n for v, n in counts.items()}
    platform.serving.control.delete("default", "split", actor="t")
