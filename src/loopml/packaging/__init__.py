"""Model packaging: a trained model as a verified, pickle-free folder, and loading it back.

A package is a folder of at most five files::

    model.onnx          the model for ONNX Runtime, when it exports and passes parity
    model.skops         always; the fallback format (skops, an explicit trusted-type list)
    input_example.json  the first rows of the packaging sample, as JSON records
    sample.parquet      up to 1,000 rows of the packaging sample (a seeded random draw), the
                        reference profile of a version whose run consumed no dataset
    loopml-model.json   the manifest, written last: SHA-256 and size of every other file,
                        the signature, the parity report, the skops trusted types

The registry stores the manifest's SHA-256 (``ModelPackage.manifest_sha256``); since the
manifest holds every other file's hash, that one value pins the whole package.
``load_model`` checks it, then every file, before anything is deserialized, and refuses any
other file (``model.pkl``, ``*.joblib``, ``*.bin``): plain pickle is never loaded.

ONNX input scheme: one ``[N, 1]`` tensor per signature column, in signature order (the
graph's i-th input is the i-th column, whatever skl2onnx named it). String columns are
string tensors (a missing string is fed as ""); float, integer and boolean columns are
float32 (NaN for missing). A pipeline that starts with a ColumnTransformer receives these
as separate inputs and routes them by column name; any other model gets them joined by a
Concat node into the one float matrix it was trained on. Classifiers are exported with
``zipmap=False``, so the outputs are ``label`` ``[N]`` and ``probabilities`` ``[N, classes]``;
regressors give one ``[N, 1]`` value tensor.

Parity: ONNX Runtime and the native model run on up to 1000 sample rows. For a classifier
the largest absolute ``predict_proba`` difference is compared, for a regressor
``|onnx - native| / max(1, |native|)``; the default tolerance is 1e-4, room for float32
(about 7 significant digits) but far below any real conversion error. A failed parity or a
failed export makes skops the primary format, with the reason in the manifest.
"""

from typing import TYPE_CHECKING, Any

from loopml.packaging._load import LoadedModel as LoadedModel
from loopml.packaging._load import load_model as load_model
from loopml.packaging._manifest import DEFAULT_TOLERANCE as DEFAULT_TOLERANCE
from loopml.packaging._manifest import MANIFEST_FILE as MANIFEST_FILE
from loopml.packaging._manifest import TOKENIZER_FILE as TOKENIZER_FILE
from loopml.packaging._manifest import ColumnSpec as ColumnSpec
from loopml.packaging._manifest import FileEntry as FileEntry
from loopml.packaging._manifest import ModelManifest as ModelManifest
from loopml.packaging._manifest import ModelPackage as ModelPackage
from loopml.packaging._manifest import ParityReport as ParityReport
from loopml.packaging._manifest import Signature as Signature
from loopml.packaging._signature import column_type as column_type
from loopml.packaging._signature import infer_signature as infer_signature

if TYPE_CHECKING:
    from loopml.packaging._package import package_model as package_model


def __getattr__(name: str) -> Any:
    # Packaging (pandas, skl2onnx, skops) loads when first asked for: a model server only
    # loads packages, and pandas alone would be most of a replica's memory.
    if name == "package_model":
        from loopml.packaging._package import package_model

        return package_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_TOLERANCE",
    "MANIFEST_FILE",
    "TOKENIZER_FILE",
    "ColumnSpec",
    "FileEntry",
    "LoadedModel",
    "ModelManifest",
    "ModelPackage",
    "ParityReport",
    "Signature",
    "column_type",
    "infer_signature",
    "load_model",
    "package_model",
]
