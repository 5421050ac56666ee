"""Tumbling windows: which window a row falls in, a window's mergeable state built from
prediction-log rows and joined labels, and the summary computed from that state.

A window's ``state`` holds only counts (``usage``, per-column drift sketches, ``quality``,
the ``estimate``'s sums, replica ``resources``), so rows arriving later — more predictions,
late labels — are added to it without reading what was added before. Every size must be a
multiple of the smallest: a batch of rows is reduced once per window of the smallest size,
and larger windows merge those pieces.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from loopml.core.predictions import canonical_text
from loopml.core.window_sizes import parse_size as parse_size
from loopml.core.window_sizes import parse_sizes as parse_sizes
from loopml.monitor import quality, sequential, usage
from loopml.monitor.calibration import CalibrationTable
from loopml.monitor.drift import DriftConfig, column_drift, dataset_drift
from loopml.monitor.error_table import ErrorTable
from loopml.monitor.estimate import estimate_of, estimate_summary, merge_estimate
from loopml.monitor.reference import Reference
from loopml.monitor.resources import merge_resources, resources_summary
from loopml.monitor.sketch import (
    CategoricalWindow,
    ColumnWindow,
    NumericReference,
    NumericWindow,
    merge,
    reduce,
)

Piece = tuple[str, int, int]
"""model, version, window start (Unix seconds) of the smallest size."""


def window_start(moment: datetime, seconds: int) -> datetime:
    """The start of the window of ``seconds`` that holds ``moment`` (aligned on the epoch)."""
    stamp = int(
        moment.replace(tzinfo=UTC).timestamp() if moment.tzinfo is None else moment.timestamp()
    )
    return datetime.fromtimestamp(stamp - stamp % seconds, UTC)


def empty_state() -> dict[str, Any]:
    """The state of a window with nothing in it."""
    return {
        "usage": usage.empty_usage(),
        "features": {},
        "prediction": None,
        "quality": quality.empty_quality(),
        "estimate": None,
        "resources": {},
    }


# Rows of logged inputs parsed at a time: one JSON block for a whole batch of 100,000 rows
# took 260 MB more at its peak than 20,000-row parts do (13 MB), and more CPU.
JSON_PART_ROWS = 20_000


def parsed_inputs(rows: pa.Table, reference: Reference) -> pa.Table | None:
    """The logged inputs of ``rows`` as typed columns (numbers as float64), rows with no
    inputs left out; ``None`` when the reference has no profile or no row has inputs."""
    profile = reference.profile
    if profile is None:
        return None
    texts = pc.drop_null(rows["inputs"])
    if not len(texts):
        return None
    numeric = pa.schema(
        [
            pa.field(name, pa.float64())
            for name, ref in profile.features.items()
            if isinstance(ref, NumericReference)
        ]
    )
    try:
        parts = [
            _parsed(texts.slice(start, JSON_PART_ROWS), numeric)
            for start in range(0, len(texts), JSON_PART_ROWS)
        ]
        # A column typed by one part's values and null in another's is unified here.
        return pa.concat_tables(parts, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Mixed types in a column (a number where text was, or the reverse): read row by
        # row, a number the column cannot take becoming missing.
        return _inputs_slowly(texts.to_pylist(), profile.features)


def _parsed(texts: pa.ChunkedArray, numeric: pa.Schema) -> pa.Table:
    """Rows of JSON objects as one table: joined by Arrow into one newline-separated
    buffer (no Python string per row) and read in one block, so every row of the part is
    typed alike."""
    strings = texts.combine_chunks().cast(pa.large_string())
    one_list = pa.LargeListArray.from_arrays(pa.array([0, len(strings)], pa.int64()), strings)
    buffer = pc.binary_join(one_list, pa.scalar("\n", pa.large_string()))[0].as_buffer()
    return pajson.read_json(
        pa.BufferReader(buffer),
        read_options=pajson.ReadOptions(block_size=max(buffer.size + 1, 1 << 20)),
        parse_options=pajson.ParseOptions(explicit_schema=numeric),
    )


def _inputs_slowly(texts: list[str], features: dict[str, Any]) -> pa.Table:
    parsed = [orjson.loads(text) for text in texts]
    columns: dict[str, pa.Array] = {}
    for name, ref in features.items():
        values = [row.get(name) if isinstance(row, dict) else None for row in parsed]
        if isinstance(ref, NumericReference):
            numbers = [
                float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
                for v in values
            ]
            columns[name] = pa.array(numbers, pa.float64())
        else:
            columns[name] = pa.array(
                [
                    None if v is None else canonical_text(v) if _scalar(v) else str(v)
                    for v in values
                ],
                pa.string(),
            )
    return pa.table(columns)


def _scalar(value: Any) -> bool:
    return isinstance(value, bool | int | float | str)


def _calibration(reference: Reference | None) -> CalibrationTable | None:
    profile = reference.profile if reference is not None else None
    return profile.calibration if profile is not None else None


def _errors(reference: Reference | None) -> ErrorTable | None:
    profile = reference.profile if reference is not None else None
    return profile.errors if profile is not None else None


def piece_state(rows: pa.Table, reference: Reference | None) -> dict[str, Any]:
    """The state of prediction-log ``rows`` of one model version in one smallest window."""
    state = empty_state()
    state["usage"] = usage.usage_of(rows)
    state["estimate"] = estimate_of(rows, _calibration(reference), _errors(reference))
    if reference is None or reference.profile is None:
        return state
    state["reference"] = reference.source
    profile = reference.profile
    inputs = parsed_inputs(rows, reference)
    if inputs is not None:
        for name, ref in profile.features.items():
            if name in inputs.column_names:
                state["features"][name] = reduce(ref, inputs[name]).model_dump()
        state["sequential"] = sequential.piece(profile.features, inputs)
    if profile.prediction is not None:
        column = (
            rows["prediction_value"]
            if isinstance(profile.prediction, NumericReference)
            else rows["prediction"]
        )
        state["prediction"] = reduce(profile.prediction, column).model_dump()
    return state


def split_pieces(rows: pa.Table, seconds: int) -> dict[Piece, pa.Table]:
    """``rows`` grouped by model, version and window of ``seconds``: sorted once and sliced,
    so a first look reading a day back splits into 1,440 one-minute pieces in one pass."""
    if not rows.num_rows:
        return {}
    micros = np.asarray(pc.cast(rows["ts"], pa.int64()).to_numpy(zero_copy_only=False))
    starts = micros // 1_000_000 // seconds * seconds
    models = pc.dictionary_encode(pc.fill_null(rows["model"], "").combine_chunks())
    codes = np.asarray(models.indices.to_numpy(zero_copy_only=False))
    versions = np.asarray(
        pc.fill_null(rows["model_version"], 0).to_numpy(zero_copy_only=False), dtype=np.int64
    )
    order = np.lexsort((starts, versions, codes))  # stable: rows keep their order in a piece
    keys = np.stack([codes[order], versions[order], starts[order]])
    cuts = np.flatnonzero(np.any(keys[:, 1:] != keys[:, :-1], axis=0)) + 1
    bounds = [0, *cuts.tolist(), rows.num_rows]
    ordered = rows.take(pa.array(order))
    names = models.dictionary.to_pylist()
    pieces: dict[Piece, pa.Table] = {}
    for low, high in itertools.pairwise(bounds):
        code, version, start = keys[:, low].tolist()
        pieces[(str(names[code]), int(version), int(start))] = ordered.slice(low, high - low)
    return pieces


def window_column(data: dict[str, Any] | None) -> ColumnWindow | None:
    """A column's counts as a window's state stores them (``None`` when absent)."""
    if not data:
        return None
    return NumericWindow(**data) if data.get("kind") == "numeric" else CategoricalWindow(**data)


def merge_state(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two states of the same window (model version) added; ``b`` is the newer.

    Column counts are kept per edge of the reference they were reduced against, so when the
    version's reference was replaced between them (a table named for it) the older counts
    cannot be added to the newer: ``a``'s columns and prediction are dropped."""
    tag_a, tag_b = a.get("reference"), b.get("reference")
    if tag_a and tag_b and tag_a != tag_b:
        a = {**a, "features": {}, "prediction": None, "sequential": None}
    features = dict(a["features"])
    for name, data in b["features"].items():
        mine = window_column(features.get(name))
        theirs = window_column(data)
        assert theirs is not None
        features[name] = (theirs if mine is None else merge(mine, theirs)).model_dump()
    mine_p, theirs_p = window_column(a["prediction"]), window_column(b["prediction"])
    prediction = (
        mine_p if theirs_p is None else theirs_p if mine_p is None else merge(mine_p, theirs_p)
    )
    return {
        "usage": usage.merge_usage(a["usage"], b["usage"]),
        "features": features,
        "prediction": prediction.model_dump() if prediction is not None else None,
        "quality": quality.merge_quality(a["quality"], b["quality"]),
        # Windows stored before the estimate existed have no "estimate".
        "estimate": merge_estimate(a.get("estimate"), b.get("estimate")),
        # Windows stored before replica resources were measured have no "resources".
        "resources": merge_resources(a.get("resources", {}), b.get("resources", {})),
        "reference": tag_b or tag_a or "",
        # Windows stored before the sequential test have no "sequential".
        "sequential": sequential.merge(a.get("sequential"), b.get("sequential")),
    }


