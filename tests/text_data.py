"""Made-up review sentences for the text tests (nothing downloaded): the label is carried by
the adjectives, so a tiny encoder learns it in a few epochs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

POSITIVE = ["great", "wonderful", "excellent", "superb", "lovely", "brilliant", "moving"]
NEGATIVE = ["awful", "terrible", "boring", "dreadful", "poor", "horrible", "clumsy"]
NOUNS = ["movie", "film", "story", "plot", "acting", "ending", "cast", "music"]
FILLERS = ["i think", "honestly", "to be fair", "overall", "in the end", "for me", ""]


def reviews(rows: int, seed: int = 0, shuffle_labels: bool = False) -> pd.DataFrame:
    """``review`` (text), ``sentiment`` (pos/neg) and ``stars`` (a number from the words)."""
    rng = np.random.default_rng(seed)
    texts, labels, stars = [], [], []
    for i in range(rows):
        good = i % 2 == 0
        words = POSITIVE if good else NEGATIVE
        count = int(rng.integers(1, 3))
        adjectives = " and ".join(rng.choice(words, count, replace=False))
        noun, filler = rng.choice(NOUNS), rng.choice(FILLERS)
        texts.append(f"{filler} the {noun} was {adjectives}".strip())
        labels.append("pos" if good else "neg")
        stars.append((3.0 + count if good else 3.0 - count) + float(rng.normal(0, 0.1)))
    frame = pd.DataFrame({"review": texts, "sentiment": labels, "stars": stars})
    if shuffle_labels:
        frame["sentiment"] = rng.permutation(frame["sentiment"].to_numpy())
    return frame


def ingest_reviews(settings: Any, name: str, frame: pd.DataFrame, stratify: str | None) -> str:
    """Ingest ``frame`` as table ``name`` and snapshot it with a frozen split: ``name_snap``."""
    from loopml.core.datasets import SplitSpec
    from loopml.data import datasets, lake
    from loopml.wiring import open_artifact_store, open_metadata_store

    store = open_metadata_store(settings)
    store.upgrade()
    artifacts = open_artifact_store(settings)
    lake.ingest_arrow(store, artifacts, "default", name, pa.Table.from_pandas(frame), actor="t")
    datasets.create_version(
        store,
        artifacts,
        "default",
        f"{name}_snap",
        name,
        split=SplitSpec(eval_fraction=0.25, seed=7, stratify=stratify),
        actor="t",
    )
    store.dispose()
    return f"{name}_snap"


# A fine-tune small enough for a test: 2 layers of width 32, a 300-word vocabulary.
TINY = {"vocab_size": 300, "dim": 32, "layers": 2, "heads": 2, "hidden": 64}


PRODUCTS = ["blender", "kettle", "headset", "backpack", "lamp", "charger", "keyboard", "jacket"]
GOOD = ["sturdy", "reliable", "comfortable", "fast", "quiet", "well made", "worth the money"]
BAD = ["flimsy", "noisy", "slow", "uncomfortable", "cheap feeling", "broken", "overpriced"]
MIXED = ["okay", "average", "fine", "decent enough", "nothing special", "so-so"]
OPENERS = ["", "honestly", "after a month", "to be fair", "overall", "my wife says", "sadly"]


def _typo(text: str, rng: np.random.Generator) -> str:
    """Swap two neighbouring letters of one word: the typos real reviews have."""
    words = text.split(" ")
    i = int(rng.integers(len(words)))
    word = words[i]
    if len(word) > 3:
        j = int(rng.integers(len(word) - 1))
        words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
    return " ".join(words)


def _review(label: str, rng: np.random.Generator) -> str:
    pick = lambda words: str(rng.choice(words))  # noqa: E731
    item, opener = pick(PRODUCTS), pick(OPENERS)
    form = int(rng.integers(4))
    if label == "positive":
        body = [
            f"the {item} is {pick(GOOD)}",
            f"the {item} is not {pick(BAD)} at all",
            f"i expected it to be {pick(BAD)} but the {item} is {pick(GOOD)}",
            f"the box was {pick(BAD)}, however the {item} itself is {pick(GOOD)}",
        ][form]
    elif label == "negative":
        body = [
            f"the {item} is {pick(BAD)}",
            f"the {item} is not {pick(GOOD)} at all",
            f"i hoped it would be {pick(GOOD)} but the {item} is {pick(BAD)}",
            f"the box was {pick(GOOD)}, however the {item} itself is {pick(BAD)}",
        ][form]
    else:
        body = [
            f"the {item} is {pick(MIXED)}",
            f"the {item} is {pick(GOOD)} but also {pick(BAD)}",
            f"the {item} is not {pick(GOOD)} and not {pick(BAD)} either",
            f"it is {pick(MIXED)}, the {item} is {pick(BAD)} sometimes and {pick(GOOD)} others",
        ][form]
    text = f"{opener} {body}".strip()
    return _typo(text, rng) if rng.random() < 0.2 else text


def product_reviews(rows: int, seed: int = 0) -> pd.DataFrame:
    """``review`` (text) and ``rating`` (negative, neutral, positive): product reviews whose
    label turns on negations ("not flimsy at all") and contrasts ("the box was poor,
    however ..."), with a typo in one review in five; a bag of words gets them wrong."""
    rng = np.random.default_rng(seed)
    labels = [("negative", "neutral", "positive")[i % 3] for i in range(rows)]
    return pd.DataFrame({"review": [_review(label, rng) for label in labels], "rating": labels})


def tiny_bert_folder(folder: Path) -> Path:
    """A tiny random BERT saved like a downloaded model (config, safetensors, tokenizer),
    usable as an embeddings ``base``."""
    import torch
    from transformers import BertConfig, BertModel

    from loopml.train.text._base import train_tokenizer

    tokenizer = train_tokenizer(reviews(160)["review"].tolist(), 300)
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "modules.json").write_text(
        json.dumps([{"type": "sentence_transformers.models.Normalize"}])
    )
    return folder
