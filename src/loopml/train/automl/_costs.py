"""What a trial's model will cost once it is the winner: its package size, its one-row
latency on the model server, and the time to refit it on every row and package it.

Tree ensembles dominate both. A tree of ``L`` leaves has ``2L - 1`` nodes, and the package
stores every node twice (ONNX's ``TreeEnsemble`` attributes and skops' arrays), so the size
and the packaging time both grow with the node count, which a configuration bounds:

- ``lgbm``: ``n_estimators`` trees per class (one in all for binary and regression) of at
  most ``num_leaves`` leaves, and at most ``rows / min_child_samples`` of them;
- ``rf`` and ``extra_tree``: ``n_estimators`` trees of at most ``max_leaves`` leaves, and
  at most one leaf per row (they grow to purity), with one value per class per node;
- ``xgb_limitdepth`` (XGBoost's default): ``n_estimators`` trees per class (one for binary
  and regression) of at most ``2 ** max_depth`` leaves, and at most
  ``rows / min_child_weight`` of them (a row weighs at most 1 in the hessian). That bound
  is far off for classes (a 10-class default on digits: 127,000 nodes bound, 7,372
  fitted), so the default's trial records the nodes its fold models had
  (``MEASURED_NODES``, scaled to the refit's rows), which replace the bound.

The estimates are upper bounds: a tree often stops short of its leaf cap. The per-node
constants were measured on this project's packages (``docs/training.md``).

The latency (``predict_ms``) is the request's inputs (checked and cast per column) plus
the node visits of one row down every tree: a leaf-wise ``lgbm`` tree's path is taken as
a quarter of its leaves, a forest's or XGBoost's as its depth (``log2`` of its leaves).
"""

from __future__ import annotations

import math
from typing import Any

from loopml.train.automl._flaml import MEASURED_NODES
from loopml.train.automl._split import N_SPLITS

