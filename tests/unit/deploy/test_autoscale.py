"""The local target's autoscaler, on a clock the test moves (the local target's own test,
with real replicas, is in test_deploy_local.py)."""

from __future__ import annotations

from loopml.deploy.targets._autoscale import AutoscalePolicy, Autoscaler

POLICY = AutoscalePolicy(target_inflight=4, window_s=1.0, up_cooldown_s=5, down_after_s=30)


def _run(scaler: Autoscaler, inflight: int, start: float, seconds: float, high: int = 5) -> float:
    """Observe ``inflight`` every 0.1 s for ``seconds``; the time reached."""
    now = start
    for _ in range(round(seconds * 10)):
        now += 0.1
        scaler.observe(inflight, 1, high, now)
    return now


def test_a_burst_shorter_than_the_window_does_not_scale_up() -> None:
    scaler = Autoscaler(POLICY, 1, now=0.0)
    now = _run(scaler, 0, 0.0, 10)
    assert scaler.observe(40, 1, 5, now + 0.1) == 1  # one sample of 40: the average is ~4
    assert scaler.replicas == 1


def test_sustained_load_scales_up_at_once_to_what_it_needs_within_the_maximum() -> None:
    scaler = Autoscaler(POLICY, 1, now=0.0)
    now = _run(scaler, 0, 0.0, 10)
    now = _run(scaler, 12, now, 5)
    assert scaler.replicas == 3  # 12 in flight / 4 per replica, in one step
    _run(scaler, 100, now, 10)
    assert scaler.replicas == 5  # the maximum


def test_scale_ups_wait_for_the_cooldown() -> None:
    scaler = Autoscaler(POLICY, 1, now=0.0)
    now = _run(scaler, 0, 0.0, 10)
    now = _run(scaler, 9, now, 1.5)
    assert scaler.replicas == 3  # up at about 10.9 s
    now = _run(scaler, 16, now, 3)  # asks for 4 at 14.5 s, within 5 s of the last change
    assert scaler.replicas == 3
    _run(scaler, 16, now, 2)
    assert scaler.replicas == 4


def test_scale_down_is_one_at_a_time_after_the_cooldown_and_a_new_burst_resets_it() -> None:
    scaler = Autoscaler(POLICY, 1, now=0.0)
    now = _run(scaler, 0, 0.0, 10)
    now = _run(scaler, 16, now, 5)
    assert scaler.replicas == 4
    now = _run(scaler, 0, now, 20)
    assert scaler.replicas == 4  # calm for less than 30 s
    now = _run(scaler, 16, now, 2)  # load again: the calm clock starts over
    now = _run(scaler, 0, now, 25)
    assert scaler.replicas == 4
    now = _run(scaler, 0, now, 10)
    assert scaler.replicas == 3  # 30 s calm: one fewer
    now = _run(scaler, 0, now, 20)
    assert scaler.replicas == 3  # the next one waits another 30 s
    now = _run(scaler, 0, now, 10)
    assert scaler.replicas == 2
    _run(scaler, 0, now, 100)
    assert scaler.replicas == 1  # never under the minimum


def test_bounds_apply_at_once_and_reset_starts_again() -> None:
    scaler = Autoscaler(POLICY, 1, now=0.0)
    assert scaler.observe(0, 2, 5, 0.1) == 2  # min_replicas raised
    scaler.replicas = 5
    assert scaler.observe(100, 1, 3, 0.2) == 3  # max_replicas lowered
    scaler.reset(1, 1.0)
    assert (scaler.replicas, scaler.average) == (1, 0.0)
