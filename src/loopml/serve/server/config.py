"""The model server's settings: one section, ready to sit in loopml's settings tree; and
its prediction log's."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_MiB = 1024 * 1024


class ModelServerSettings(BaseModel):
    """How one model-server process batches, limits and shuts down.

    A plain section (no environment reading of its own): the worker CLI fills it from its
    flags, and it can be nested in ``loopml.settings.Settings`` as it is.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    max_batch_size: int = Field(
        default=32,
        ge=1,
        le=4096,
        description="Most requests joined into one model call. 1 turns micro-batching off: "
        "every request is its own model call.",
    )
    max_wait_ms: float = Field(
        default=2.0,
        ge=0.0,
        le=1000.0,
        description="Longest a request waits for others to join its batch. Waiting only "
        "happens while requests are arriving together; a lone request is never held.",
    )
    max_batch_rows: int = Field(
        default=4096,
        ge=1,
        description="Most rows in one model call: a batch stops growing at this many rows "
        "(a single larger request still runs alone).",
    )
    max_rows: int = Field(
        default=10_000,
        ge=1,
        description="Most rows (instances) one request may hold; more is refused with 422.",
    )
    max_body_bytes: int = Field(
        default=16 * _MiB,
        ge=1024,
        description="Largest request body; a larger one is refused with 413 before it is read.",
    )
    max_queue: int = Field(
        default=1024,
        ge=1,
        description="Most requests waiting for the model at once; more are refused with 503 "
        "and Retry-After, so overload sheds load instead of piling up latency.",
    )
    model_threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Threads running model calls. ONNX Runtime already spreads one call "
        "over the cores, so 1 is right for most models.",
    )
    inline_max_ms: float = Field(
        default=0.5,
        ge=0.0,
        le=100.0,
        description="A model call that has been taking less than this runs on the event "
        "loop itself instead of a model thread: handing a 30 microsecond call to a thread and "
        "back costs more than the call. 0 sends every call to a thread.",
    )
    graceful_shutdown_s: float = Field(
        default=30.0,
        ge=0.0,
        description="On SIGTERM, how long requests in flight may take to finish.",
    )


class PredictionLogSettings(BaseModel):
    """Where and how a model-server process logs its predictions (see
    ``loopml.predictions.http_sink``): off unless ``url`` is given. The worker CLI fills it from
    its ``--log-*`` flags.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    url: str | None = Field(
        default=None,
        max_length=2000,
        description="The platform's base URL (http://host:port); every prediction is posted "
        "to the deployment's prediction table there. Unset: no prediction log.",
    )
    project: str = Field(default="default", max_length=63, description="The deployment's project.")
    role: Literal["primary", "canary", "shadow"] | None = Field(
        default=None,
        description="The revision's role, written in each logged row (unset: not recorded).",
    )
    max_batch: int = Field(default=1000, ge=1, le=100_000, description="Most rows per post.")
    flush_ms: float = Field(
        default=200.0,
        ge=0.0,
        le=60_000.0,
        description="Longest a prediction waits in memory before it is posted.",
    )
    max_queue: int = Field(
        default=100_000,
        ge=1,
        description="Most rows waiting to be posted; more are dropped (and counted in "
        "/metrics), so a platform that is down never slows serving.",
    )
    close_timeout_s: float = Field(
        default=20.0,
        ge=0.0,
        description="On shutdown, how long the rows still waiting may take to be posted.",
    )
