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

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import itemgetter
from typing import Annotated, Any, Literal, NamedTuple, TypeVar, cast, get_args

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
T = TypeVar("T")


class RequestInput(NamedTuple):
    """One input tensor."""

    name: str
    shape: list[int]
    datatype: Datatype
    data: list[Any]
    parameters: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class InputTensors:
    """A request's input tensors column-wise, in the request's order: one entry per tensor
    in each field, and ``shape``, the shape every tensor has (``None`` where they differ).
    A client that follows the model's metadata sends one tensor per column (30 for 30
    columns), and the readers take them in a few C calls over these tuples rather than an
    object per tensor. Indexing and iterating give ``RequestInput``s."""

    names: tuple[str, ...]
    shapes: tuple[list[int], ...]
    datatypes: tuple[Datatype, ...]
    data: tuple[list[Any], ...]
    parameters: tuple[dict[str, Any] | None, ...]
    shape: tuple[int, ...] | None

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> RequestInput:
        return RequestInput(
            self.names[index],
            self.shapes[index],
            self.datatypes[index],
            self.data[index],
            self.parameters[index],
        )

    def __iter__(self) -> Iterator[RequestInput]:
        return map(
            RequestInput, self.names, self.shapes, self.datatypes, self.data, self.parameters
        )

    def take(self, order: Sequence[int]) -> InputTensors:
        """The tensors at the positions ``order`` gives, in that order."""

        def pick(values: tuple[T, ...]) -> tuple[T, ...]:
            return tuple(map(values.__getitem__, order))

        return InputTensors(
            pick(self.names),
            pick(self.shapes),
            pick(self.datatypes),
            pick(self.data),
            pick(self.parameters),
            self.shape,
        )


class RequestOutput(NamedTuple):
    """One output the client asks for."""

    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(NamedTuple):
    """The body of ``POST /v2/models/{name}[/versions/{v}]/infer``."""

    inputs: InputTensors
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: tuple[RequestOutput, ...] | None = None


def parse_request(body: object) -> InferenceRequest:
    """Validate a decoded JSON body as an inference request.

    A well-formed body is checked by hand in a few C calls per field (``_quick``); anything
    else goes through the pydantic models below, which accept what the protocol allows and
    word every refusal, so both ways accept and refuse the same bodies.

    Raises:
        ValidationError: the body is not an inference request; the message names the fields.
    """
    quick = _quick(body)
    return quick if quick is not None else _validated(body)


def _validated(body: object) -> InferenceRequest:
    try:
        model = _RequestModel.model_validate(body)
    except pydantic.ValidationError as exc:
        errors = [
            {"loc": [str(p) for p in err["loc"]], "msg": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False, include_input=False)[:20]
        ]
        summary = "; ".join(f"{'.'.join(e['loc']) or 'body'}: {e['msg']}" for e in errors[:3])
        raise ValidationError(
            f"invalid inference request: {summary}", details={"errors": errors}
        ) from None
    tensors = model.inputs
    shapes = tuple(t.shape for t in tensors)
    distinct = set(map(tuple, shapes))
    return InferenceRequest(
        inputs=InputTensors(
            tuple(t.name for t in tensors),
            shapes,
            tuple(t.datatype for t in tensors),
            tuple(t.data for t in tensors),
            tuple(t.parameters for t in tensors),
            distinct.pop() if len(distinct) == 1 else None,
        ),
        id=model.id,
        parameters=model.parameters,
        outputs=(
            None
            if model.outputs is None
            else tuple(RequestOutput(o.name, o.parameters) for o in model.outputs)
        ),
    )


_TENSOR = itemgetter("name", "shape", "datatype", "data")
_DATATYPES = frozenset(get_args(Datatype))
_NONE = type(None)


def _quick(body: object) -> InferenceRequest | None:
    """``body`` as a request where every field is exactly what ``_RequestModel`` takes
    (types, lengths, bounds), checked over all tensors at once; ``None`` for anything else."""
    if type(body) is not dict:
        return None
    request_id = body.get("id")
    parameters = body.get("parameters")
    if not (request_id is None or (type(request_id) is str and len(request_id) <= 256)):
        return None
    outputs = _quick_outputs(body.get("outputs"))
    inputs = _quick_inputs(body.get("inputs"))
    if inputs is None or outputs is False or not _parameters(parameters):
        return None
    return InferenceRequest(inputs, request_id, parameters, outputs)


