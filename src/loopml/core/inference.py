"""The bodies of the two inference protocols, read one way by every reader: the model server
before it predicts (``loopml.serve.server``) and the prediction log when it turns what a
gateway saw into rows (``loopml.predictions._rows``). A body is decoded (JSON) by its reader
and parsed here: a V2 infer request by ``parse_request``, its answer's tensors by
``output_tensors``, a ``/predict`` request by ``parse_predict``.

The model server adds what needs the model (tensors against the signature, in
``serve.server.v2``); the log reads only bodies a replica has already accepted, so the same
parser cannot refuse them there.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from loopml.core.errors import ValidationError

Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]
PREDICT = "predict"
PREDICT_PROBA = "predict_proba"


class _V2Model(BaseModel):
    # Unknown fields are ignored, as the protocol's extensions add their own.
    model_config = ConfigDict(extra="ignore", frozen=True)


class RequestInput(_V2Model):
    """One input tensor."""

    name: str = Field(min_length=1, max_length=256)
    shape: list[Annotated[int, Field(ge=0, strict=True)]] = Field(min_length=1, max_length=8)
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any]


class RequestOutput(_V2Model):
    """One output the client asks for."""

    name: str = Field(min_length=1, max_length=256)
    parameters: dict[str, Any] | None = None


class InferenceRequest(_V2Model):
    """The body of ``POST /v2/models/{name}[/versions/{v}]/infer``."""

    id: str | None = Field(default=None, max_length=256)
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1, max_length=4096)
    outputs: list[RequestOutput] | None = Field(default=None, max_length=16)


def parse_request(body: object) -> InferenceRequest:
    """Validate a decoded JSON body as an inference request.

    Raises:
        ValidationError: the body is not an inference request; the message names the fields.
    """
    try:
        return InferenceRequest.model_validate(body)
    except pydantic.ValidationError as exc:
        errors = [
            {"loc": [str(p) for p in err["loc"]], "msg": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False, include_input=False)[:20]
        ]
        summary = "; ".join(f"{'.'.join(e['loc']) or 'body'}: {e['msg']}" for e in errors[:3])
        raise ValidationError(
            f"invalid inference request: {summary}", details={"errors": errors}
        ) from None


def flat_tensor(tensor: RequestInput) -> list[Any]:
    """A tensor's data flat (row-major), from flat or nested data.

    Raises:
        ValidationError: nested arrays and values mixed.
    """
    data = tensor.data
    while data and type(data[0]) is list:
        if set(map(type, data)) != {list}:
            raise ValidationError(
                f"input tensor {tensor.name!r}: data mixes nested arrays and values; send it "
                "flat or nested to the same depth",
                details={"tensor": tensor.name},
            )
        data = list(chain.from_iterable(data))
    return data


def output_tensors(answer: object) -> dict[str, list[Any]]:
    """A V2 infer answer's output tensors, by name, each one's data flat (row-major)."""
    outputs = answer.get("outputs") if isinstance(answer, dict) else None
    found: dict[str, list[Any]] = {}
    for tensor in outputs if isinstance(outputs, list) else []:
        if isinstance(tensor, dict) and isinstance(tensor.get("data"), list):
            data = tensor["data"]
            while data and type(data[0]) is list:
                data = list(chain.from_iterable(data))
            found[str(tensor.get("name"))] = data
    return found


PREDICT_KEYS = frozenset({"instances", "inference_id", "extra"})
_EXTRA = ("forbid", "ignore")


@dataclass(frozen=True, slots=True)
class PredictRequest:
    """The body of ``POST /predict``.

    Attributes:
        instances: the rows, as given (their columns are the model's to check).
        ignore_extra: columns the model does not take are dropped (``"extra": "ignore"``),
            rather than refused with their names (``"forbid"``, the default).
        inference_id: the id the body names, if any (not yet checked for safety).
    """

    instances: Any
    ignore_extra: bool
    inference_id: object


def parse_predict(body: object) -> PredictRequest:
    """Read a decoded JSON body as a ``/predict`` request.

    Raises:
        ValidationError: it is not one; the message says what is.
    """
    if not isinstance(body, dict) or "instances" not in body:
        raise ValidationError(
            'the body must be a JSON object {"instances": [{"column": value, ...}, ...]}',
            details={"field": "instances"},
        )
    unknown = sorted(set(body).difference(PREDICT_KEYS))
    if unknown:
        raise ValidationError(
            f"unknown field(s) {unknown[:10]} in the body; it takes {sorted(PREDICT_KEYS)}",
            details={"unknown": unknown[:10]},
        )
    extra = body.get("extra", "forbid")
    if extra not in _EXTRA:
        raise ValidationError(
            f'"extra" must be "forbid" (the default: unknown columns are refused) or "ignore" '
            f"(they are dropped), got {str(extra)[:50]!r}",
            details={"field": "extra"},
        )
    return PredictRequest(body["instances"], extra == "ignore", body.get("inference_id"))
