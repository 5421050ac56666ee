"""What a training is asked, as one typed object (``TrainOptions``) that
``loopml.train_model``, ``loopml train``, the pipelines' training steps and the training
service (``loopml.train.service.train``) share, so each option is defined once.

The groups: what to train on (``TrainingData``), how AutoML searches (``SearchOptions``),
and what to register (``Registration``); custom training's entry point, its params and the
checkpoint key sit beside them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loopml.train.search_options import DEFAULT_BUDGET_S as DEFAULT_BUDGET_S
from loopml.train.search_options import SearchOptions as SearchOptions


@dataclass(frozen=True)
class TrainingData:
    """What to train on.

    Attributes:
        dataset: ``name``, ``name@latest`` or ``name@3``; the version must have a split.
        target: the column to predict.
        task: ``classification`` or ``regression`` (``text-classification`` and
            ``text-regression`` go to the text trainer, see ``loopml.train_model``).
    """

    dataset: str
    target: str
    task: str


@dataclass(frozen=True)
class Registration:
    """What to register: the trained model as the next version of ``model``."""

    model: str
    description: str = ""


@dataclass(frozen=True)
class TrainOptions:
    """One training, as ``loopml.train_model`` documents each option.

    Attributes:
        data: what to train on.
        search: AutoML's options (ignored by custom training but for nothing else).
        entrypoint: ``module:function`` for custom training instead of AutoML.
        params: custom training's ``ctx.params`` (a text task's options), logged on the run.
        checkpoint_key: what identifies "the same training" for resuming.
        registration: what to register, if anything.
        experiment: the experiment (default: the dataset's name).
    """

    data: TrainingData
    search: SearchOptions = field(default_factory=SearchOptions)
    entrypoint: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    checkpoint_key: str | None = None
    registration: Registration | None = None
    experiment: str | None = None
