"""What the platform and its gateway processes exchange: the route table (and which
deployments a gateway process may serve itself) and the report, bodies as they were."""

from __future__ import annotations

import pytest

from loopml.core.deployments import FeatureServing
from loopml.serve.gateway.routing import Backend, RevisionRoute, Routes
from loopml.serve.gateway.wire import (
    Answer,
    Report,
    decode_report,
    encode_report,
    parse_route_table,
    routes_document,
    versioned,
)


def _revision(number: int, model: str, weight: int, *urls: str) -> RevisionRoute:
    backends = tuple(Backend(url, number, model, number) for url in urls)
    return RevisionRoute(number, model, number, weight, backends)


def _table(routes: list[Routes], auth_enabled: bool = True) -> bytes:
    document = routes_document(
        routes, auth_enabled=auth_enabled, max_body_bytes=4096, allowed_hosts=["127.0.0.1"]
    )
    return versioned(7, document)


def test_the_table_says_which_deployments_a_gateway_process_serves_itself() -> None:
    primary = _revision(1, "cancer", 90, "http://127.0.0.1:9001", "http://127.0.0.1:9002")
    canary = _revision(2, "cancer", 10, "http://127.0.0.1:9003")
    features = FeatureServing.model_validate({"views": ["customer"]})
    routes = [
        Routes("default", "open", (primary, canary), auth="none"),
        Routes("default", "closed", (primary,), auth="token"),
        Routes("default", "shadowed", (primary,), shadow=canary, auth="none"),
        Routes("default", "asleep", (), asleep=True, auth="none"),
        Routes("default", "featured", (primary,), auth="none", features=features),
        Routes("team", "other", (_revision(1, "iris", 100, "http://127.0.0.1:9004"),)),
    ]
    table = parse_route_table(_table(routes))
    assert table.version == 7
    assert table.max_body_bytes == 4096
    assert table.allowed_hosts == frozenset({"127.0.0.1"})
    lean = {key: (d.lean, d.open) for key, d in table.deployments.items()}
    assert lean == {
        ("default", "open"): (True, True),
        # With authentication on, a token must be allowed by the platform first.
        ("default", "closed"): (True, False),
        ("default", "shadowed"): (False, True),
        ("default", "asleep"): (False, True),
        ("default", "featured"): (False, True),
        ("team", "other"): (True, False),
    }
    opened = table.deployments[("default", "open")]
    assert [b.url for b in opened.routes.revisions[0].backends] == [
        "http://127.0.0.1:9001",
        "http://127.0.0.1:9002",
    ]
    assert [r.weight for r in opened.routes.revisions] == [90, 10]
    assert opened.models == {"open", "cancer"}
    # "cancer" is served by several default-project deployments: no root V2 shortcut.
    assert "cancer" not in table.by_model
    # Without authentication every deployment is open.
    open_all = parse_route_table(_table(routes, auth_enabled=False))
    assert all(d.open for d in open_all.deployments.values())


def test_equal_tables_are_equal_bytes_whatever_the_order() -> None:
    one = Routes("default", "a", (_revision(1, "m", 100, "http://h:1", "http://h:2"),))
    two = Routes("default", "b", (_revision(1, "m", 100, "http://h:3"),))
    swapped = Routes("default", "a", (_revision(1, "m", 100, "http://h:2", "http://h:1"),))
    assert _table([one, two]) == _table([two, swapped])
    assert _table([one]) != _table([one, two])


def test_a_report_carries_the_bodies_as_they_were() -> None:
    answers = [
        Answer("default", "churn", 1, "cancer", 3, "primary", "id-1", "/predict", 200, 0.002,
               1_700_000_000.5, b'{"instances": [[1, 2]]}', b'{"predictions": [1]}'),
        Answer("team", "x", 2, "iris", 1, "canary", "id-2", "/v2/models/iris/infer", 200,
               0.004, 1_700_000_001.0, b"\n\x00binary\n", b""),
    ]  # fmt: skip
    report = Report(
        touched={("default", "churn"), ("team", "x")},
        observed=[("default", "churn", "cancer", "3", "1", 200, 0.002, None, "user:ada/token:1")],
        answers=answers,
        process=4242,
        inflight={"http://127.0.0.1:9001": 3},
    )
    back = decode_report(encode_report(report))
    assert back.process == 4242
    assert back.inflight == {"http://127.0.0.1:9001": 3}
    assert back.touched == report.touched
    assert back.observed == report.observed
    assert back.answers == answers


def test_a_truncated_report_is_refused() -> None:
    answer = Answer("default", "churn", 1, "cancer", 3, "primary", "id", "/predict", 200, 0.1,
                    1.0, b"request", b"answer")  # fmt: skip
    body = encode_report(Report(answers=[answer]))
    with pytest.raises(ValueError, match="announces"):
        decode_report(body[:-3])
    with pytest.raises(ValueError, match="head line"):
        decode_report(b"no head line")
    assert not Report()


def test_a_report_held_too_long_keeps_its_newest_answers() -> None:
    def answer(n: int) -> Answer:
        return Answer("default", "churn", 1, "cancer", 3, "primary", f"id-{n}", "/predict",
                      200, 0.1, 1.0, b"request", b"answer")  # fmt: skip

    report = Report(
        answers=[answer(n) for n in range(10)],
        observed=[("default", "churn", "cancer", "3", "1", 200, n, None, "-") for n in range(10)],
    )
    assert report.trim(4) == 6
    assert [a.inference_id for a in report.answers] == ["id-6", "id-7", "id-8", "id-9"]
    assert [o[6] for o in report.observed] == [6, 7, 8, 9]
    assert report.trim(4) == 0
