"""Where a text model's weights and tokenizer come from; nothing is ever downloaded.

- ``None``: a small DistilBERT-class encoder, randomly initialised from the seed, with a
  WordPiece tokenizer trained on the training texts themselves (the ``tokenizers`` library).
  What the tests use; useful for a quick baseline, not for accuracy.
- ``PATH``: a local folder holding a transformers model (``config.json``, safetensors
  weights) and its ``tokenizer.json``; only safetensors are read, never a pickled
  ``pytorch_model.bin``.
- ``package:NAME``: the same folder shipped inside an installed Python package (the first
  folder under the package, in sorted order, holding both files).
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopml.core.errors import NotFoundError, ValidationError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_PAD_CANDIDATES = ("[PAD]", "<pad>")


@dataclass(frozen=True)
class TinyShape:
    """The random encoder's size (DistilBERT's is 768 wide, 6 layers, 30522 words)."""

    vocab_size: int = 1000
    dim: int = 32
    layers: int = 2
    heads: int = 2
    hidden: int = 64


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A lower-casing WordPiece tokenizer built from ``texts``, adding ``[CLS] … [SEP]``.

    The vocabulary is the special tokens, every character seen (alone and as a ``##``
    continuation, so no word is ever unknown), then the most frequent words up to
    ``vocab_size``, ties broken alphabetically. The ``tokenizers`` WordPiece trainer breaks
    ties in hash-map order, so two runs on the same texts gave different vocabularies; this
    one is a function of the texts alone, which a resumed or repeated training relies on.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    normalizer = normalizers.BertNormalizer(lowercase=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for word in counts for c in word})
    vocab = [*SPECIAL_TOKENS, *chars, *(f"##{c}" for c in chars)]
    known = set(vocab)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    words = [w for w, _ in ranked if w not in known][: max(0, vocab_size - len(vocab))]
    model = models.WordPiece({t: i for i, t in enumerate(vocab + words)}, unk_token="[UNK]")  # noqa: S106
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = splitter
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def pad_token(tokenizer: Any) -> tuple[str, int]:
    """The tokenizer's padding token and id.

    Raises:
        ValidationError: the tokenizer has none of the usual padding tokens.
    """
    padding = tokenizer.padding
    if padding is not None and padding.get("pad_token"):
        return str(padding["pad_token"]), int(padding["pad_id"])
    for token in _PAD_CANDIDATES:
        found = tokenizer.token_to_id(token)
        if found is not None:
            return token, int(found)
    raise ValidationError(f"the tokenizer has no padding token (looked for {_PAD_CANDIDATES})")


def tiny_model(vocab_size: int, outputs: int, max_length: int, shape: TinyShape, seed: int) -> Any:
    """A randomly initialised DistilBERT-class classifier (``outputs`` logits)."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(
        vocab_size=vocab_size,
        dim=shape.dim,
        n_layers=shape.layers,
        n_heads=shape.heads,
        hidden_dim=shape.hidden,
        max_position_embeddings=max(max_length, 8),
        num_labels=outputs,  # type: ignore[call-arg]
    )
    torch.manual_seed(seed)
    return DistilBertForSequenceClassification(config)


def resolve_base(base: str) -> Path:
    """The folder ``base`` names (``PATH`` or ``package:NAME``).

    Raises:
        NotFoundError: no such folder or package, or no model folder inside the package.
    """
    if base.startswith("package:"):
        name = base.removeprefix("package:")
        spec = importlib.util.find_spec(name) if name.isidentifier() else None
        if spec is None or not spec.submodule_search_locations:
            raise NotFoundError(f"no installed Python package {name!r} (from --base {base})")
        for root in spec.submodule_search_locations:
            for config in sorted(Path(root).rglob("config.json")):
                if (config.parent / "tokenizer.json").is_file():
                    return config.parent
        raise NotFoundError(f"package {name!r} holds no folder with config.json and tokenizer.json")
    folder = Path(base).expanduser()
    if not (folder / "config.json").is_file() or not (folder / "tokenizer.json").is_file():
        raise NotFoundError(
            f"{folder} is not a model folder: expected config.json, tokenizer.json and "
            "safetensors weights in it"
        )
    return folder


def pretrained_model(folder: Path, outputs: int, seed: int) -> Any:
    """The encoder in ``folder`` with a new head of ``outputs`` logits (seeded)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            str(folder), num_labels=outputs, local_files_only=True, use_safetensors=True
        )
    except OSError as exc:
        raise ValidationError(f"cannot load the model in {folder}: {exc}") from exc


def pretrained_tokenizer(folder: Path) -> Any:
    """``folder/tokenizer.json``."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(folder / "tokenizer.json"))
