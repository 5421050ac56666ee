"""The AutoML package's one-row latency as the model server runs it, measured before the
package is uploaded, and ``max_predict_ms`` applied to it.

The search only estimates each trial's latency (``loopml.train.automl._costs``); this is
the measurement the run records and the limit is finally judged by. A package measured
over the limit fails the run (nothing is uploaded or registered) rather than falling back
to the next trial: that would be a second refit and packaging past the budget, for an
estimate that is an upper bound in practice (docs/training.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopml.core.errors import ValidationError
from loopml.core.gate import Latency

if TYPE_CHECKING:
    import pandas as pd

    from loopml.packaging import ModelPackage

# Timed calls after a tenth not counted: 200 take 10-30 ms for a tree model of a few dozen
# columns, and the median of 200 moved by under 5 % between runs on the shared machine.
CALLS = 200


class LatencyCheck:
    """Pass as ``ActiveRun.log_model``'s ``check``: measures the package's one-row latency
    (``evaluation.served_latency`` on ``row``) and refuses it over ``limit_ms``.

    Attributes:
        latency: the measurement, once the package was checked.
    """

    def __init__(
        self, row: pd.DataFrame, limit_ms: float | None, *, estimator: str, estimated_ms: float
    ) -> None:
        self._row = row
        self._limit_ms = limit_ms
        self._estimator = estimator
        self._estimated_ms = estimated_ms
        self.latency: Latency | None = None

    def __call__(self, package: ModelPackage) -> None:
        from loopml.train.evaluation import served_latency

        self.latency = served_latency(package.path, package.manifest_sha256, self._row, calls=CALLS)
        measured = self.latency.p50_ms
        if self._limit_ms is None or measured <= self._limit_ms:
            return
        raise ValidationError(
            f"the model AutoML picked ({self._estimator}) takes {measured:.4f} ms a row on the "
            f"model server's runtime (median of {CALLS} calls at batch 1; estimated "
            f"{self._estimated_ms:.4f} ms), over max_predict_ms {self._limit_ms:g}: it was "
            "not uploaded or registered. Raise max_predict_ms, or give the model fewer "
            "columns (most of a small model's latency is its inputs)",
            details={
                "max_predict_ms": self._limit_ms,
                "measured_ms": round(measured, 5),
                "estimated_ms": round(self._estimated_ms, 5),
            },
        )