def look_due(earlier: dict[str, Any] | None, rows: int, source: str, config: DriftConfig) -> bool:
    """Whether a window of ``rows`` rows is judged for drift now, given its ``earlier``
    verdict: its first judgment (or one against another reference), then once its rows have
    grown by ``look_growth`` since the last, at most ``looks`` times."""
    if not earlier or earlier.get("status") != "ready" or earlier.get("source") != source:
        return True
    if not earlier.get("judged"):  # too few rows for any column yet: not a look
        return True
    if int(earlier.get("looks", 1)) >= config.looks:
        return False
    return rows >= int(earlier.get("judged_rows", 0)) * (1 + config.look_growth)


def summarize(
    state: dict[str, Any],
    reference: Reference | None,
    seconds: float,
    config: DriftConfig,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A window's figures: usage, drift per column and of the input, prediction drift,
    live quality, replica resources. ``previous`` is the window's summary as last saved:
    its drift verdict stands until the next look (``look_due``)."""
    used = usage.usage_summary(state["usage"], seconds)
    summary: dict[str, Any] = {"usage": used}
    summary["quality"] = quality.quality_summary(state["quality"], state["usage"]["rows"])
    summary["quality"]["estimated"] = estimate_summary(
        state.get("estimate"), _calibration(reference), _errors(reference)
    )
    resources = resources_summary(state.get("resources", {}))
    if resources is not None:
        summary["resources"] = resources
    if reference is None or reference.profile is None:
        reason = reference.reason if reference else "no reference profile yet"
        summary["drift"] = {"status": "off", "reason": reason}
        return summary
    earlier = (previous or {}).get("drift")
    rows = int(state["usage"]["rows"])
    if look_due(earlier, rows, reference.source, config):
        drift = _judged(state, reference, config, rows, _looks(earlier, reference))
    else:
        drift = dict(earlier or {})
    summary["drift"] = _with_sequential(drift, earlier, state, reference, config)
    return summary


def _with_sequential(
    drift: dict[str, Any],
    earlier: dict[str, Any] | None,
    state: dict[str, Any],
    reference: Reference,
    config: DriftConfig,
) -> dict[str, Any]:
    """``drift`` with the sequential test's verdict (read every round, not only at looks):
    once it passed its threshold it stands for the window, and its column counts as
    drifted."""
    assert reference.profile is not None
    latched = (earlier or {}).get("sequential") or {}
    same = (earlier or {}).get("source") == reference.source
    if same and latched.get("alarm"):
        found: dict[str, Any] | None = latched
    else:
        found = sequential.verdict(
            state.get("sequential"), reference.profile.features, config.sequential_level
        )
    if found is None:
        drift.pop("sequential", None)
        return drift
    drift["sequential"] = found
    if found["alarm"]:
        drifted = list(drift.get("drifted", []))
        if found["column"] not in drifted:
            drifted.append(found["column"])
        judged = max(int(drift.get("judged", 0)), len(drifted))
        share = len(drifted) / judged
        drift.update(drifted=drifted, share=share)
        drift["dataset_drift"] = share >= config.drift_share
    return drift


def _looks(earlier: dict[str, Any] | None, reference: Reference) -> int:
    """The looks a window had against ``reference`` before this one."""
    if not earlier or earlier.get("status") != "ready" or not earlier.get("judged"):
        return 0
    return int(earlier.get("looks", 1)) if earlier.get("source") == reference.source else 0


def _judged(
    state: dict[str, Any], reference: Reference, config: DriftConfig, rows: int, looks: int
) -> dict[str, Any]:
    """The drift of a window of ``rows`` rows at its next look (after ``looks``)."""
    profile = reference.profile
    assert profile is not None
    windows = {name: window_column(data) for name, data in state["features"].items()}
    present = {name: w for name, w in windows.items() if w is not None}
    result = dataset_drift(profile.features, present, config, looks + 1)
    drift: dict[str, Any] = {
        "status": "ready",
        "source": reference.source,
        "share": result.share,
        "dataset_drift": result.dataset_drift,
        "drifted": [c.column for c in result.columns if c.drifted],
        "judged": result.judged_columns,
        "columns": [c.model_dump() for c in result.columns],
        "looks": looks + (1 if result.judged_columns else 0),
        "judged_rows": rows,
    }
    prediction = window_column(state["prediction"])
    if profile.prediction is not None and prediction is not None:
        level = config.level(looks + 1)
        drift["prediction"] = column_drift(
            "prediction", profile.prediction, prediction, config, level
        ).model_dump()
    return drift


def window_end(start: datetime, seconds: int) -> datetime:
    """When the window starting at ``start`` ends."""
    return start + timedelta(seconds=seconds)
