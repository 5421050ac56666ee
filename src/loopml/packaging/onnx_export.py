"""ONNX export (skl2onnx, with onnxmltools' LightGBM and XGBoost converters), checks, and
parity.

Imported only when a model is packaged or an ONNX package is loaded: skl2onnx and
onnxruntime take a while to import.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from loopml.core.errors import UnsafeArtifactError
from loopml.packaging._manifest import ParityReport, Signature
from loopml.packaging._signature import final_estimator, model_frame, onnx_feed
from loopml.packaging.dates import model_columns

if TYPE_CHECKING:
    import pandas as pd
# Pinned so that the same model gives the same bytes whatever the installed onnx's newest
# opset is; ai.onnx.ml 3 is the newest that onnxmltools' LightGBM converter emits.
TARGET_OPSET = {"": 21, "ai.onnx.ml": 3}
# Custom domains would need custom-op libraries; a package never brings its own code.
ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
PARITY_ROWS = 1000
_FEATURES = "loopml_features"


@functools.cache
def register_lightgbm() -> None:
    """Teach skl2onnx LightGBM's converters, so LGBM models convert inside Pipelines too."""
    from lightgbm import LGBMClassifier, LGBMRegressor
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    update_registered_converter(
        LGBMClassifier,
        "LightGbmLGBMClassifier",
        calculate_linear_classifier_output_shapes,
        convert_lightgbm,
        options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
    )
    update_registered_converter(
        LGBMRegressor,
        "LightGbmLGBMRegressor",
        calculate_linear_regressor_output_shapes,
        convert_lightgbm,
        options={"split": None},
    )


@functools.cache
def register_xgboost() -> None:
    """Teach skl2onnx XGBoost's converters (when xgboost is installed), as for LightGBM.

    skl2onnx's own shape calculators are used: onnxmltools' check the input against its own
    tensor types, which skl2onnx's graph does not use. The parity check catches a
    converter that reads the trees or the base score wrong.
    """
    try:
        from xgboost import XGBClassifier, XGBRegressor
    except ImportError:
        return
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    update_registered_converter(
        XGBClassifier,
        "XGBoostXGBClassifier",
        calculate_linear_classifier_output_shapes,
        _convert_xgboost,
        options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
    )
    update_registered_converter(
        XGBRegressor,
        "XGBoostXGBRegressor",
        calculate_linear_regressor_output_shapes,
        _convert_xgboost,
    )


def _convert_xgboost(scope: Any, operator: Any, container: Any) -> None:
    """onnxmltools' XGBoost converter, on a copy whose Booster has no feature names.

    The converter maps each split to its input by the Booster's feature name, and only
    reads XGBoost's positional ``f0``, ``f1``... names; a model fitted on a DataFrame
    names its features after the columns, which the graph feeds in the same order.
    """
    import copy

    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost

    model = operator.raw_operator
    if model.get_booster().feature_names is not None:
        booster = model.get_booster().copy()
        booster.feature_names = None
        booster.feature_types = None
        nameless = copy.copy(model)
        nameless._Booster = booster
        operator.raw_operator = nameless
    convert_xgboost(scope, operator, container)


def _selects_columns(model: Any) -> bool:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    while isinstance(model, Pipeline):
        model = model.steps[0][1]
    return isinstance(model, ColumnTransformer)


