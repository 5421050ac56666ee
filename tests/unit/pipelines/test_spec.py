"""The workflow spec: what `loopml pipelines apply` refuses, each problem with its line."""

from __future__ import annotations

import textwrap

import pytest

from loopml.core.pipelines import SpecError
from loopml.pipelines.parse import parse_spec

GOOD = """\
name: churn-retrain
description: Snapshot, train, register.
inputs:
  table: {type: table, default: churn}
  budget: {type: number, default: 3}
outputs:
  model: ${{ steps.register.outputs.model }}
steps:
  - name: register
    uses: register
    with: {run: "${{ steps.train.outputs.run }}", model: churn}
  - name: snapshot
    uses: snapshot
    with:
      dataset: churn_snap
      from: ${{ inputs.table }}
      split: {eval_fraction: 0.2, stratify: y}
  - name: train
    uses: train_automl
    with:
      dataset: ${{ steps.snapshot.outputs.dataset }}
      target: y
      task: classification
      budget_s: ${{ inputs.budget }}
    retries: {count: 2, backoff: 1.5}
    timeout: 10m
"""


def problems(text: str) -> list[tuple[int, str]]:
    with pytest.raises(SpecError) as caught:
        parse_spec(textwrap.dedent(text))
    return [(p["line"], p["message"]) for p in caught.value.details["problems"]]


def test_the_dag_comes_from_references_not_list_order() -> None:
    parsed = parse_spec(GOOD)
    assert parsed.order == ["snapshot", "train", "register"]
    assert parsed.needs == {"snapshot": [], "train": ["snapshot"], "register": ["train"]}
    train = parsed.spec.step("train")
    assert train.retries.count == 2
    assert train.retries.delay_s(1) == 1.5
    assert train.retries.delay_s(2) == 3.0
    assert train.timeout == 600.0


def test_the_version_identity_ignores_comments_and_formatting() -> None:
    reformatted = GOOD.replace("description: Snapshot", "# a comment\ndescription: Snapshot")
    reformatted = reformatted.replace("{run: ", "{ run: ")
    assert parse_spec(reformatted).spec_hash == parse_spec(GOOD).spec_hash
    changed = GOOD.replace("budget_s: ${{ inputs.budget }}", "budget_s: 5")
    assert parse_spec(changed).spec_hash != parse_spec(GOOD).spec_hash


def test_a_cycle_is_refused_with_its_path_and_line() -> None:
    found = problems(
        """\
        name: loop
        steps:
          - name: a
            python: mod:fn
            outputs: {x: integer}
            with: {v: "${{ steps.c.outputs.x }}"}
          - name: b
            python: mod:fn
            outputs: {x: integer}
            with: {v: "${{ steps.a.outputs.x }}"}
          - name: c
            python: mod:fn
            outputs: {x: integer}
            needs: [b]
        """
    )
    assert len(found) == 1
    line, message = found[0]
    assert "cycle: a -> c -> b -> a" in message
    assert line == 10  # where b references a, closing the loop


def test_unknown_references_are_refused_with_their_lines() -> None:
    found = problems(
        """\
        name: bad-refs
        inputs: {table: table}
        steps:
          - name: snap
            uses: snapshot
            with:
              dataset: d
              from: ${{ inputs.tabel }}
          - name: train
            uses: train_automl
            with:
              dataset: ${{ steps.snapp.outputs.dataset }}
              target: y
              task: classification
          - name: reg
            uses: register
            with:
              run: ${{ steps.train.outputs.runn }}
              model: m
          - name: odd
            python: mod:fn
            with: {x: "${{ step.train.outputs.run }}"}
            needs: [ghost]
        """
    )
    assert [line for line, _ in found] == [8, 12, 18, 22, 23]
    assert "unknown input 'tabel'" in found[0][1]
    assert "(inputs: table)" in found[0][1]
    assert "unknown step 'snapp'" in found[1][1]
    assert "has no output 'runn' (its outputs: run, metrics)" in found[2][1]
    assert "unknown reference" in found[3][1]
    assert "unknown step 'ghost' in needs" in found[4][1]