# Bytes per tree node in the package (ONNX plus skops), and per node and class for the
# class values a forest stores at each node. Measured on packages of 6,100 to 1.4 million
# nodes (lgbm and extra trees on diamonds, rf and lgbm on digits): 83-116 bytes per node,
# 332 for a 10-class forest.
NODE_BYTES = 120.0
# XGBoost's package holds more per node: its ONNX graph plus the Booster's own model bytes
# in skops. Measured on its default's packages of 682-9,092 nodes (scikit-learn's cancer,
# diabetes, iris, digits): 69-265 bytes a node over an 80 KB base, so 250 over 110 KB.
XGBOOST_NODE_BYTES = 250.0
NODE_CLASS_BYTES = 22.0
# skops stores each tree of a forest as its own object with every attribute of a
# DecisionTree: about 21 KB a tree, on top of about 105 KB for the pipeline (measured
# with 5 and 40 stumps); a forest of 500 small trees is 10 MB before its first node.
# Any other pipeline (preprocessing, scaler, a linear model) is about 75 KB of skops.
FOREST_TREE_BYTES = 21_500.0
BASE_BYTES = {"rf": 110_000.0, "extra_tree": 110_000.0, "xgb_limitdepth": 110_000.0}
OTHER_BASE_BYTES = 80_000.0
# Packaging seconds per tree node (ONNX export, parity check, skops dump and reload), and
# the fixed part (an ONNX Runtime session, the parity rows; importing the converters when
# they are not imported yet: see ``_warm``). These are usual figures, not upper bounds: the
# call may end 10 % past its budget, and upper bounds ended it 10-30 % short (issue 38).
# Measured in whole ``loopml train`` calls on the shared 2-core machine at load 3-5: lgbm
# packages of 11,152 and 45,903 nodes in 0.53 and 1.9 s, 35 us a node (0.6-1.2 s for
# diamonds' 21,000 on a quiet one; 110-140 us measured before at a higher load), a linear
# model's in 0.1 s. Forests measured again on 26 November (txhousing's regression, load
# about 2): 99,900 nodes in 0.66 s, 217,350 in 1.26 s, 999,900 in 6.6 s, 6-7 us a node; the
# 60 us taken before kept a 217,350-node extra-trees winner's packaging at 13 s, and its
# whole call ended at 0.53 x its budget. XGBoost's default takes lgbm's: 0.2-0.6 s for its
# packages of 100 trees of depth 6 on 150-570 rows.
NODE_PACKAGE_S = {"lgbm": 50e-6, "rf": 12e-6, "extra_tree": 12e-6, "xgb_limitdepth": 50e-6}
PACKAGE_FIXED_S = 0.3
PACKAGE_IMPORT_S = 5.0
# Registering the package (``loopml train --register``: the registry loads it, opens an
# ONNX Runtime session, scores the frozen eval set and times 200 one-row calls as the model
# server makes them): a fixed part and a part per tree node (the session's). Measured in
# whole calls in fresh processes on 26 November (load about 2): 0.12 s for digits' lgbm
# winner (10 classes), 0.25 s for txhousing's 217,350-node extra trees, the 200 calls
# included; load, scoring and the calls took 2.5 us a node for 44,936 lgbm nodes. The
# figures before (1.0 s and 90 us a node) were taken while the evaluation still timed its
# calls through pandas frames (about 1.2 ms a call); they kept digits' whole call at 0.74 x
# its budget and txhousing's at 0.53 x.
REGISTER_FIXED_S = 0.4
NODE_REGISTER_S = 5e-6
# Refit estimates are scaled up by this: the machine's load moves between trials. A
# trial's time also covers scoring, which a refit does not do, so little is needed.
SAFETY = 1.1
_FORESTS = frozenset({"rf", "extra_tree"})
# The final ensemble's learner name (``_ensemble``); its config lists its members.
ENSEMBLE = "ensemble"
# skops stores each fitted member of a Voting estimator twice (in ``estimators_`` and in
# ``named_estimators_``), ONNX once: an ensemble's package measured 1.6-1.8 x its members'
# estimates summed (lgbm with a linear model, a forest, or extra trees, on 426 rows), and
# 2 x plus 90 KB for two small ones (20 lgbm trees and 5 forest trees), whose fixed skops
# parts dominate.
ENSEMBLE_SIZE_FACTOR = 2.0
# A bag (``_bag``) is an ensemble configuration with this key (its folds): its Voting
# estimator keeps its members once (no ``named_estimators_``), and the package one input
# sample, where each member's estimate counts its own: a bag of cancer's LightGBM default
# (0.83 MB alone, estimated 0.89) measured 3.0 MB, 0.68 x its members' estimates summed.
BAGGED = "bagged"
BAG_SIZE_FACTOR = 0.8
# The package keeps up to SAMPLE_ROWS rows of its inputs (``sample.parquet``, for the
# monitor's reference): measured 6.3 bytes a value for cancer's 30 float columns (a linear
# model's package, 54 KB with 5 rows, 161 KB with 569); 8, the raw float, bounds it.
SAMPLE_VALUE_BYTES = 8.0
SAMPLE_ROWS = 1000
ENSEMBLE_BASE_BYTES = 150_000.0
# Seconds per fold loss the ensemble's greedy selection computes (FLAML's metric function,
# through scikit-learn's input validation): 13 ms for ROC AUC on 114 rows at load 9-12 on
# the shared 2-core machine (485 of them, 6.3 s, for a pool of two on 5 folds, which the
# ensemble's room did not count), about 1 ms on a quiet one. Counting the loaded figure
# costs little: a refused ensemble hands its room back to the search.
LOSS_CALL_S = 0.01
# The same for a regression metric computed with NumPy (``_ensemble._numpy_loss``), the
# blend's weighted sum of four members included: 27 us on 405 rows (a tenth of diamonds'
# holdout), 39 us on 1,300, 109 us on 8,000, at load 2.4 on the shared 2-core machine,
# where FLAML's function took 660-1,180 us.
NUMPY_LOSS_CALL_S = 2e-4

