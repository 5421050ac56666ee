"""Training and eval frames from dataset snapshots, for trainers and the gate.

Training reads a dataset version's frozen split: the train part to fit, the eval part to
score. The eval part is identified by its ``eval_hash``; evaluation reports record it so
that challenger and champion are only ever compared on the same rows.

A run records what it trained on as the input ``kind='dataset'``, ``ref='<name>@<version>'``
(``dataset_input``), with the target and task as params.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from loopml.core.datasets import DatasetRef, DatasetVersion
from loopml.core.errors import ConflictError
from loopml.data import datasets
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore

DATASET_INPUT_KIND = "dataset"


@dataclass(frozen=True)
class EvalSet:
    """A dataset version's frozen eval rows."""

    frame: pd.DataFrame
    eval_hash: str
    dataset: str


@dataclass(frozen=True)
class TrainingSet:
    """A dataset version's train rows and its frozen eval set."""

    version: DatasetVersion
    train: pd.DataFrame
    eval: EvalSet


def dataset_label(version: DatasetVersion) -> str:
    """``name@version``: how runs and reports name a dataset version."""
    return f"{version.dataset}@{version.version}"


def _split_version(store: MetadataStore, project: str, ref: str | DatasetRef) -> DatasetVersion:
    version = datasets.get_version(store, project, ref)
    if version.split is None:
        label = dataset_label(version)
        raise ConflictError(
            f"dataset {label} has no train/eval split: freeze one first, for example "
            f"`loopml datasets split {label} --eval 0.2 --stratify <target>`",
            details={"dataset": label},
        )
    return version


def eval_set(
    store: MetadataStore, artifacts: ArtifactStore, project: str, ref: str | DatasetRef
) -> EvalSet:
    """The frozen eval rows of a dataset version (verified against their hash).

    Raises:
        ConflictError: the version has no split.
        NotFoundError: no such dataset or version.
    """
    version = _split_version(store, project, ref)
    assert version.split is not None
    label = dataset_label(version)
    table = datasets.read_version(store, artifacts, project, label, "eval")
    return EvalSet(table.to_pandas(), version.split.eval_hash, label)


def training_set(
    store: MetadataStore, artifacts: ArtifactStore, project: str, ref: str | DatasetRef
) -> TrainingSet:
    """The train rows and the frozen eval set of a dataset version.

    Raises:
        ConflictError: the version has no split.
        NotFoundError: no such dataset or version.
    """
    version = _split_version(store, project, ref)
    assert version.split is not None
    label = dataset_label(version)
    train = datasets.read_version(store, artifacts, project, label, "train").to_pandas()
    frame = datasets.read_version(store, artifacts, project, label, "eval").to_pandas()
    return TrainingSet(version, train, EvalSet(frame, version.split.eval_hash, label))
