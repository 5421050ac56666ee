"""Open Inference Protocol (KServe V2) over REST: request models, tensors to columns, and
predictions to output tensors.

Inputs, either way (KServe's sklearn and LightGBM servers accept both):

- **one tensor per signature column** (the pandas codec's way): named like the column,
  shape ``[N]`` or ``[N, 1]``; a numeric column takes ``FP*``/``INT*``/``UINT*`` (an
  integer column floats without a fraction), a boolean column ``BOOL`` (or 0/1 numbers), a
  string column ``BYTES``. ``null`` marks a missing value in ``FP*`` and
  ``BYTES`` tensors.
- **one ``[N, C]`` matrix** with the ``C`` columns in signature order, named anything
  that is not a column name (``input-0``), when no column is a string.

``data`` is row-major, flat or nested. Outputs: ``predict`` (``[N]``; labels typed like the
classes, or values) and, for classifiers, ``predict_proba`` (``[N, classes]``, class order
in the model metadata's ``classes``). ``FP32`` when ONNX Runtime computed them, ``FP64`` when
the native model did. The request's ``id`` is echoed (the inference id when it has none),
and so are its ``parameters``. The binary tensor extension is not supported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np

from loopml.core.errors import ValidationError
from loopml.core.inference import (
    PREDICT,
    PREDICT_PROBA,
    InferenceRequest,
    InputTensors,
    RequestInput,
    flat_tensor,
)
from loopml.packaging import Signature
from loopml.packaging.columns import all_numbers, json_type, tensor_matrix
from loopml.packaging.runtime import Columns, ModelRuntime, Prediction

_FLOATS = frozenset({"FP16", "FP32", "FP64"})
_INTS = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
# Which tensor datatypes can carry each signature column type.
_CARRIES: dict[str, frozenset[str]] = {
    "float": _FLOATS | _INTS,
    "integer": _INTS | _FLOATS,
    "boolean": _INTS | _FLOATS | {"BOOL"},
    "string": frozenset({"BYTES"}),
    "datetime": frozenset({"BYTES"}),  # ISO-8601 strings
}
# Which JSON values each tensor datatype may hold (null: a missing value).
_NONE = type(None)
_HOLDS: dict[str, frozenset[type]] = {
    **dict.fromkeys(_FLOATS, frozenset({int, float, _NONE})),
    **dict.fromkeys(_INTS, frozenset({int})),
    "BOOL": frozenset({bool}),
    "BYTES": frozenset({str, _NONE}),
}
# The values each numeric datatype can represent: a value outside is refused, never wrapped
# (UINT8 300 read as 44) nor turned into infinity (FP16 70000).
_RANGES: dict[str, tuple[float, float]] = {
    **{f"INT{n}": (-(2 ** (n - 1)), 2 ** (n - 1) - 1) for n in (8, 16, 32, 64)},
    **{f"UINT{n}": (0, 2**n - 1) for n in (8, 16, 32, 64)},
    "FP16": (-65504.0, 65504.0),
    "FP32": (-3.4028234663852886e38, 3.4028234663852886e38),
}
# What the model metadata advertises per column type (every compatible type is accepted).
INPUT_DATATYPES = {
    "float": "FP64",
    "integer": "INT64",
    "boolean": "BOOL",
    "string": "BYTES",
    "datetime": "BYTES",
}


def output_names(runtime: ModelRuntime, request: InferenceRequest) -> list[str]:
    """The outputs to return: those asked for, checked, or all of them.

    Raises:
        ValidationError: an output the model does not have.
    """
    available = [PREDICT, PREDICT_PROBA] if runtime.is_classifier else [PREDICT]
    if not request.outputs:
        return available
    asked = [o.name for o in request.outputs]
    unknown = [n for n in asked if n not in available]
    if unknown:
        raise ValidationError(
            f"unknown output(s) {unknown[:10]}: this model gives {available}",
            details={"unknown": unknown[:10], "available": available},
        )
    return list(dict.fromkeys(asked))


def columns_from_request(
    runtime: ModelRuntime, request: InferenceRequest, max_rows: int | None
) -> Columns:
    """The request's input tensors as checked columns.

    Raises:
        ValidationError: tensors that do not match the signature (names, shapes,
            datatypes, values); the message names the tensor and, for values, the row.
    """
    names = runtime.input_names
    tensors = request.inputs
    if len(tensors) == 1 and tensors.names[0] not in names:
        return _from_matrix(runtime, tensors[0], max_rows)
    order = None if tensors.names == tuple(names) else _signature_order(tensors, names)
    rows = _column_rows(tensors, max_rows)
    if order is not None:
        tensors = tensors.take(order)
    matrix = _column_matrix(runtime, tensors, rows)
    if matrix is not None:
        return Columns.from_matrix(names, matrix)
    values = {
        spec.name: _values(tensor, spec.type, rows)
        for spec, tensor in zip(runtime.signature.inputs, tensors, strict=True)
    }
    return runtime.columns_from_values(values, max_rows=max_rows)


def _signature_order(tensors: InputTensors, names: list[str]) -> list[int]:
    """Where each signature column's tensor is in the request, for tensors sent in another
    order than the signature's (the order alone is a tuple comparison)."""
    given = tensors.names
    position = dict(zip(given, range(len(given)), strict=True))
    if len(position) != len(given):
        seen: set[str] = set()
        for name in given:
            if name in seen:
                raise ValidationError(
                    f"input tensor {name!r} is given twice", details={"tensor": name}
                )
            seen.add(name)
    unknown = [n for n in position if n not in names]
    missing = [n for n in names if n not in position]
    if unknown or missing:
        raise ValidationError(
            f"input tensors do not match the model: missing {missing[:20]}, unknown "
            f"{unknown[:20]}; send one tensor per column, named {names[:20]} (or a single "
            f"[N, {len(names)}] matrix of numbers in that order)",
            details={"missing": missing, "unknown": unknown[:100], "expected": names},
        )
    return [position[n] for n in names]


