"""``ActiveRun``: one run being logged from training code, through a ``TrackingBackend``
(a server over HTTP, or the embedded store: the caller chooses, the run never knows which).

``loopml.start_run`` (``loopml.sdk.tracking``) picks the backend for users' code; loopml's own
trainers (``loopml.train.service``) call ``start_run_on`` with the backend they were given.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from loopml.core.errors import ValidationError
from loopml.core.runs import (
    EndStatus,
    LoggedModel,
    MetricPoint,
    Run,
    RunInput,
    parse_batch,
)
from loopml.train.tracking._code import capture_code_version
from loopml.train.tracking._pump import Pump
from loopml.train.tracking.backend import TrackingBackend

if TYPE_CHECKING:
    from loopml.packaging import ModelPackage

log = logging.getLogger("loopml.sdk")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _point(key: str, value: float, step: int, timestamp_ms: int | None) -> MetricPoint:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"metric {key!r} must be a number, got {type(value).__name__}")
    ms = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
    if math.isinf(value):
        raise ValidationError(f"metric {key!r} is infinite: values must be finite or NaN")
    point = {"key": key, "value": float(value), "step": step, "timestamp_ms": ms}
    return parse_batch({"metrics": [point]}).metrics[0]


class ActiveRun:
    """A RUNNING run and what it logs; a context manager that ends it.

    On leaving the ``with`` block the run ends FINISHED, FAILED on an exception (which is
    re-raised) or KILLED on ``KeyboardInterrupt``. Use ``end()`` outside a ``with``.
    """

    def __init__(
        self,
        backend: TrackingBackend,
        run: Run,
        *,
        heartbeat_interval_s: float,
        flush_interval_s: float,
    ) -> None:
        self._backend = backend
        self.info: Run = run
        self._pump = Pump(
            backend,
            run.id,
            heartbeat_interval_s=heartbeat_interval_s,
            flush_interval_s=flush_interval_s,
        )
        self._pump.start()
        self._ended = False

    @property
    def id(self) -> str:
        """The run's id."""
        return self.info.id

    def log_param(self, key: str, value: Any) -> None:
        """Log one parameter (stored as text; it cannot change once logged)."""
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters now, in one call (values are stored as text)."""
        batch = parse_batch({"params": {k: _text(v) for k, v in params.items()}})
        self._backend.log_batch(self.id, batch)

    def set_tag(self, key: str, value: Any) -> None:
        """Set one tag (tags can be overwritten)."""
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags now, in one call."""
        batch = parse_batch({"tags": {k: _text(v) for k, v in tags.items()}})
        self._backend.log_batch(self.id, batch)

    def log_input(self, dataset_id: str, *, kind: str = "dataset") -> None:
        """Record that the run read ``dataset_id`` (a dataset snapshot id)."""
        batch = parse_batch({"inputs": [{"kind": kind, "ref": dataset_id}]})
        self._backend.log_batch(self.id, batch)

    def log_metric(
        self, key: str, value: float, *, step: int = 0, timestamp_ms: int | None = None
    ) -> None:
        """Buffer one metric point; it is sent within about a second."""
        self._pump.add([_point(key, value, step, timestamp_ms)])

    def log_metrics(
        self, metrics: Mapping[str, float], *, step: int = 0, timestamp_ms: int | None = None
    ) -> None:
        """Buffer one point per metric, all at ``step``; they are sent within about a second."""
        self._pump.add([_point(k, v, step, timestamp_ms) for k, v in metrics.items()])

    def flush(self) -> None:
        """Send every buffered metric point now."""
        self._pump.flush()

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file, or every file of a folder, to the run's artifacts (streamed).

        Args:
            path: a file or a folder.
            artifact_path: the folder to put it in, inside the run's artifacts.
        """
        source = Path(path)
        prefix = f"{artifact_path.strip('/')}/" if artifact_path else ""
        if source.is_dir():
            for file in sorted(p for p in source.rglob("*") if p.is_file()):
                rel = file.relative_to(source).as_posix()
                self._backend.upload(self.id, f"{prefix}{source.name}/{rel}", file)
        else:
            self._backend.upload(self.id, f"{prefix}{source.name}", source)

    def log_model(
        self,
        model: Any,
        *,
        sample: Any,
        path: str = "model",
        signature: Any = None,
        check: Callable[[ModelPackage], None] | None = None,
    ) -> LoggedModel:
        """Package a fitted model (ONNX and skops, with a manifest), upload it under ``path``
        and record it as a logged model of this run.

        Args:
            model: a fitted scikit-learn estimator or pipeline, or a LightGBM model.
            sample: a pandas DataFrame of input rows (signature, parity check, example).
            path: the folder inside the run's artifacts.
            signature: a ``loopml.packaging.Signature``; inferred when omitted.
            check: called with the written package before it is uploaded; when it raises,
                nothing is uploaded or recorded (training's latency limit).
        """
        import tempfile

        from loopml.packaging import package_model

        with tempfile.TemporaryDirectory(prefix="loopml-model-") as tmp:
            folder = Path(tmp) / "package"
            package = package_model(model, folder, sample=sample, signature=signature)
            if check is not None:
                check(package)
            for file in sorted(package.path.iterdir()):
                self._backend.upload(self.id, f"{path.strip('/')}/{file.name}", file)
        manifest = package.manifest
        parity = manifest.parity.model_dump(mode="json") if manifest.parity else None
        return self._backend.record_model(
            self.id,
            path=path.strip("/"),
            flavor=manifest.flavor,
            format=manifest.primary,
            manifest_sha256=package.manifest_sha256,
            signature=manifest.signature.model_dump(mode="json"),
            summary={
                "parity": parity,
                "onnx_error": manifest.onnx_error,
                "size_bytes": sum(f.size for f in manifest.files.values()),
            },
        )

    def end(self, status: EndStatus = "FINISHED") -> Run:
        """Flush, stop the background thread and end the run (once; later calls no-op)."""
        if self._ended:
            return self.info
        self._ended = True
        try:
            self._pump.stop()
        finally:
            self.info = self._backend.end(self.id, status)
        return self.info

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.end("FINISHED")
            return
        status: EndStatus = "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
        try:
            self.end(status)
        except Exception:
            # The user's exception is the one to see; failing to record the end is secondary.
            log.exception("could not end run %s as %s", self.id, status)


def start_run_on(
    backend: TrackingBackend,
    experiment: str,
    *,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    inputs: list[str] | None = None,
    parent_run_id: str | None = None,
    heartbeat_interval_s: float = 10.0,
    heartbeat_timeout_s: int | None = None,
    flush_interval_s: float = 1.0,
) -> ActiveRun:
    """``start_run`` on a backend already chosen (for loopml's own trainers)."""
    if heartbeat_interval_s <= 0 or flush_interval_s <= 0:
        raise ValidationError("heartbeat_interval_s and flush_interval_s must be positive")
    batch = parse_batch(
        {
            "params": {k: _text(v) for k, v in (params or {}).items()},
            "tags": {k: _text(v) for k, v in (tags or {}).items()},
            "inputs": [RunInput(ref=ref).model_dump() for ref in inputs or []],
        }
    )
    fields = {"name": name, "parent_run_id": parent_run_id, "code_version": capture_code_version()}
    run = backend.start(experiment, batch, heartbeat_timeout_s=heartbeat_timeout_s, **fields)
    log.info("run %s of %s started on %s", run.id, experiment, backend.where)
    return ActiveRun(
        backend, run, heartbeat_interval_s=heartbeat_interval_s, flush_interval_s=flush_interval_s
    )
