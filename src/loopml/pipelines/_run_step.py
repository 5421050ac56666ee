"""Calling a step's function inside an error boundary, and checking what it returned.

Runs where the executor runs the attempt (the local executor's child process). Whatever the
step raises becomes a ``StepError`` that says whether a retry may help and whose failure it
was (``user_code`` for a python step, ``platform`` for a built-in), never a crash of the
worker.
"""

from __future__ import annotations

import importlib
import json
import traceback
from collections.abc import Callable
from typing import Any

from loopml.core.errors import (
    ConfigurationError,
    LoopmlError,
    ServiceUnavailableError,
    UserCodeError,
)
from loopml.core.errors import ValidationError as LoopmlValidationError
from loopml.core.pipelines import StepError
from loopml.pipelines._step import STEP_MARKER, StepContext
from loopml.pipelines.base import StepOutcome, StepTask
from loopml.pipelines.catalog import BUILTINS, PYTHON
from loopml.pipelines.types import ValueType, check_value

MAX_OUTPUT_BYTES = 1024 * 1024
_TRACEBACK_CHARS = 8000


class StepCodeError(LoopmlValidationError):
    """A python step cannot be called: not importable, or not marked ``@step``."""

    code = "invalid_step_function"


def load_function(task: StepTask) -> Callable[..., Any]:
    """The function the task names.

    Raises:
        StepCodeError: the module or function is missing, or not marked with ``@step``.
    """
    target = task.python if task.uses == PYTHON else BUILTINS[task.uses].impl
    assert target, f"the built-in {task.uses!r} has no implementation"
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise StepCodeError(
            f"cannot import {module_name!r} for step {task.step!r}: {exc}. Install it where the "
            "workers run, or put its folder on their PYTHONPATH",
            details={"python": target},
        ) from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise StepCodeError(f"{target!r} is not a function", details={"python": target})
    if task.uses == PYTHON and not getattr(fn, STEP_MARKER, False):
        raise StepCodeError(
            f"{target!r} is not a pipeline step: mark it with @loopml.pipelines.step "
            "(a spec may only call functions written as steps)",
            details={"python": target},
        )
    return fn  # type: ignore[no-any-return]


def _is_user_code(exc: BaseException) -> bool:
    return isinstance(exc, UserCodeError)


def _retryable(exc: BaseException) -> bool:
    # A user's training code that raised may pass on a retry (it resumes from its checkpoint).
    if isinstance(exc, ServiceUnavailableError) or _is_user_code(exc):
        return True
    if isinstance(exc, ConfigurationError):
        return False
    if isinstance(exc, LoopmlError):
        return exc.status >= 500
    return True


def describe(exc: BaseException, *, user_code: bool) -> StepError:
    """``exc`` as a ``StepError``."""
    trace = "".join(traceback.format_exception(exc))[-_TRACEBACK_CHARS:]
    if _is_user_code(exc):
        assert isinstance(exc, LoopmlError)
        trace = str(exc.details.get("traceback", trace))[-_TRACEBACK_CHARS:]
    origin = "user_code" if user_code or _is_user_code(exc) else "platform"
    if isinstance(exc, StepCodeError):
        origin = "user_code"
    return StepError(
        type=type(exc).__name__,
        code=exc.code if isinstance(exc, LoopmlError) else None,
        message=(str(exc) or type(exc).__name__)[:4000],
        retryable=_retryable(exc),
        origin=origin,
        traceback=trace,
    )


def check_outputs(task: StepTask, result: Any) -> dict[str, Any]:
    """The step's return value as outputs, checked against the declared types.

    Raises:
        StepCodeError: not a mapping, a declared output missing or of the wrong type, or
            values that are not JSON.
    """
    if result is None:
        result = {}
    if not isinstance(result, dict) or not all(isinstance(k, str) for k in result):
        raise StepCodeError(
            f"step {task.step!r} returned {type(result).__name__}: a step returns a mapping "
            "of output names to values (or None when it declares no outputs)"
        )
    problems = []
    for name, kind in task.outputs.items():
        if name not in result:
            problems.append(f"output {name!r} is missing")
        elif why := check_value(ValueType(kind), result[name]):
            problems.append(f"output {name!r}: {why}")
    if problems:
        raise StepCodeError(f"step {task.step!r} returned bad outputs: " + "; ".join(problems))
    try:
        text = json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StepCodeError(
            f"step {task.step!r} returned outputs that are not JSON: {exc}"
        ) from exc
    if len(text) > MAX_OUTPUT_BYTES:
        raise StepCodeError(
            f"step {task.step!r} returned {len(text)} bytes of outputs, over {MAX_OUTPUT_BYTES}: "
            "save large results as files (ctx.save_file) and return their keys"
        )
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def run_step(task: StepTask, ctx: StepContext) -> StepOutcome:
    """Run the task's function with ``ctx`` and its params; never raises."""
    user_code = task.uses == PYTHON
    try:
        fn = load_function(task)
        ctx.log.info(
            "step %s (%s) attempt %d of run %s",
            task.step,
            task.python or task.uses,
            task.attempt,
            task.run_id,
        )
        result = fn(ctx, **task.params)
        outputs = check_outputs(task, result)
    except BaseException as exc:  # the boundary: every failure becomes an outcome
        error = describe(exc, user_code=user_code)
        ctx.log.error("step %s failed: %s", task.step, error.message)
        if error.traceback:
            ctx.log.error("%s", error.traceback)
        return StepOutcome(ok=False, error=error)
    ctx.log.info("step %s done: %s", task.step, json.dumps(outputs)[:2000])
    return StepOutcome(ok=True, outputs=outputs)
