"""The ``validate`` built-in on a table without a contract: it passes with nothing checked
(``contract: none``) by default, and fails the step when ``require_contract`` is true; once
the table has a contract, that contract is checked (the cache does not reuse the unchecked
result)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from loopml.core.pipelines import PipelineRun, RunStatus, StepStatus
from loopml.data import lake
from loopml.data.validation import set_contract
from loopml.pipelines import service
from loopml.settings import Settings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore

from .conftest import running_worker, step_of, wait_run

SPEC = """\
name: check
inputs:
  require: {type: boolean, default: false}
steps:
  - name: validate
    uses: validate
    with: {table: people, require_contract: "${{ inputs.require }}"}
"""


@pytest.fixture
def people(store: MetadataStore, artifacts: ArtifactStore) -> MetadataStore:
    """The table ``people`` (one negative age), without a contract, and the pipeline."""
    rows = pa.table({"name": ["ann", "bob", "cy"], "age": [31, -2, 40]})
    lake.ingest_arrow(store, artifacts, "default", "people", rows, actor="t")
    service.apply_spec(store, "default", SPEC, actor="t")
    return store


def _run(store: MetadataStore, **inputs: bool) -> PipelineRun:
    return wait_run(store, service.start_run(store, "default", "check", inputs, actor="t").id)


def test_without_a_contract_it_passes_then_a_contract_set_later_is_checked(
    people: MetadataStore, artifacts: ArtifactStore, settings: Settings
) -> None:
    store = people
    with running_worker(store, artifacts, settings):
        lenient = _run(store)
        # With a contract the rows are checked: the unchecked result is not reused.
        set_contract(store, "default", "people", {"columns": {"age": {"min": 0}}}, actor="t")
        checked = _run(store)
    assert lenient.status == RunStatus.SUCCEEDED, lenient.error
    assert step_of(lenient, "validate").outputs == {
        "table": "people@0",
        "report": {"rows_checked": 0.0, "rows_failed": 0.0, "rules_failed": 0.0},
        "passed": True,
        "contract": "none",
    }
    _assert_fails_its_contract(checked)


def test_require_contract_fails_a_table_without_one(
    people: MetadataStore, artifacts: ArtifactStore, settings: Settings
) -> None:
    with running_worker(people, artifacts, settings):
        strict = _run(people, require=True)
    assert strict.status == RunStatus.FAILED
    refused = step_of(strict, "validate")
    assert refused.status == StepStatus.FAILED
    assert refused.error is not None
    assert "'people' has no validation contract" in refused.error.message
    assert "require_contract is true" in refused.error.message


def test_the_tables_own_contract_is_checked(
    people: MetadataStore, artifacts: ArtifactStore, settings: Settings
) -> None:
    set_contract(people, "default", "people", {"columns": {"age": {"min": 0}}}, actor="t")
    with running_worker(people, artifacts, settings):
        _assert_fails_its_contract(_run(people, require=True))


def _assert_fails_its_contract(run: PipelineRun) -> None:
    assert run.status == RunStatus.FAILED
    failed = step_of(run, "validate")
    assert failed.status == StepStatus.FAILED
    assert failed.error is not None
    assert "fails its contract" in failed.error.message
    assert "1 of 3 rows" in failed.error.message
