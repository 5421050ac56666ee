"""``finetune``: a transformers encoder trained on a text column, checkpointed, packaged."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from loopml.core.errors import ValidationError
from loopml.packaging import TOKENIZER_FILE, ModelPackage
from loopml.packaging.text import TextConfig
from loopml.train.custom import CheckpointStore
from loopml.train.text import _base
from loopml.train.text._checkpoints import Checkpointer
from loopml.train.text._data import Targets, TextTask, texts_of
from loopml.train.text._export import INPUT_NAMES, package_text_model
from loopml.train.text._loop import LoopConfig, LoopResult, StopFlag, run_loop


@dataclass(frozen=True)
class FinetuneSpec:
    """What to fine-tune, on what.

    Attributes:
        task: ``text-classification`` or ``text-regression``.
        text_column: the column of texts.
        target: the column to predict.
        base: ``None`` (a small random encoder and a tokenizer trained on the data), a
            model folder, or ``package:NAME``.
        max_length: tokens kept per text.
        loop: the optimisation and checkpoint cadence.
        tiny: the random encoder's size (only without ``base``).
    """

    task: TextTask
    text_column: str
    target: str
    base: str | None = None
    max_length: int = 128
    loop: LoopConfig = field(default_factory=LoopConfig)
    tiny: _base.TinyShape = field(default_factory=_base.TinyShape)

    def identity(self, dataset: str) -> str:
        """What makes two attempts "the same training" (the cadence and device excluded)."""
        loop = asdict(self.loop)
        for key in ("checkpoint_every_steps", "checkpoint_every_s", "device"):
            loop.pop(key)
        text = json.dumps(
            [
                dataset,
                self.task,
                self.text_column,
                self.target,
                self.base,
                self.max_length,
                loop,
                asdict(self.tiny),
            ],
            sort_keys=True,
            default=str,
        )
        return "text-" + hashlib.sha256(text.encode()).hexdigest()[:27]


@dataclass
class FinetuneResult:
    """A fine-tune's package and how the loop went."""

    package: ModelPackage
    loop: LoopResult
    targets: Targets
    checkpoints_saved: list[int]


def _tokenizer_and_model(
    spec: FinetuneSpec, texts: list[str], targets: Targets, restored: Path | None
) -> tuple[Any, Any]:
    from tokenizers import Tokenizer

    if spec.base is not None:
        folder = _base.resolve_base(spec.base)
        tokenizer = _base.pretrained_tokenizer(folder)
        return tokenizer, _base.pretrained_model(folder, targets.outputs, spec.loop.seed)
    if restored is not None and (restored / TOKENIZER_FILE).is_file():
        # The resumed run must use the very vocabulary the checkpointed weights were trained on.
        tokenizer = Tokenizer.from_file(str(restored / TOKENIZER_FILE))
    else:
        tokenizer = _base.train_tokenizer(texts, spec.tiny.vocab_size)
    model = _base.tiny_model(
        tokenizer.get_vocab_size(), targets.outputs, spec.max_length, spec.tiny, spec.loop.seed
    )
    return tokenizer, model


def finetune(
    spec: FinetuneSpec,
    train: pd.DataFrame,
    *,
    store: CheckpointStore,
    prefix: str,
    workdir: Path,
    stop: StopFlag | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> FinetuneResult:
    """Fine-tune on ``train`` (resuming from the newest checkpoint under ``prefix``) and write
    the text package to ``workdir/package``.

    Raises:
        ValidationError: a bad target, an empty text set, a failed parity check.
        NotFoundError: ``spec.base`` names no model folder.
        TrainingInterrupted: ``stop`` was set; a checkpoint was saved first.
    """
    texts = texts_of(train, spec.text_column)
    if not texts:
        raise ValidationError("no training rows")
    targets = Targets.fit(spec.task, train[spec.target])
    labels = targets.encode(train[spec.target])
    checkpointer = Checkpointer(store, prefix, workdir / "checkpoints")
    restored = checkpointer.restore()
    tokenizer, model = _tokenizer_and_model(
        spec, texts, targets, restored.folder if restored else None
    )
    pad_token, pad_id = _base.pad_token(tokenizer)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=spec.max_length)
    sequences = [e.ids for e in tokenizer.encode_batch(texts)]
    tokenizer_json = tokenizer.to_str()
    loop = run_loop(
        model,
        sequences,
        labels,
        targets,
        spec.loop,
        pad_id=pad_id,
        checkpointer=checkpointer,
        restored=restored,
        extra_files={TOKENIZER_FILE: tokenizer_json.encode()},
        stop=stop,
        on_step=on_step,
    )
    config = TextConfig(
        text_column=spec.text_column,
        max_length=spec.max_length,
        input_names=INPUT_NAMES,
        pad_id=pad_id,
        pad_token=pad_token,
    )
    package = package_text_model(
        model, tokenizer_json, config, targets, texts[:200], workdir / "package"
    )
    return FinetuneResult(package, loop, targets, list(checkpointer.saved))
