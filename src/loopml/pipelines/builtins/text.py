"""The ``train_text`` built-in: the text training service (``loopml.train.text.service``)
in the step's process. A step killed mid-fine-tune and retried by the queue runs the same
training again, so it resumes from the newest checkpoint in the project's artifacts."""

from __future__ import annotations

from typing import Any

from loopml.pipelines._step import StepContext
from loopml.pipelines.builtins.train import _access, _outputs


def train_text(
    ctx: StepContext,
    dataset: str,
    target: str,
    task: str,
    params: dict[str, Any] | None = None,
    experiment: str | None = None,
) -> dict[str, Any]:
    """A text task on the dataset version's frozen split; the model is logged on the run."""
    from loopml.train.options import TextTrainOptions, TrainingData
    from loopml.train.text.service import text_options, train_text

    given = text_options(params or {}, search=True) | {"experiment": experiment}
    options = TextTrainOptions.from_keywords(TrainingData(dataset, target, task), given)
    outcome = train_text(_access(ctx), options)
    ctx.log.info("run %s: %s", outcome.run_id, outcome.details.get("method"))
    return _outputs(outcome)
