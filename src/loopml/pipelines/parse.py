"""``parse_spec``: a pipeline spec's YAML to a checked ``ParsedPipeline`` (the models in
``spec``, the checks in ``_checks``), every problem found listed with its line."""

from __future__ import annotations

from pydantic import ValidationError as PydanticValidationError

from loopml.core.pipelines import PIPELINE_NAME_PATTERN
from loopml.pipelines._checks import check_spec
from loopml.pipelines.spec import (
    ParsedPipeline,
    PipelineSpec,
    Problem,
    load_spec_yaml,
    pydantic_problems,
    spec_error,
    spec_hash,
)


def parse_spec(text: str) -> ParsedPipeline:
    """Parse and check a pipeline spec.

    Raises:
        SpecError: YAML that does not parse, fields that do not validate, unknown built-ins,
            parameters, steps, inputs or outputs, type mismatches, or a cycle; every problem
            found is listed with its line.
    """
    located = load_spec_yaml(text)
    try:
        spec = PipelineSpec.model_validate(located.data)
    except PydanticValidationError as exc:
        raise spec_error(pydantic_problems(exc, located)) from None
    problems: list[Problem] = []
    if not PIPELINE_NAME_PATTERN.fullmatch(spec.name):
        problems.append(
            Problem(
                located.line_of(("name",)),
                "name",
                f"invalid pipeline name {spec.name!r}: a lowercase letter, then up to 62 "
                "lowercase letters, digits, '_' or '-'",
            )
        )
    order, needs = check_spec(spec, located, problems)
    if problems:
        raise spec_error(problems)
    return ParsedPipeline(spec=spec, text=text, order=order, needs=needs, spec_hash=spec_hash(spec))
