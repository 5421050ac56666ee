"""The workflow spec: a pipeline's YAML, its models, and ``parse_spec`` that refuses a bad
one with the line each problem is on.

Example::

    name: churn-retrain
    description: Snapshot, train, judge and promote.
    inputs:
      table: {type: table, default: churn}
    outputs:
      model: ${{ steps.register.outputs.model }}
    steps:
      - name: snapshot
        uses: snapshot
        with: {dataset: churn_snap, from: "${{ inputs.table }}",
               split: {eval_fraction: 0.2, stratify: churned}}
      - name: train
        uses: train_automl
        with: {dataset: "${{ steps.snapshot.outputs.dataset }}", target: churned,
               task: classification, budget_s: 30}
        retries: {count: 2, backoff: 10}
        timeout: 10m
      - name: register
        uses: register
        with: {run: "${{ steps.train.outputs.run }}", model: churn}

A step may ask for resources, ``resources: {cpus: 2, memory: 4GiB, gpus: 1}``: one
attempt needs them on one node (``core.step_resources``).

A step may carry a condition, ``if: ${{ steps.gate.outputs.passed }}`` (one reference to a
boolean output or input): when it is false the step is SKIPPED, the steps behind it are
skipped too, and the run succeeds, since a refusal is an outcome, not a failure.

The DAG comes from the references (and ``needs``), never from the order of the list.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticValidationError

from loopml.core.pipeline_policy import (
    DEFAULT_BACKOFF_FACTOR,
    DEFAULT_BACKOFF_S,
    DEFAULT_MAX_BACKOFF_S,
    retry_delay_s,
)
from loopml.core.pipelines import (
    MAX_SPEC_CHARS,
    STEP_NAME_PATTERN,
    SpecError,
)
from loopml.core.step_resources import StepResources
from loopml.pipelines._yaml import Located, Path, YamlSyntaxError, load_located
from loopml.pipelines.types import ValueType

MAX_STEPS = 100
ENTRYPOINT_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_]\w*$")
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_TIMEOUT_S = 7 * 24 * 3600.0


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class InputSpec(_Spec):
    """A pipeline input: its type, and its default (an input without one must be given)."""

    type: ValueType = ValueType.STRING
    default: Any = None
    description: str = Field(default="", max_length=2000)

    @property
    def required(self) -> bool:
        return self.default is None


class RetrySpec(_Spec):
    """How often a failed step is tried again, and how long to wait before each retry.

    The n-th retry waits ``backoff * factor ** (n - 1)`` seconds, at most ``max_backoff``.
    """

    count: int = Field(default=0, ge=0, le=20, description="Retries after the first attempt.")
    backoff: float = Field(
        default=DEFAULT_BACKOFF_S, ge=0, le=3600, description="Seconds before retry 1."
    )
    factor: float = Field(default=DEFAULT_BACKOFF_FACTOR, ge=1, le=10)
    max_backoff: float = Field(default=DEFAULT_MAX_BACKOFF_S, ge=0, le=86_400)

    def delay_s(self, failures: int) -> float:
        """The wait before the retry that follows failure number ``failures`` (1-based);
        the rule is ``core.pipeline_policy.retry_delay_s``, the one the queue applies."""
        return retry_delay_s(
            failures, backoff=self.backoff, factor=self.factor, max_backoff=self.max_backoff
        )


def parse_duration(value: Any) -> float | None:
    """Seconds from ``30``, ``"30s"``, ``"10m"``, ``"1.5h"`` or ``"500ms"``."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30, '30s', '10m' or '1h'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (found := _DURATION.fullmatch(value)):
        seconds = float(found.group(1)) * _UNITS[found.group(2)]
    else:
        raise ValueError("expected a duration such as 30, '30s', '10m' or '1h'")
    if not 0 < seconds <= MAX_TIMEOUT_S:
        raise ValueError(f"a timeout is more than 0 and at most {MAX_TIMEOUT_S:.0f} seconds")
    return seconds


class StepSpec(_Spec):
    """One step: a built-in (``uses``) or your function (``python: module:function``)."""

    name: str = Field(max_length=63)
    uses: str | None = Field(default=None, max_length=63)
    python: str | None = Field(default=None, max_length=300)
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    retries: RetrySpec = Field(default_factory=RetrySpec)
    timeout: float | None = Field(default=None, description="Seconds; '30s', '10m', '1h'.")
    cache: bool | None = None
    needs: list[str] = Field(default_factory=list, max_length=MAX_STEPS)
    outputs: dict[str, ValueType] = Field(default_factory=dict)
    description: str = Field(default="", max_length=2000)
    if_: str | None = Field(
        default=None,
        alias="if",
        max_length=400,
        description="Run the step only when this boolean reference is true "
        "(`${{ steps.gate.outputs.passed }}`); otherwise it is SKIPPED, and so are the steps "
        "that need it, and the run still succeeds.",
    )
    resources: StepResources | None = Field(
        default=None,
        description="What one attempt needs on one node: `{cpus: 2, memory: 4GiB, gpus: 1}`, "
        "checked against the workers' nodes at apply.",
    )

    @field_validator("retries", mode="before")
    @classmethod
    def _count_only(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return {"count": value}
        return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value)


