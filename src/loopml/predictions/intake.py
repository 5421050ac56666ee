"""What the prediction log takes in: a replica's ``PredictionRecord`` through the hook every
served prediction is recorded by (``PredictionSink``), never waiting on storage, and a
gateway's ``Answer``.

The model server hands each successful prediction to an optional ``PredictionSink``, after
the answer is computed and before it is sent. ``record`` must not block: an implementation
puts the record on an in-memory queue (dropping, and counting, when it is full) and returns;
a background task or thread writes the queue to storage. Whatever ``record`` raises is
counted (``loopml_model_sink_errors_total``) and swallowed: recording never fails a request.

The record is columnar, as it arrived: no per-row objects are built on the hot path, and a
prediction log can append the arrays to Arrow/Parquet as they are.

What a gateway saw is an ``Answer`` (with its role: primary, canary or shadow), the other
thing the prediction log takes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:  # a gateway process imports ``Answer`` and never loads numpy
    import numpy as np


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """One served request's prediction.

    Attributes:
        inference_id: the id the response carried; feedback refers to it.
        deployment: the deployment that served it.
        model: the registered model's name.
        version: the model version.
        timestamp: when the request arrived, Unix seconds (UTC).
        latency_s: seconds from arrival to the answer being ready.
        protocol: ``predict`` (``POST /predict``) or ``v2`` (Open Inference Protocol).
        inputs: the checked inputs, one array per signature column (see
            ``loopml.packaging.runtime.Columns``); read-only, shared with the request.
        predictions: ``[rows]`` labels or values.
        probabilities: ``[rows, classes]`` for a classifier, else ``None``.
        classes: the class labels, in probability-column order, for a classifier.
    """

    inference_id: str
    deployment: str
    model: str
    version: int
    timestamp: float
    latency_s: float
    protocol: Literal["predict", "v2"]
    inputs: Mapping[str, np.ndarray]
    predictions: np.ndarray
    probabilities: np.ndarray | None
    classes: Sequence[str | int | float | bool] | None

    @property
    def rows(self) -> int:
        """The number of rows predicted."""
        return int(self.predictions.shape[0])


@runtime_checkable
class PredictionSink(Protocol):
    """Receives every served prediction; see the module docstring for the contract."""

    def record(self, record: PredictionRecord) -> None:
        """Take ``record`` for later storage and return at once (no I/O, no waiting)."""
        ...


@dataclass(frozen=True, slots=True)
class Answer:
    """What a revision answered through a gateway: the prediction log's one intake for
    answers (``PredictionLog.log_answer``), whichever gateway saw it (the platform's own, or a
    gateway process through its report).

    Attributes:
        role: ``primary`` or ``canary``: the answer the client got; ``shadow``: the shadow
            revision's answer to a copy of the request, never sent to the client.
        inference_id: the id the client's answer carries (a shadow's too).
        path: the path called on the replica (its protocol: ``/predict`` or V2 ``/infer``).
        status: its HTTP status, 0 when the replica could not be reached.
        latency_s: seconds from the request's arrival to the answer.
        arrived: when the request arrived, Unix seconds.
        request_body: the body the replica got; ``body`` its answer, as they were.
    """

    project: str
    deployment: str
    revision: int
    model: str
    version: int
    role: str
    inference_id: str
    path: str
    status: int
    latency_s: float
    arrived: float
    request_body: bytes
    body: bytes
