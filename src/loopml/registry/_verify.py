"""Verify a model package in the artifact store against its manifest, by streaming.

The trust chain: the run recorded the manifest's SHA-256 when it logged the model; the
manifest records the size and SHA-256 of every file. So the manifest is hashed first and
compared with the recorded hash, then every file it lists is sized and hashed, a chunk at a
time, and no file may sit in the package without being listed (a pickle dropped beside a
verified model is a reason to refuse it, RELIABILITY 7).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from loopml.core.errors import InvalidPathError, NotFoundError
from loopml.core.keys import validate_key
from loopml.storage import ArtifactStore

# The name ``loopml.packaging`` writes (its MANIFEST_FILE); kept here so verifying does
# not import the packaging stack (pandas, ONNX) into the server.
MANIFEST_FILE = "loopml-model.json"
# The only files a package may hold (``loopml.packaging.PACKAGE_FILES``, also kept here
# for the same reason): anything else (model.pkl, weights.joblib, ...) is refused at
# registration, as the loader refuses it at load.
# A text package adds its tokenizer (tokenizer.json) and how it tokenizes (text.json): both
# JSON, checked as JSON below.
PACKAGE_FILES = frozenset(
    {
        MANIFEST_FILE,
        "model.onnx",
        "model.skops",
        "input_example.json",
        "sample.parquet",
        "tokenizer.json",
        "text.json",
    }
)
_NOT_PICKLE = (
    "a package holds only model.onnx, model.skops, input_example.json, sample.parquet (and, "
    "for text models, tokenizer.json and text.json) and its manifest, and plain pickle is "
    "never accepted; "
    "re-package the model with loopml.packaging"
)
MAX_MANIFEST_BYTES = 1 << 20
MAX_FILES = 1000
_HEX = frozenset("0123456789abcdef")


class VerificationFailed(Exception):
    """The package does not match its manifest; the message names the file and the fix."""


def _entry(name: str, entry: Any) -> tuple[str, int]:
    if not isinstance(entry, dict):
        raise VerificationFailed(f"manifest entry for {name!r} is not an object")
    sha, size = entry.get("sha256"), entry.get("size")
    if not isinstance(sha, str) or len(sha) != 64 or not set(sha) <= _HEX:
        raise VerificationFailed(f"manifest entry for {name!r} has no valid sha256")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise VerificationFailed(f"manifest entry for {name!r} has no valid size")
    return sha, size


def manifest_files(data: bytes) -> dict[str, tuple[str, int]]:
    """The manifest's file list as ``{name: (sha256, size)}``.

    Reads only the ``files`` mapping of the JSON (the one part the registry needs), so it
    accepts every manifest format version that keeps that mapping.

    Raises:
        VerificationFailed: the manifest is not JSON, has no ``files`` mapping, or names a
            file outside the package (``..``, absolute) or the manifest itself.
    """
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise VerificationFailed(f"manifest {MANIFEST_FILE} is not valid JSON") from exc
    files = document.get("files") if isinstance(document, dict) else None
    if not isinstance(files, dict) or not files:
        raise VerificationFailed(f"manifest {MANIFEST_FILE} has no 'files' mapping")
    if len(files) > MAX_FILES:
        raise VerificationFailed(f"manifest lists {len(files)} files, over the limit {MAX_FILES}")
    result: dict[str, tuple[str, int]] = {}
    for name, entry in files.items():
        try:
            valid = validate_key(name) == name
        except InvalidPathError:
            valid = False
        if not valid or name == MANIFEST_FILE:
            raise VerificationFailed(f"manifest lists an invalid file name {name[:120]!r}")
        if name not in PACKAGE_FILES:
            raise VerificationFailed(f"manifest lists {name[:120]!r}; {_NOT_PICKLE}")
        result[name] = _entry(name, entry)
    return result


def _sha256(artifacts: ArtifactStore, key: str) -> tuple[str, bytes]:
    """The file's SHA-256 and its first bytes (what ``check_content`` reads)."""
    digest = hashlib.sha256()
    head = b""
    for chunk in artifacts.iter_bytes(key):
        if len(head) < 16:
            head += chunk[: 16 - len(head)]
        digest.update(chunk)
    return digest.hexdigest(), head


