"""The package's manifest: its schema, its file names, and its bytes on disk."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MANIFEST_FILE = "loopml-model.json"
ONNX_FILE = "model.onnx"
SKOPS_FILE = "model.skops"
INPUT_EXAMPLE_FILE = "input_example.json"
# Up to SAMPLE_ROWS rows of the packaging sample's input columns: the reference profile of a
# version whose run consumed no dataset (loopml.monitor.reference) is built from them.
SAMPLE_FILE = "sample.parquet"
# A text package's tokenizer and its config (see loopml.packaging.text).
TOKENIZER_FILE = "tokenizer.json"
TEXT_CONFIG_FILE = "text.json"
# The only names a package may hold. Anything else (model.pkl, model.joblib, weights.bin, ...)
# is refused by the loader, because the one safe way to treat a pickle is never to open it.
PACKAGE_FILES = frozenset(
    {
        MANIFEST_FILE,
        ONNX_FILE,
        SKOPS_FILE,
        INPUT_EXAMPLE_FILE,
        SAMPLE_FILE,
        TOKENIZER_FILE,
        TEXT_CONFIG_FILE,
    }
)
# A manifest is a few KiB; the bound keeps a hostile folder from making the loader read GiBs.
MAX_MANIFEST_BYTES = 1 << 20

ColumnType = Literal["float", "integer", "string", "boolean", "datetime"]
# The calendar numbers a ``datetime`` column reaches the model as (see loopml.packaging.dates).
DatePart = Literal["year", "month", "day", "day_of_week", "day_of_year", "hour", "days"]
ClassLabel = str | int | float | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Strict):
    """One named, typed column of a signature."""

    name: str = Field(min_length=1, description="The column's name in the input frame.")
    type: ColumnType = Field(description="The column's logical type.")
    # Left out of the JSON when unset, so a manifest without dates keeps the bytes it had
    # before ``datetime`` columns existed.
    parts: list[DatePart] | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="For a datetime column: the calendar numbers the model takes, in order, "
        "each as a float column named ``<name>.<part>``.",
    )

    @model_validator(mode="after")
    def _parts_for_dates(self) -> ColumnSpec:
        if (self.type == "datetime") != (self.parts is not None):
            raise ValueError("parts are given for a datetime column, and only for one")
        if self.parts is not None and (not self.parts or len(set(self.parts)) != len(self.parts)):
            raise ValueError("a datetime column's parts are a non-empty list without repeats")
        return self


class Signature(_Strict):
    """What a model takes and gives.

    ``outputs`` is ``[label, probabilities]`` for a classifier (``label`` typed like the
    classes, ``probabilities`` a float column per class in ``classes`` order) and
    ``[prediction]`` (float) for a regressor.
    """

    inputs: list[ColumnSpec] = Field(min_length=1)
    outputs: list[ColumnSpec] = Field(min_length=1)
    task: Literal["classification", "regression"]
    classes: list[ClassLabel] | None = None


class FileEntry(_Strict):
    """The recorded hash and size of one package file."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


# float32 carries about 7 significant digits; a few hundred summed trees or a softmax
# lose one or two more. 1e-4 leaves that room and still catches a wrong conversion.
DEFAULT_TOLERANCE = 1e-4


class ParityReport(_Strict):
    """How closely the ONNX export reproduces the native model on the packaging sample.

    For a classifier ``max_abs_diff`` is the largest absolute difference between the two
    ``predict_proba`` matrices and ``label_agreement`` the share of equal labels. For a
    regressor it is the largest ``|onnx - native| / max(1, |native|)``: absolute for values
    below 1 and relative above, since float32 keeps about 7 significant digits whatever the
    scale. ``passed`` is ``max_abs_diff <= tolerance``.
    """

    rows: int
    max_abs_diff: float
    tolerance: float
    passed: bool
    label_agreement: float | None = None


class ModelManifest(_Strict):
    """Everything needed to verify and load a package; written last, hashed by the registry."""

    format_version: Literal[1] = 1
    flavor: Literal["sklearn", "lightgbm", "xgboost", "transformers"]
    primary: Literal["onnx", "skops"]
    files: dict[str, FileEntry]
    signature: Signature
    parity: ParityReport | None
    onnx_error: str | None = None
    trusted_types: list[str]
    library_versions: dict[str, str]
    input_example: str = INPUT_EXAMPLE_FILE

    def to_bytes(self) -> bytes:
        """The manifest's canonical bytes: sorted keys, so equal manifests hash equally."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=2)
        return (text + "\n").encode()


def sha256_hex(data: bytes) -> str:
    """The hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ModelPackage:
    """A written package.

    Attributes:
        path: the folder holding the files and ``MANIFEST_FILE``.
        manifest: the manifest as written.
        manifest_sha256: SHA-256 of ``MANIFEST_FILE``'s bytes. The registry stores it; as the
            manifest records every other file's hash, it anchors the whole package.
    """

    path: Path
    manifest: ModelManifest
    manifest_sha256: str
