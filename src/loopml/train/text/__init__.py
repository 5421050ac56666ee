"""Text tasks: fine-tuning a transformers encoder (checkpointed, resumable), packaged as
ONNX with its tokenizer; see docs/text.md.

Needs the ``text`` extra (``pip install 'loopml[text]'``: torch, transformers, tokenizers).
"""

from loopml.train.text._data import TEXT_TASKS as TEXT_TASKS
from loopml.train.text._data import TextTask as TextTask
from loopml.train.text._data import pick_text_column as pick_text_column
from loopml.train.text._finetune import FinetuneResult as FinetuneResult
from loopml.train.text._finetune import FinetuneSpec as FinetuneSpec
from loopml.train.text._finetune import finetune as finetune
from loopml.train.text._loop import LoopConfig as LoopConfig
from loopml.train.text._loop import StopFlag as StopFlag
from loopml.train.text._loop import TrainingInterrupted as TrainingInterrupted

__all__ = [
    "TEXT_TASKS",
    "FinetuneResult",
    "FinetuneSpec",
    "LoopConfig",
    "StopFlag",
    "TextTask",
    "TrainingInterrupted",
    "finetune",
    "pick_text_column",
]
