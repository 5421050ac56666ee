"""Lineage both ways: version -> run -> inputs, and input -> runs -> versions.

Table versions behind a dataset snapshot come with the data layer (a later issue). The hook
for them is ``expanders``: a mapping from an input kind (``"dataset"``) to a function that
fills ``upstream`` for all inputs of that kind at once (one query, never one per input).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from sqlalchemy.orm import Session

from loopml.core.refs import ModelRef
from loopml.core.registry import InputLineage, LineageInput, VersionLineage
from loopml.store import MetadataStore, lineage, model_versions

InputExpander = Callable[[Session, Sequence[LineageInput]], list[LineageInput]]
"""Given every input of one kind, return them (same order) with ``upstream`` filled."""


def _expand(
    session: Session, inputs: list[LineageInput], expanders: Mapping[str, InputExpander]
) -> list[LineageInput]:
    result = list(inputs)
    for kind, expand in expanders.items():
        positions = [i for i, item in enumerate(inputs) if item.kind == kind]
        if not positions:
            continue
        expanded = expand(session, [inputs[i] for i in positions])
        for position, item in zip(positions, expanded, strict=True):
            result[position] = item
    return result


def version_lineage(
    store: MetadataStore,
    project: str,
    ref: ModelRef | str,
    *,
    expanders: Mapping[str, InputExpander] | None = None,
) -> VersionLineage:
    """Where a version came from: its run and what that run consumed.

    Args:
        ref: the version (``churn/3``, ``churn@champion``, ``churn``).
        expanders: per input kind, how to find what the input was built from (the hook for
            table versions); none yet.

    Raises:
        NotFoundError: the version is missing (the message says which part).
    """
    with store.session() as session:
        version = model_versions.resolve(session, project, ref)
        run, inputs = lineage.run_and_inputs(session, version)
        inputs = _expand(session, inputs, expanders or {})
    return VersionLineage(version=version, run=run, inputs=inputs)


def input_lineage(store: MetadataStore, project: str, kind: str, ref: str) -> InputLineage:
    """What was built from an input: the runs that consumed it and their model versions.

    Args:
        kind: the input's kind, such as ``"dataset"``.
        ref: its reference, such as a dataset snapshot id.
    """
    with store.session() as session:
        return lineage.input_lineage(session, project, kind, ref)
