"""The API reference at ``/docs``, drawn on the server from the app's own OpenAPI document.

Swagger UI reads the whole document in the browser before it shows anything: its 1.4 MB
bundle and the document took 2.4 s on this 2-core machine before the first tag appeared
(``bench/docs_page.py``). This page is the same document as HTML: every tag, every
operation with its parameters, body and answers, and every schema, tags and operations
opening as ``<details>``, with no script. Each operation links to Swagger UI
(``/docs/try``) for trying the call.

The view is built once per app (the document does not change while the app runs) from the
document as the app serves it, references followed here (the portal does not import the
API's modules).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

METHODS = ("get", "post", "put", "patch", "delete", "head", "options", "trace")
"""The operations of a path item, in the order they are listed."""
_SHARED = "#/components/"


@dataclass(frozen=True)
class TypePart:
    """A piece of a type as written: a schema's name links to its anchor."""

    text: str
    anchor: str = ""


@dataclass(frozen=True)
class Field:
    """A parameter or a schema's property."""

    name: str
    type: list[TypePart]
    required: bool
    text: str
    where: str = ""
    """``path``, ``query``, ``header`` or ``cookie`` for a parameter; empty for a property."""
    facts: str = ""
    """Its default and bounds, as one line."""


@dataclass(frozen=True)
class ResponseDoc:
    status: str
    text: str
    type: list[TypePart]


@dataclass(frozen=True)
class Operation:
    id: str
    method: str
    path: str
    summary: str
    text: str
    deprecated: bool
    fields: list[Field]
    body: list[TypePart]
    body_media: str
    answers: list[ResponseDoc]
    errors: list[str]
    """The statuses answered with one of the shared error answers (listed once on the page)."""
    try_href: str


@dataclass(frozen=True)
class Tag:
    name: str
    operations: list[Operation]


@dataclass(frozen=True)
class Schema:
    name: str
    text: str
    type: list[TypePart]
    fields: list[Field]


@dataclass(frozen=True)
class ApiReference:
    title: str
    version: str
    text: str
    tags: list[Tag]
    errors: list[ResponseDoc]
    schemas: list[Schema]

    @property
    def operations(self) -> int:
        return sum(len(tag.operations) for tag in self.tags)


def schema_anchor(name: str) -> str:
    return f"schema-{name}"


_CODE = re.compile(r"`([^`\n]+)`")


def inline_code(text: str) -> Markup:
    """``text`` escaped, its Markdown code spans (`` `x` ``) as ``<code>``."""
    pieces = _CODE.split(text)  # plain, code, plain, code, ..., plain
    return Markup("").join(
        Markup("<code>{}</code>").format(piece) if odd else escape(piece)
        for odd, piece in ((i % 2 == 1, piece) for i, piece in enumerate(pieces))
    )