def _column_matrix(runtime: ModelRuntime, tensors: InputTensors, rows: int) -> np.ndarray | None:
    """One flat ``[N]`` tensor per column of an all-number signature (in its order), as
    the ``[columns, rows]`` matrix ``/predict`` builds, checked over all tensors in a few C
    calls: the matrix takes what a float tensor holds, then each datatype's values are
    checked against what it holds and its range. ``None`` for anything else, which
    ``_values`` then checks tensor by tensor and refuses with its precise message, so the
    rules are the same either way."""
    signature = runtime.signature
    if (
        not all_numbers(signature)
        or tensors.shape != (rows,)
        or set(map(len, tensors.data)) != {rows}
    ):
        return None
    values = list(chain.from_iterable(tensors.data))
    groups = _datatype_groups(signature, tensors, values)
    if groups is None:
        return None
    matrix = tensor_matrix(signature, values, by_row=False)
    if matrix is None:
        return None
    for datatype, held in groups.items():
        if datatype in _FLOATS and datatype not in _RANGES:
            continue  # FP64 holds what the matrix took: numbers and nulls
        holds = datatype in _FLOATS or set(map(type, held)) <= _HOLDS[datatype]
        if not holds or not _fits(datatype, held):
            return None
    return matrix


def _datatype_groups(
    signature: Signature, tensors: InputTensors, values: list[Any]
) -> dict[str, list[Any]] | None:
    """The tensors' ``values`` (their data flat, column after column) by datatype; ``None``
    where a datatype cannot carry its column. One datatype for every column (the common
    request) is a set and a cached lookup."""
    datatypes = tensors.datatypes
    if len(set(datatypes)) == 1:
        return None if _refusals(signature, datatypes[0])[1] else {datatypes[0]: values}
    groups: dict[str, list[Any]] = {}
    for datatype, spec, data in zip(datatypes, signature.inputs, tensors.data, strict=True):
        if datatype not in _CARRIES[spec.type]:
            return None
        groups.setdefault(datatype, []).extend(data)
    return groups


def _column_rows(tensors: InputTensors, max_rows: int | None) -> int:
    if tensors.shape is not None and len(tensors.shape) == 1:
        rows = tensors.shape[0]
        _check_rows(rows, max_rows)
        return rows
    by_name: dict[str, int] = {}
    for name, shape in zip(tensors.names, tensors.shapes, strict=True):
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise ValidationError(
                f"input tensor {name!r} has shape {shape}; a column tensor is [N] or [N, 1]",
                details={"tensor": name, "shape": shape},
            )
        by_name[name] = shape[0]
    if len(set(by_name.values())) > 1:
        raise ValidationError(
            f"input tensors have different numbers of rows {by_name}; every column needs one "
            "value per row",
            details={"rows": by_name},
        )
    rows = next(iter(by_name.values()))
    _check_rows(rows, max_rows)
    return rows


