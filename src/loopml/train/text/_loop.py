"""The fine-tuning loop: AdamW with a linear warm-up/decay schedule, checkpointed.

Written here rather than on ``transformers.Trainer`` because resuming must reproduce an
uninterrupted run: the batches of a step are a function of the seed and the step
(``_data.batch_indices``), the only other randomness (dropout) comes from torch's global
generator, whose state is saved with the model, optimizer and scheduler. A resumed run
therefore takes the same steps on the same batches with the same dropout masks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loopml.core.errors import ServiceUnavailableError
from loopml.train.text._checkpoints import Checkpointer, RestoredCheckpoint
from loopml.train.text._data import Targets, batch_indices, pad


class TrainingInterrupted(ServiceUnavailableError):
    """Training stopped on request (SIGTERM in spot mode) after saving a checkpoint."""

    code = "training_interrupted"


@dataclass
class StopFlag:
    """Set from a signal handler; the loop checkpoints and stops after the current step."""

    requested: bool = False


@dataclass(frozen=True)
class LoopConfig:
    """The optimisation and checkpoint cadence.

    Attributes:
        epochs: passes over the training rows.
        batch_size: rows per step.
        learning_rate: AdamW's peak learning rate.
        weight_decay: AdamW's decoupled weight decay.
        warmup_ratio: the share of steps the learning rate warms up over.
        seed: the data order's and the dropout's seed.
        checkpoint_every_steps: checkpoint after this many steps (0: never by count).
        checkpoint_every_s: checkpoint when this long has passed since the last (0: never).
        device: ``cuda`` or ``cpu``; ``None`` picks CUDA when there is one.
    """

    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    seed: int = 0
    checkpoint_every_steps: int = 100
    checkpoint_every_s: float = 600.0
    device: str | None = None


@dataclass
class LoopResult:
    """What the loop did: steps run here, where it resumed, the last losses."""

    total_steps: int
    resumed_from: int | None
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"


def pick_device(wanted: str | None) -> str:
    """``wanted``, or ``cuda`` when torch sees a GPU, else ``cpu``."""
    import torch

    if wanted:
        return wanted
    return "cuda" if torch.cuda.is_available() else "cpu"


def _rng_state() -> dict[str, Any]:
    import torch

    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _step_loss(model: Any, ids: Any, mask: Any, y: Any, classify: bool) -> Any:
    import torch.nn.functional as functional

    logits = model(input_ids=ids, attention_mask=mask).logits
    if classify:
        return functional.cross_entropy(logits, y)
    return functional.mse_loss(logits[:, 0], y)


def run_loop(
    model: Any,
    sequences: list[list[int]],
    labels: np.ndarray,
    targets: Targets,
    config: LoopConfig,
    *,
    pad_id: int,
    checkpointer: Checkpointer,
    restored: RestoredCheckpoint | None,
    extra_files: dict[str, bytes],
    stop: StopFlag | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> LoopResult:
    """Train ``model`` in place, from ``restored`` (the newest checkpoint) when given.

    Raises:
        TrainingInterrupted: ``stop`` was set; a checkpoint of the last step was saved.
    """
    import torch
    from transformers import get_linear_schedule_with_warmup

    began = time.monotonic()
    device = pick_device(config.device)
    model.to(device)
    rows = len(sequences)
    total = config.epochs * math.ceil(rows / config.batch_size)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    warmup = int(config.warmup_ratio * total)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)  # type: ignore[no-untyped-call]
    start, resumed = 0, None
    if restored is not None:
        state = restored.state
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        start = resumed = int(state["step"])
    else:
        torch.manual_seed(config.seed)
    classify = targets.classes is not None
    target = torch.as_tensor(labels)
    result = LoopResult(total_steps=total, resumed_from=resumed, device=device)
    last_save = time.monotonic()
    model.train()
    for step in range(start, total):
        index = batch_indices(rows, config.batch_size, config.seed, step)
        ids, mask = pad([sequences[i] for i in index], pad_id)
        loss = _step_loss(
            model,
            torch.from_numpy(ids).to(device),
            torch.from_numpy(mask).to(device),
            target[torch.from_numpy(index)].to(device),
            classify,
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        result.losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(done, result.losses[-1])
        wanted = stop is not None and stop.requested
        due = (config.checkpoint_every_steps and done % config.checkpoint_every_steps == 0) or (
            config.checkpoint_every_s and time.monotonic() - last_save >= config.checkpoint_every_s
        )
        if done < total and (due or wanted):
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": _rng_state(),
                "step": done,
            }
            checkpointer.save(done, state, extra_files)
            last_save = time.monotonic()
        if wanted and done < total:
            raise TrainingInterrupted(
                f"training stopped on request after step {done} of {total}; checkpoint saved, "
                "run it again to resume"
            )
    model.eval()
    result.seconds = time.monotonic() - began
    return result
