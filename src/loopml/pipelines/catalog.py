"""The built-in steps in one table: each one's parameters, output types and implementation.

The table is what ``apply`` checks a spec against (unknown parameters, missing ones, type
mismatches), what the worker checks a step's outputs against, and where the worker finds
the function to call. Implementations are imported only when a step runs, so reading the
table stays cheap.

In loopml's registry a model is evaluated and judged as a registered version, so the loop
reads ``train_* -> register -> evaluate -> gate -> promote``: a version the gate refuses
stays registered but never becomes the champion. ``deploy`` moves the alias itself, after
its canary: a deployment follows ``<model>@champion``, so the alias move is the rollout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loopml.pipelines.types import ValueType as T

PYTHON = "python"
"""What ``StepRun.uses`` says for a ``python: module:function`` step."""


@dataclass(frozen=True)
class Param:
    """One parameter of a built-in: its type, and whether it must be given."""

    type: T
    required: bool = False
    default: Any = None
    help: str = ""


@dataclass(frozen=True)
class Builtin:
    """A built-in step.

    Attributes:
        impl: ``module:function`` of the implementation, called as ``fn(ctx, **params)``.
        cache: whether its outputs are cached unless the step says ``cache: false``
            (steps whose effect depends on more than their inputs, such as the gate, are not).
        available: ``False`` for built-ins that are declared but not implemented yet.
    """

    name: str
    summary: str
    params: Mapping[str, Param]
    outputs: Mapping[str, T]
    impl: str = ""
    cache: bool = True
    available: bool = True
    unavailable_reason: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    required_unless: str | None = None
    """A parameter that, when given, makes the ``required`` ones optional (``train_custom``
    on a ``codeset`` needs no dataset, target, task or entrypoint)."""


_DATA = "loopml.pipelines.builtins.data"
_TRAIN = "loopml.pipelines.builtins.train"
_MODELS = "loopml.pipelines.builtins.models"
_SERVING = "loopml.pipelines.builtins.serving"
_TRAINING_PARAMS = {
    "dataset": Param(T.DATASET, required=True, help="A dataset version with a split."),
    "target": Param(T.STRING, required=True, help="The column to predict."),
    "task": Param(T.STRING, required=True, help="classification or regression."),
    "experiment": Param(T.STRING, help="The experiment (default: the dataset's name)."),
}

BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in (
        Builtin(
            "snapshot",
            "Snapshot a table or a SELECT as the next version of a dataset (with a split).",
            {
                "dataset": Param(T.STRING, required=True, help="The dataset to version into."),
                "from": Param(T.SOURCE, required=True, help="A table or one SELECT."),
                "split": Param(T.OBJECT, help="{eval_fraction, seed, stratify}: freeze a split."),
                "description": Param(T.STRING, default=""),
            },
            {"dataset": T.DATASET, "rows": T.INTEGER, "created": T.BOOLEAN},
            impl=f"{_DATA}:snapshot",
        ),
        Builtin(
            "validate",
            "Check a table version against its validation contract (or the one given); a "
            "table without one passes unchecked unless require_contract.",
            {
                "table": Param(T.TABLE, required=True),
                "contract": Param(T.OBJECT, help="A contract; the table's own by default."),
                "fail": Param(T.BOOLEAN, default=True, help="Fail the step when a rule fails."),
                # No declared default, so a step that does not set it keeps its inputs
                # (and its cache key) as before; the function's default is false.
                "require_contract": Param(
                    T.BOOLEAN,
                    help="Fail when the table has no contract and none is given (by default "
                    "it passes with nothing checked).",
                ),
            },
            {"table": T.TABLE, "report": T.METRICS, "passed": T.BOOLEAN, "contract": T.STRING},
            impl=f"{_DATA}:validate",
        ),
        Builtin(
            "transform",
            "Apply a SQL transform: materialize its SELECT into a table.",
            {
                "name": Param(T.STRING, required=True, help="The transform."),
                "sql": Param(T.STRING, help="The SELECT (the saved one when omitted)."),
                "into": Param(T.STRING, help="The table to write."),
                "mode": Param(T.STRING, help="overwrite or append."),
                "timeout_s": Param(T.NUMBER, default=30.0),
            },
            {"table": T.TABLE, "rows": T.INTEGER},
            impl=f"{_DATA}:transform",
            # Without `sql` it runs the saved definition, which can change outside the spec.
            cache=False,
        ),
        Builtin(
            "labelled",
            "Refresh a deployment's labelled predictions (its answers joined with their "
            "labels, inputs as typed columns) and give the rows to train on.",
            {
                "deployment": Param(T.STRING, required=True, help="The deployment."),
                "target": Param(T.STRING, default="label", help="The label's column name."),
                "since": Param(
                    T.STRING,
                    help="Train on the answers made since: `drift` (the onset of the "
                    "deployment's newest drift whose labels are in; all when none), an ISO "
                    "8601 time, or empty for all.",
                ),
            },
            {
                "table": T.TABLE,
                "training": T.SOURCE,
                "rows": T.INTEGER,
                "training_rows": T.INTEGER,
                "since": T.STRING,
            },
            impl=f"{_DATA}:labelled",
            # Labels land outside the spec: every run joins what has arrived.
            cache=False,
            notes=(
                "`training` is the table version without its lineage columns (inference "
                "id, row, model version, times), limited to the answers made since `since`: "
                "a snapshot's `from`. `rows` counts every labelled answer, `training_rows` "
                "those trained on.",
            ),
        ),
        Builtin(
            "split",
            "Freeze a train/eval split onto a dataset version.",
            {
                "dataset": Param(T.DATASET, required=True),
                "eval_fraction": Param(T.NUMBER, default=0.2),
                "seed": Param(T.INTEGER, default=0),
                "stratify": Param(T.STRING),
            },
            {"dataset": T.DATASET, "eval_hash": T.STRING},
            impl=f"{_DATA}:split",
        ),
        Builtin(
            "train_automl",
            "AutoML (FLAML) on a dataset version's frozen split; the model is logged on a run.",
            {
                **_TRAINING_PARAMS,
                "budget_s": Param(T.NUMBER, default=60.0),
                "metric": Param(T.STRING),
                "seed": Param(T.INTEGER, default=0),
                "estimators": Param(T.LIST),
                "max_iter": Param(T.INTEGER),
                "max_model_mb": Param(
                    T.NUMBER, help="The largest model package, in MB (default 50)."
                ),
                "max_predict_ms": Param(
                    T.NUMBER, help="The longest one-row latency on the model server, in ms."
                ),
                "on": Param(
                    T.STRING,
                    default="local",
                    help="local, or ray: the trials run as Ray tasks on the worker's Ray "
                    "cluster, one CPU each (needs loopml[ray]).",
                ),
            },
            {"run": T.RUN, "metrics": T.METRICS},
            impl=f"{_TRAIN}:train_automl",
        ),
        Builtin(
            "train_custom",
            "Your fit(ctx) (module:function) on a dataset version's frozen split, or a "
            "codeset's MLproject / loopml.yaml main entry in its own virtualenv.",
            {
                **_TRAINING_PARAMS,
                "entrypoint": Param(T.STRING, required=True, help="module:function of fit."),
                "params": Param(
                    T.OBJECT, help="ctx.params of fit, or the codeset entry's parameters."
                ),
                "codeset": Param(
                    T.CODESET, help="Run this codeset's entry point instead (docs/codesets.md)."
                ),
            },
            {"run": T.RUN, "metrics": T.METRICS},
            impl=f"{_TRAIN}:train_custom",
            required_unless="codeset",
        ),
        Builtin(
            "train_text",
            "A text task (text-classification, text-regression): fine-tuning or embeddings "
            "+ AutoML (docs/text.md); a retry resumes a fine-tune from its last checkpoint.",
            {
                **_TRAINING_PARAMS,
                "params": Param(T.OBJECT, help="train_text_model's options (method, base, ...)."),
            },
            {"run": T.RUN, "metrics": T.METRICS},
            impl="loopml.pipelines.builtins.text:train_text",
        ),
        Builtin(
            "register",
            "Register the model a training run logged as the next version of a model.",
            {
                "run": Param(T.RUN, required=True),
                "model": Param(T.STRING, required=True, help="The registered model's name."),
                "description": Param(T.STRING, default=""),
                "path": Param(
                    T.STRING,
                    help="Where the run logged it (default: model, or the run's only model).",
                ),
            },
            {"model": T.MODEL},
            impl=f"{_MODELS}:register",
            notes=("A retry reuses the version an earlier attempt registered from the same run.",),
        ),
        Builtin(
            "evaluate",
            "Score a model version on a dataset version's frozen eval set.",
            {
                "model": Param(T.MODEL, required=True),
                "dataset": Param(T.DATASET, help="Default: the one it was trained on."),
                "target": Param(T.STRING, help="Default: the one it was trained on."),
            },
            {"model": T.MODEL, "metrics": T.METRICS, "eval_hash": T.STRING},
            impl=f"{_MODELS}:evaluate",
        ),
        Builtin(
            "gate",
            "Judge a model version by its model's gate policy (against the champion).",
            {
                "model": Param(T.MODEL, required=True),
                "eval_hash": Param(T.STRING, help="Which evaluation; the newest by default."),
                "fail": Param(T.BOOLEAN, default=False, help="Fail the step when refused."),
                "min_delta": Param(
                    T.NUMBER,
                    help="Beat the champion by at least this much (a tie fails); raises the "
                    "model policy's min_delta, never lowers it.",
                ),
            },
            # The summary is a sentence per deciding rule: longer than a string's 200
            # characters when several rules failed (the demo's refusal names two).
            {"model": T.MODEL, "passed": T.BOOLEAN, "summary": T.ANY},
            impl=f"{_MODELS}:gate",
            cache=False,
        ),
        Builtin(
            "promote",
            "Point an alias (champion by default) at a model version the gate passed.",
            {
                "model": Param(T.MODEL, required=True),
                "alias": Param(T.STRING, default="champion"),
            },
            {"model": T.MODEL, "alias": T.STRING},
            impl=f"{_MODELS}:promote",
            cache=False,
        ),
        Builtin(
            "deploy",
            "Serve a model version on a deployment (created if missing, following "
            "<model>@<alias>), directly or after a canary; moving the alias rolls it out.",
            {
                "model": Param(T.MODEL, required=True, help="The version to serve."),
                "deployment": Param(T.STRING, required=True, help="The deployment's name."),
                "strategy": Param(T.STRING, default="direct", help="direct or canary."),
                "alias": Param(
                    T.STRING,
                    default="champion",
                    help="Moved to the version once it may go full (the gate guards "
                    "champion); empty to pin the deployment to the version instead.",
                ),
                "canary_percent": Param(T.INTEGER, default=10, help="Canary's traffic share."),
                "canary_s": Param(
                    T.NUMBER,
                    default=30.0,
                    help="Promoted once the canary judge found it no worse for this long.",
                ),
                "min_requests": Param(
                    T.INTEGER,
                    default=0,
                    help="Requests each revision serves before a verdict (0: the server's "
                    "canary.min_requests).",
                ),
                "min_labels": Param(
                    T.INTEGER,
                    default=0,
                    help="Labels each revision needs before their live quality is compared "
                    "(0: the server's canary.min_labels).",
                ),
                "max_quality_drop": Param(
                    T.NUMBER,
                    help="Rolled back when its live accuracy (R2) is lower than the primary's "
                    "by more (the server's canary.max_quality_drop if unset).",
                ),
                "max_error_increase": Param(
                    T.NUMBER,
                    help="Rolled back when its error rate passes the primary's by more, a "
                    "share (the server's canary.max_error_rate_increase if unset).",
                ),
                "min_replicas": Param(T.INTEGER, default=1, help="On creation."),
                "max_replicas": Param(T.INTEGER, help="On creation."),
                "scale_to_zero_after_s": Param(T.INTEGER, help="On creation (min_replicas 0)."),
                "wait_s": Param(T.NUMBER, default=300.0, help="How long to wait for it to serve."),
            },
            {
                "deployment": T.STRING,
                "revision": T.INTEGER,
                "model": T.MODEL,
                "canary": T.METRICS,
            },
            impl=f"{_SERVING}:deploy",
            # Its effect is on the live deployment, which changes outside the spec.
            cache=False,
            notes=(
                "Runs before the alias moves: a canary is judged by the deployments' canary "
                "judge (errors, latency, live quality; the step's margins over the server's "
                "canary settings), then the alias move rolls the version out.",
            ),
        ),
        Builtin(
            "batch_predict",
            "Score a table with a model version (or a deployment's) into a table.",
            {
                "input": Param(T.TABLE, required=True, help="The table (version) to score."),
                "output": Param(T.STRING, required=True, help="The table written."),
                "model": Param(T.MODEL, help="The model version; or give deployment."),
                "deployment": Param(T.STRING, help="Score with its primary version."),
                "mode": Param(T.STRING, default="overwrite", help="overwrite or append."),
                "chunk_rows": Param(T.INTEGER, default=50_000),
                "on": Param(
                    T.STRING,
                    default="local",
                    help="local, or ray: the table's files scored in parallel on the "
                    "worker's Ray cluster (needs loopml[ray]).",
                ),
            },
            {"table": T.TABLE, "rows": T.INTEGER, "model": T.MODEL},
            impl=f"{_SERVING}:batch_predict",
        ),
    )
}


def available() -> list[str]:
    """The built-ins a spec may use, sorted."""
    return sorted(name for name, b in BUILTINS.items() if b.available)