def _is_pickle(head: bytes) -> bool:
    # Protocol 2 and later open with PROTO (0x80) and the protocol number; protocols 0 and 1
    # open with an opcode, and none of the formats below may start with those bytes.
    return len(head) >= 2 and head[0] == 0x80 and head[1] <= 5


def check_content(name: str, head: bytes) -> None:
    """Refuse a package file whose first bytes are not those of its format.

    A pickle renamed ``model.onnx`` or ``model.skops`` matched its manifest and was READY
    until a server refused to load it; it is refused here instead, by what it holds.

    Raises:
        VerificationFailed: the file is a pickle, or not the format its name says.
    """
    if _is_pickle(head):
        raise VerificationFailed(f"file {name!r} is a pickle; {_NOT_PICKLE}")
    # ONNX: a protobuf ModelProto opens with its ir_version field (tag 0x08).
    expected = {
        "model.onnx": (b"\x08", "an ONNX model"),
        "model.skops": (b"PK\x03\x04", "a skops (zip) file"),
        "sample.parquet": (b"PAR1", "a Parquet file"),
    }.get(name)
    if expected is not None and not head.startswith(expected[0]):
        raise VerificationFailed(f"file {name!r} is not {expected[1]}; {_NOT_PICKLE}")
    if name.endswith(".json") and head.lstrip()[:1] not in (b"{", b"["):
        raise VerificationFailed(f"file {name!r} is not JSON; {_NOT_PICKLE}")


def _read_manifest(artifacts: ArtifactStore, key: str, expected_sha256: str) -> bytes:
    try:
        info = artifacts.stat(key)
    except NotFoundError as exc:
        raise VerificationFailed(
            f"manifest {MANIFEST_FILE} is missing from the package: the model was not "
            "logged completely; log it again, then register"
        ) from exc
    if info.size > MAX_MANIFEST_BYTES:
        raise VerificationFailed(
            f"manifest {MANIFEST_FILE} is {info.size} bytes, over the limit {MAX_MANIFEST_BYTES}"
        )
    data = artifacts.read_bytes(key)
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise VerificationFailed(
            f"manifest {MANIFEST_FILE} has SHA-256 {actual}, but the run recorded "
            f"{expected_sha256} when it logged the model: the package was changed since"
        )
    return data


def verify_package(artifacts: ArtifactStore, prefix: str, manifest_sha256: str) -> None:
    """Check the package under ``prefix`` file by file; return only if all of it matches.

    Args:
        artifacts: the store holding the run's artifacts.
        prefix: the package folder (``projects/<id>/runs/<run>/artifacts/model``).
        manifest_sha256: the manifest's SHA-256 recorded when the model was logged.

    Raises:
        VerificationFailed: a file is missing, unlisted, or of the wrong size or hash; the
            message names it.
    """
    data = _read_manifest(artifacts, f"{prefix}/{MANIFEST_FILE}", manifest_sha256)
    files = manifest_files(data)
    present = {info.key[len(prefix) + 1 :]: info.size for info in artifacts.list(prefix)}
    for name, (sha, size) in sorted(files.items()):
        if name not in present:
            raise VerificationFailed(f"file {name!r} listed in the manifest is missing")
        if present[name] != size:
            raise VerificationFailed(
                f"file {name!r} is {present[name]} bytes, the manifest says {size}"
            )
        digest, head = _sha256(artifacts, f"{prefix}/{name}")
        if digest != sha:
            raise VerificationFailed(
                f"file {name!r} does not match the SHA-256 in the manifest (changed or corrupt)"
            )
        check_content(name, head)
    unlisted = sorted(set(present) - set(files) - {MANIFEST_FILE})
    if unlisted:
        raise VerificationFailed(
            f"file {unlisted[0]!r} is in the package but not in its manifest; a package holds "
            "exactly the files its manifest lists"
        )
