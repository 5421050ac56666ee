"""The one validator every artifact key and lake path goes through.

A key is a relative, slash-separated path such as ``reports/2026/eval.json``. The validator
percent-decodes repeatedly until the text stops changing (so ``%252e%252e%252f`` is seen as
``../``), then refuses anything that could name a place outside the store's root or that reads
differently on another platform: ``..`` and ``.`` segments, absolute paths, drive letters,
backslashes, NUL and control characters, empty segments, URL delimiters (``?``, ``#``, ``;``,
``%``) and invalid UTF-8 such as the overlong ``%c0%ae``. It does no I/O: symlinks are the
storage backend's to refuse, since only it can see them.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from loopml.core.errors import InvalidPathError

MAX_KEY_LENGTH = 1024
MAX_SEGMENT_LENGTH = 255
MAX_DEPTH = 32
_MAX_DECODE_ROUNDS = 4

# Letters, digits and a few punctuation marks that mean nothing to a shell, a URL or a path.
# ASCII only: no look-alike letters, no Unicode normalization forms that name one file two
# ways, and a rule a JSON-schema pattern (KEY_PATTERN) can state exactly.
_SEGMENT = re.compile(r"^[A-Za-z0-9_.\-+=@,~ ()\[\]]+$")
_DRIVE = re.compile(r"^[A-Za-z]:")
# Names the storage backends keep for themselves (temporary files, metadata).
RESERVED_PREFIX = ".loopml"

_PATTERN_BODY = (
    r"(?!/)(?!.*//)(?!(?:.*/)?\.{1,2}(?:/|$))(?!(?:.*/)?\.loopml)"
    r"(?!(?:.*/)? )(?!.* (?:/|$))(?!.*[^/]{256})(?!(?:[^/]*/){32})"
    r"[A-Za-z0-9._\-+=@,~ ()\[\]/]{1,1024}"
)
KEY_PATTERN = rf"^(?!.*/$){_PATTERN_BODY}$"
PREFIX_PATTERN = rf"^$|^{_PATTERN_BODY}$"
"""The key rule (and, with an optional trailing ``/``, the prefix rule) as one regular
expression, for schemas and generated clients: it admits exactly what ``validate_key``
accepts once percent-decoding is done.

``validate_key`` stays the authority (it also percent-decodes first); property tests check
that the two agree both ways.
"""


def _refuse(raw: str, why: str) -> InvalidPathError:
    return InvalidPathError(
        f"Invalid path {raw[:120]!r}: {why}. Expected a relative path of names joined by '/', "
        "such as 'reports/eval.json'",
        details={"reason": why},
    )


def _fully_decode(raw: str) -> str:
    text = raw
    for _ in range(_MAX_DECODE_ROUNDS):
        try:
            decoded = unquote(text, encoding="utf-8", errors="strict")
        except UnicodeDecodeError as exc:
            raise _refuse(raw, "it percent-decodes to invalid UTF-8") from exc
        if decoded == text:
            return text
        text = decoded
    raise _refuse(raw, "it is percent-encoded too many times")


def validate_key(raw: str) -> str:
    """Return the normalized key for ``raw`` or raise ``InvalidPathError`` (HTTP 400).

    Args:
        raw: the key as received, possibly percent-encoded.

    Returns:
        The decoded key; always safe to join under a root.
    """
    if not isinstance(raw, str) or not raw:
        raise _refuse(str(raw), "it is empty")
    if len(raw) > MAX_KEY_LENGTH * 3:
        raise _refuse(raw, f"it is longer than {MAX_KEY_LENGTH} characters")
    key = _fully_decode(raw)
    if len(key) > MAX_KEY_LENGTH:
        raise _refuse(raw, f"it is longer than {MAX_KEY_LENGTH} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise _refuse(raw, "it contains NUL or control characters")
    if "\\" in key:
        raise _refuse(raw, "it contains a backslash")
    if key.startswith("/") or _DRIVE.match(key):
        raise _refuse(raw, "it is an absolute path")
    segments = key.split("/")
    if len(segments) > MAX_DEPTH:
        raise _refuse(raw, f"it is nested deeper than {MAX_DEPTH} levels")
    for segment in segments:
        _check_segment(raw, segment)
    return key


def _check_segment(raw: str, segment: str) -> None:
    if segment in ("", ".", ".."):
        raise _refuse(raw, "it contains an empty, '.' or '..' segment")
    if len(segment) > MAX_SEGMENT_LENGTH:
        raise _refuse(raw, f"a segment is longer than {MAX_SEGMENT_LENGTH} characters")
    if segment.startswith(RESERVED_PREFIX):
        raise _refuse(raw, f"names starting with {RESERVED_PREFIX!r} are reserved")
    if segment != segment.strip():
        raise _refuse(raw, "a segment starts or ends with whitespace")
    if not _SEGMENT.fullmatch(segment):
        raise _refuse(
            raw, "it contains characters other than ASCII letters, digits and ' ._-+=@,~()[]'"
        )


def validate_prefix(raw: str) -> str:
    """Validate a listing prefix: empty, or a key optionally ending with ``/``."""
    if raw in ("", "/"):
        return ""
    trailing = raw.endswith("/")
    key = validate_key(raw[:-1] if trailing else raw)
    return key + "/" if trailing else key


def join_key(*parts: str) -> str:
    """Join already-valid key parts with ``/``."""
    return "/".join(p.strip("/") for p in parts if p)
