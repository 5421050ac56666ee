"""The checks ``parse_spec`` runs after the models validate: built-ins and their parameters,
references and their types, ``needs``, and the DAG (no cycles), each problem with its line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loopml.pipelines._yaml import Located, Path
from loopml.pipelines.catalog import BUILTINS, Builtin, available
from loopml.pipelines.refs import BadReference, ValueRef, find, walk
from loopml.pipelines.spec import (
    ENTRYPOINT_PATTERN,
    PipelineSpec,
    Problem,
    StepSpec,
    display_path,
    valid_name,
)
from loopml.pipelines.types import SCALAR_TYPES, ValueType, accepts, check_value

_NAME_RULE = "a lowercase letter, then up to 62 lowercase letters, digits or '_'"


@dataclass
class _Checker:
    spec: PipelineSpec
    located: Located
    problems: list[Problem]
    index: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, dict[str, ValueType]] = field(default_factory=dict)
    edges: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, path: Path, message: str) -> None:
        line = self.located.line_of(path)
        self.problems.append(Problem(line, display_path(path, self.located.data), message))

    # ------------------------------------------------------------------ declarations

    def declare(self) -> None:
        for name, spec in self.spec.inputs.items():
            if not valid_name(name):
                self.add(("inputs", name), f"invalid input name {name!r}: {_NAME_RULE}")
            if spec.default is not None and (why := check_value(spec.type, spec.default)):
                self.add(("inputs", name, "default"), f"default of input {name!r}: {why}")
        for i, step in enumerate(self.spec.steps):
            if not valid_name(step.name):
                self.add(("steps", i, "name"), f"invalid step name {step.name!r}: {_NAME_RULE}")
            if step.name in self.index:
                self.add(("steps", i, "name"), f"step name {step.name!r} is used twice")
                continue
            self.index[step.name] = i
            self.edges[step.name] = {}
            self.outputs[step.name] = self._declared_outputs(i, step)

    def _declared_outputs(self, i: int, step: StepSpec) -> dict[str, ValueType]:
        if step.uses is not None and step.python is not None:
            self.add(("steps", i, "python"), "give either `uses` or `python`, not both")
        if step.uses is None and step.python is None:
            self.add(
                ("steps", i),
                "a step needs `uses: <built-in>` or `python: module:function`; built-ins: "
                + ", ".join(available()),
            )
            return {}
        if step.python is not None:
            if not ENTRYPOINT_PATTERN.fullmatch(step.python):
                self.add(
                    ("steps", i, "python"), "expected `module:function`, such as mypkg.steps:clean"
                )
            for name in step.outputs:
                if not valid_name(name):
                    self.add(("steps", i, "outputs", name), f"invalid output name: {_NAME_RULE}")
            return dict(step.outputs)
        builtin = BUILTINS.get(step.uses or "")
        if builtin is None:
            self.add(
                ("steps", i, "uses"),
                f"unknown built-in {step.uses!r}: expected one of {', '.join(available())}, "
                "or `python: module:function`",
            )
            return {}
        if not builtin.available:
            self.add(
                ("steps", i, "uses"),
                f"the built-in {builtin.name!r} is not available yet: {builtin.unavailable_reason}",
            )
            return {}
        if step.outputs:
            outs = ", ".join(builtin.outputs)
            self.add(
                ("steps", i, "outputs"),
                f"outputs are declared only for python steps; {builtin.name!r} outputs {outs}",
            )
        return dict(builtin.outputs)

    # ------------------------------------------------------------------ references

    def ref_type(self, ref: ValueRef, path: Path, step: str | None) -> ValueType | None:
        if ref.step is None:
            found = self.spec.inputs.get(ref.name)
            if found is None:
                known = ", ".join(self.spec.inputs) or "none"
                self.add(path, f"unknown input {ref.name!r} in ${{{{ {ref} }}}} (inputs: {known})")
                return None
            return found.type
        if ref.step not in self.index:
            self.add(path, f"unknown step {ref.step!r} in ${{{{ {ref} }}}}")
            return None
        if ref.step == step:
            self.add(path, f"step {step!r} references its own output in ${{{{ {ref} }}}}")
            return None
        outs = self.outputs.get(ref.step, {})
        if ref.name not in outs:
            known = ", ".join(outs) or "none declared"
            self.add(
                path,
                f"step {ref.step!r} has no output {ref.name!r} (its outputs: {known})",
            )
            return None
        return outs[ref.name]

    def check_value_refs(
        self, step: str | None, path: Path, value: Any, expected: ValueType | None
    ) -> None:
        """References inside ``value`` (at ``path``), typed against ``expected`` when the
        value is a whole parameter of a built-in."""
        for sub, text in walk(value, path):
            try:
                refs, whole = find(text)
            except BadReference as exc:
                self.add(sub, str(exc))
                continue
            for ref in refs:
                kind = self.ref_type(ref, sub, step)
                if step is not None and ref.step is not None and ref.step in self.index:
                    self.edges[step].setdefault(ref.step, self.located.line_of(sub))
                if kind is None:
                    continue
                self._check_type(ref, kind, sub, whole, expected if sub == path else None)

    def _check_type(
        self, ref: ValueRef, kind: ValueType, path: Path, whole: bool, expected: ValueType | None
    ) -> None:
        if not whole:
            if kind not in SCALAR_TYPES and kind != ValueType.ANY:
                self.add(path, f"${{{{ {ref} }}}} is {kind}, which cannot be put inside text")
            elif expected is not None and not accepts(expected, ValueType.STRING):
                self.add(
                    path, f"type mismatch: expected {expected}, got text with ${{{{ {ref} }}}}"
                )
            return
        if expected is not None and not accepts(expected, kind):
            self.add(path, f"type mismatch: expected {expected}, but ${{{{ {ref} }}}} is {kind}")

    # ------------------------------------------------------------------ steps

    def check_steps(self) -> None:
        for i, step in enumerate(self.spec.steps):
            if self.index.get(step.name) != i:
                continue
            builtin = BUILTINS.get(step.uses or "") if step.python is None else None
            if builtin is not None and builtin.available:
                self._check_params(i, step, builtin)
            else:
                for key, value in step.with_.items():
                    self.check_value_refs(step.name, ("steps", i, "with", key), value, None)
            if step.if_ is not None:
                self._check_condition(i, step)
            for j, need in enumerate(step.needs):
                if need not in self.index:
                    self.add(("steps", i, "needs", j), f"unknown step {need!r} in needs")
                elif need == step.name:
                    self.add(("steps", i, "needs", j), "a step cannot need itself")
                else:
                    self.edges[step.name].setdefault(
                        need, self.located.line_of(("steps", i, "needs", j))
                    )

    def _check_condition(self, i: int, step: StepSpec) -> None:
        """``if`` is one reference to a boolean (an upstream step's output or an input); the
        step it names becomes one the step needs."""
        path: Path = ("steps", i, "if")
        text = step.if_ or ""
        try:
            refs, whole = find(text)
        except BadReference as exc:
            self.add(path, str(exc))
            return
        if not whole:
            self.add(
                path,
                "a condition is one reference to a boolean, such as "
                "${{ steps.gate.outputs.passed }}",
            )
            return
        ref = refs[0]
        kind = self.ref_type(ref, path, step.name)
        if ref.step is not None and ref.step in self.index and ref.step != step.name:
            self.edges[step.name].setdefault(ref.step, self.located.line_of(path))
        if kind is not None and kind != ValueType.BOOLEAN:
            self.add(path, f"a condition must be a boolean, but ${{{{ {ref} }}}} is {kind}")

    def _check_params(self, i: int, step: StepSpec, builtin: Builtin) -> None:
        base: Path = ("steps", i, "with")
        for key, value in step.with_.items():
            param = builtin.params.get(key)
            if param is None:
                self.add(
                    (*base, key),
                    f"unknown parameter {key!r} of {builtin.name!r}: expected one of "
                    + ", ".join(builtin.params),
                )
                continue
            self.check_value_refs(step.name, (*base, key), value, param.type)
            if not any("${{" in text for _, text in walk(value)):
                if value is None and not param.required:
                    continue
                if why := check_value(param.type, value):
                    self.add((*base, key), f"{key}: {why}")
        missing = [k for k, p in builtin.params.items() if p.required and k not in step.with_]
        if builtin.required_unless is not None and builtin.required_unless in step.with_:
            missing = []
        if missing:
            where: Path = base if "with" in self._step_keys(i) else ("steps", i)
            self.add(where, f"{builtin.name!r} needs {', '.join(missing)} in `with`")

    def _step_keys(self, i: int) -> set[str]:
        steps = self.located.data.get("steps", [])
        return set(steps[i]) if isinstance(steps[i], dict) else set()

    def check_outputs(self) -> None:
        for name, value in self.spec.outputs.items():
            path: Path = ("outputs", name)
            if not valid_name(name):
                self.add(path, f"invalid output name {name!r}: {_NAME_RULE}")
            try:
                refs, whole = find(value)
            except BadReference as exc:
                self.add(path, str(exc))
                continue
            if not whole:
                self.add(
                    path,
                    "a pipeline output is one reference, such as ${{ steps.train.outputs.run }}",
                )
                continue
            self.ref_type(refs[0], path, None)

    # ------------------------------------------------------------------ the DAG

    def cycles(self) -> None:
        color: dict[str, int] = {}
        stack: list[str] = []

        def visit(node: str) -> bool:
            color[node] = 1
            stack.append(node)
            for dep in self.edges.get(node, {}):
                if color.get(dep) == 1:
                    cycle = [*stack[stack.index(dep) :], dep]
                    line = self.edges[node][dep]
                    self.problems.append(
                        Problem(
                            line,
                            f"steps.{node}",
                            "cycle: " + " -> ".join(cycle) + " (each needs the next)",
                        )
                    )
                    return True
                if color.get(dep) is None and visit(dep):
                    return True
            stack.pop()
            color[node] = 2
            return False

        for name in self.index:
            if color.get(name) is None and visit(name):
                return

    def order(self) -> list[str]:
        done: list[str] = []
        placed: set[str] = set()
        remaining = list(self.index)
        while remaining:
            ready = [n for n in remaining if all(d in placed for d in self.edges.get(n, {}))]
            if not ready:
                return done + remaining
            for name in ready:
                done.append(name)
                placed.add(name)
            remaining = [n for n in remaining if n not in placed]
        return done


def check_spec(
    spec: PipelineSpec, located: Located, problems: list[Problem]
) -> tuple[list[str], dict[str, list[str]]]:
    """Append every problem of ``spec`` to ``problems``; return the step order and each
    step's upstream steps (meaningful only when no problem was found)."""
    checker = _Checker(spec, located, problems)
    checker.declare()
    checks: list[Callable[[], None]] = [checker.check_steps, checker.check_outputs]
    for check in checks:
        check()
    checker.cycles()
    needs = {name: sorted(deps) for name, deps in checker.edges.items()}
    return checker.order(), needs
