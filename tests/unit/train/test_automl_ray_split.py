"""How ``--on ray`` shares the search out over the cluster's CPUs (``_ray.split_search``):
every learner in exactly one part while there are no more CPUs than learners, the rest
from other seeds, and a trial cap shared out."""

from __future__ import annotations

from loopml.train.automl._ray import split_search

NAMES = ["lgbm", "rf", "extra_tree", "lrl1"]


def test_one_cpu_searches_every_learner_in_one_part() -> None:
    (part,) = split_search(NAMES, 1, seed=3, max_iter=None)
    assert part.estimators == NAMES
    assert (part.seed, part.max_iter) == (3, None)


def test_the_learners_are_dealt_out_over_the_cpus() -> None:
    parts = split_search(NAMES, 2, seed=0, max_iter=None)
    assert [p.estimators for p in parts] == [["lgbm", "extra_tree"], ["rf", "lrl1"]]
    assert [p.seed for p in parts] == [0, 1]


def test_more_cpus_than_learners_search_a_learner_again_from_another_seed() -> None:
    parts = split_search(["lgbm", "rf"], 3, seed=0, max_iter=None)
    assert [(p.estimators, p.seed) for p in parts] == [(["lgbm"], 0), (["rf"], 1), (["lgbm"], 2)]


def test_a_trial_cap_is_shared_out_and_an_empty_share_runs_no_part() -> None:
    assert [p.max_iter for p in split_search(NAMES, 2, seed=0, max_iter=5)] == [3, 2]
    assert [p.estimators for p in split_search(NAMES, 4, seed=0, max_iter=2)] == [
        ["lgbm"],
        ["rf"],
    ]