def _check_rows(rows: int, max_rows: int | None) -> None:
    if max_rows is not None and rows > max_rows:
        raise ValidationError(
            f"the request holds {rows} rows, more than the limit of {max_rows} per request: "
            "split it into several requests",
            details={"rows": rows, "limit": max_rows},
        )


def _values(tensor: RequestInput, column_type: str, rows: int) -> list[Any]:
    """A column tensor's values, checked against its datatype and shape."""
    if tensor.datatype not in _CARRIES[column_type]:
        raise ValidationError(
            f"input tensor {tensor.name!r} is {tensor.datatype}, which cannot carry a "
            f"{column_type} column; use {INPUT_DATATYPES[column_type]}",
            details={
                "tensor": tensor.name,
                "datatype": tensor.datatype,
                "expected": INPUT_DATATYPES[column_type],
            },
        )
    data = flat_tensor(tensor)
    if len(data) != rows:
        raise ValidationError(
            f"input tensor {tensor.name!r} has shape {tensor.shape} but {len(data)} values",
            details={"tensor": tensor.name, "shape": tensor.shape, "values": len(data)},
        )
    _check_holds(tensor, data)
    return data


def _check_holds(tensor: RequestInput, data: list[Any]) -> None:
    allowed = _HOLDS[tensor.datatype]
    found = set(map(type, data))
    if found <= allowed:
        _check_range(tensor, data)
        return
    index = next(i for i, v in enumerate(data) if type(v) not in allowed)
    raise ValidationError(
        f"input tensor {tensor.name!r} is {tensor.datatype} but element {index} is "
        f"{json_type(data[index])} ({str(data[index])[:40]})",
        details={"tensor": tensor.name, "datatype": tensor.datatype, "index": index},
    )


def _within(datatype: str, data: list[Any]) -> bool:
    """Whether every number in ``data`` fits ``datatype`` (``null`` always does)."""
    bounds = _RANGES.get(datatype)
    if bounds is None or not data:
        return True
    low, high = bounds
    numbers = [v for v in data if v is not None]
    return not numbers or (low <= min(numbers) and max(numbers) <= high)


def _check_range(tensor: RequestInput, data: list[Any]) -> None:
    if _within(tensor.datatype, data):
        return
    low, high = _RANGES[tensor.datatype]
    index = next(i for i, v in enumerate(data) if v is not None and not low <= v <= high)
    raise ValidationError(
        f"input tensor {tensor.name!r} is {tensor.datatype} but element {index} is "
        f"{str(data[index])[:40]}, outside the range {tensor.datatype} can hold "
        f"({low:g} to {high:g})",
        details={"tensor": tensor.name, "datatype": tensor.datatype, "index": index},
    )


# Per signature and datatype (a server has one signature): its string columns, and the
# columns a matrix of that datatype cannot carry.
_REFUSALS: dict[tuple[int, str], tuple[Signature, list[str], list[str]]] = {}


def _refusals(signature: Signature, datatype: str) -> tuple[list[str], list[str]]:
    key = (id(signature), datatype)
    cached = _REFUSALS.get(key)
    if cached is not None and cached[0] is signature:
        return cached[1], cached[2]
    strings = [s.name for s in signature.inputs if s.type == "string"]
    refused = [s.name for s in signature.inputs if datatype not in _CARRIES[s.type]]
    if len(_REFUSALS) > 64:
        _REFUSALS.clear()
    _REFUSALS[key] = (signature, strings, refused)
    return strings, refused


def _fits(datatype: str, data: list[Any]) -> bool:
    """Whether every number in ``data`` fits ``datatype``: ``_within``, in two C calls where
    no value is null."""
    bounds = _RANGES.get(datatype)
    if bounds is None or not data:
        return True
    try:
        return bool(bounds[0] <= min(data) and max(data) <= bounds[1])
    except TypeError:  # a null among the numbers
        return _within(datatype, data)


