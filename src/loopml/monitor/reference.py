"""Reference profiles: what a model version's inputs and predictions looked like in
training, kept compact (``sketch``) so a window is judged without the training data.

A version's profile comes from the training split of the dataset version its run consumed
(the run's input ``kind='dataset'``, ``<name>@<version>``): every signature input column,
and the prediction, from the model scoring up to ``PREDICTION_SAMPLE`` training rows. A
version whose run consumed no dataset has no profile: drift is ``off`` for it, and the
reason is stored and shown. ``ensure_reference`` builds one on demand for a version
registered before monitoring existed, once (an ``off`` verdict is kept too).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from loopml.core.errors import LoopmlError
from loopml.core.predictions import canonical_text
from loopml.data import datasets
from loopml.monitor.sketch import (
    CategoricalReference,
    ColumnReference,
    NumericReference,
    categorical_reference,
    numeric_reference,
)
from loopml.registry.lineage import version_lineage
from loopml.registry.packages import load_version
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore
from loopml.store import monitor as monitor_rows

log = logging.getLogger("loopml.monitor")
PREDICTION_SAMPLE = 20_000
Column = Annotated[NumericReference | CategoricalReference, Field(discriminator="kind")]


class ReferenceProfile(BaseModel):
    """A model version's reference: its input columns and its prediction."""

    model_config = ConfigDict(frozen=True)

    task: Literal["classification", "regression"]
    rows: int = Field(description="Training rows profiled.")
    features: dict[str, Column]
    prediction: Column | None = None
    classes: list[str] | None = Field(default=None, description="Class labels, as text.")


class Reference(BaseModel):
    """A version's stored reference: ``ready`` with a profile, or ``off`` with the reason."""

    model_config = ConfigDict(frozen=True)

    status: Literal["ready", "off"]
    reason: str = ""
    source: str = ""
    profile: ReferenceProfile | None = None


def profile_table(
    table: pa.Table,
    kinds: dict[str, Literal["numeric", "categorical"]],
    *,
    task: Literal["classification", "regression"],
    predictions: np.ndarray | None = None,
    classes: list[str] | None = None,
) -> ReferenceProfile:
    """The profile of ``table``'s columns named in ``kinds`` (and of ``predictions``)."""
    features: dict[str, ColumnReference] = {}
    for name, kind in kinds.items():
        column = table[name]
        features[name] = (
            numeric_reference(column) if kind == "numeric" else categorical_reference(column)
        )
    prediction: ColumnReference | None = None
    if predictions is not None:
        if task == "classification":
            texts = [canonical_text(v) for v in np.asarray(predictions).tolist()]
            prediction = categorical_reference(pa.array(texts, pa.string()))
        else:
            prediction = numeric_reference(np.asarray(predictions, dtype=np.float64))
    return ReferenceProfile(
        task=task,
        rows=table.num_rows,
        features=features,
        prediction=prediction,
        classes=classes,
    )


def _dataset_input(store: MetadataStore, project: str, model: str, version: int) -> str | None:
    lineage = version_lineage(store, project, f"{model}/{version}")
    refs = [i.ref for i in lineage.inputs if i.kind == "dataset"]
    return refs[0] if refs else None


def build_reference(
    store: MetadataStore, artifacts: ArtifactStore, project: str, model: str, version: int
) -> Reference:
    """The reference of ``model/version`` from its training split (or why there is none)."""
    dataset = _dataset_input(store, project, model, version)
    if dataset is None:
        return Reference(
            status="off",
            reason="the version's run consumed no dataset version, so there is no training "
            "data to compare with: train it from a dataset (loopml datasets) to monitor drift",
        )
    try:
        train = datasets.read_version(store, artifacts, project, dataset, "train")
        part = "train split"
    except LoopmlError:
        train = datasets.read_version(store, artifacts, project, dataset, "all")
        part = "all rows (no split)"
    with tempfile.TemporaryDirectory(prefix="loopml-reference-") as folder:
        _, loaded = load_version(store, artifacts, project, f"{model}/{version}", Path(folder))
        signature = loaded.manifest.signature
        missing = [c.name for c in signature.inputs if c.name not in train.column_names]
        if missing:
            return Reference(
                status="off",
                reason=f"the training data {dataset} lacks the model's input columns "
                f"{missing[:5]}: drift is off for this version",
            )
        kinds: dict[str, Literal["numeric", "categorical"]] = {
            c.name: "numeric" if c.type in ("float", "integer") else "categorical"
            for c in signature.inputs
        }
        sample = train.slice(0, PREDICTION_SAMPLE).select(list(kinds)).to_pandas()
        predictions = np.asarray(loaded.predict(sample))
    classes = (
        [canonical_text(c) for c in signature.classes] if signature.classes is not None else None
    )
    profile = profile_table(
        train, kinds, task=signature.task, predictions=predictions, classes=classes
    )
    return Reference(status="ready", source=f"dataset {dataset}, {part}", profile=profile)


def get_reference(store: MetadataStore, project: str, model: str, version: int) -> Reference | None:
    """The stored reference of a version, if one was built."""
    with store.session() as session:
        found = monitor_rows.get_reference(session, project, model, version)
    if found is None:
        return None
    profile = found["profile"] or None
    return Reference(
        status=found["status"],
        reason=found["reason"],
        source=found["source"],
        profile=ReferenceProfile.model_validate(profile) if profile else None,
    )


def save_reference(
    store: MetadataStore, project: str, model: str, version: int, reference: Reference
) -> None:
    """Store a version's reference (replacing any)."""
    profile: dict[str, Any] = reference.profile.model_dump() if reference.profile else {}
    with store.session() as session:
        monitor_rows.put_reference(
            session,
            project,
            model,
            version,
            status=reference.status,
            reason=reference.reason,
            source=reference.source,
            profile=profile,
        )


def ensure_reference(
    store: MetadataStore, artifacts: ArtifactStore, project: str, model: str, version: int
) -> Reference:
    """The version's reference, built and stored first when it has none yet."""
    found = get_reference(store, project, model, version)
    if found is not None:
        return found
    try:
        reference = build_reference(store, artifacts, project, model, version)
    except LoopmlError as exc:
        reference = Reference(status="off", reason=f"no reference could be built: {exc.message}")
    except Exception as exc:  # a model or dataset the monitor cannot read: say so, go on
        log.exception("building the reference of %s/%s failed", model, version)
        reference = Reference(status="off", reason=f"no reference could be built: {exc}")
    save_reference(store, project, model, version, reference)
    return reference