# One row's latency on the model server's runtime (``ModelRuntime``: the request's checks
# and casts per column, then ONNX Runtime on one thread), the median of 200-400 calls,
# measured on the shared 2-core machine (docs/training.md). The inputs cost most: 6 us
# fixed, 1.1 us a column when every column is a number (one matrix cast), else 2 us a
# number column and 5 us a text one, and about 35 us a date column (its calendar parts
# are computed per request): a linear model took 8-9 us on 2 columns, 14.7 us on
# diabetes' 10, 36 us on cancer's 30, 77 us on digits' 64; 39 us on 5 numbers and 5
# texts, 51 us on 10 texts, 56 us on 10 numbers and a date, 118 us on 30 numbers and 10
# texts. Trees add about 2 ns a node visited: lgbm on diabetes (442 rows) with 500 trees
# of 4, 31 and up to 88 leaves added 2, 7.7 and 27 us (a path of a quarter of the
# leaves: 2, 8.75, 23 us), 100 random-forest trees grown to purity 2 us (their depth,
# log2 of the rows: 2 us). An ensemble adds about 2 us a member (the vote): 11 us for a
# linear model and 4 small trees on 2 columns, 21 us for four members. Measured on 2
# columns (binary, 4 classes, regression): 0.87-1.09 x this estimate for single models,
# 0.67-0.94 x for ensembles; a 10-class lgbm of 500 x 128 leaves on digits 0.3 x (its
# trees stopped far short of their leaf cap): it errs on the safe side.
PREDICT_FIXED_MS = 0.006
PREDICT_MATRIX_COLUMN_MS = 0.0011
PREDICT_NUMBER_MS = 0.002
PREDICT_TEXT_MS = 0.005
PREDICT_DATE_MS = 0.035
PREDICT_VISIT_MS = 2e-6
PREDICT_MEMBER_MS = 0.002


# Seconds per cell (row x column) of one fit of a linear learner, and per class for the
# multiclass logistic one (one coefficient vector a class). lrl1 (saga, FLAML's 100 epochs
# on standardised features): 0.8 s of CPU on 1,500 x 384 MiniLM embeddings of 3 classes,
# 0.46 us a cell and class. enet (coordinate descent): 11 s on diamonds' 36,409 x 26,
# 12 us a cell. Their solvers cannot be stopped at the deadline, so this decides whether
# they are searched at all (``_inputs.check_estimators``).
LINEAR_CELL_S = {"lrl1": 0.5e-6, "enet": 12e-6}


def linear_fit_s(name: str, rows: int, columns: int, classes: int) -> float:
    """The estimated seconds of one fit of the linear learner ``name`` (0 for any other)."""
    per_class = classes if name == "lrl1" and classes > 2 else 1
    return LINEAR_CELL_S.get(name, 0.0) * rows * columns * per_class


def _members(config: dict[str, Any]) -> list[dict[str, Any]]:
    members: list[dict[str, Any]] = config.get("members", [])
    return members


def tree_nodes(name: str, config: dict[str, Any], rows: int, classes: int) -> float:
    """An upper bound on the number of tree nodes of ``name`` fitted with ``config`` (an
    ensemble's: its members' together)."""
    if name == ENSEMBLE:
        return sum(tree_nodes(m["estimator"], m["config"], rows, classes) for m in _members(config))
    if MEASURED_NODES in config:
        return float(config[MEASURED_NODES])
    rows = max(rows, 1)
    trees = float(config.get("n_estimators", 0))
    if name == "lgbm":
        cap = rows / float(config.get("min_child_samples", 20))
        leaves = min(float(config.get("num_leaves", 31)), cap)
        trees *= classes if classes > 2 else 1
    elif name == "xgb_limitdepth":
        cap = rows / max(float(config.get("min_child_weight", 1.0)), 1e-3)
        leaves = min(2.0 ** float(config.get("max_depth", 6)), cap)
        trees *= classes if classes > 2 else 1
    elif name in _FORESTS:
        leaves = min(float(config.get("max_leaves", rows)), float(rows))
    else:
        return 0.0
    return trees * (2 * max(leaves, 1.0) - 1)


def size_mb(name: str, config: dict[str, Any], rows: int, classes: int, columns: int) -> float:
    """The estimated package size in MB (10^6 bytes) of ``name`` fitted with ``config``
    (an ensemble's: its members' summed, times ``ENSEMBLE_SIZE_FACTOR`` (a bag's:
    ``BAG_SIZE_FACTOR``), plus ``ENSEMBLE_BASE_BYTES``)."""
    if name == ENSEMBLE:
        members = sum(
            size_mb(m["estimator"], m["config"], rows, classes, columns) for m in _members(config)
        )
        factor = BAG_SIZE_FACTOR if BAGGED in config else ENSEMBLE_SIZE_FACTOR
        return factor * members + ENSEMBLE_BASE_BYTES / 1e6
    nodes = tree_nodes(name, config, rows, classes)
    per_class = NODE_CLASS_BYTES * classes if name in _FORESTS and classes > 2 else 0.0
    per_tree = FOREST_TREE_BYTES * float(config.get("n_estimators", 0)) if name in _FORESTS else 0
    linear = 8.0 * columns * max(classes, 1)
    base = BASE_BYTES.get(name, OTHER_BASE_BYTES)
    per_node = XGBOOST_NODE_BYTES if name == "xgb_limitdepth" else NODE_BYTES
    sample = SAMPLE_VALUE_BYTES * columns * min(rows, SAMPLE_ROWS)
    return (nodes * (per_node + per_class) + per_tree + linear + base + sample) / 1e6


