"""The model server's settings: one section, ready to sit in loopml's settings tree."""

from __future__ import annotations

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
    graceful_shutdown_s: float = Field(
        default=30.0,
        ge=0.0,
        description="On SIGTERM, how long requests in flight may take to finish.",
    )
