"""Custom training: the user's ``fit(ctx)`` with their frames, a logger and checkpoints.

``loopml train --entrypoint mypkg.train:fit`` imports ``fit`` and calls it with a
``TrainContext``: the train and eval frames, the params, the run to log to, and a
checkpoint folder. ``fit`` returns the fitted model (a scikit-learn estimator or pipeline,
or a LightGBM model), which loopml packages, logs and registers.

Checkpoints make a retried training resume instead of restarting. ``ctx.save_checkpoint(step)``
uploads the files in ``ctx.checkpoint_dir`` as checkpoint ``step``; when training with the
same checkpoint key (the entrypoint, the dataset version and the params, unless given) is
tried again after a crash, ``ctx.last_checkpoint()`` returns a folder with the files of the
newest complete checkpoint of the failed attempt. A checkpoint is complete once its marker,
written last, exists: a crash while saving leaves the previous one as the newest. Training
that succeeds deletes its checkpoints.

User code runs inside an error boundary: anything it raises becomes ``UserCodeError``
carrying the user's traceback, never mistaken for a platform failure.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import re
import shutil
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from loopml.core.errors import UserCodeError, ValidationError

ENTRYPOINT_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
COMPLETE_MARKER = "_COMPLETE"
MAX_CHECKPOINT_STEP = 10**12 - 1


class CheckpointStore(Protocol):
    """Where checkpoints live between attempts (the artifact store, locally or over HTTP).

    Keys are ``<prefix>/<step:012d>/<file>``; a step is complete once its
    ``COMPLETE_MARKER`` object exists.
    """

    def put(self, key: str, source: Path) -> None:
        """Upload ``source`` as ``key``."""

    def get(self, key: str, dest: Path) -> None:
        """Download ``key`` into the file ``dest``."""

    def keys(self, prefix: str) -> list[str]:
        """Every key under the folder ``prefix``."""

    def delete(self, key: str) -> None:
        """Delete ``key``."""


class RunLogger(Protocol):
    """What ``fit`` may log through ``ctx.run`` (an ``ActiveRun``)."""

    def log_metric(self, key: str, value: float, *, step: int = 0) -> None: ...

    def log_params(self, params: Mapping[str, Any]) -> None: ...


def checkpoint_key(entrypoint: str, dataset: str, params: Mapping[str, Any]) -> str:
    """The default checkpoint key: what identifies "the same training" across attempts."""
    text = json.dumps([entrypoint, dataset, dict(params)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class TrainContext:
    """What ``fit(ctx)`` gets.

    Attributes:
        train: the training rows (target included).
        eval: the frozen eval rows (target included); loopml scores the returned model on
            them, so use them for early stopping at most.
        target: the target column.
        params: the parameters given to ``loopml train --param``.
        run: the run to log metrics and params to.
        checkpoint_dir: an empty local folder for this attempt's checkpoint files.
        attempt_resumed_from: the step ``last_checkpoint`` found, once called.
    """

    train: pd.DataFrame
    eval: pd.DataFrame
    target: str
    params: dict[str, Any]
    run: RunLogger
    checkpoint_dir: Path
    _store: CheckpointStore
    _prefix: str
    _restore_dir: Path
    attempt_resumed_from: int | None = field(default=None)

    def log_metric(self, key: str, value: float, step: int = 0) -> None:
        """Log a metric point on the run."""
        self.run.log_metric(key, value, step=step)

    def save_checkpoint(self, step: int) -> None:
        """Upload every file in ``checkpoint_dir`` as checkpoint ``step`` (marker last)."""
        if isinstance(step, bool) or not isinstance(step, int):
            raise ValidationError(f"a checkpoint step is an integer, got {step!r}")
        if not 0 <= step <= MAX_CHECKPOINT_STEP:
            raise ValidationError(f"a checkpoint step is 0 to {MAX_CHECKPOINT_STEP}, got {step}")
        files = sorted(p for p in self.checkpoint_dir.rglob("*") if p.is_file())
        if not files:
            raise ValidationError(
                "nothing to checkpoint: write the checkpoint's files into ctx.checkpoint_dir first"
            )
        folder = f"{self._prefix}/{step:012d}"
        for file in files:
            self._store.put(f"{folder}/{file.relative_to(self.checkpoint_dir).as_posix()}", file)
        marker = self.checkpoint_dir.parent / f"{COMPLETE_MARKER}-{step}"
        marker.write_text(json.dumps({"step": step, "files": len(files)}))
        self._store.put(f"{folder}/{COMPLETE_MARKER}", marker)
        marker.unlink()

    def last_checkpoint(self) -> Path | None:
        """A folder with the newest complete checkpoint of an earlier attempt, or ``None``."""
        steps = complete_steps(self._store, self._prefix)
        if not steps:
            return None
        step = steps[-1]
        folder = f"{self._prefix}/{step:012d}/"
        if self._restore_dir.exists():
            shutil.rmtree(self._restore_dir)
        self._restore_dir.mkdir(parents=True)
        for key in self._store.keys(folder):
            name = key[len(folder) :]
            if name == COMPLETE_MARKER:
                continue
            target = self._restore_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            self._store.get(key, target)
        self.attempt_resumed_from = step
        return self._restore_dir


def complete_steps(store: CheckpointStore, prefix: str) -> list[int]:
    """The steps under ``prefix`` whose marker exists, ascending."""
    steps = set()
    for key in store.keys(prefix):
        parts = key[len(prefix) :].strip("/").split("/")
        if len(parts) == 2 and parts[1] == COMPLETE_MARKER and parts[0].isdigit():
            steps.add(int(parts[0]))
    return sorted(steps)


def clear_checkpoints(store: CheckpointStore, prefix: str) -> int:
    """Delete every checkpoint under ``prefix``; returns how many objects went."""
    keys = store.keys(prefix)
    for key in keys:
        store.delete(key)
    return len(keys)


def _user_frames(tb: Any) -> str:
    """The traceback without loopml's own frames above the user's call."""
    frames = traceback.extract_tb(tb)
    mine = Path(__file__).resolve()
    kept = [f for f in frames if Path(f.filename).resolve() != mine]
    lines = traceback.format_list(kept or frames)
    return "Traceback (most recent call last):\n" + "".join(lines)


@contextmanager
def user_code(what: str) -> Iterator[None]:
    """Run the user's code: its exceptions become ``UserCodeError`` with its traceback."""
    try:
        yield
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            raise UserCodeError(f"{what} called sys.exit() instead of returning") from exc
        text = _user_frames(exc.__traceback__) + "".join(
            traceback.format_exception_only(type(exc), exc)
        )
        raise UserCodeError(
            f"{what} raised {type(exc).__name__}: {str(exc)[:500]}",
            details={"traceback": text[-20_000:], "exception": type(exc).__name__},
        ) from exc