def _followed(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """``node``, or what its ``$ref`` to ``components/parameters`` or ``responses`` names
    (schemas stay references: they are shown by name, with a link)."""
    ref = node.get("$ref", "")
    if not ref.startswith((_SHARED + "parameters/", _SHARED + "responses/")):
        return node
    kind, _, name = ref.removeprefix(_SHARED).partition("/")
    found: dict[str, Any] = doc["components"][kind][name]
    return found


def _joined(options: list[dict[str, Any]]) -> list[TypePart]:
    parts: list[TypePart] = []
    for option in options:
        if parts:
            parts.append(TypePart(" | "))
        parts += type_parts(option)
    return parts


def type_parts(schema: dict[str, Any]) -> list[TypePart]:
    """A JSON schema as a short type: ``Deployment``, ``array of string``, ``integer |
    null``, ``"a" | "b"``, ``object of number``."""
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return [TypePart(name, schema_anchor(name))]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return _joined(schema[key])
    if len(schema.get("allOf", [])) == 1:
        return type_parts(schema["allOf"][0])
    if "const" in schema:
        return [TypePart(json.dumps(schema["const"]))]
    if "enum" in schema:
        return [TypePart(" | ".join(json.dumps(value) for value in schema["enum"]))]
    return _typed(schema)


def _typed(schema: dict[str, Any]) -> list[TypePart]:
    """``type_parts`` of a schema by its ``type``."""
    kind = schema.get("type")
    if kind == "array":
        return [TypePart("array of "), *type_parts(schema.get("items", {}))]
    extra = schema.get("additionalProperties")
    if kind == "object" and isinstance(extra, dict) and extra:
        return [TypePart("object of "), *type_parts(extra)]
    if isinstance(kind, list):
        return [TypePart(" | ".join(str(k) for k in kind))]
    if kind:
        shown = f"{kind} ({schema['format']})" if "format" in schema else str(kind)
        return [TypePart(shown)]
    return [TypePart("any")]


_BOUNDS = (
    ("minimum", ">= {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "<= {}"),
    ("exclusiveMaximum", "< {}"),
    ("minLength", "at least {} characters"),
    ("maxLength", "at most {} characters"),
    ("minItems", "at least {} items"),
    ("maxItems", "at most {} items"),
    ("pattern", "matches {}"),
)


def facts(schema: dict[str, Any]) -> str:
    """A schema's default and bounds as one line (``default 100 · >= 1 · <= 1000``)."""
    said = [f"default {json.dumps(schema['default'])}"] if "default" in schema else []
    said += [text.format(schema[key]) for key, text in _BOUNDS if key in schema]
    return " · ".join(said)


def _parameter(doc: dict[str, Any], node: dict[str, Any]) -> Field:
    found = _followed(doc, node)
    schema = found.get("schema", {})
    return Field(
        name=found["name"],
        type=type_parts(schema),
        required=bool(found.get("required")),
        text=found.get("description") or schema.get("description", ""),
        where=found.get("in", ""),
        facts=facts(schema),
    )


def _content(node: dict[str, Any]) -> tuple[str, list[TypePart]]:
    """The first media type of a body or an answer and its schema's type."""
    for media, held in node.get("content", {}).items():
        schema = held.get("schema")
        return media, type_parts(schema) if schema else []
    return "", []


def _answers(doc: dict[str, Any], operation: dict[str, Any]) -> tuple[list[ResponseDoc], list[str]]:
    answers: list[ResponseDoc] = []
    errors: list[str] = []
    for status, node in operation.get("responses", {}).items():
        if str(node.get("$ref", "")).startswith(_SHARED + "responses/"):
            errors.append(str(status))
            continue
        answers.append(ResponseDoc(str(status), node.get("description", ""), _content(node)[1]))
    return answers, errors


def _operation(doc: dict[str, Any], path: str, method: str, found: dict[str, Any]) -> Operation:
    body_media, body = _content(found.get("requestBody", {}))
    answers, errors = _answers(doc, found)
    tag = (found.get("tags") or ["default"])[0]
    key = found.get("operationId") or f"{method}-{path}"
    return Operation(
        id=key,
        method=method,
        path=path,
        summary=found.get("summary", ""),
        text=found.get("description", ""),
        deprecated=bool(found.get("deprecated")),
        fields=[_parameter(doc, node) for node in found.get("parameters", [])],
        body=body,
        body_media=body_media,
        answers=answers,
        errors=errors,
        try_href=f"/docs/try#/{tag}/{key}",
    )


def _schema(name: str, schema: dict[str, Any]) -> Schema:
    required = set(schema.get("required", []))
    fields = [
        Field(
            name=key,
            type=type_parts(prop),
            required=key in required,
            text=prop.get("description", ""),
            facts=facts(prop),
        )
        for key, prop in schema.get("properties", {}).items()
    ]
    shown = [] if fields else type_parts({k: v for k, v in schema.items() if k != "title"})
    return Schema(name, schema.get("description", ""), shown, fields)


def _shared_errors(doc: dict[str, Any]) -> list[ResponseDoc]:
    shared = doc.get("components", {}).get("responses", {})
    return [
        ResponseDoc(name.removeprefix("Error"), node.get("description", ""), _content(node)[1])
        for name, node in sorted(shared.items())
    ]


def build(doc: dict[str, Any]) -> ApiReference:
    """The page's view of an OpenAPI document: its operations grouped by their first tag
    (tags in the document's order, else by name), its shared error answers and schemas."""
    grouped: dict[str, list[Operation]] = {}
    for path, item in doc.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                operation = _operation(doc, path, method, item[method])
                tag = (item[method].get("tags") or ["default"])[0]
                grouped.setdefault(tag, []).append(operation)
    declared = [t["name"] for t in doc.get("tags", []) if t["name"] in grouped]
    order = declared + sorted(set(grouped) - set(declared))
    info = doc.get("info", {})
    schemas = doc.get("components", {}).get("schemas", {})
    return ApiReference(
        title=info.get("title", "API"),
        version=info.get("version", ""),
        text=info.get("description", ""),
        tags=[Tag(name, grouped[name]) for name in order],
        errors=_shared_errors(doc),
        schemas=[_schema(name, schemas[name]) for name in sorted(schemas)],
    )