def _quick_inputs(tensors: object) -> InputTensors | None:
    if type(tensors) is not list or not 1 <= len(tensors) <= 4096:
        return None
    if len(tensors) == 1:
        return _quick_tensor(tensors[0])
    if set(map(type, tensors)) != {dict}:
        return None
    try:
        names, shapes, datatypes, data = zip(*map(_TENSOR, tensors), strict=True)
    except KeyError:
        return None
    if set(map(len, tensors)) == {4}:  # the four fields above, no parameters
        tensor_parameters: tuple[Any, ...] = (None,) * len(tensors)
    else:
        tensor_parameters = tuple(map(dict.get, tensors, repeat("parameters")))
    distinct = _shapes(shapes)
    if not (
        distinct
        and _names(names)
        and _datatypes(datatypes)
        and set(map(type, data)) == {list}
        and _all_parameters(tensor_parameters)
    ):
        return None
    shape = next(iter(distinct)) if len(distinct) == 1 else None
    return InputTensors(names, shapes, datatypes, data, tensor_parameters, shape)


def _quick_tensor(tensor: object) -> InputTensors | None:
    """One tensor (the ``[N, C]`` matrix a Triton or KServe client sends), checked as
    ``_quick_inputs`` checks many, without its sets' fixed cost."""
    if type(tensor) is not dict:
        return None
    try:
        name, shape, datatype, data = _TENSOR(tensor)
    except KeyError:
        return None
    parameters = tensor.get("parameters")
    if not (
        type(name) is str
        and 1 <= len(name) <= 256
        and type(shape) is list
        and 1 <= len(shape) <= 8
        and set(map(type, shape)) == {int}
        and min(shape) >= 0
        and type(datatype) is str
        and datatype in _DATATYPES
        and type(data) is list
        and _parameters(parameters)
    ):
        return None
    datatypes = (cast(Datatype, datatype),)  # one of _DATATYPES, checked above
    return InputTensors((name,), (shape,), datatypes, (data,), (parameters,), tuple(shape))


def _names(names: Sequence[Any]) -> bool:
    if set(map(type, names)) != {str}:
        return False
    lengths = set(map(len, names))
    return min(lengths) >= 1 and max(lengths) <= 256


def _shapes(shapes: Sequence[Any]) -> set[tuple[int, ...]]:
    """The distinct shapes (usually one), each checked; empty where one is not a shape."""
    if set(map(type, shapes)) != {list}:
        return set()
    try:
        distinct: set[tuple[int, ...]] = set(map(tuple, shapes))
    except TypeError:  # an unhashable dimension (pydantic names it)
        return set()
    for shape in distinct:
        if not 1 <= len(shape) <= 8 or set(map(type, shape)) != {int} or min(shape) < 0:
            return set()
    return distinct


def _datatypes(datatypes: Sequence[Any]) -> bool:
    try:
        return set(datatypes) <= _DATATYPES
    except TypeError:  # an unhashable value (pydantic names it)
        return False


def _all_parameters(values: Sequence[object]) -> bool:
    try:
        if set(values) == {None}:  # the common case: no tensor has parameters
            return True
    except TypeError:  # a dict among them
        pass
    return all(map(_parameters, values))


def _parameters(value: object) -> bool:
    return value is None or (type(value) is dict and all(type(k) is str for k in value))


def _quick_outputs(outputs: object) -> tuple[RequestOutput, ...] | Literal[False] | None:
    if outputs is None:
        return None
    if type(outputs) is not list or len(outputs) > 16:
        return False
    found: list[RequestOutput] = []
    for output in outputs:
        if type(output) is not dict:
            return False
        name, parameters = output.get("name"), output.get("parameters")
        if type(name) is not str or not 1 <= len(name) <= 256 or not _parameters(parameters):
            return False
        found.append(RequestOutput(name, parameters))
    return tuple(found)


class _V2Model(BaseModel):
    # Unknown fields are ignored, as the protocol's extensions add their own.
    model_config = ConfigDict(extra="ignore", frozen=True)


class _InputModel(_V2Model):
    name: str = Field(min_length=1, max_length=256)
    shape: list[Annotated[int, Field(ge=0, strict=True)]] = Field(min_length=1, max_length=8)
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any]


class _OutputModel(_V2Model):
    name: str = Field(min_length=1, max_length=256)
    parameters: dict[str, Any] | None = None


class _RequestModel(_V2Model):
    """The protocol's request, as pydantic reads it: the reference ``_quick`` keeps to, and
    the words of every refusal."""

    id: str | None = Field(default=None, max_length=256)
    parameters: dict[str, Any] | None = None
    inputs: list[_InputModel] = Field(min_length=1, max_length=4096)
    outputs: list[_OutputModel] | None = Field(default=None, max_length=16)


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
