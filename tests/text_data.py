"""Made-up review sentences for the text tests (nothing downloaded): the label is carried by
the adjectives, so a tiny encoder learns it in a few epochs."""

from __future__ import annotations

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
