"""How ``--on ray`` shares the search out over the cluster's CPUs (``_ray.split_search``):
every learner in every part, each from a seed and a first learner of its own, the defaults
as starting points in the first only, and a trial cap shared out; and a cluster with no
CPU free for the trials (``ray_cluster``) is named, not waited on forever."""

from __future__ import annotations

import time

import pytest
from sklearn.datasets import load_breast_cancer

from loopml.core.errors import ServiceUnavailableError
from loopml.train.automl import connect_ray, run_automl
from loopml.train.automl._ray import split_search, trial_slots
from tests.ray_cluster import RayCluster

NAMES = ["lgbm", "rf", "extra_tree", "lrl1"]


def test_one_cpu_searches_every_learner_from_the_defaults() -> None:
    (part,) = split_search(NAMES, 1, seed=3, max_iter=None)
    assert (part.estimators, part.seed, part.max_iter, part.from_defaults) == (
        NAMES,
        3,
        None,
        True,
    )


def test_each_cpu_searches_every_learner_from_its_own_seed_and_first_learner() -> None:
    parts = split_search(NAMES, 3, seed=0, max_iter=None)
    assert [p.estimators[0] for p in parts] == ["lgbm", "rf", "extra_tree"]
    assert all(sorted(p.estimators) == sorted(NAMES) for p in parts)
    assert [p.seed for p in parts] == [0, 1, 2]
    assert [p.from_defaults for p in parts] == [True, False, False]
    assert [p.estimators[0] for p in split_search(["lgbm", "rf"], 3, 0, None)] == [
        "lgbm",
        "rf",
        "lgbm",
    ]


def test_a_trial_cap_is_shared_out_and_an_empty_share_runs_no_part() -> None:
    assert [p.max_iter for p in split_search(NAMES, 2, seed=0, max_iter=5)] == [3, 2]
    assert len(split_search(NAMES, 4, seed=0, max_iter=2)) == 2


def test_a_search_task_a_free_cpu_and_one_when_none_is_free() -> None:
    assert [trial_slots(4, free) for free in (4, 3, 0)] == [4, 3, 1]


@pytest.mark.ray
def test_a_cluster_whose_cpus_are_all_held_is_named_not_waited_on(ray_cluster: RayCluster) -> None:
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    trials = connect_ray(ray_cluster.address)
    # Every CPU reserved, as a training step on the Ray executor holds its own.
    held = placement_group([{"CPU": ray.cluster_resources()["CPU"]}])
    ray.get(held.ready(), timeout=30)
    frame = load_breast_cancer(as_frame=True).frame.iloc[:200, [0, 1, 2, 30]]
    started = time.monotonic()
    try:
        with pytest.raises(ServiceUnavailableError, match="CPUs may be held by other tasks"):
            run_automl(frame, "target", task="classification", budget_s=3, ray=trials)
    finally:
        remove_placement_group(held)
    took = time.monotonic() - started
    # margin: 6.0 s measured at load 4.5 (a 3 s budget); 120 s is 20x. Waiting on the held
    # CPUs would never end.
    assert took < 120, f"named the held CPUs after {took:.1f} s"
