"""Record ingest as the rest of loopml sees it: idempotency keys and the answer to a post.

A post of records may carry an ``Idempotency-Key``; a retry with the same key and the same
body lands once and gets the first answer again. These types describe that, without I/O.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from loopml.core.errors import ValidationError

IDEMPOTENCY_KEY_PATTERN = re.compile(r"^[!-~]{1,200}$")
"""1 to 200 visible ASCII characters (no spaces): a UUID, a hash, an event id."""

JSON_MEDIA_TYPE = "application/json"
NDJSON_MEDIA_TYPES = ("application/x-ndjson", "application/jsonl")
"""The Content-Types of a post of records: a JSON array of objects, or one object per line."""

RESERVED = -1
"""The ``version`` of a key whose post is being committed and has not landed yet."""


def validate_idempotency_key(key: str) -> str:
    """Return ``key`` if it is a valid idempotency key, else raise ``ValidationError``."""
    if not isinstance(key, str) or not IDEMPOTENCY_KEY_PATTERN.fullmatch(key):
        shown = repr(key)[:80]
        raise ValidationError(
            f"invalid Idempotency-Key {shown}: expected 1 to 200 visible ASCII characters "
            "(letters, digits, punctuation; no spaces), such as a UUID",
            details={"field": "Idempotency-Key", "pattern": IDEMPOTENCY_KEY_PATTERN.pattern},
        )
    return key


class IngestKey(BaseModel):
    """An idempotency key of a table and the post it stands for.

    Attributes:
        key: the client's key.
        body_sha256: SHA-256 of the post's body, to tell a retry from a different post.
        rows: records in the post.
        version: the table version that holds them; ``RESERVED`` (-1) while the post is
            being committed.
    """

    model_config = ConfigDict(frozen=True)

    key: str
    body_sha256: str
    rows: int
    version: int = RESERVED

    @property
    def landed(self) -> bool:
        """Whether the post's records are in the table."""
        return self.version != RESERVED


class RecordsCommit(BaseModel):
    """The answer to a post of records: where they landed."""

    model_config = ConfigDict(frozen=True)

    table: str = Field(description="The table the records landed in.")
    version: int = Field(description="The table version that holds this post's records.")
    rows: int = Field(description="Records in this post.")
    batch_rows: int | None = Field(
        default=None,
        description="Rows of the commit that carried this post (posts arriving together share "
        "one commit); null on a replay.",
    )
    replayed: bool = Field(
        default=False,
        description="True when a post with the same Idempotency-Key and body had already "
        "landed: nothing was appended, and this repeats its result.",
    )
