"""skops save and load, behind an explicit trusted-type list and a policy over that list.

skops rebuilds an object tree from JSON without unpickling, but a type it is told to trust
gets called while loading. The list recorded in the manifest is therefore checked twice: the
file may use no type outside it, and the list itself may only name classes from the
libraries a packaged model is made of. A folder an attacker controls (manifest included)
still cannot smuggle ``posix.system`` in.
"""

from __future__ import annotations

import importlib
import io
import sys
import threading
import zipfile
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

from loopml.core.errors import UnsafeArtifactError

# Top-level packages whose classes a model may be built from.
_ALLOWED_ROOTS = frozenset({"sklearn", "lightgbm", "numpy", "scipy", "collections"})
# Single classes trusted from libraries not trusted as a whole. XGBoost's estimators keep
# their trees in a Booster, which skops rebuilds through ``Booster.__setstate__``: that
# parses the model bytes (XGBoost's own format) in C++ and runs no Python code. Other
# xgboost classes are not needed by a model and stay refused (``DMatrix`` reads files).
_ALLOWED_TYPES = frozenset(
    {"xgboost.core.Booster", "xgboost.sklearn.XGBClassifier", "xgboost.sklearn.XGBRegressor"}
)
# Classes under those roots that touch the file system when constructed.
_DENIED = frozenset({"numpy.memmap", "numpy.core.memmap.memmap", "numpy._core.memmap.memmap"})
_DENIED_WORDS = ("pickle", "joblib", "load", "save", "file", "exec", "eval", "system", "popen")
_ZIP_MAGIC = b"PK\x03\x04"


class _NoTorchHere:
    """A meta-path finder refusing ``torch`` to one thread, while it imports skops.

    skops lists its trusted types from ``sklearn.utils.all_estimators()``, whose package walk
    imports every sklearn package, ``sklearn.externals.array_api_compat.torch`` among them,
    and that imports torch when it is installed (loopml's text extra): 2.4 s of CPU for
    ``import skops.io`` against 1.5 s without, in every process that packages or loads a
    model. The walk skips a package whose import fails, and no estimator lives there, so the
    trusted types are the same. Other threads import torch as usual meanwhile.
    """

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(
        self, name: str, path: Any = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if threading.get_ident() == self.thread and name.partition(".")[0] == "torch":
            raise ModuleNotFoundError(f"torch is not imported by skops here ({name})", name=name)
        return None


def skops_io() -> ModuleType:
    """``skops.io``, imported without torch unless torch is already imported."""
    if "skops.io" in sys.modules or "torch" in sys.modules:
        return importlib.import_module("skops.io")
    finder = _NoTorchHere()
    sys.meta_path.insert(0, finder)
    try:
        return importlib.import_module("skops.io")
    finally:
        sys.meta_path.remove(finder)


def type_refusal(name: str) -> str | None:
    """Why ``name`` may not be trusted, or ``None`` if the policy allows it."""
    module, _, attr = name.rpartition(".")
    named = name in _ALLOWED_TYPES
    if not named and (not module or module.split(".")[0] not in _ALLOWED_ROOTS):
        return f"{name} is not from {sorted(_ALLOWED_ROOTS)} nor one of {sorted(_ALLOWED_TYPES)}"
    lowered = name.lower()
    if name in _DENIED or any(word in lowered for word in _DENIED_WORDS):
        return f"{name} is on the deny list (file or code access)"
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return f"{name} does not exist in this installation"
    import numpy as np

    # Classes are rebuilt by skops' own protocol; a plain function named as a "type" would
    # be called with attacker-chosen arguments. numpy ufuncs (np.log1p in a
    # FunctionTransformer) are pure array functions.
    if not isinstance(obj, type | np.ufunc):
        return f"{name} is a {type(obj).__name__}, not a class"
    real = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
    if named and real != name:
        return f"{name} is really {real}"
    if (
        not named
        and not isinstance(obj, np.ufunc)
        and getattr(obj, "__module__", "").split(".")[0] not in (_ALLOWED_ROOTS | {"builtins"})
    ):
        return f"{name} is really {obj.__module__}.{obj.__qualname__}"
    return None


def check_policy(names: list[str]) -> None:
    """Raise ``UnsafeArtifactError`` if any trusted-type name breaks the policy."""
    refused = [reason for name in names if (reason := type_refusal(name)) is not None]
    if refused:
        raise UnsafeArtifactError(
            "refusing untrusted skops types: " + "; ".join(refused),
            details={"refused": refused},
        )


def untrusted_types(data: bytes) -> list[str]:
    """The types in a skops file that skops does not trust by default (reads JSON only)."""
    sio = skops_io()

    if not data.startswith(_ZIP_MAGIC) or not zipfile.is_zipfile(io.BytesIO(data)):
        raise UnsafeArtifactError(
            "model.skops is not a valid skops zip (a plain pickle renamed .skops?); "
            "plain pickle is never loaded"
        )
    try:
        return sorted(sio.get_untrusted_types(data=data))
    except Exception as exc:  # skops raises bare KeyError/ValueError/JSONDecodeError here
        raise UnsafeArtifactError(f"model.skops has no valid skops schema: {exc!r}") from exc


def dump(model: Any) -> tuple[bytes, list[str]]:
    """The model as skops bytes and the (policy-checked) types it needs trusted."""
    sio = skops_io()

    data: bytes = sio.dumps(model)
    trusted = untrusted_types(data)
    check_policy(trusted)
    return data, trusted


def load(data: bytes, trusted: list[str]) -> Any:
    """Load skops bytes trusting exactly ``trusted``, after checking file and list."""
    sio = skops_io()

    check_policy(trusted)
    needed = untrusted_types(data)
    extra = sorted(set(needed) - set(trusted))
    if extra:
        raise UnsafeArtifactError(
            f"model.skops uses types not in the manifest's trusted list: {extra}",
            details={"untrusted": extra},
        )
    try:
        return sio.loads(data, trusted=needed)
    except Exception as exc:  # a schema that lies about its contents fails in many ways
        raise UnsafeArtifactError(f"model.skops could not be loaded: {exc!r}") from exc
