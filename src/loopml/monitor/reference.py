"""Reference profiles: what a model version's inputs and predictions looked like in
training, kept compact (``sketch``) so a window is judged without the training data.

A version's profile comes from the training split of the dataset version its run consumed
(the run's input ``kind='dataset'``, ``<name>@<version>``): every signature input column,
and the prediction, from the model scoring up to ``PREDICTION_SAMPLE`` training rows. A
version whose run consumed no dataset has no profile: drift is ``off`` for it, and the
reason is stored and shown. ``ensure_reference`` builds one on demand for a version
registered before monitoring existed, once (an ``off`` verdict is kept too).

A classifier's profile also holds its calibration table (``calibration``) when the dataset
version has an eval split holding the run's target column (the run's ``target`` param): the
model's probabilities on up to ``PREDICTION_SAMPLE`` eval rows against their labels. Profiles
stored before the table existed, and versions without an eval split, have none.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from loopml.core.errors import LoopmlError
from loopml.core.predictions import canonical_text
from loopml.data import datasets
from loopml.monitor.calibration import CalibrationTable, calibration_table
from loopml.monitor.sketch import (
    CategoricalReference,
    ColumnReference,
    NumericReference,
    categorical_reference,
    numeric_reference,
)
from loopml.packaging import LoadedModel
from loopml.registry.lineage import version_lineage
from loopml.registry.packages import load_version
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, run_logs
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
    calibration: CalibrationTable | None = Field(
        default=None,
        description="A classifier's probabilities against its eval set's labels (none "
        "without an eval split, and in profiles stored before it existed).",
    )


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
    calibration: CalibrationTable | None = None,
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
        calibration=calibration,
    )


def _training_inputs(
    store: MetadataStore, project: str, model: str, version: int
) -> tuple[str | None, str | None]:
    """The dataset version the version's run consumed, and the run's target column."""
    lineage = version_lineage(store, project, f"{model}/{version}")
    refs = [i.ref for i in lineage.inputs if i.kind == "dataset"]
    with store.session() as session:
        params = run_logs.get(session, project, lineage.run.id, parts=("params",)).params
    return (refs[0] if refs else None), (params or {}).get("target")


def _calibration(
    eval_rows: pa.Table | None,
    target: str | None,
    loaded: LoadedModel,
    columns: list[str],
) -> CalibrationTable | None:
    """The classifier's calibration on its eval rows (``None`` without them or a target)."""
    classes = loaded.manifest.signature.classes
    if eval_rows is None or target is None or classes is None:
        return None
    if target not in eval_rows.column_names or any(
        c not in eval_rows.column_names for c in columns
    ):
        return None
    sample = eval_rows.slice(0, PREDICTION_SAMPLE)
    sample = sample.filter(pc.is_valid(sample[target]))
    labels = [canonical_text(v) for v in sample[target].to_pylist()]
    try:
        probabilities = loaded.predict_proba(sample.select(columns).to_pandas())
    except Exception:  # the table is an extra: the profile (and drift) stands without it
        log.exception("the calibration of %s on its eval rows failed", loaded.manifest.flavor)
        return None
    return calibration_table(probabilities, labels, [canonical_text(c) for c in classes])


def _eval_rows(
    store: MetadataStore, artifacts: ArtifactStore, project: str, dataset: str
) -> pa.Table | None:
    try:
        return datasets.read_version(store, artifacts, project, dataset, "eval")
    except LoopmlError:  # a version without a split has no eval rows
        return None


def build_reference(
    store: MetadataStore, artifacts: ArtifactStore, project: str, model: str, version: int
) -> Reference:
    """The reference of ``model/version`` from its training split (or why there is none),
    with a classifier's calibration on the eval split."""
    dataset, target = _training_inputs(store, project, model, version)
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
        calibration = (
            _calibration(
                _eval_rows(store, artifacts, project, dataset), target, loaded, list(kinds)
            )
            if signature.task == "classification" and part == "train split"
            else None
        )
    classes = (
        [canonical_text(c) for c in signature.classes] if signature.classes is not None else None
    )
    profile = profile_table(
        train,
        kinds,
        task=signature.task,
        predictions=predictions,
        classes=classes,
        calibration=calibration,
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
