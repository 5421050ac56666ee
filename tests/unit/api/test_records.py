"""Record ingest over HTTP: the real app and the real SDK, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from datetime import datetime
from typing import Any

import httpx
import orjson
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.core.errors import ValidationError
from loopml.platform import create_api_app
from loopml.settings import Settings
from tests.unit.api.conftest import MAX_BODY

URL = "/api/v1/projects/default/tables/events/records"
NDJSON = {"Content-Type": "application/x-ndjson"}


def _ndjson(*records: dict[str, Any]) -> bytes:
    return b"\n".join(orjson.dumps(r) for r in records)


def _table(http: TestClient) -> dict[str, Any]:
    response = http.get("/api/v1/projects/default/tables/events")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_sdk_appends_dicts_and_arrow_tables(client: Client) -> None:
    first = client.tables.append_records(
        "default", "events", [{"id": 1, "at": datetime(2024, 1, 1, 10)}, {"id": 2}]
    )
    assert (first.table, first.version, first.rows, first.batch_rows) == ("events", 0, 2, 2)
    assert not first.replayed
    second = client.tables.append_records("default", "events", pa.table({"id": [3, 4, 5]}))
    assert (second.version, second.rows) == (1, 3)
    assert client.tables.get("default", "events").row_count == 5
    types = {c.name: c.type for c in client.tables.get("default", "events").columns}
    assert types == {"id": "int64", "at": "timestamp[us]"}  # Delta keeps microseconds


def test_a_post_retried_three_times_with_one_key_lands_once(client: Client) -> None:
    records = [{"id": 1}, {"id": 2}]
    answers = [
        client.tables.append_records("default", "events", records, idempotency_key="order-17")
        for _ in range(4)
    ]
    assert [(a.version, a.rows, a.replayed) for a in answers] == [
        (0, 2, False),
        (0, 2, True),
        (0, 2, True),
        (0, 2, True),
    ]
    table = client.tables.get("default", "events")
    assert (table.version, table.row_count) == (0, 2)
    with pytest.raises(ValidationError, match="already used for a different body"):
        client.tables.append_records("default", "events", [{"id": 3}], idempotency_key="order-17")
    assert client.tables.get("default", "events").row_count == 2


def test_concurrent_retries_over_http_land_once(http: TestClient, client: Client) -> None:
    client.tables.append_records("default", "events", [{"id": 0}])
    body = _ndjson({"id": 1}, {"id": 2})
    headers = {**NDJSON, "Idempotency-Key": "same"}
    statuses: list[int] = []

    def post() -> None:
        statuses.append(http.post(URL, content=body, headers=headers).status_code)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 200, 200, 201]
    table = _table(http)
    assert (table["version"], table["row_count"]) == (1, 3)


def test_json_arrays_ndjson_and_jsonl_and_the_replay_answer(http: TestClient) -> None:
    created = http.post(URL, json=[{"id": 1, "name": "a"}])
    assert created.status_code == 201, created.text
    assert created.json() == {
        "table": "events",
        "version": 0,
        "rows": 1,
        "batch_rows": 1,
        "replayed": False,
    }
    headers = {"Content-Type": "application/jsonl", "Idempotency-Key": "k-2"}
    lines = http.post(URL, content=_ndjson({"id": 2}, {"id": 3, "name": "c"}), headers=headers)
    assert lines.status_code == 201, lines.text
    again = http.post(URL, content=_ndjson({"id": 2}, {"id": 3, "name": "c"}), headers=headers)
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == {
        "table": "events",
        "version": 1,
        "rows": 2,
        "batch_rows": None,
        "replayed": True,
    }
    assert "Idempotent-Replayed" not in lines.headers
    assert _table(http)["row_count"] == 3


@pytest.mark.parametrize(
    ("content", "headers", "status", "message"),
    [
        (b"id\n1\n", {"Content-Type": "text/csv"}, 415, "application/x-ndjson"),
        # (A form type without Authorization is refused earlier as cross-site: test_csrf.py.)
        (
            b'{"id": 1}',
            {"Content-Type": "text/plain", "Authorization": "Bearer lm_x"},
            415,
            "one object per line",
        ),
        (b'{"id": 1}\n{"id": 2,}\n', NDJSON, 422, r"record 1 \(line 2\) is not valid"),
        (b'{"id": 1}\n7\n', NDJSON, 422, "record 1 .*not a JSON object"),
        (b'[{"id": 1}, "x"]', {"Content-Type": "application/json"}, 422, "record 1 is a JSON str"),
        (b'{"id": 1}', {"Content-Type": "application/json"}, 422, "expected a JSON array"),
        (b"", NDJSON, 422, "holds no records"),
        (b'{"id": 1}', {**NDJSON, "Idempotency-Key": "a key"}, 422, "invalid Idempotency-Key"),
        (b'{"id": 1}', {**NDJSON, "Idempotency-Key": "k" * 201}, 422, "invalid Idempotency-Key"),
    ],
)
def test_a_bad_post_gets_a_clear_4xx_and_changes_nothing(
    http: TestClient,
    content: bytes,
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    assert http.post(URL, json=[{"id": 0}]).status_code == 201
    response = http.post(URL, content=content, headers=headers)
    assert response.status_code == status, response.text
    assert re.search(message, response.json()["error"]["message"]), response.text
    table = _table(http)
    assert (table["version"], table["row_count"]) == (0, 1)


@pytest.mark.parametrize(
    ("records", "field"),
    [
        ([{"id": 1, "note": "ok"}, {"id": 2, "note": "a\u0000b"}], "note"),
        ([{"id": 1, "where": {"city": "x\u0000"}}], "where.city"),
        ([{"id": 1, "tags": ["a", "\u0000"]}], "tags[1]"),
    ],
)
def test_nul_in_a_text_value_is_422_naming_the_record_and_field(
    http: TestClient, records: list[dict[str, Any]], field: str
) -> None:
    # Accepted into the lake, while docs/api.md refuses NUL in text values (issue 36).
    assert http.post(URL, json=[{"id": 0, "note": "x"}]).status_code == 201
    for content, headers in ((_ndjson(*records), NDJSON), (orjson.dumps(records), {})):
        headers = {"Content-Type": "application/json", **headers}
        response = http.post(URL, content=content, headers=headers)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["details"]["field"] == field
        assert error["details"]["record"] == len(records) - 1
        assert "U+0000" in error["message"]
    table = _table(http)
    assert (table["version"], table["row_count"]) == (0, 1)
    # An escaped backslash before "u0000" is text, not NUL.
    literal = http.post(URL, json=[{"id": 3, "note": "C:\\u0000"}])
    assert literal.status_code == 201, literal.text


def test_a_refused_first_post_creates_no_data(http: TestClient) -> None:
    response = http.post(URL, content=b"a,b\n", headers={"Content-Type": "text/csv"})
    assert response.status_code == 415
    assert http.get("/api/v1/projects/default/tables/events").status_code == 404


def test_a_body_over_the_limit_is_413(http: TestClient) -> None:
    big = _ndjson(*[{"id": i, "pad": "x" * 100} for i in range(MAX_BODY // 100)])
    response = http.post(URL, content=big, headers=NDJSON)
    assert response.status_code == 413


def test_a_post_of_the_wrong_types_is_refused_naming_the_column(client: Client) -> None:
    client.tables.append_records("default", "events", [{"id": 1}])
    with pytest.raises(ValidationError) as caught:
        client.tables.append_records("default", "events", [{"id": "one"}])
    assert caught.value.details["columns"][0]["column"] == "id"
    assert client.tables.get("default", "events").row_count == 1


def test_the_sdk_refuses_what_cannot_be_json_before_sending(client: Client) -> None:
    with pytest.raises(ValidationError, match="record 0 cannot be sent as JSON"):
        client.tables.append_records("default", "events", [{"id": object()}])
    with pytest.raises(ValidationError, match="no records"):
        client.tables.append_records("default", "events", [])
    with pytest.raises(ValidationError, match="invalid Idempotency-Key"):
        client.tables.append_records("default", "events", [{"id": 1}], idempotency_key="a b")


def test_the_sdk_retries_when_the_server_is_unreachable_and_lands_once(
    http: TestClient,
) -> None:
    """The first attempt dies on the way (connection reset); the retry carries the key."""
    calls: list[str] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers["Idempotency-Key"])
        if len(calls) == 1:
            raise httpx.ConnectError("connection reset", request=request)
        answer = http.post(request.url.path, content=request.content, headers=dict(request.headers))
        return httpx.Response(answer.status_code, content=answer.content, headers=answer.headers)

    sdk = Client(
        http=httpx.Client(transport=httpx.MockTransport(flaky), base_url="http://127.0.0.1")
    )
    landed = sdk.tables.append_records("default", "events", [{"id": 1}])
    assert (landed.version, landed.rows) == (0, 1)
    assert len(calls) == 2
    assert calls[0] == calls[1]
    uuid.UUID(calls[0])
    assert _table(http)["row_count"] == 1


def test_shutting_down_answers_the_posts_still_waiting(settings: Settings) -> None:
    """The app's lifespan ends (the server stops) while a post waits for its batch's timer:
    the post is committed and answered before the store closes."""
    lake = settings.lake.model_copy(update={"records_batch_ms": 60_000.0})
    app = create_api_app(settings.model_copy(update={"lake": lake}))

    async def scenario() -> tuple[int, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            async with app.router.lifespan_context(app):
                waiting = asyncio.ensure_future(http.post(URL, json=[{"id": 1}, {"id": 2}]))
                for _ in range(300):
                    if app.state.running.records.waiting:
                        break
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.1)
                assert app.state.running.records.waiting == 1
                assert not waiting.done()  # the timer is a minute away
            answer = await asyncio.wait_for(waiting, timeout=30)
        return answer.status_code, answer.json()["rows"]

    assert asyncio.run(scenario()) == (201, 2)
    with TestClient(create_api_app(settings), base_url="http://127.0.0.1") as http:
        assert _table(http)["row_count"] == 2
