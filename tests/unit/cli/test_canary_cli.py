"""``loopml deploy ... --auto-canary``: the canary's judging policy from the command line
(how long before promotion, labels before quality counts, the quality and error margins)."""

from __future__ import annotations

import json

import pytest

from loopml.registry import register_version
from tests.tracking_rows import log_model, make_run

from .conftest import Platform


@pytest.fixture(scope="module")
def registered(platform: Platform) -> str:
    store, artifacts = platform.ctx.store, platform.ctx.artifacts
    run = make_run(store)
    log_model(store, artifacts, run)
    for _ in range(2):
        register_version(
            store, artifacts, project="default", model_name="churn", run_id=run.id, actor="t"
        )
    return "churn"


def test_deploy_auto_canary_takes_its_policy_from_the_command_line(
    platform: Platform, registered: str
) -> None:
    shown = platform.cli(
        "deploy",
        f"{registered}/1",
        "--name",
        "churn-api",
        "--canary",
        f"{registered}/2",
        "--percent",
        "20",
        "--auto-canary",
        "--promote-after",
        "600",
        "--min-labels",
        "200",
        "--max-quality-drop",
        "0.01",
        "--min-requests",
        "500",
        "--max-error-increase",
        "0.005",
        "--dry-run",
        "-o",
        "json",
    )
    assert shown.exit_code == 0, shown.output
    canary = json.loads(shown.stdout)["spec"]["canary"]
    assert canary["model"] == "churn/2"
    assert canary["percent"] == 20
    assert canary["auto"] is True
    assert canary["promote_after_s"] == 600
    assert canary["min_labels"] == 200
    assert canary["max_quality_drop"] == 0.01
    assert canary["min_requests"] == 500
    assert canary["max_error_rate_increase"] == 0.005
    # Left out, a judging field takes the server's setting.
    assert canary["max_latency_ratio"] is None


def test_a_judging_option_without_auto_canary_says_what_to_add(
    platform: Platform, registered: str
) -> None:
    refused = platform.cli(
        "deploy",
        f"{registered}/1",
        "--name",
        "churn-api",
        "--canary",
        f"{registered}/2",
        "--promote-after",
        "600",
        "--min-labels",
        "200",
        "--dry-run",
    )
    assert refused.exit_code == 1
    assert "--promote-after, --min-labels judge an automatic canary: add --auto-canary" in str(
        refused.exception
    )
    alone = platform.cli(
        "deploy", f"{registered}/1", "--name", "churn-api", "--auto-canary", "--dry-run"
    )
    assert alone.exit_code == 1
    assert "give it with --canary MODEL" in str(alone.exception)


def test_a_kubernetes_dry_run_renders_with_the_preview_options(
    platform: Platform, registered: str
) -> None:
    pytest.importorskip("loopml.deploy.targets.kubernetes")
    shown = platform.cli(
        "deploy", f"{registered}/1", "--name", "churn-k8s", "--target", "kubernetes",
        "--replicas", "2", "--cpu", "250m", "--dry-run", "-o", "yaml",
        "--namespace", "ml", "--image", "loopml:test",
    )  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert "kind: Deployment" in shown.stdout
    assert "namespace: ml" in shown.stdout
    assert "image: loopml:test" in shown.stdout
    assert "250m" in shown.stdout


def test_an_option_out_of_bounds_is_refused_as_the_api_refuses_it(
    platform: Platform, registered: str
) -> None:
    refused = platform.cli(
        "deploy", f"{registered}/1", "--name", "churn-api", "--cpu", "lots", "--dry-run"
    )
    assert refused.exit_code == 1
    assert str(refused.exception).startswith("invalid request: body.resources.cpu: String")