def load_entrypoint(entrypoint: str, search_path: Path | None = None) -> Callable[..., Any]:
    """Import ``module.path:function`` (the working folder is searched first).

    Raises:
        ValidationError: a malformed entrypoint, a missing module or function.
        UserCodeError: importing the module raised.
    """
    if not isinstance(entrypoint, str) or not ENTRYPOINT_PATTERN.fullmatch(entrypoint):
        raise ValidationError(
            f"invalid entrypoint {entrypoint!r}: expected 'module.path:function', for example "
            "'mypkg.train:fit'",
            details={"field": "entrypoint"},
        )
    module_name, function = entrypoint.split(":")
    folder = str((search_path or Path.cwd()).resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise ValidationError(
            f"cannot find module {module_name!r} of entrypoint {entrypoint!r}: is it installed "
            f"or in {folder}?",
            details={"field": "entrypoint"},
        )
    with user_code(f"importing {module_name}"):
        module = importlib.import_module(module_name)
    fit = getattr(module, function, None)
    if not callable(fit):
        raise ValidationError(
            f"module {module_name!r} has no function {function!r}",
            details={"field": "entrypoint"},
        )
    return fit  # type: ignore[no-any-return]


def call_fit(fit: Callable[..., Any], ctx: TrainContext, entrypoint: str) -> Any:
    """Call ``fit(ctx)`` inside the error boundary; it must return a fitted model."""
    with user_code(entrypoint):
        model = fit(ctx)
    if model is None:
        raise UserCodeError(
            f"{entrypoint} returned None: return the fitted model (a scikit-learn estimator "
            "or pipeline, or a LightGBM model)"
        )
    return model


def run_custom(
    run: Any,
    store: Any,
    prefix: str,
    frames: tuple[pd.DataFrame, pd.DataFrame, str],
    target: str,
    entrypoint: str,
    params: dict[str, Any],
    key: str | None,
) -> tuple[Any, int | None]:
    """Call the user's ``fit`` on the (train, eval, dataset label) ``frames`` with
    checkpoints under ``prefix`` + the checkpoint key in ``store``; returns the model and
    the checkpoint step it resumed from. The run is tagged with the key (and the step), the
    params logged; the checkpoints are deleted once ``fit`` returns."""
    import tempfile

    train, eval_, label = frames
    fit = load_entrypoint(entrypoint)
    key = key or checkpoint_key(entrypoint, label, params)
    if not key.replace("-", "").replace("_", "").isalnum() or len(key) > 64:
        raise ValidationError("a checkpoint key is 1 to 64 letters, digits, '-' or '_'")
    where = f"{prefix}{key}"
    run.set_tags({"loopml.checkpoint_key": key})
    if params:
        run.log_params(
            {k: json.dumps(v) if not isinstance(v, str) else v for k, v in params.items()}
        )
    with tempfile.TemporaryDirectory(prefix="loopml-train-") as tmp:
        work = Path(tmp) / "checkpoint"
        work.mkdir()
        ctx = TrainContext(
            train=train,
            eval=eval_,
            target=target,
            params=params,
            run=run,
            checkpoint_dir=work,
            _store=store,
            _prefix=where,
            _restore_dir=Path(tmp) / "restored",
        )
        model = call_fit(fit, ctx, entrypoint)
        resumed = ctx.attempt_resumed_from
    if resumed is not None:
        run.set_tags({"loopml.resumed_from_step": str(resumed)})
    clear_checkpoints(store, where)
    return model, resumed