class PipelineSpec(_Spec):
    """A pipeline: typed inputs with defaults, outputs (references), and its steps."""

    name: str = Field(max_length=63)
    description: str = Field(default="", max_length=4000)
    inputs: dict[str, InputSpec] = Field(default_factory=dict, max_length=100)
    outputs: dict[str, str] = Field(default_factory=dict, max_length=100)
    steps: list[StepSpec] = Field(min_length=1, max_length=MAX_STEPS)

    @field_validator("inputs", mode="before")
    @classmethod
    def _type_shorthand(cls, value: Any) -> Any:
        # `table: table` is short for `table: {type: table}`.
        if isinstance(value, dict):
            return {k: {"type": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    def step(self, name: str) -> StepSpec:
        """The step called ``name``."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec, and where."""

    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f" ({self.path})" if self.path else ""
        return f"line {self.line}{where}: {self.message}"


def spec_error(problems: list[Problem]) -> SpecError:
    """The error refusing a spec, listing each problem with its line (sorted by line)."""
    ordered = sorted(problems, key=lambda p: (p.line, p.path))
    count = f"{len(ordered)} problem" + ("s" if len(ordered) != 1 else "")
    text = "\n".join(f"  {p}" for p in ordered[:50])
    return SpecError(
        f"the pipeline spec has {count}:\n{text}",
        details={
            "problems": [
                {"line": p.line, "path": p.path, "message": p.message} for p in ordered[:200]
            ]
        },
    )


@dataclass(frozen=True)
class ParsedPipeline:
    """A spec that passed every check.

    Attributes:
        spec: the validated models.
        text: the YAML as given.
        order: the step names in a topological order (a step after everything it needs).
        needs: each step's upstream steps (from its references and its ``needs``).
        spec_hash: SHA-256 of the normalized spec, the version's identity.
    """

    spec: PipelineSpec
    text: str
    order: list[str]
    needs: dict[str, list[str]]
    spec_hash: str


def display_path(path: Path, data: Any) -> str:
    """``steps.train.with.dataset`` for ``("steps", 1, "with", "dataset")``."""
    parts: list[str] = []
    steps = data.get("steps") if isinstance(data, dict) else None
    for index, part in enumerate(path):
        if index == 1 and path[0] == "steps" and isinstance(part, int):
            name = None
            if isinstance(steps, list) and part < len(steps) and isinstance(steps[part], dict):
                name = steps[part].get("name")
            parts.append(str(name) if isinstance(name, str) else f"[{part}]")
        elif isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(str(part))
    return ".".join(parts).replace(".[", "[")


def pydantic_problems(exc: PydanticValidationError, located: Located) -> list[Problem]:
    problems = []
    for err in exc.errors()[:50]:
        loc: list[str | int] = []
        for part in err.get("loc", ()):
            candidate = (*loc, "with" if part == "with_" else part)
            # Union and validator names appear in the location: keep what the document has.
            if candidate in located.lines or not loc or isinstance(part, int):
                loc = list(candidate)
        path = tuple(loc)
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        problems.append(Problem(located.line_of(path), display_path(path, located.data), message))
    return problems


def spec_hash(spec: PipelineSpec) -> str:
    """SHA-256 of the spec normalized (defaults filled, keys sorted): comments, key order and
    formatting do not change a pipeline's identity."""
    data = spec.model_dump(mode="json", by_alias=True)
    for step in data["steps"]:
        # Conditions and resources came later: a spec without them keeps its identity.
        for later in ("if", "resources"):
            if step.get(later) is None:
                step.pop(later, None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def load_spec_yaml(text: str) -> Located:
    if not isinstance(text, str) or not text.strip():
        raise spec_error([Problem(1, "", "the spec is empty: expected a YAML mapping")])
    if len(text) > MAX_SPEC_CHARS:
        raise spec_error(
            [Problem(1, "", f"the spec is {len(text)} characters, over {MAX_SPEC_CHARS}")]
        )
    try:
        located = load_located(text)
    except YamlSyntaxError as exc:
        raise spec_error([Problem(exc.line, "", f"not valid YAML: {exc.message}")]) from None
    if not isinstance(located.data, dict):
        raise spec_error([Problem(1, "", "expected a YAML mapping with name, steps, ...")])
    dupes = [
        Problem(line, display_path(path, located.data), "duplicate key: each key appears once")
        for path, line in located.duplicates
    ]
    if dupes:
        raise spec_error(dupes)
    problems: list[Problem] = []
    located.data = _json_only(located.data, (), located, problems)
    if problems:
        raise spec_error(problems)
    return located


def _json_only(value: Any, path: Path, located: Located, problems: list[Problem]) -> Any:
    """``value`` as JSON data: dates become ISO text; binary, sets, NaN and non-text keys
    are problems (values travel between steps as JSON)."""
    if isinstance(value, dict):
        found = {}
        for key, item in value.items():
            if not isinstance(key, str):
                where = display_path((*path, str(key)), located.data)
                problems.append(Problem(located.line_of(path), where, "keys must be text"))
                continue
            found[key] = _json_only(item, (*path, key), located, problems)
        return found
    if isinstance(value, list):
        return [_json_only(v, (*path, i), located, problems) for i, v in enumerate(value)]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        message = "numbers must be finite (no .nan or .inf)"
    elif value is None or isinstance(value, (str, bool, int, float)):
        return value
    else:
        message = f"a {type(value).__name__} is not a JSON value: write it as text or a list"
    problems.append(Problem(located.line_of(path), display_path(path, located.data), message))
    return None


def valid_name(name: str) -> bool:
    """Whether ``name`` may name a step, an input or an output."""
    return bool(STEP_NAME_PATTERN.fullmatch(name))
