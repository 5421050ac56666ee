"""The V2 infer request's parser: its hand check (``_quick``) accepts exactly what the
protocol's pydantic model accepts, reads it the same, and leaves every refusal to the model's
words."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopml.core import inference
from loopml.core.errors import ValidationError
from loopml.core.inference import InferenceRequest, parse_request

# Values a field may hold instead of a good one: wrong types, bounds, nesting, unhashables.
_ODD: list[Any] = [
    None, True, False, 0, -1, 3, 2**63, 1.5, "", "x", "x" * 257, "FP32", "FLOAT",
    [], [1], [0, 1], [-1], [True], [1.0], [[1]], [1] * 9, ["1"], (1,), {}, {"a": 1}, {1: 2},
]  # fmt: skip
_MISSING = object()


def _mostly(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` 14 times in 15, else an odd value or none at all."""
    odd = st.sampled_from([*_ODD, _MISSING])
    return st.sampled_from([True] * 14 + [False]).flatmap(lambda ok: good if ok else odd)


def _field(good: Any) -> st.SearchStrategy[Any]:
    return _mostly(st.just(good))


@st.composite
def _tensor(draw: st.DrawFn) -> Any:
    if not draw(st.sampled_from([True] * 29 + [False])):
        return draw(st.sampled_from(_ODD))  # not an object at all
    rows = draw(st.integers(0, 3))
    fields = {
        "name": draw(_field(draw(st.sampled_from(["a", "b", "input-0", "y" * 256])))),
        "shape": draw(_field(draw(st.sampled_from([[rows], [rows, 1], [rows, 2], [0]])))),
        "datatype": draw(_field(draw(st.sampled_from(["FP32", "FP64", "INT64", "BYTES"])))),
        "data": draw(_field([1.5] * rows)),
        "parameters": draw(st.sampled_from([_MISSING] * 6 + [None, {}, {"k": 1}, {1: 2}, [], "p"])),
        "extra": draw(st.sampled_from([_MISSING, 1])),  # unknown fields are ignored
    }
    return {k: v for k, v in fields.items() if v is not _MISSING}


@st.composite
def _body(draw: st.DrawFn) -> Any:
    outputs = st.lists(
        st.one_of(
            st.fixed_dictionaries({"name": _field("predict")}),
            st.fixed_dictionaries({"name": st.just("p"), "parameters": _field({"k": 1})}),
            st.sampled_from(_ODD),
        ),
        max_size=3,
    )
    fields = {
        "inputs": draw(_mostly(st.lists(_tensor(), min_size=1, max_size=4))),
        "id": draw(_field("42")),
        "parameters": draw(_field({"content_type": "pd"})),
        "outputs": draw(_mostly(st.just(_MISSING) | outputs)),
    }
    body = {k: v for k, v in fields.items() if k == "inputs" or v is not _MISSING}
    return draw(_field(body))


def _by_pydantic(body: Any) -> InferenceRequest | None:
    try:
        return inference._validated(body)
    except ValidationError:
        return None


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(_body())
def test_the_hand_check_accepts_and_reads_what_the_protocol_model_does(body: Any) -> None:
    quick = inference._quick(body)
    reference = _by_pydantic(body)

    if quick is not None:  # what it takes, the model takes, and reads alike
        assert quick == reference
    if reference is None:  # what the model refuses goes to the model, for its words
        assert quick is None


def test_a_body_of_well_formed_column_tensors_is_read_by_the_hand_check() -> None:
    tensors = [
        {"name": f"c{i}", "shape": [2], "datatype": "FP32", "data": [1.0, None]} for i in range(30)
    ]
    body = {"id": "7", "parameters": {"a": 1}, "inputs": tensors, "outputs": [{"name": "p"}]}

    quick = inference._quick(body)

    assert quick is not None
    assert quick == inference._validated(body)
    assert quick.inputs.names == tuple(f"c{i}" for i in range(30))
    assert quick.inputs.shape == (2,)  # the shape every tensor has
    assert [t.name for t in quick.inputs][:2] == ["c0", "c1"]
    assert quick.inputs[3].data == [1.0, None]
    assert quick.inputs.take([2, 0]).names == ("c2", "c0")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"inputs": [{"name": "a", "shape": [1], "datatype": ["FP32"], "data": [1]}]},
         r"inputs\.0\.datatype: Input should be 'BOOL'"),
        ({"inputs": [{"name": "a", "shape": [[1]], "datatype": "FP32", "data": [1]}]},
         r"inputs\.0\.shape\.0: Input should be a valid integer"),
        ({"inputs": [{"name": "a", "shape": [True], "datatype": "FP32", "data": [1]}]},
         r"inputs\.0\.shape\.0: Input should be a valid integer"),
        ({"inputs": [{"name": "a", "shape": [-1], "datatype": "FP32", "data": [1]}]},
         r"inputs\.0\.shape\.0: Input should be greater than or equal to 0"),
        ({"inputs": [{"name": "a" * 257, "shape": [1], "datatype": "FP32", "data": [1]}]},
         r"inputs\.0\.name: String should have at most 256 characters"),
        ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": 1}]},
         r"inputs\.0\.data: Input should be a valid list"),
        ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1],
                      "parameters": [1]}]},
         r"inputs\.0\.parameters: Input should be a valid dictionary"),
        ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}] * 4097},
         r"inputs: List should have at most 4096 items"),
    ],
)  # fmt: skip
def test_refusals_keep_the_protocol_models_words(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_request(change)
