"""A ``datetime`` signature column: callers' ISO-8601 strings (or dates, or nulls) become the
calendar numbers the model was trained on, and bad values are refused by column and row."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pydantic
import pytest

from loopml.core.errors import ValidationError
from loopml.packaging import ColumnSpec, ModelManifest, Signature, dates
from loopml.packaging.columns import from_instances, to_array

WHEN = ColumnSpec(name="when", type="datetime", parts=list(dates.PARTS))
SIGNATURE = Signature(
    inputs=[WHEN, ColumnSpec(name="x", type="float")],
    outputs=[ColumnSpec(name="prediction", type="float")],
    task="regression",
)


def _parts(values: np.ndarray) -> dict[str, list[float]]:
    numbers = dates.calendar(values, dates.PARTS)
    return {p: v.tolist() for p, v in zip(dates.PARTS, numbers, strict=True)}


def test_iso_strings_dates_and_nulls_become_utc_instants() -> None:
    values = [
        "2024-02-29",
        "2024-02-29T23:30:00",
        "2024-03-01T01:30:00+02:00",  # the same instant as the one before, in UTC
        "2024-02-29T23:30:00Z",
        None,
        date(1969, 12, 31),
        datetime(2024, 1, 1, 5, tzinfo=timezone(timedelta(hours=-3))),
    ]

    got = to_array(WHEN, values)

    assert got.dtype == np.dtype("datetime64[us]")
    assert got[1] == got[2] == got[3] == np.datetime64("2024-02-29T23:30:00")
    assert np.isnat(got[4])
    assert got[6] == np.datetime64("2024-01-01T08:00:00")
    parts = _parts(got)
    assert [parts[p][0] for p in dates.PARTS] == [2024, 2, 29, 3, 60, 0, 19782]
    assert [parts[p][2] for p in dates.PARTS] == [2024, 2, 29, 3, 60, 23, 19782]
    # Before 1970 too: 1969-12-31 was a Wednesday, day 365 of its year.
    assert [parts[p][5] for p in dates.PARTS] == [1969, 12, 31, 2, 365, 0, -1]
    assert all(np.isnan(parts[p][4]) for p in dates.PARTS)


def test_the_calendar_matches_pandas() -> None:
    stamps = pd.date_range("1999-12-25", "2031-03-03", freq="37h")
    parts = _parts(stamps.to_numpy(dtype="datetime64[us]"))

    assert parts["year"] == stamps.year.tolist()
    assert parts["month"] == stamps.month.tolist()
    assert parts["day"] == stamps.day.tolist()
    assert parts["day_of_week"] == stamps.day_of_week.tolist()
    assert parts["day_of_year"] == stamps.day_of_year.tolist()
    assert parts["hour"] == stamps.hour.tolist()


@pytest.mark.parametrize(
    ("value", "shown"),
    [("yesterday", "the string 'yesterday'"), ("2024-13-01", "the string '2024-13-01'"), (5, "5")],
)
def test_a_bad_value_is_refused_naming_column_row_and_what_was_expected(
    value: object, shown: str
) -> None:
    instances = [{"when": "2024-01-01", "x": 1.0}, {"when": value, "x": 2.0}]

    with pytest.raises(ValidationError) as caught:
        from_instances(SIGNATURE, instances, None)

    message = caught.value.message
    assert message.startswith(f"column 'when' (datetime): row 1 has {shown}; expected an ISO-8601")
    assert '"2024-05-31T14:30:00+02:00"' in message
    assert caught.value.details == {
        "column": "when",
        "row": 1,
        "expected": "datetime",
        "got": "a string" if isinstance(value, str) else "a number",
    }


def test_the_signature_lists_the_date_and_the_model_its_parts() -> None:
    names = [c.name for c in dates.model_columns(SIGNATURE)]

    assert names == [f"when.{p}" for p in dates.PARTS] + ["x"]
    with pytest.raises(pydantic.ValidationError, match="parts"):
        ColumnSpec(name="when", type="datetime")
    with pytest.raises(pydantic.ValidationError, match="parts"):
        ColumnSpec(name="x", type="float", parts=["year"])


def test_a_manifest_without_dates_keeps_its_bytes() -> None:
    # A package written before datetime columns existed: verified by its bytes' hash, it
    # must read back and write the same bytes.
    written = next((Path(__file__).parents[2] / "fixtures" / "homes").rglob("loopml-model.json"))
    data = written.read_bytes()

    manifest = ModelManifest.model_validate_json(data)

    assert manifest.to_bytes() == data
    assert b'"parts"' not in data
