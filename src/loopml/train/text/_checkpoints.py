"""A fine-tune's checkpoints in the artifact store: the newest complete one survives a crash.

A checkpoint is ``<prefix>/<step:012d>/`` holding ``state.pt`` (model, optimizer and
scheduler state, the torch RNG state and the step, written with ``torch.save`` and read back
with ``weights_only=True``, so loading one never runs pickled code) and the tokenizer, then
the ``_COMPLETE`` marker, written last (the protocol of ``loopml.train.custom``). After a new
checkpoint is complete the older ones are deleted: a DistilBERT checkpoint with its Adam
state is about 800 MB.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopml.train.custom import COMPLETE_MARKER, CheckpointStore, clear_checkpoints, complete_steps

STATE_FILE = "state.pt"


@dataclass(frozen=True)
class RestoredCheckpoint:
    """The newest complete checkpoint.

    Attributes:
        step: the global step it was taken after.
        state: what was saved (model, optimizer, scheduler, rng, step).
        folder: a local folder with its other files (the tokenizer).
    """

    step: int
    state: dict[str, Any]
    folder: Path


class Checkpointer:
    """Save and restore a fine-tune's state under one key in a ``CheckpointStore``."""

    def __init__(self, store: CheckpointStore, prefix: str, workdir: Path) -> None:
        self.store = store
        self.prefix = prefix.rstrip("/")
        self._work = workdir
        self.saved: list[int] = []

    def save(self, step: int, state: dict[str, Any], files: dict[str, bytes]) -> None:
        """Upload ``state`` and ``files`` as checkpoint ``step``, marker last; drop older ones."""
        import torch

        folder = self._work / "save"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        torch.save(state, folder / STATE_FILE)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        key = f"{self.prefix}/{step:012d}"
        for path in sorted(folder.iterdir()):
            self.store.put(f"{key}/{path.name}", path)
        marker = self._work / COMPLETE_MARKER
        marker.write_text(json.dumps({"step": step}))
        self.store.put(f"{key}/{COMPLETE_MARKER}", marker)
        self.saved.append(step)
        self._drop_older(step)

    def _drop_older(self, step: int) -> None:
        for other in complete_steps(self.store, self.prefix):
            if other < step:
                for key in self.store.keys(f"{self.prefix}/{other:012d}"):
                    self.store.delete(key)

    def restore(self) -> RestoredCheckpoint | None:
        """The newest complete checkpoint, downloaded; ``None`` when there is none."""
        import torch

        steps = complete_steps(self.store, self.prefix)
        if not steps:
            return None
        step = steps[-1]
        folder = self._work / "restored"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        key = f"{self.prefix}/{step:012d}/"
        for name in self.store.keys(key):
            relative = name[len(key) :]
            if relative != COMPLETE_MARKER and "/" not in relative:
                self.store.get(name, folder / relative)
        state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
        return RestoredCheckpoint(step=step, state=state, folder=folder)

    def clear(self) -> None:
        """Delete every checkpoint under the key (after a successful training)."""
        clear_checkpoints(self.store, self.prefix)
