"""Text model packages: an ONNX transformer plus its tokenizer, served as one string column.

A text package holds ``model.onnx`` (a transformer encoder with its head: probabilities for
a classifier, the value for a regressor), ``tokenizer.json`` (a ``tokenizers`` tokenizer)
and ``text.json`` (``TextConfig``: the text column, the maximum length, the graph's input
names), each hashed in the manifest like every package file, with ``flavor`` set to
``transformers``.

Loading one gives a ``TextSession``: an object with ONNX Runtime's ``get_inputs``/``run``
interface whose one input is the text column as a ``[N, 1]`` string tensor, and whose outputs
follow the packaging scheme (``[labels, probabilities]`` or ``[values]``). The model server,
the batch scorer and the evaluation feed it exactly as they feed a tabular ONNX model with
one string column, so text is tokenized in the server, a whole batch in one
``encode_batch`` call (Rust, parallel), and nothing downstream knows the model reads text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from loopml.core.errors import ValidationError
from loopml.core.extras import require
from loopml.packaging._manifest import TEXT_CONFIG_FILE, TOKENIZER_FILE, Signature

# A longer input is cut to this many tokens; BERT-class position tables stop at 512.
MAX_LENGTH_LIMIT = 512


class TextConfig(BaseModel):
    """How a text package turns strings into the graph's inputs (``text.json``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text_column: str = Field(min_length=1, description="The signature's one string column.")
    max_length: int = Field(ge=2, le=MAX_LENGTH_LIMIT, description="Tokens kept per text.")
    input_names: list[str] = Field(
        min_length=1, max_length=3, description="The graph's inputs: ids, then attention mask."
    )
    pad_id: int = Field(ge=0, description="The padding token's id.")
    pad_token: str = Field(description="The padding token.")
    kind: Literal["finetuned", "embeddings"] = Field(
        default="finetuned", description="A fine-tuned encoder, or embeddings + a head."
    )

    def to_bytes(self) -> bytes:
        """Canonical bytes (sorted keys), so the same config hashes the same."""
        return (json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=2) + "\n").encode()


@dataclass(frozen=True)
class _Input:
    name: str


def load_tokenizer(data: bytes, config: TextConfig) -> Any:
    """A ``tokenizers.Tokenizer`` from ``tokenizer.json`` bytes, truncating and padding as
    ``config`` says (whatever the file itself asked for).

    Raises:
        ConfigurationError: ``tokenizers`` is not installed (the ``serve-text`` extra).
    """
    (tokenizers,) = require(("tokenizers",), extra="serve-text", purpose="loading a text model")
    try:
        tokenizer = tokenizers.Tokenizer.from_str(data.decode())
    except Exception as exc:  # the Rust side raises plain Exception for a malformed file
        raise ValidationError(f"{TOKENIZER_FILE} is not a valid tokenizer: {exc}") from exc
    tokenizer.enable_truncation(max_length=config.max_length)
    tokenizer.enable_padding(pad_id=config.pad_id, pad_token=config.pad_token)
    return tokenizer


def encode(tokenizer: Any, texts: Sequence[str], names: Sequence[str]) -> dict[str, np.ndarray]:
    """The graph's inputs for ``texts``: ids and attention mask, padded to the longest."""
    encodings = tokenizer.encode_batch(list(texts))
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    feed = {names[0]: ids}
    if len(names) > 1:
        feed[names[1]] = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    return feed


class TextSession:
    """A text model behind ONNX Runtime's session interface (see the module docstring).

    Thread-safe as ONNX Runtime's session and ``tokenizers`` are.
    """

    def __init__(self, session: Any, tokenizer: Any, config: TextConfig, signature: Signature):
        self.session = session
        self.tokenizer = tokenizer
        self.config = config
        self._task = signature.task
        self._classes = np.asarray(signature.classes) if signature.classes is not None else None
        self._inputs = [_Input(config.text_column)]

    def get_inputs(self) -> list[_Input]:
        """One input, the text column, fed as a ``[N, 1]`` string tensor."""
        return self._inputs

    def run(self, output_names: Any, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Tokenize the batch and run the graph: ``[labels, probabilities]`` or ``[values]``."""
        del output_names
        texts = [v if isinstance(v, str) else "" for v in feed[self._inputs[0].name].ravel()]
        if not texts:
            return self._empty()
        # The last output: a fine-tuned graph has one; an embeddings graph's head gives
        # labels and then probabilities (or the one value).
        out = self.session.run(None, encode(self.tokenizer, texts, self.config.input_names))[-1]
        values = np.asarray(out, dtype=np.float32)
        if self._task == "regression":
            return [values.reshape(-1, 1)]
        assert self._classes is not None
        return [self._classes[np.argmax(values, axis=1)], values]

    def _empty(self) -> list[np.ndarray]:
        if self._task == "regression":
            return [np.zeros((0, 1), dtype=np.float32)]
        assert self._classes is not None
        return [self._classes[:0], np.zeros((0, len(self._classes)), dtype=np.float32)]


def text_session(
    blobs: Mapping[str, bytes], signature: Signature, *, single_thread: bool = False
) -> TextSession:
    """A ``TextSession`` from a verified package's bytes.

    Raises:
        ValidationError: ``text.json`` or the tokenizer is malformed, or the config does not
            match the signature.
        UnsafeArtifactError: the ONNX graph fails ``check_onnx``.
    """
    from loopml.packaging.onnx_export import onnx_session

    for name in (TOKENIZER_FILE, TEXT_CONFIG_FILE, "model.onnx"):
        if name not in blobs:
            raise ValidationError(f"a text package needs {name}, which this one lacks")
    try:
        config = TextConfig.model_validate_json(blobs[TEXT_CONFIG_FILE])
    except ValueError as exc:
        raise ValidationError(f"{TEXT_CONFIG_FILE} is not a valid text config: {exc}") from exc
    columns = [c.name for c in signature.inputs]
    if columns != [config.text_column] or signature.inputs[0].type != "string":
        raise ValidationError(
            f"a text package's signature takes the one string column {config.text_column!r}, "
            f"this one takes {columns}"
        )
    tokenizer = load_tokenizer(blobs[TOKENIZER_FILE], config)
    session = onnx_session(blobs["model.onnx"], single_thread=single_thread)
    return TextSession(session, tokenizer, config, signature)
