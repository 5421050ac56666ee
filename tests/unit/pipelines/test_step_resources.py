"""A step's `resources` in the spec: the shapes accepted, memory in bytes or with its unit,
and what a bad shape is refused with (the step's path, what was expected)."""

from __future__ import annotations

import textwrap

import pytest

from loopml.core.pipelines import SpecError
from loopml.core.step_resources import NodeShape, StepResources, format_bytes, parse_bytes
from loopml.pipelines.parse import parse_spec
from loopml.pipelines.spec import spec_hash


def spec(resources: str) -> str:
    return textwrap.dedent(
        f"""\
        name: p
        steps:
          - name: train
            python: "m:f"
            resources: {resources}
        """
    )


def problems(text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(SpecError) as caught:
        parse_spec(text)
    return [(p["line"], p["path"], p["message"]) for p in caught.value.details["problems"]]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (4096, 4096),
        ("4GiB", 4 * 1024**3),
        ("512MiB", 512 * 1024**2),
        ("2GB", 2_000_000_000),
        ("1.5 gib", 3 * 1024**3 // 2),
        ("100B", 100),
        ("100", 100),
    ],
)
def test_memory_is_bytes_or_text_with_a_unit(text: object, size: int) -> None:
    assert parse_bytes(text) == size


@pytest.mark.parametrize("bad", ["lots", "4 GiBs", "-1GiB", 0, True, 1.5, "2PiB"])
def test_memory_that_is_not_a_size_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match=r"memory|expected bytes"):
        parse_bytes(bad)


def test_a_full_shape_is_parsed() -> None:
    parsed = parse_spec(spec("{cpus: 2, memory: 4GiB, gpus: 1}"))
    asked = parsed.spec.steps[0].resources
    assert asked == StepResources(cpus=2, memory=4 * 1024**3, gpus=1)
    assert asked.describe() == "2 CPUs, 4 GiB, 1 GPU"
    assert asked.weight == 2


def test_a_partial_shape_counts_one_cpu() -> None:
    asked = parse_spec(spec("{gpus: 2}")).spec.steps[0].resources
    assert asked is not None
    assert (asked.cpus, asked.memory, asked.gpus, asked.weight) == (None, None, 2, 1.0)
    assert parse_spec(spec("{cpus: 0.5}")).spec.steps[0].resources.weight == 0.5  # type: ignore[union-attr]


def test_bad_shapes_are_refused_with_the_step_path_and_the_expectation() -> None:
    found = problems(spec("{cpus: 0, memory: lots, gpus: -1, gpu: 2}"))
    assert found == [
        (5, "steps.train.resources.cpus", "Input should be greater than 0"),
        (5, "steps.train.resources.gpu", "Extra inputs are not permitted"),
        (5, "steps.train.resources.gpus", "Input should be greater than or equal to 0"),
        (
            5,
            "steps.train.resources.memory",
            "expected bytes as a whole number, or text such as '512MiB', '4GiB' or '2GB', "
            "got 'lots'",
        ),
    ]
    [(_, path, message)] = problems(spec("{gpus: 1.5}"))
    assert path == "steps.train.resources.gpus"
    assert "integer" in message
    [(_, path, _)] = problems(spec("4"))
    assert path == "steps.train.resources"


def test_a_spec_without_resources_keeps_its_identity() -> None:
    without = parse_spec(spec("null"))
    assert without.spec.steps[0].resources is None
    data = without.spec.model_dump(mode="json", by_alias=True)
    assert "resources" in data["steps"][0]
    # The hash leaves out an unset `resources`, as versions applied before it existed.
    text = spec("null").replace("    resources: null\n", "")
    assert spec_hash(parse_spec(text).spec) == without.spec_hash
    assert parse_spec(spec("{cpus: 1}")).spec_hash != without.spec_hash


def test_a_node_fits_a_step_when_it_has_all_it_asks_for() -> None:
    node = NodeShape(cpus=16, memory=int(62.7 * 1024**3), gpus=0)
    assert node.describe() == "16 CPUs, 62.7 GiB, 0 GPUs"
    assert node.fits(StepResources(cpus=16, memory="62GiB"))
    assert not node.fits(StepResources(gpus=1))
    assert not node.fits(StepResources(cpus=17))
    assert format_bytes(512 * 1024**2) == "512 MiB"
