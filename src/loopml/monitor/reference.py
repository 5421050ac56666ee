"""Reference profiles: what a model version's inputs and predictions looked like in
training, kept compact (``sketch``) so a window is judged without the training data.

A version's profile comes, first found first (``ReferenceProfile.origin``):

- ``dataset``: the training split of the dataset version its run consumed (the run's input
  ``kind='dataset'``, ``<name>@<version>``);
- ``logged_sample``: for a version whose run consumed no dataset (a model logged from user
  code), the sample it was packaged with (``sample.parquet``, up to 1,000 rows), refused
  under ``MIN_SAMPLE_ROWS`` rows with the reason;
- ``table``: a lake table the user names (``reference_from_table``), which replaces either.

Each holds every signature input column, and the prediction, from the model scoring up to
``PREDICTION_SAMPLE`` of the rows. With none, drift is ``off`` for the version and the
reason is stored and shown. ``ensure_reference`` builds one on demand for a version
registered before monitoring existed, once (an ``off`` verdict is kept too).

A classifier's profile also holds its calibration table (``calibration``) when the dataset
version has an eval split holding the run's target column (the run's ``target`` param): the
model's probabilities on up to ``PREDICTION_SAMPLE`` eval rows against their labels; a named
table gets one when the user names its label column (``target``). Profiles stored before the
table existed, and versions without an eval split or a labelled table, have none.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from loopml.core.errors import LoopmlError
from loopml.core.predictions import canonical_text
from loopml.data import datasets
from loopml.monitor.calibration import CalibrationTable, calibration_table
from loopml.monitor.error_table import ErrorTable, error_table
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

log = logging.getLogger("loopml.monitor")
PREDICTION_SAMPLE = 20_000
# A logged sample or a named table under this many rows is refused: a two-sample test against
# a handful of reference values says little, and a window judges a column only from 30 values.
MIN_SAMPLE_ROWS = 30
# A named table is profiled from its first rows, at most this many.
TABLE_ROWS = 100_000
REFERENCE_SET = "model.version.reference.set"
Origin = Literal["dataset", "logged_sample", "table"]
Column = Annotated[NumericReference | CategoricalReference, Field(discriminator="kind")]


class ReferenceProfile(BaseModel):
    """A model version's reference: its input columns and its prediction."""

    model_config = ConfigDict(frozen=True)

    task: Literal["classification", "regression"]
    origin: Origin = Field(
        default="dataset",
        description="Where the rows came from: the training split of the run's dataset, "
        "the sample the model was logged with, or a table the user named.",
    )
    rows: int = Field(description="Rows profiled.")
    features: dict[str, Column]
    prediction: Column | None = None
    classes: list[str] | None = Field(default=None, description="Class labels, as text.")
    calibration: CalibrationTable | None = Field(
        default=None,
        description="A classifier's probabilities against its eval set's labels (none "
        "without an eval split, and in profiles stored before it existed).",
    )
    errors: ErrorTable | None = Field(
        default=None,
        description="A regressor's errors on its eval set by predicted value, for the "
        "estimate before labels (none without an eval split, and in profiles stored before "
        "it existed).",
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
    errors: ErrorTable | None = None,
    origin: Origin = "dataset",
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
        origin=origin,
        rows=table.num_rows,
        features=features,
        prediction=prediction,
        classes=classes,
        calibration=calibration,
        errors=errors,
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


def _labelled_sample(
    eval_rows: pa.Table | None, target: str | None, columns: list[str]
) -> pa.Table | None:
    """Up to ``PREDICTION_SAMPLE`` eval rows with a ``target`` label; ``None`` without eval
    rows, a target, or the input columns and the target among them."""
    if eval_rows is None or target is None:
        return None
    if any(c not in eval_rows.column_names for c in [*columns, target]):
        return None
    sample = eval_rows.slice(0, PREDICTION_SAMPLE)
    return sample.filter(pc.is_valid(sample[target]))


def _calibration(
    eval_rows: pa.Table | None,
    target: str | None,
    loaded: LoadedModel,
    columns: list[str],
) -> CalibrationTable | None:
    """The classifier's calibration on its eval rows (``None`` without them or a target)."""
    classes = loaded.manifest.signature.classes
    sample = None if classes is None else _labelled_sample(eval_rows, target, columns)
    if sample is None or target is None or classes is None:
        return None
    labels = [canonical_text(v) for v in sample[target].to_pylist()]
    try:
        probabilities = loaded.predict_proba(sample.select(columns).to_pandas())
    except Exception:  # the table is an extra: the profile (and drift) stands without it
        log.exception("the calibration of %s on its eval rows failed", loaded.manifest.flavor)
        return None
    return calibration_table(probabilities, labels, [canonical_text(c) for c in classes])


def _errors(
    eval_rows: pa.Table | None,
    target: str | None,
    loaded: LoadedModel,
    columns: list[str],
) -> ErrorTable | None:
    """The regressor's errors on its eval rows by prediction (``None`` without them, a
    target, or enough numeric labels)."""
    if loaded.manifest.signature.task != "regression":
        return None
    sample = _labelled_sample(eval_rows, target, columns)
    if sample is None or target is None:
        return None
    try:
        labels = np.asarray(sample[target].to_pylist(), dtype=np.float64)
        predictions = np.asarray(loaded.predict(sample.select(columns).to_pandas()))
    except Exception:  # the table is an extra: the profile (and drift) stands without it
        log.exception("the errors of %s on its eval rows failed", loaded.manifest.flavor)
        return None
    return error_table(predictions, labels)


def _eval_rows(
    store: MetadataStore, artifacts: ArtifactStore, project: str, dataset: str
) -> pa.Table | None:
    try:
        return datasets.read_version(store, artifacts, project, dataset, "eval")
    except LoopmlError:  # a version without a split has no eval rows
        return None


def _missing_inputs(loaded: LoadedModel, columns: list[str]) -> list[str]:
    return [c.name for c in loaded.manifest.signature.inputs if c.name not in columns]


def _profile_rows(
    loaded: LoadedModel,
    rows: pa.Table,
    *,
    origin: Origin,
    calibration: CalibrationTable | None = None,
    errors: ErrorTable | None = None,
) -> ReferenceProfile:
    """The profile of ``rows``' inputs (but dates: new rows bring new dates) and predictions."""
    signature = loaded.manifest.signature
    kinds: dict[str, Literal["numeric", "categorical"]] = {
        c.name: "numeric" if c.type in ("float", "integer") else "categorical"
        for c in signature.inputs
        if c.type != "datetime"
    }
    sample = rows.slice(0, PREDICTION_SAMPLE).select([c.name for c in signature.inputs])
    predictions = np.asarray(loaded.predict(sample.to_pandas()))
    classes = (
        [canonical_text(c) for c in signature.classes] if signature.classes is not None else None
    )
    return profile_table(
        rows,
        kinds,
        task=signature.task,
        predictions=predictions,
        classes=classes,
        calibration=calibration,
        errors=errors,
        origin=origin,
    )


def _from_dataset(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    loaded: LoadedModel,
    dataset: str,
    target: str | None,
) -> Reference:
    try:
        train = datasets.read_version(store, artifacts, project, dataset, "train")
        part = "train split"
    except LoopmlError:
        train = datasets.read_version(store, artifacts, project, dataset, "all")
        part = "all rows (no split)"
    missing = _missing_inputs(loaded, train.column_names)
    if missing:
        return Reference(
            status="off",
            reason=f"the training data {dataset} lacks the model's input columns "
            f"{missing[:5]}: drift is off for this version",
        )
    columns = [c.name for c in loaded.manifest.signature.inputs]
    evaluated = _eval_rows(store, artifacts, project, dataset) if part == "train split" else None
    calibration = (
        _calibration(evaluated, target, loaded, columns)
        if loaded.manifest.signature.task == "classification"
        else None
    )
    errors = _errors(evaluated, target, loaded, columns)
    profile = _profile_rows(loaded, train, origin="dataset", calibration=calibration, errors=errors)
    return Reference(status="ready", source=f"dataset {dataset}, {part}", profile=profile)


_NAME_A_TABLE = "name a reference table (loopml models reference MODEL/VERSION --table TABLE)"


def _from_logged_sample(loaded: LoadedModel) -> Reference:
    """The profile of the rows the model was packaged with, or why there is none."""
    frame = loaded.sample()
    rows = 0 if frame is None else len(frame)
    if frame is None or rows < MIN_SAMPLE_ROWS:
        held = "no sample" if frame is None else f"a sample of {rows} rows"
        return Reference(
            status="off",
            reason=f"the version's run consumed no dataset version and the model was logged "
            f"with {held} (at least {MIN_SAMPLE_ROWS} are needed): {_NAME_A_TABLE}, or log "
            "the model with more sample rows, to monitor drift",
        )
    missing = _missing_inputs(loaded, [str(c) for c in frame.columns])
    if missing:
        return Reference(
            status="off",
            reason=f"the sample logged with the model lacks its input columns {missing[:5]}: "
            f"{_NAME_A_TABLE} to monitor drift",
        )
    table = pa.Table.from_pandas(frame, preserve_index=False)
    profile = _profile_rows(loaded, table, origin="logged_sample")
    return Reference(
        status="ready", source=f"the sample logged with the model, {rows} rows", profile=profile
    )


def build_reference(
    store: MetadataStore, artifacts: ArtifactStore, project: str, model: str, version: int
) -> Reference:
    """The reference of ``model/version`` from its training split, with a classifier's
    calibration on the eval split; from the sample it was logged with when its run consumed
    no dataset (or why there is none)."""
    dataset, target = _training_inputs(store, project, model, version)
    with tempfile.TemporaryDirectory(prefix="loopml-reference-") as folder:
        _, loaded = load_version(store, artifacts, project, f"{model}/{version}", Path(folder))
        if dataset is None:
            return _from_logged_sample(loaded)
        return _from_dataset(store, artifacts, project, loaded, dataset, target)