def _from_matrix(runtime: ModelRuntime, tensor: RequestInput, max_rows: int | None) -> Columns:
    signature = runtime.signature
    specs = signature.inputs
    width = len(specs)
    shape = tensor.shape
    fits = (len(shape) == 2 and shape[1] == width) or (len(shape) == 1 and width == 1)
    if not fits:
        raise ValidationError(
            f"input tensor {tensor.name!r} with shape {shape} is neither a column of the model "
            f"nor an [N, {width}] matrix of its columns {runtime.input_names[:20]}",
            details={"tensor": tensor.name, "shape": shape, "expected": runtime.input_names},
        )
    strings, refused = _refusals(signature, tensor.datatype)
    if strings:
        raise ValidationError(
            f"the model has string columns {strings[:20]}: send one tensor per column instead "
            "of one matrix",
            details={"string_columns": strings},
        )
    if refused:
        raise ValidationError(
            f"input tensor {tensor.name!r} is {tensor.datatype}, which cannot carry columns "
            f"{refused[:20]}",
            details={"tensor": tensor.name, "datatype": tensor.datatype, "columns": refused},
        )
    _check_rows(shape[0], max_rows)
    data = flat_tensor(tensor)
    if len(data) != math.prod(shape):
        raise ValidationError(
            f"input tensor {tensor.name!r} has shape {shape} but {len(data)} values",
            details={"tensor": tensor.name, "shape": shape, "values": len(data)},
        )
    if tensor.datatype in _FLOATS:
        # The common request: numbers or nulls, in one pass that builds the matrix (the
        # values a float tensor holds are what the matrix takes), its range checked on it.
        matrix = tensor_matrix(signature, data, by_row=True)
        if matrix is not None and _fits(tensor.datatype, data):
            return Columns.from_matrix(runtime.input_names, matrix)
    _check_holds(tensor, data)  # refuses what the fast path did not take, by element
    matrix = tensor_matrix(signature, data, by_row=True)
    if matrix is not None:
        return Columns.from_matrix(runtime.input_names, matrix)
    values = {spec.name: data[i::width] for i, spec in enumerate(specs)}
    return runtime.columns_from_values(values, max_rows=max_rows)


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The V2 datatype of a NumPy dtype (object and str arrays are ``BYTES``)."""
    known = _DATATYPES.get(dtype)
    if known is None:
        known = _DATATYPES[dtype] = _datatype_of(dtype)
    return known


_DATATYPES: dict[np.dtype[Any], str] = {}


def _datatype_of(dtype: np.dtype[Any]) -> str:
    if dtype.kind == "b":
        return "BOOL"
    if dtype.kind in "iuf":
        prefix = {"i": "INT", "u": "UINT", "f": "FP"}[dtype.kind]
        return f"{prefix}{dtype.itemsize * 8}"
    return "BYTES"


def _tensor_data(array: np.ndarray) -> Any:
    # orjson writes numeric and bool arrays itself; object (string) arrays become lists.
    return array.tolist() if array.dtype.kind in "OUS" else array


def response_outputs(
    runtime: ModelRuntime, prediction: Prediction, names: Sequence[str]
) -> list[dict[str, Any]]:
    """The output tensors for ``prediction`` (flat, row-major data)."""
    outputs: list[dict[str, Any]] = []
    rows = int(prediction.predictions.shape[0])
    for name in names:
        if name == PREDICT:
            array = prediction.predictions
            shape = [rows]
        else:
            assert prediction.probabilities is not None
            array = prediction.probabilities
            shape = [rows, int(array.shape[1])]
        outputs.append(
            {
                "name": name,
                "shape": shape,
                "datatype": datatype_of(array.dtype),
                "data": _tensor_data(array.reshape(-1)),
            }
        )
    return outputs


def model_metadata(runtime: ModelRuntime, name: str, version: int) -> dict[str, Any]:
    """The model metadata response: inputs and outputs with datatypes and shapes.

    Beyond the protocol's fields, ``task`` and ``classes`` (the order of
    ``predict_proba``'s columns) are given.
    """
    signature = runtime.signature
    predict_dtype = runtime.label_dtype if runtime.is_classifier else runtime.value_dtype
    outputs = [{"name": PREDICT, "datatype": datatype_of(predict_dtype), "shape": [-1]}]
    if runtime.is_classifier:
        outputs.append(
            {
                "name": PREDICT_PROBA,
                "datatype": datatype_of(runtime.value_dtype),
                "shape": [-1, len(runtime.classes or [])],
            }
        )
    return {
        "name": name,
        "versions": [str(version)],
        "platform": runtime.platform,
        "inputs": [
            {"name": c.name, "datatype": INPUT_DATATYPES[c.type], "shape": [-1]}
            for c in signature.inputs
        ],
        "outputs": outputs,
        "task": signature.task,
        "classes": runtime.classes,
    }
