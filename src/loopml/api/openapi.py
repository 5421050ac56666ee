"""The OpenAPI document, with what every operation repeats written once.

Every router documents the same error answers (``ERROR_RESPONSES``: 400, 401, 403, 409, 415,
429, 503, 507, ...), and FastAPI writes each inline in every operation: 1,700 copies, 0.3 MB
of the 0.7 MB document the API reference (``/docs``) downloads and reads before it shows
anything. Each error answer is written once under ``components/responses`` and referred to
(``$ref``) where an operation's answer is that one; an operation that documents its own
text for a status keeps it inline. The parameters many operations take alike (``project``,
a deployment's ``name``, ``limit``) are shared the same way, under ``components/parameters``.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI


def _error_answers(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every operation's 4xx and 5xx answers, as (status, the answers' mapping)."""
    found = []
    for operation in _operations(doc):
        answers = operation.get("responses", {})
        for status, answer in answers.items():
            if str(status).startswith(("4", "5")) and "$ref" not in answer:
                found.append((str(status), answers))
    return found


def share_error_responses(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with each status's most common 4xx or 5xx answer written once under
    ``components/responses`` (as ``Error<status>``) and referred to wherever an operation
    gives that answer; changed in place."""
    counts: Counter[tuple[str, str]] = Counter()
    for status, answers in _error_answers(doc):
        counts[status, json.dumps(answers[status], sort_keys=True)] += 1
    common: dict[str, str] = {}
    for (status, text), count in counts.most_common():
        if count >= 2:  # an answer one operation gives stays with it
            common.setdefault(status, text)
    shared: dict[str, Any] = {}
    for status, answers in _error_answers(doc):
        if json.dumps(answers[status], sort_keys=True) == common.get(status):
            shared[f"Error{status}"] = answers[status]
            answers[status] = {"$ref": f"#/components/responses/Error{status}"}
    if shared:
        doc.setdefault("components", {}).setdefault("responses", {}).update(shared)
    return doc


def _referred(parameter: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    name = names.get(json.dumps(parameter, sort_keys=True))
    return parameter if name is None else {"$ref": f"#/components/parameters/{name}"}


def _operations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        operation
        for item in doc.get("paths", {}).values()
        for operation in item.values()
        if isinstance(operation, dict)
    ]


def _shared_names(counts: Counter[str]) -> tuple[dict[str, str], dict[str, Any]]:
    """For each parameter (as JSON) taken more than once, its name under
    ``components/parameters``; and the parameters by those names."""
    names: dict[str, str] = {}
    shared: dict[str, Any] = {}
    for text, count in counts.most_common():
        if count < 2:
            break
        parameter = json.loads(text)
        base = re.sub(r"[^A-Za-z0-9_-]", "_", f"{parameter['in']}_{parameter['name']}")
        variants = sum(1 for n in shared if n == base or n.startswith(base + "."))
        name = base if not variants else f"{base}.{variants + 1}"
        names[text], shared[name] = name, parameter
    return names, shared


def share_parameters(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with each parameter that several operations take alike (``project``,
    ``name``, ``limit``...) written once under ``components/parameters`` and referred to;
    changed in place. Variants of one name are numbered (``path_name``, ``path_name.2``)."""
    operations = _operations(doc)
    counts: Counter[str] = Counter(
        json.dumps(p, sort_keys=True)
        for operation in operations
        for p in operation.get("parameters", [])
        if "$ref" not in p
    )
    names, shared = _shared_names(counts)
    for operation in operations:
        if "parameters" in operation:
            operation["parameters"] = [_referred(p, names) for p in operation["parameters"]]
    if shared:
        doc.setdefault("components", {}).setdefault("parameters", {}).update(shared)
    return doc


def _inlined(node: Any, components: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inlined(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref", "")
    for kind in ("responses", "parameters"):
        prefix = f"#/components/{kind}/"
        if isinstance(ref, str) and ref.startswith(prefix):
            return copy.deepcopy(components[kind][ref.removeprefix(prefix)])
    return {key: _inlined(value, components) for key, value in node.items()}


def inline_shared(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``doc`` with every shared answer and parameter written back where it is
    referred to, and ``components/responses`` and ``components/parameters`` gone: FastAPI's
    own document (``tests/unit/api/test_openapi.py``; ``bench/docs_page.py`` times both)."""
    flat = copy.deepcopy(doc)
    components = flat.get("components", {})
    flat["paths"] = _inlined(flat.get("paths", {}), components)
    components.pop("responses", None)
    components.pop("parameters", None)
    return flat


def install(app: FastAPI) -> None:
    """Have ``app`` serve its document with the error answers and the common parameters
    shared (made once, on first use, as FastAPI's own)."""
    made: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = share_parameters(share_error_responses(made()))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