def export_onnx(
    model: Any, signature: Signature, target_opset: dict[str, int] | None = None
) -> bytes:
    """The model as ONNX bytes whose i-th input is the model's i-th column (``[N, 1]``): the
    signature's, a datetime column as its parts (``loopml.packaging.dates.model_columns``).

    A model that starts with a ColumnTransformer gets the columns as separate inputs, which
    skl2onnx routes by name; any other model sees one float matrix, so a Concat is put in
    front of it. ``target_opset`` replaces ``TARGET_OPSET`` (a graph to be joined to another
    exported at an older opset). Raises whatever the converters raise for a model they
    cannot express.
    """
    opset = target_opset or TARGET_OPSET
    import onnx
    from onnx import helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    register_lightgbm()
    register_xgboost()
    options = None
    if signature.task == "classification":
        # zipmap=False: probabilities as a plain [N, classes] tensor, not a list of dicts.
        options = {id(final_estimator(model)): {"zipmap": False}}
    columns = model_columns(signature)
    if _selects_columns(model):
        types = [
            (
                c.name,
                StringTensorType([None, 1]) if c.type == "string" else FloatTensorType([None, 1]),
            )
            for c in columns
        ]
        onx = convert_sklearn(model, initial_types=types, options=options, target_opset=opset)
    else:
        if any(c.type == "string" for c in columns):
            raise ValueError(
                "string columns need a ColumnTransformer (e.g. with a OneHotEncoder) at the "
                "start of the pipeline to be exported to ONNX"
            )
        matrix = [(_FEATURES, FloatTensorType([None, len(columns)]))]
        onx = convert_sklearn(model, initial_types=matrix, options=options, target_opset=opset)
        names = [f"loopml_input_{i}" for i in range(len(columns))]
        inputs = [
            helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [None, 1]) for n in names
        ]
        del onx.graph.input[:]
        onx.graph.input.extend(inputs)
        onx.graph.node.insert(0, helper.make_node("Concat", names, [_FEATURES], axis=1))
    # skl2onnx names the graph with a random UUID; a fixed name keeps the bytes reproducible.
    onx.graph.name = "loopml"
    onnx.checker.check_model(onx)
    return bytes(onx.SerializeToString())


def check_onnx(data: bytes) -> None:
    """Refuse ONNX bytes that would read other files or need custom-op code."""
    import onnx

    try:
        proto = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError, or onnx's own parse errors
        raise UnsafeArtifactError(f"model.onnx is not a valid ONNX model: {exc}") from exc
    domains = {op.domain for op in proto.opset_import} | {n.domain for n in proto.graph.node}
    if not domains <= ALLOWED_DOMAINS:
        raise UnsafeArtifactError(
            f"model.onnx uses operator domains {sorted(domains - ALLOWED_DOMAINS)}; only "
            f"{sorted(ALLOWED_DOMAINS)} are loaded (no custom operators)"
        )
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise UnsafeArtifactError(
                f"model.onnx keeps tensor {tensor.name!r} in an external file; "
                "packages must be self-contained"
            )


def onnx_session(data: bytes, *, single_thread: bool = False) -> Any:
    """An ONNX Runtime session on the CPU, after ``check_onnx``.

    ``single_thread`` makes the session a model server wants: one intra-op thread that does
    not spin. ONNX Runtime's default pool has a thread per core, pinned to the cores whatever
    the process's affinity, and spins between runs; a server's calls are small and it usually
    has a core to itself or less, so the extra threads only steal CPU (they ran on the load
    generator's core in the serving benchmark, and made a 16-row call slower).
    """
    import onnxruntime as ort

    check_onnx(data)
    options = ort.SessionOptions()
    if single_thread:
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def run_onnx(session: Any, frame: pd.DataFrame, signature: Signature) -> list[np.ndarray]:
    """Run a session on a prepared frame: ``[labels, probabilities]`` or ``[values]``."""
    names = [i.name for i in session.get_inputs()]
    outputs: list[np.ndarray] = session.run(None, onnx_feed(frame, signature, names))
    return outputs


def parity(
    model: Any, session: Any, frame: pd.DataFrame, signature: Signature, tolerance: float
) -> ParityReport:
    """Compare the ONNX session with the native model on up to ``PARITY_ROWS`` rows."""
    rows = frame.iloc[:PARITY_ROWS]
    outputs = run_onnx(session, rows, signature)
    rows = model_frame(rows, signature)
    agreement: float | None = None
    if signature.task == "classification":
        native = np.asarray(model.predict_proba(rows), dtype=np.float64)
        diff = float(np.max(np.abs(outputs[1].astype(np.float64) - native)))
        labels = np.asarray(model.predict(rows))
        agreement = float(np.mean(outputs[0].ravel().astype(labels.dtype) == labels))
    else:
        values = np.asarray(model.predict(rows), dtype=np.float64).ravel()
        got = outputs[0].astype(np.float64).ravel()
        diff = float(np.max(np.abs(got - values) / np.maximum(1.0, np.abs(values))))
    passed = bool(np.isfinite(diff) and diff <= tolerance)
    return ParityReport(
        rows=len(rows),
        max_abs_diff=diff,
        tolerance=tolerance,
        passed=passed,
        label_agreement=agreement,
    )
