"""The OpenAPI document with what operations repeat written once (``loopml.api.openapi``):
the same API as FastAPI's own document once every ``$ref`` is followed, and a valid
OpenAPI 3.1 document, a good deal smaller (issue 55: ``/docs`` read 0.7 MB before it showed
anything)."""

from __future__ import annotations

import json

from fastapi.openapi.utils import get_openapi
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from loopml.api.openapi import inline_shared


def test_the_shared_document_is_fastapis_own_with_references(http: TestClient) -> None:
    served = http.get("/api/v1/openapi.json")
    assert served.status_code == 200, served.text
    shared = served.json()
    app = http.app
    own = get_openapi(
        title=app.title,  # type: ignore[attr-defined]
        version=app.version,  # type: ignore[attr-defined]
        openapi_version=app.openapi_version,  # type: ignore[attr-defined]
        description=app.description,  # type: ignore[attr-defined]
        routes=app.routes,  # type: ignore[attr-defined]
    )
    own = json.loads(json.dumps(own))  # as served: JSON's types
    components = shared["components"]
    assert {"Error401", "Error503"} <= set(components["responses"])
    assert "path_project" in components["parameters"]
    assert inline_shared(shared) == own
    validate(shared)
    # Each shared answer and parameter is referred to more than once, or it is not shared.
    text = json.dumps(shared["paths"])
    for kind in ("responses", "parameters"):
        for name in components[kind]:
            assert text.count(f'"#/components/{kind}/{name}"') >= 2, (kind, name)
    size, before = len(served.content), len(json.dumps(own, separators=(",", ":")))
    assert size < 0.7 * before, (size, before)
