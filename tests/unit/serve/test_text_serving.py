"""A fine-tuned text model served through a deployment: tokenized in the replica, asked
through the gateway with tritonclient (a V2 ``BYTES`` tensor) and with ``/predict`` records,
answering what the package answers in-process."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from loopml.core.deployments import DeploymentStatus
from loopml.registry.packages import load_version
from loopml.sdk.training import train_model
from tests.text_data import TINY, ingest_reviews, reviews
from tests.unit.deploy.deploy_support import home_settings, running_platform, wait_until

pytest.importorskip("torch")
httpclient = pytest.importorskip("tritonclient.http")
pytestmark = pytest.mark.timeout(300)

TEXTS = ["the film was superb and lovely", "honestly the plot was awful", "", "the cast"]


def test_text_model_through_a_deployment(tmp_path: Path) -> None:
    settings = home_settings(tmp_path / "home")
    ingest_reviews(settings, "reviews", reviews(160), stratify="sentiment")
    train_model(
        "reviews_snap",
        target="sentiment",
        task="text-classification",
        params={"method": "finetune", "epochs": 10, "tiny": TINY},
        register_as="sentiment",
        settings=settings,
    )
    with running_platform(settings) as platform:
        _, loaded = load_version(
            platform.store, platform.artifacts, "default", "sentiment/1", tmp_path / "local"
        )
        expected = loaded.predict_proba(pd.DataFrame({"review": TEXTS}))
        platform.serving.control.create("default", "reviews", {"model": "sentiment/1"}, actor="t")

        def ready() -> bool:
            status = platform.serving.control.get("default", "reviews")
            assert status.status != DeploymentStatus.FAILED, status.status_message
            return status.status == DeploymentStatus.READY

        wait_until(ready, 120, "the text deployment did not become ready")
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
            answer = http.post(
                f"{base}/predict", json={"instances": [{"review": t} for t in TEXTS]}
            )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["predictions"][:2] == ["pos", "neg"]
            np.testing.assert_allclose(body["probabilities"], expected, atol=1e-5)
            wrong = http.post(f"{base}/predict", json={"instances": [{"review": 3}]})
            assert wrong.status_code == 422
            assert "review" in wrong.text
