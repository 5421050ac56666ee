"""What a deployment says of its revisions now: which are live, what each is, which serves."""

from __future__ import annotations

from datetime import UTC, datetime

from loopml.core.deployments import Deployment, DeploymentSpec, DeploymentStatus, Revision

NOW = datetime(2026, 11, 29, tzinfo=UTC)


def _deployment(traffic: dict[int, int], shadow: int | None = None) -> Deployment:
    revisions = [
        Revision(number=n, model="m", version=n, ref=f"m/{n}", role="primary", created_at=NOW)
        for n in range(1, 6)
    ]
    return Deployment(
        id="d1",
        project="default",
        name="d",
        spec=DeploymentSpec(model="m/1"),
        status=DeploymentStatus.READY,
        traffic=traffic,
        shadow_revision=shadow,
        revisions=revisions,
        created_at=NOW,
        updated_at=NOW,
    )


def test_live_revisions_are_those_with_a_share_and_the_shadows_copy() -> None:
    assert _deployment({1: 100}).live_revisions() == {1}
    # A revision left in the traffic map at 0 % takes nothing: it is not live.
    assert _deployment({1: 0, 2: 100}).live_revisions() == {2}
    assert _deployment({2: 90, 3: 10}, shadow=4).live_revisions() == {2, 3, 4}
    assert _deployment({}).live_revisions() == set()


def test_roles_now_and_the_serving_revision() -> None:
    deployment = _deployment({2: 90, 3: 10}, shadow=4)
    roles = {r.number: deployment.role_now(r) for r in deployment.revisions}
    assert roles == {1: "retired", 2: "primary", 3: "primary", 4: "shadow", 5: "retired"}
    serving = deployment.serving()
    assert serving is not None
    assert serving.number == 2
    assert _deployment({}).serving() is None
