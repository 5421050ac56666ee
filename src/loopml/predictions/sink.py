"""The hook through which every served prediction can be recorded, never waiting on storage.

The model server hands each successful prediction to an optional ``PredictionSink``, after
the answer is computed and before it is sent. ``record`` must not block: an implementation
puts the record on an in-memory queue (dropping, and counting, when it is full) and returns;
a background task or thread writes the queue to storage. Whatever ``record`` raises is
counted (``loopml_model_sink_errors_total``) and swallowed: recording never fails a request.

The record is columnar, as it arrived: no per-row objects are built on the hot path, and a
prediction log can append the arrays to Arrow/Parquet as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

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


@dataclass(frozen=True)
class ShadowAnswer:
    """What a revision answered through the gateway: a shadow's answer to a copy of a request
    (never sent to the client), or the primary's answer the client got (``revision`` equal to
    ``primary_revision``); the gateway hands both to the prediction log.

    Attributes:
        inference_id: the id the primary's answer carries too.
        path: the path called on the shadow replica; ``request_body`` the body sent.
        status: its HTTP status, 0 when it could not be reached.
        body: its answer (JSON), empty when unreachable.
        primary_revision: the revision whose answer the client got.
    """

    project: str
    deployment: str
    revision: int
    model: str
    version: int
    inference_id: str
    path: str
    request_body: bytes
    status: int
    body: bytes
    latency_s: float
    primary_revision: int
    arrived: float | None = None
    """When the request arrived (Unix seconds); ``None``: ``latency_s`` before now."""
