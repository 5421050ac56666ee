"""The API reference at ``/docs``, drawn on the server from the app's OpenAPI document:
every operation, tag and schema of the document is on the page, with no dangling link, and
Swagger UI stays at ``/docs/try`` for trying a call."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

from fastapi.testclient import TestClient

from loopml.portal.reference import TypePart, build, facts, inline_code, type_parts

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _operations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [item[m] for item in doc["paths"].values() for m in METHODS if m in item]


def _details(page: str, anchor: str) -> str:
    """The HTML of the ``<details>`` whose id is ``anchor`` (operations do not nest)."""
    start = page.index(f'<details class="op" id="{anchor}">')
    return page[start : page.index("</details>", start)]


def test_every_operation_tag_and_schema_of_the_document_is_on_the_page(
    anonymous: TestClient,
) -> None:
    doc = anonymous.get("/api/v1/openapi.json").json()
    answer = anonymous.get("/docs")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    page = answer.text
    operations = _operations(doc)
    assert len(operations) > 100
    ids = re.findall(r'<details class="op" id="op-([^"]+)">', page)
    assert sorted(ids) == sorted(o["operationId"] for o in operations)
    tags = {o["tags"][0] for o in operations}
    assert set(re.findall(r'<details class="tag" id="tag-([^"]+)">', page)) == tags
    schemas = set(doc["components"]["schemas"])
    assert set(re.findall(r'<details class="schema" id="schema-([^"]+)">', page)) == schemas
    # Every link within the page lands on something on it.
    anchors = set(re.findall(r'id="([^"]+)"', page))
    dangling = {a for a in re.findall(r'href="#([^"]+)"', page) if a not in anchors}
    assert dangling == set(), dangling
    assert "<script>" not in page  # no inline script: a strict CSP holds
    assert f"{len(operations)} operations in {len(tags)} groups" in page


def test_an_operation_shows_its_parameters_body_answers_and_a_link_to_try_it(
    anonymous: TestClient,
) -> None:
    page = anonymous.get("/docs").text
    shown = _details(page, "op-get_deployment_api_v1_projects__project__deployments__name__get")
    text = unescape(re.sub(r"<[^>]+>", " ", shown))
    assert "/api/v1/projects/{project}/deployments/{name}" in text
    names = re.findall(r"<tr><td><code>([^<]+)</code>", shown)
    assert names == ["project", "name"]
    # The shared parameter's text, followed from components/parameters.
    assert "The project that owns the deployments." in text
    assert "at most 63 characters" in text
    assert '<a href="#schema-Deployment">Deployment</a>' in shown
    assert "404" in text  # the shared error answers, listed by status
    assert 'href="/docs/try#/deployments/get_deployment_api_v1_' in shown

    created = _details(page, "op-create_deployment_api_v1_projects__project__deployments_post")
    assert "Request body" in created
    assert '<code>application/json</code>: <a href="#schema-DeploymentCreate">' in created


def test_swagger_ui_5_still_tries_a_call_at_docs_try(anonymous: TestClient) -> None:
    page = anonymous.get("/docs/try")
    assert page.status_code == 200
    assert '<script src="/static/vendor/swagger-ui-bundle.js"' in page.text
    assert 'data-openapi="/api/v1/openapi.json"' in page.text
    assert "<script>" not in page.text
    assert 'href="/docs/try"' in anonymous.get("/docs").text


def test_a_schema_is_written_as_a_short_type() -> None:
    def shown(schema: dict[str, Any]) -> str:
        return "".join(p.text for p in type_parts(schema))

    assert type_parts({"$ref": "#/components/schemas/Run"}) == [TypePart("Run", "schema-Run")]
    assert shown({"anyOf": [{"type": "integer"}, {"type": "null"}]}) == "integer | null"
    assert shown({"type": "array", "items": {"$ref": "#/x/Tag"}}) == "array of Tag"
    assert shown({"type": "object", "additionalProperties": {"type": "number"}}) == (
        "object of number"
    )
    assert shown({"type": "object"}) == "object"
    assert shown({"enum": ["a", "b"]}) == '"a" | "b"'
    assert shown({"const": "kafka"}) == '"kafka"'
    assert shown({"allOf": [{"$ref": "#/x/Spec"}]}) == "Spec"
    assert shown({"type": "string", "format": "date-time"}) == "string (date-time)"
    assert shown({"type": ["string", "null"]}) == "string | null"
    assert shown({}) == "any"
    assert facts({"default": 100, "minimum": 1, "maximum": 1000}) == "default 100 · >= 1 · <= 1000"
    assert facts({"type": "string"}) == ""


def test_text_is_escaped_and_code_spans_become_code() -> None:
    assert inline_code("refused (`invalid_path`) <b>") == (
        "refused (<code>invalid_path</code>) &lt;b&gt;"
    )


def test_a_document_without_tags_or_components_still_draws() -> None:
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {"/a": {"get": {"responses": {"200": {"description": "ok"}}}}},
    }
    drawn = build(doc)
    [tag] = drawn.tags
    assert tag.name == "default"
    [operation] = tag.operations
    assert (operation.method, operation.path, operation.id) == ("get", "/a", "get-/a")
    assert drawn.schemas == []
    assert drawn.errors == []