def test_type_mismatches_are_refused_with_their_lines() -> None:
    found = problems(
        """\
        name: types
        inputs:
          budget: {type: string, default: fast}
        steps:
          - name: snap
            uses: snapshot
            with: {dataset: d, from: t}
          - name: train
            uses: train_automl
            with:
              dataset: ${{ steps.snap.outputs.rows }}
              target: y
              task: classification
              budget_s: ${{ inputs.budget }}
              max_iter: many
          - name: reg
            uses: register
            with:
              run: run-${{ steps.train.outputs.metrics }}
              model: m
        """
    )
    assert [line for line, _ in found] == [11, 14, 15, 19]
    assert "expected dataset, but ${{ steps.snap.outputs.rows }} is integer" in found[0][1]
    assert "expected number, but ${{ inputs.budget }} is string" in found[1][1]
    assert "expected an integer" in found[2][1]
    assert "metrics, which cannot be put inside text" in found[3][1]


def test_built_ins_and_their_parameters_are_checked() -> None:
    found = problems(
        """\
        name: params
        steps:
          - name: a
            uses: snapshot
            with: {dataset: d, from: t, fraction: 0.2}
          - name: b
            uses: train_automl
            with: {target: y}
          - name: c
            uses: deploy
          - name: d
            uses: fly
          - name: e
            python: "os:system"
            uses: register
          - name: f
            uses: register
            with: {run: abc, model: m}
        """
    )
    lines = [line for line, _ in found]
    assert lines == [5, 8, 9, 12, 14, 18]
    assert "unknown parameter 'fraction' of 'snapshot'" in found[0][1]
    assert "'train_automl' needs dataset, task in `with`" in found[1][1]
    assert "'deploy' needs model, deployment in `with`" in found[2][1]
    assert "unknown built-in 'fly'" in found[3][1]
    assert "either `uses` or `python`" in found[4][1]
    assert "expected a training run id" in found[5][1]


def test_serving_built_ins_check_their_parameters() -> None:
    found = problems(
        "name: p\nsteps:\n  - {name: score, uses: batch_predict}\n"
        "  - {name: ship, uses: deploy, with: {model: x, deployment: d, canary_percent: much}}\n"
    )
    assert found == [
        (3, "'batch_predict' needs input, output in `with`"),
        (4, "canary_percent: expected an integer, got 'much'"),
    ]


def test_a_key_yaml_11_reads_as_a_boolean_stays_the_word_written() -> None:
    # `on` is batch_predict's parameter; YAML 1.1 would read the key as True ("keys must be
    # text"). Values keep YAML's reading.
    spec = parse_spec(
        "name: p\nsteps:\n  - name: score\n    uses: batch_predict\n"
        "    with: {input: t, output: o, model: m/1, on: ray}\n"
    )
    (step,) = spec.spec.steps
    assert step.with_["on"] == "ray"
    flagged = parse_spec("name: p\nsteps:\n  - {name: s, python: 'm:f', with: {flag: yes}}\n")
    (flag,) = flagged.spec.steps
    assert flag.with_["flag"] is True


