"""``python -m loopml.packaging.mlflow_convert SRC DEST``: package the MLflow sklearn model in
the local folder ``SRC`` as a loopml package written to the new folder ``DEST`` (ONNX with a
parity check against the estimator's own predictions on its input example, and skops).

The server runs this inside its sandbox (``registry.sandbox``), since it unpickles the
client's model; it needs neither the network nor the server. On failure the last line of
stderr says why and the exit status is 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

from loopml.core.keys import validate_key
from loopml.packaging.mlflow_format import input_example, load_estimator, read_mlflow_model


def convert(src: Path, dest: Path) -> str:
    """Package the MLflow model in ``src`` into ``dest``; returns the manifest's SHA-256."""
    from loopml.packaging import package_model

    def read(name: str) -> bytes:
        return (src / validate_key(name)).read_bytes()

    model = read_mlflow_model(read, src.name)
    sample = input_example(read, model, src.name)
    package = package_model(load_estimator(model), dest, sample=sample)
    return package.manifest_sha256


def main(argv: list[str] | None = None) -> int:
    """The command line: ``SRC DEST``; prints the manifest's SHA-256."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m loopml.packaging.mlflow_convert SRC DEST", file=sys.stderr)
        return 2
    try:
        print(convert(Path(args[0]), Path(args[1])))
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