def package_s(
    name: str, config: dict[str, Any], rows: int, classes: int, *, import_s: float
) -> float:
    """The estimated seconds to package ``name`` fitted with ``config``, of which
    ``import_s`` to finish importing the packaging libraries."""
    if name == ENSEMBLE:
        nodes = sum(
            NODE_PACKAGE_S.get(m["estimator"], 0.0)
            * tree_nodes(m["estimator"], m["config"], rows, classes)
            for m in _members(config)
        )
        return PACKAGE_FIXED_S + import_s + nodes
    per_node = NODE_PACKAGE_S.get(name, 0.0)
    return PACKAGE_FIXED_S + import_s + per_node * tree_nodes(name, config, rows, classes)


def register_s(name: str, config: dict[str, Any], rows: int, classes: int) -> float:
    """The estimated seconds to register ``name`` fitted with ``config`` and score it on
    the frozen eval set."""
    nodes = tree_nodes(name, config, rows, classes)
    return REGISTER_FIXED_S + NODE_REGISTER_S * nodes


def refit_s(train_time_s: float, sample_size: int, rows: int, method: str) -> float:
    """The estimated seconds to refit a trial's model on ``rows`` rows.

    A cross-validated trial's time covers ``N_SPLITS`` fits on ``N_SPLITS - 1`` parts of
    its ``sample_size`` rows each, about ``N_SPLITS - 1`` fits on all of them; a holdout
    trial's is one fit on ``sample_size`` rows. Both include scoring.
    """
    per_fit = train_time_s / (N_SPLITS - 1) if method == "cv" else train_time_s
    return SAFETY * per_fit * rows / max(sample_size, 1)


def input_ms(numbers: int, texts: int, dates: int) -> float:
    """The estimated milliseconds the model server spends on one row's inputs (the fixed
    part included): ``numbers`` number and boolean columns, ``texts`` text ones, ``dates``
    date ones, all the package's signature takes (used by the model or not)."""
    if texts == 0 and dates == 0:
        return PREDICT_FIXED_MS + PREDICT_MATRIX_COLUMN_MS * numbers
    per_column = PREDICT_NUMBER_MS * numbers + PREDICT_TEXT_MS * texts + PREDICT_DATE_MS * dates
    return PREDICT_FIXED_MS + per_column


def tree_visits(name: str, config: dict[str, Any], rows: int, classes: int) -> float:
    """The estimated tree nodes one row visits in ``name`` fitted with ``config`` (an
    ensemble's: its members' together); 0 for a linear model."""
    if name == ENSEMBLE:
        return sum(
            tree_visits(m["estimator"], m["config"], rows, classes) for m in _members(config)
        )
    rows = max(rows, 1)
    trees = float(config.get("n_estimators", 0))
    if name == "lgbm":
        cap = rows / float(config.get("min_child_samples", 20))
        path = min(float(config.get("num_leaves", 31)), cap) / 4
        trees *= classes if classes > 2 else 1
    elif name == "xgb_limitdepth":
        cap = rows / max(float(config.get("min_child_weight", 1.0)), 1e-3)
        path = min(float(config.get("max_depth", 6)), math.log2(max(cap, 2.0)))
        trees *= classes if classes > 2 else 1
    elif name in _FORESTS:
        path = math.log2(max(min(float(config.get("max_leaves", rows)), float(rows)), 2.0))
        # A forest's leaf holds one value a class, which the runtime adds up per tree.
        path += classes if classes > 2 else 0
    else:
        return 0.0
    return trees * (1 + path)


def predict_ms(
    name: str, config: dict[str, Any], rows: int, classes: int, *, inputs_ms: float
) -> float:
    """The estimated one-row latency, in ms, of ``name`` fitted with ``config`` on the model
    server: ``inputs_ms`` (``input_ms``), its trees' node visits and an ensemble's vote."""
    members = len(_members(config)) if name == ENSEMBLE else 0
    trees = PREDICT_VISIT_MS * tree_visits(name, config, rows, classes)
    return inputs_ms + trees + PREDICT_MEMBER_MS * members