def test_field_errors_name_their_line() -> None:
    found = problems(
        """\
        name: fields
        steps:
          - name: a
            python: m:f
            retries: {count: 99}
            timeout: soon
            colour: blue
        """
    )
    assert [line for line, _ in found] == [5, 6, 7]
    assert "less than or equal to 20" in found[0][1]
    assert "duration" in found[1][1]
    assert "Extra inputs are not permitted" in found[2][1]


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("name: x\nsteps: [\n", 3, "not valid YAML"),
        ("name: x\nname: y\nsteps: []\n", 2, "duplicate key"),
        ('a: !!python/object/apply:os.system ["touch /tmp/CANARY"]\n', 1, "not valid YAML"),
        ("a: &a [1, 2]\nb: *a\n", 2, "anchors and aliases"),
        ("- just\n- a list\n", 1, "expected a YAML mapping"),
        ("name: x\nsteps: " + "[" * 40 + "]" * 40 + "\n", 2, "nested more than"),
        ("", 1, "the spec is empty"),
        ("name: x\nsteps:\n  - \x07\n", 3, "control characters are not allowed"),
        ("name: x\nsteps: [{name: a, python: m:f, with: {b: !!binary gIGC}}]\n", 2, "bytes"),
        ("name: x\nsteps: [{name: a, python: m:f, with: {n: .nan}}]\n", 2, "finite"),
    ],
)
def test_bad_yaml_is_refused_with_a_line(text: str, line: int, expected: str) -> None:
    found = problems(text)
    assert found[0][0] == line
    assert expected in found[0][1]


def test_a_billion_laughs_is_refused_quickly() -> None:
    rows = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for name, prev in zip("bcdefgh", "abcdefg", strict=True):
        rows.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    found = problems("\n".join(rows) + "\n")
    assert "anchors and aliases" in found[0][1]


def test_pipeline_outputs_must_be_one_reference() -> None:
    found = problems(
        """\
        name: outs
        outputs:
          a: ${{ steps.s.outputs.rows }}
          b: rows=${{ steps.s.outputs.rows }}
          c: ${{ steps.s.outputs.nope }}
        steps:
          - {name: s, uses: snapshot, with: {dataset: d, from: t}}
        """
    )
    assert [line for line, _ in found] == [4, 5]


def test_interpolation_into_sql_is_allowed() -> None:
    parsed = parse_spec(
        textwrap.dedent(
            """\
            name: sql
            inputs: {table: table, min_age: {type: integer, default: 30}}
            steps:
              - name: snap
                uses: snapshot
                with:
                  dataset: d
                  from: SELECT * FROM ${{ inputs.table }} WHERE age > ${{ inputs.min_age }}
            """
        )
    )
    assert parsed.spec.inputs["table"].required
    assert not parsed.spec.inputs["min_age"].required


def test_the_example_pipelines_are_valid() -> None:
    from pathlib import Path

    examples = sorted((Path(__file__).parents[3] / "pipelines").rglob("*.yaml"))
    assert examples
    for path in examples:
        parsed = parse_spec(path.read_text())
        assert parsed.spec.name == path.stem, path


def test_the_packaged_loops_are_valid_and_the_deploy_waits_for_the_gate() -> None:
    from loopml.core.errors import NotFoundError
    from loopml.pipelines import loops

    assert loops.names() == ["retrain", "retrain-labels", "train-code"]
    for name in loops.names():
        parsed = parse_spec(loops.text(name))
        assert parsed.spec.name == name
        assert parsed.order[-2:] == ["gate", "deploy"]
        assert parsed.spec.step("deploy").if_ == "${{ steps.gate.outputs.passed }}"
        # The gate asks for a stated margin over the champion: a tie does not deploy.
        assert parsed.spec.step("gate").with_["min_delta"] == "${{ inputs.min_delta }}"
        assert parsed.spec.inputs["min_delta"].default == 0.005
        # The canary's live-quality policy is the loop's to set.
        deploy = parsed.spec.step("deploy").with_
        assert deploy["min_labels"] == "${{ inputs.min_labels }}"
        assert deploy["max_quality_drop"] == "${{ inputs.max_quality_drop }}"
        assert parsed.spec.inputs["min_labels"].default == 50
        assert parsed.spec.inputs["max_quality_drop"].default == 0.05
    code = parse_spec(loops.text("train-code")).spec
    assert code.inputs["code"].type == "codeset"
    assert code.step("train").with_ == {"codeset": "${{ inputs.code }}"}
    with pytest.raises(NotFoundError, match="expected one of retrain, retrain-labels, train-code"):
        loops.text("nope")
