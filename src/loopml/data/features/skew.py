"""Training/serving skew: the feature values a deployment was served, against the values a
point-in-time join from the lake gives for the same entities at the same times.

A deployment that declares feature views logs each completed instance (its entity keys and
every feature value the model saw) with the time it was served. For the newest ``sample``
logged rows, ``skew`` rebuilds an entity table (the keys, the serving time), joins the view
onto it exactly as a training set is joined (``offline.point_in_time``: DuckDB's ASOF join
with the view's TTL), and counts per feature the rows whose served value differs. A share
above zero means the model saw at serving time something training would not have given it:
a stale online store (materialize lagging behind the lake), late rows, a default filled for
an entity the lake knows, or a request-time value that disagrees with the lake.

Example:
    >>> report = skew(store, artifacts, "default", "user_stats", deployment="churn-api")
    >>> [(f.feature, f.share) for f in report.features]
"""

from __future__ import annotations

import math
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from loopml.core.deployments import prediction_table
from loopml.core.errors import NotFoundError, ValidationError
from loopml.core.features import FeatureSkew, FeatureView, SkewExample, SkewReport
from loopml.data import lake
from loopml.data.features import views as view_specs
from loopml.data.features.offline import JoinedView, point_in_time
from loopml.data.features.views import check_against, view_sql
from loopml.data.sources import materialize
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore

MAX_SAMPLE = 100_000
MAX_EXAMPLES = 5
_AT = "__loopml_served_at"


def _logged(
    store: MetadataStore, artifacts: ArtifactStore, project: str, deployment: str, sample: int
) -> pa.Table:
    table = prediction_table(deployment)
    try:
        found = lake.get_table(store, artifacts, project, table)
    except NotFoundError:
        raise NotFoundError(
            f"deployment {deployment!r} has logged no predictions in project {project!r} "
            f"(no table {table!r})",
            details={"deployment": deployment, "table": table},
        ) from None
    if found.row_count == 0:  # made, and not yet given its first rows (nor its columns)
        return pa.table(
            {
                "inference_id": pa.array([], pa.string()),
                "ts": pa.array([], pa.timestamp("us", tz="UTC")),
                "inputs": pa.array([], pa.string()),
            }
        )
    query = (
        f"SELECT inference_id, ts, inputs FROM {table} "  # noqa: S608 - a checked name
        "WHERE role IS DISTINCT FROM 'shadow' AND inputs IS NOT NULL "
        f"ORDER BY ts DESC, inference_id, row_index LIMIT {int(sample)}"
    )
    return materialize(store, artifacts, project, query).table


def _rows_with(view: FeatureView, logged: pa.Table) -> list[tuple[str, Any, dict[str, Any]]]:
    """(inference id, served at, inputs) of the rows that name the view's keys and carry
    one of its features."""
    spec = view.spec
    kept = []
    for inference_id, served_at, text in zip(
        logged.column("inference_id").to_pylist(),
        logged.column("ts").to_pylist(),
        logged.column("inputs").to_pylist(),
        strict=True,
    ):
        try:
            inputs = orjson.loads(text)
        except orjson.JSONDecodeError:
            continue
        if (
            isinstance(inputs, dict)
            and all(inputs.get(k) is not None for k in spec.entities)
            and any(f in inputs for f in spec.features)
        ):
            kept.append((inference_id, served_at, inputs))
    return kept


def _entity_table(view: FeatureView, rows: list[Any], key_types: pa.Schema) -> pa.Table:
    columns: dict[str, pa.Array] = {}
    for key in view.spec.entities:
        values = pa.array([str(r[2][key]) for r in rows], pa.string())
        wanted = key_types.field(key).type
        try:
            columns[key] = pc.cast(values, wanted)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise ValidationError(
                f"logged values of entity key {key!r} do not convert to the view's type {wanted}",
                details={"field": key, "type": str(wanted)},
            ) from None
    columns[_AT] = pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC"))
    return pa.table(columns)


def _same(served: Any, offline: Any, tolerance: float) -> bool:
    if served is None or offline is None:
        return served is None and offline is None
    numbers = (int, float)
    if isinstance(served, numbers) and isinstance(offline, numbers):
        a, b = float(served), float(offline)
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return abs(a - b) <= tolerance * max(1.0, abs(a), abs(b))
    return str(served) == str(offline)


def skew(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    view: str,
    *,
    deployment: str,
    sample: int = 1000,
    tolerance: float = 1e-9,
) -> SkewReport:
    """Compare the newest ``sample`` logged rows of ``deployment`` with the lake (see the
    module); ``tolerance`` is relative, for numbers.

    Raises:
        NotFoundError: no such project, view or deployment log.
        ValidationError: a bad sample or tolerance, or logged keys of another type.
    """
    if not 1 <= sample <= MAX_SAMPLE or not 0 <= tolerance < 1:
        raise ValidationError(
            f"expected a sample of 1 to {MAX_SAMPLE} rows and a tolerance in [0, 1), got "
            f"{sample} and {tolerance}",
            details={"field": "sample"},
        )
    found = view_specs.get(store, project, view)
    logged = _logged(store, artifacts, project, deployment, sample)
    rows = _rows_with(found, logged)
    features = found.spec.features
    if not rows:
        empty = [_compare(found, f, [], [], tolerance) for f in features]
        return _report(found, deployment, logged.num_rows, 0, tolerance, empty)
    source = materialize(store, artifacts, project, view_sql(found.spec))
    check_against(found.spec, source.table.schema)
    entities = _entity_table(found, rows, source.table.schema)
    joined = point_in_time(entities, _AT, [JoinedView(found, source)])
    report = [
        _compare(found, feature, rows, joined.column(feature).to_pylist(), tolerance)
        for feature in features
    ]
    return _report(found, deployment, logged.num_rows, len(rows), tolerance, report)


def _compare(
    view: FeatureView,
    feature: str,
    rows: list[tuple[str, Any, dict[str, Any]]],
    offline: list[Any],
    tolerance: float,
) -> FeatureSkew:
    compared = differ = 0
    examples: list[SkewExample] = []
    for (inference_id, served_at, inputs), value in zip(rows, offline, strict=True):
        if feature not in inputs:
            continue
        compared += 1
        if _same(inputs[feature], value, tolerance):
            continue
        differ += 1
        if len(examples) < MAX_EXAMPLES:
            examples.append(
                SkewExample(
                    inference_id=inference_id,
                    entity={k: inputs[k] for k in view.spec.entities},
                    served_at=served_at,
                    served=inputs[feature],
                    offline=value,
                )
            )
    share = differ / compared if compared else 0.0
    return FeatureSkew(
        feature=feature, compared=compared, differ=differ, share=share, examples=examples
    )


def _report(
    view: FeatureView,
    deployment: str,
    logged: int,
    compared: int,
    tolerance: float,
    features: list[FeatureSkew],
) -> SkewReport:
    return SkewReport(
        view=view.name,
        version=view.version,
        deployment=deployment,
        rows_logged=logged,
        rows_compared=compared,
        tolerance=tolerance,
        features=features,
    )
