"""The metrics AutoML can optimize: which task each fits, its direction, the defaults."""

from __future__ import annotations

from typing import Literal

from loopml.core.errors import ValidationError

TaskKind = Literal["binary", "multiclass", "regression"]
Direction = Literal["max", "min"]

# FLAML's metric names, which ``loopml train --metric`` passes through. FLAML minimizes a
# loss: ``1 - value`` for the "max" metrics, the value itself for the "min" ones.
_METRICS: dict[str, tuple[Direction, frozenset[TaskKind]]] = {
    "roc_auc": ("max", frozenset({"binary"})),
    "f1": ("max", frozenset({"binary"})),
    "ap": ("max", frozenset({"binary"})),
    "roc_auc_ovr": ("max", frozenset({"multiclass"})),
    "roc_auc_ovo": ("max", frozenset({"multiclass"})),
    "micro_f1": ("max", frozenset({"binary", "multiclass"})),
    "macro_f1": ("max", frozenset({"binary", "multiclass"})),
    "accuracy": ("max", frozenset({"binary", "multiclass"})),
    "log_loss": ("min", frozenset({"binary", "multiclass"})),
    "r2": ("max", frozenset({"regression"})),
    "rmse": ("min", frozenset({"regression"})),
    "mae": ("min", frozenset({"regression"})),
    "mse": ("min", frozenset({"regression"})),
    "mape": ("min", frozenset({"regression"})),
}
_DEFAULTS: dict[TaskKind, str] = {"binary": "roc_auc", "multiclass": "log_loss", "regression": "r2"}
# The binary-only names have a multiclass counterpart; a refusal names it.
_MULTICLASS_TWIN = {"roc_auc": "roc_auc_ovr", "f1": "macro_f1", "ap": "roc_auc_ovr"}


def metrics_for(kind: TaskKind) -> list[str]:
    """The metric names that fit a task kind, sorted."""
    return sorted(name for name, (_, kinds) in _METRICS.items() if kind in kinds)


def resolve_metric(metric: str | None, kind: TaskKind) -> tuple[str, Direction]:
    """The metric to optimize and its direction; the task's default when ``metric`` is None.

    Raises:
        ValidationError: an unknown metric, or one that does not fit the task.
    """
    if metric is None:
        metric = _DEFAULTS[kind]
    entry = _METRICS.get(metric)
    if entry is None:
        raise ValidationError(
            f"unknown metric {metric[:60]!r}: expected one of {', '.join(metrics_for(kind))} "
            f"for a {kind} task",
            details={"metric": metric, "expected": metrics_for(kind)},
        )
    direction, kinds = entry
    if kind not in kinds:
        hint = ""
        if kind == "multiclass" and metric in _MULTICLASS_TWIN:
            hint = f"; the target has more than two classes, use {_MULTICLASS_TWIN[metric]!r}"
        elif kind == "regression":
            hint = "; classification metrics need task='classification'"
        else:
            hint = "; regression metrics need task='regression'"
        raise ValidationError(
            f"metric {metric!r} does not fit a {kind} task{hint} (expected one of "
            f"{', '.join(metrics_for(kind))})",
            details={"metric": metric, "expected": metrics_for(kind)},
        )
    return metric, direction


def score_from_loss(loss: float, direction: Direction) -> float:
    """The metric's value from FLAML's loss (``1 - value`` for metrics to maximize)."""
    return 1.0 - loss if direction == "max" else loss


def score_to_loss(score: float, direction: Direction) -> float:
    """FLAML's loss from the metric's value: the inverse of ``score_from_loss``."""
    return 1.0 - score if direction == "max" else score
