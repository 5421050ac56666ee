"""The models and runs pages over the real app and database: runs logged through the
tracking service, a model registered and judged through the registry and the gate."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from loopml.core.gate import EvaluationReport, GatePolicy
from loopml.core.run_search import AttributeOrder, KeyOrder, RunOrder, RunSearch
from loopml.core.runs import LogBatch, MetricPoint
from loopml.registry import gate, register_version, set_alias
from loopml.store import MetadataStore, run_search
from loopml.train import tracking
from tests.tracking_rows import log_model, make_run
from tests.unit.portal.conftest import ADMIN, VIEWER, log_in

NOW_MS = 1_790_000_000_000


def _ctx(http: TestClient) -> Any:
    return http.app.state.running.context  # type: ignore[attr-defined]


def _log_runs(http: TestClient, n: int, project: str = "default") -> list[str]:
    """``n`` runs named r00.. with ``acc`` = i/100 over 3 steps, ``lr`` and a model param."""
    store = _ctx(http).store
    ids = []
    for i in range(n):
        run = tracking.start_run(
            store,
            project,
            "exp",
            heartbeat_timeout_s=60,
            actor="test",
            name=f"r{i:02d}",
            create_experiment=True,
        )
        points = [
            MetricPoint(key="acc", value=i / 100 * step / 3, step=step, timestamp_ms=NOW_MS)
            for step in (1, 2, 3)
        ]
        points.append(MetricPoint(key="loss", value=1 - i / 100, step=3, timestamp_ms=NOW_MS))
        model = "lgbm" if i % 2 else "linear"
        batch = LogBatch(params={"lr": "0.1", "model": model}, metrics=points, tags={"i": str(i)})
        tracking.log_batch(store, project, run.id, batch)
        ids.append(run.id)
    return ids


def _names(page: str) -> list[str]:
    return re.findall(r'<a href="/runs/default/[0-9a-f]{32}">(r\d\d)</a>', page)


def test_runs_table_pages_sorts_and_filters(anonymous: TestClient) -> None:
    _log_runs(anonymous, 30)
    first = anonymous.get("/runs?limit=25")
    assert first.status_code == 200, first.text
    assert _names(first.text)[:3] == ["r29", "r28", "r27"]  # newest first
    assert len(_names(first.text)) == 25
    assert 'rel="next"' in first.text
    second = anonymous.get("/runs?limit=25&cursor=25")
    assert _names(second.text) == ["r04", "r03", "r02", "r01", "r00"]
    assert 'rel="next"' not in second.text
    beyond = anonymous.get("/runs?limit=25&cursor=500")
    assert beyond.status_code == 200
    assert "No runs on this page" in beyond.text
    assert _names(beyond.text) == []

    by_acc = anonymous.get("/runs?sort=metrics.acc&order=asc&limit=25")
    assert _names(by_acc.text)[:3] == ["r00", "r01", "r02"]
    by_loss = anonymous.get("/runs?sort=metrics.loss&order=desc&limit=25")
    assert _names(by_loss.text)[:2] == ["r00", "r01"]
    assert 'aria-sort="descending"' in by_loss.text

    filtered = anonymous.get(
        "/runs", params={"q": "metrics.acc >= 0.25 and params.model = 'lgbm'", "sort": "name"}
    )
    assert _names(filtered.text) == ["r29", "r27", "r25"]
    paged_by_number = anonymous.get("/runs?limit=25&page=2")
    assert _names(paged_by_number.text) == _names(second.text)


def _link(page: str, rel: str) -> str | None:
    found = re.search(rf'rel="{rel}" href="(/runs\?[^"]*)"', page)
    return found.group(1).replace("&amp;", "&") if found else None


def test_runs_table_next_and_previous_carry_keyset_cursors(anonymous: TestClient) -> None:
    """Next and Previous carry the page's keyset (the runs' sort values), never an offset:
    a deep page then costs what the second does. Walking there and back gives the pages
    the offsets give."""
    _log_runs(anonymous, 60)
    for sort in ("", "&sort=metrics.loss&order=asc"):
        pages = []
        link: str | None = f"/runs?limit=25{sort}"
        while link:
            answer = anonymous.get(link)
            assert answer.status_code == 200, answer.text
            pages.append(_names(answer.text))
            link = _link(answer.text, "next")
            assert link is None or re.search(r"cursor=k[A-Za-z0-9_-]+", link), link
        assert [len(p) for p in pages] == [25, 25, 10]
        assert "Page 3, runs 51\N{EN DASH}60" in answer.text
        for offset, names in zip((25, 50), pages[1:], strict=True):
            by_offset = anonymous.get(f"/runs?limit=25{sort}&cursor={offset}")
            assert _names(by_offset.text) == names
        back = _link(answer.text, "prev")
        assert back
        assert "cursor=k" in back
        middle = anonymous.get(back)
        assert _names(middle.text) == pages[1]
        assert "Page 2, runs 26\N{EN DASH}50" in middle.text
        first = _link(middle.text, "prev")
        assert first
        assert "cursor" not in first
        assert _names(anonymous.get(first).text) == pages[0]
    keyset = _link(answer.text, "prev") or ""
    other_order = anonymous.get(keyset.replace("sort=metrics.loss", "sort=name"))
    assert other_order.status_code == 422
    assert "another order" in other_order.text


BAD_SEARCHES = [
    ({"q": "metrics.acc >> 1"}, "invalid filter &#39;metrics.acc &gt;&gt; 1&#39;"),
    ({"q": "metrics.acc >= high"}, "invalid filter"),
    ({"sort": "size desc"}, "invalid order"),
    ({"cursor": "-1"}, "invalid cursor"),
    ({"limit": "7"}, "invalid limit"),
]


def test_bad_search_is_a_4xx_page_with_the_message(anonymous: TestClient) -> None:
    for query, message in BAD_SEARCHES:
        answer = anonymous.get("/runs", params=query)
        assert answer.status_code == 422, (query, answer.text)
        assert "text/html" in answer.headers["content-type"]
        assert message in answer.text, query


def test_a_search_that_does_not_parse_keeps_its_form_and_says_what_was_expected(
    anonymous: TestClient,
) -> None:
    """A metric compared with a word: the page keeps the form as it was sent, says a number
    was expected (it showed pydantic's "1 validation error for MetricFilter ... float_type"
    on an error page without the form)."""
    _log_runs(anonymous, 3)
    answer = anonymous.get("/runs", params={"q": "metrics.acc >= high", "sort": "metrics.acc"})
    assert answer.status_code == 422, answer.text
    page = answer.text
    assert 'value="metrics.acc &gt;= high"' in page  # the search, as typed
    assert 'value="metrics.acc"' in page  # the sort too
    assert "a metric is compared with a finite number, got &#39;high&#39;" in page
    assert "validation error" not in page
    assert 'role="alert"' in page
    assert "Clear the search" in page
    for word in ("nan", "inf"):
        refused = anonymous.get("/runs", params={"q": f"metrics.acc >= {word}"})
        assert refused.status_code == 422
        assert f"finite number, got &#39;{word}&#39;" in refused.text


def test_run_page_and_compare(anonymous: TestClient) -> None:
    ids = _log_runs(anonymous, 3)
    page = anonymous.get(f"/runs/default/{ids[2]}")
    assert page.status_code == 200, page.text
    assert "r02" in page.text
    assert "lgbm" not in page.text
    assert "<code>linear</code>" in page.text
    found = re.search(r'<script type="application/json" id="run-charts">(.*?)</script>', page.text)
    assert found
    charts = {c["key"]: c for c in json.loads(found.group(1))}
    assert charts["acc"]["steps"] == [1, 2, 3]
    assert charts["acc"]["series"][0]["values"] == pytest.approx([0.02 / 3, 0.04 / 3, 0.02])
    assert "acc as a table" in page.text  # the fallback without JavaScript

    compare = anonymous.get("/runs/compare", params={"project": "default", "ids": ",".join(ids)})
    assert compare.status_code == 200, compare.text
    differs = re.findall(r'<tr class="differs"><th scope="row">(\w+)', compare.text)
    assert differs == ["model"]  # lr is the same in every run
    found = re.search(r'id="compare-charts">(.*?)</script>', compare.text)
    assert found
    curves = {c["key"]: c for c in json.loads(found.group(1))}
    assert len(curves["acc"]["series"]) == 3
    as_list = anonymous.get(f"/runs/compare?project=default&ids={ids[0]}&ids={ids[1]}")
    assert as_list.status_code == 200
    assert anonymous.get(f"/runs/default/{'0' * 32}").status_code == 404


def test_run_page_lists_each_artifact_by_its_path_in_the_run(anonymous: TestClient) -> None:
    from loopml.train.tracking import artifacts as run_artifacts

    run_id = _log_runs(anonymous, 1)[0]
    ctx = _ctx(anonymous)
    for path in ("model/MLmodel", "report.json"):
        run_artifacts.write(ctx.store, ctx.artifacts, "default", run_id, path, [b"{}"])
    page = anonymous.get(f"/runs/default/{run_id}")
    assert page.status_code == 200, page.text
    links = re.findall(
        rf'<a href="/api/v1/projects/default/runs/{run_id}/artifacts/([^"]*)">([^<]*)</a>',
        page.text,
    )
    assert links == [("model/MLmodel", "model/MLmodel"), ("report.json", "report.json")]


def test_compare_refuses_more_than_20_runs(anonymous: TestClient) -> None:
    ids = ",".join(f"{i:032x}" for i in range(21))
    answer = anonymous.get(f"/runs/compare?project=default&ids={ids}")
    assert answer.status_code == 422
    assert "at most 20" in answer.text


def _model_with_two_versions(http: TestClient, project: str = "default") -> None:
    ctx = _ctx(http)
    store, artifacts = ctx.store, ctx.artifacts
    run = make_run(store, project, inputs=(("dataset", "snap-1"),))
    log_model(store, artifacts, run)
    for _ in range(2):
        register_version(
            store, artifacts, project=project, model_name="churn", run_id=run.id, actor="t"
        )
    policy = GatePolicy.model_validate({"thresholds": [{"metric": "roc_auc", "min": 0.8}]})
    gate.set_policy(store, project, "churn", policy, actor="t")
    for version, auc in ((1, 0.75), (2, 0.9)):
        report = EvaluationReport(
            eval_hash="ab" * 8,
            task="classification",
            primary_metric="roc_auc",
            metrics={"roc_auc": auc},
            rows=100,
        )
        gate.save_evaluation(store, project, "churn", version, report, actor="t")
        gate.judge_version(store, project, "churn", version, actor="t")
    set_alias(store, project, "churn", "champion", 2, actor="t")


def test_model_page_versions_gate_lineage_and_compare(anonymous: TestClient) -> None:
    _model_with_two_versions(anonymous)
    listing = anonymous.get("/models")
    assert listing.status_code == 200, listing.text
    assert '<a href="/models/default/churn">churn</a>' in listing.text
    page = anonymous.get("/models/default/churn")
    assert page.status_code == 200, page.text
    assert "<code>@champion</code> → 2" in page.text
    assert page.text.count("✓ passed") >= 1
    assert page.text.count("✗ failed") >= 1
    # The verdict says what decided it: the rule that failed, with its metric and figures.
    assert 'title="roc_auc = 0.75, required &gt;= 0.8">✗ failed' in page.text
    assert "Decided by: roc_auc = 0.9, required &gt;= 0.8</caption>" in page.text
    assert "roc_auc" in page.text
    assert "0.75" in page.text
    assert "0.8" in page.text
    assert "Lineage of version 2" in page.text
    assert "<code>snap-1</code>" in page.text
    assert "not deployed" in page.text
    older = anonymous.get("/models/default/churn?version=1")
    assert "Lineage of version 1" in older.text

    compare = anonymous.get("/models/default/churn/compare?a=1&b=2")
    assert compare.status_code == 200, compare.text
    assert re.search(r'<tr class="differs"><th scope="row">roc_auc</th>', compare.text)
    assert anonymous.get("/models/default/churn/compare?a=1").status_code == 422
    assert anonymous.get("/models/default/churn/compare?a=1&b=9").status_code == 404
    assert anonymous.get("/models/default/nope").status_code == 404


def test_models_list_pages_across_projects(anonymous: TestClient) -> None:
    store = _ctx(anonymous).store
    from loopml import projects
    from loopml.registry import create_model

    projects.create(store, "alpha", actor="t")
    for i in range(30):
        create_model(store, "alpha", f"a{i:02d}", actor="t")
    for i in range(30):
        create_model(store, "default", f"d{i:02d}", actor="t")
    first = anonymous.get("/models")
    names = re.findall(r'<a href="/models/\w+/(\w+)">', first.text)
    assert len(names) == 50
    assert names[0] == "a00"
    assert names[-1] == "d19"
    cursor = re.search(r'rel="next" href="/models\?([^"]+)"', first.text)
    assert cursor
    second = anonymous.get("/models?" + cursor.group(1).replace("&amp;", "&"))
    assert re.findall(r'<a href="/models/\w+/(\w+)">', second.text) == [
        f"d{i:02d}" for i in range(20, 30)
    ]
    assert anonymous.get("/models?cursor=nonsense").status_code == 422


def test_viewer_sees_only_their_projects(secured: TestClient) -> None:
    store = _ctx(secured).store
    from loopml import projects
    from loopml.registry import create_model

    projects.create(store, "secret", actor="t")
    create_model(store, "secret", "classified", actor="t")
    create_model(store, "default", "shown", actor="t")
    _log_runs(secured, 1, project="secret")
    log_in(secured, VIEWER)
    listing = secured.get("/models")
    assert "shown" in listing.text
    assert "classified" not in listing.text
    assert secured.get("/models/secret/classified").status_code == 404
    assert secured.get("/models?project=secret").status_code == 404
    assert secured.get("/runs?project=secret").status_code == 404
    assert secured.get("/models/default/shown").status_code == 200
    secured.cookies.clear()
    log_in(secured, ADMIN)
    assert secured.get("/models/secret/classified").status_code == 200
    assert "r00" in secured.get("/runs?project=secret").text


def test_pages_need_a_session(secured: TestClient) -> None:
    answer = secured.get("/runs", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login")


def test_metric_order_pages_match_the_general_query(
    anonymous: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sorting by one metric reads the (key, value) index in two steps (in projects of at
    least SMALL_PROJECT runs: 1 here); it must page exactly as the general query does
    (missing and NaN last, newest first on ties)."""
    monkeypatch.setattr(run_search, "SMALL_PROJECT", 1)
    store = _ctx(anonymous).store
    values = [0.5, float("nan"), None, 0.2, 0.5, None, 0.9, float("nan"), 0.1]
    for i, value in enumerate(values):
        run = tracking.start_run(
            store, "default", "exp", heartbeat_timeout_s=60, actor="t", create_experiment=True
        )
        if value is not None:
            point = MetricPoint(key="acc", value=value, step=i, timestamp_ms=NOW_MS)
            tracking.log_batch(store, "default", run.id, LogBatch(metrics=[point]))
    for descending in (True, False):
        one = RunOrder.parse("metrics.acc " + ("desc" if descending else "asc"))
        general = [one, RunOrder.parse("start_time desc")]
        for limit in (1, 2, 4, 9):
            for offset in range(11):
                pages = [
                    tracking.search_runs(
                        store,
                        "default",
                        RunSearch(order_by=order, limit=limit, cursor=str(offset) or None),
                    )
                    for order in ([one], general)
                ]
                assert [r.id for r in pages[0].items] == [r.id for r in pages[1].items]
                assert (pages[0].next_cursor is None) == (pages[1].next_cursor is None)
            walks = [_walk(store, order, limit) for order in ([one], general)]
            assert walks[0] == walks[1]


def _walk(
    store: MetadataStore, order: list[KeyOrder | AttributeOrder], limit: int
) -> list[list[str]]:
    """Every page by next_cursor (keysets), then back by prev_cursor: the same pages."""
    forward: list[list[str]] = []
    cursor: str | None = None
    while True:
        spec = RunSearch(order_by=order, limit=limit, cursor=cursor)
        page = tracking.search_runs(store, "default", spec)
        forward.append([r.id for r in page.items])
        assert page.offset == limit * (len(forward) - 1)
        if page.next_cursor is None:
            break
        assert page.next_cursor.startswith("k")
        cursor = page.next_cursor
    backward = [forward[-1]]
    while page.prev_cursor is not None:
        spec = RunSearch(order_by=order, limit=limit, cursor=page.prev_cursor)
        page = tracking.search_runs(store, "default", spec)
        backward.insert(0, [r.id for r in page.items])
    assert backward == forward
    return forward


def test_the_lineage_is_drawn_as_a_graph_whose_boxes_link_to_their_pages(
    anonymous: TestClient,
) -> None:
    _model_with_two_versions(anonymous)
    control = anonymous.app.state.running.serving.control  # type: ignore[attr-defined]
    control.create("default", "churn-api", {"model": "churn/2", "min_replicas": 0}, actor="t")
    page = anonymous.get("/models/default/churn?version=2")
    assert page.status_code == 200, page.text
    found = re.search(
        r'<svg class="dag" role="group" aria-label="Lineage of churn version 2".*?</svg>',
        page.text,
        re.S,
    )
    assert found, "no lineage picture"
    graph = found.group(0)
    run_id = re.search(r'href="/runs/default/([0-9a-f]{32})"', graph)
    assert run_id, "the run's box links to the run"
    assert '<a href="/data?project=default" aria-label="snap-1: dataset">' in graph
    assert 'href="/models/default/churn?version=2" aria-label="churn 2: version @champion"' in graph
    # The deployment's state is the reconciler's (pending until its first pass, then
    # scaled_to_zero), which runs beside the test: any state word is the box's.
    assert re.search(
        r'href="/projects/default/deployments/churn-api" '
        r'aria-label="churn-api: primary 100 %, (pending|scaled_to_zero)"',
        graph,
    )
    # Four boxes in four columns, joined by three arrows; the nested list stays as the text.
    assert graph.count("<rect") == 4
    assert graph.count('class="dag-edge"') == 3
    assert '<ul class="lineage" aria-label="Lineage">' in page.text


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_runs_table_folds_child_runs_under_their_parent(anonymous: TestClient) -> None:
    store = _ctx(anonymous).store
    start = {"heartbeat_timeout_s": 60, "actor": "test", "create_experiment": True}
    parent = tracking.start_run(store, "default", "exp", name="automl", **start)
    for i in range(30):
        tracking.start_run(
            store, "default", "exp", name=f"trial-{i:02d}", parent_run_id=parent.id, **start
        )
    tracking.start_run(store, "default", "exp", name="solo", **start)

    folded = anonymous.get("/runs")
    trials = anonymous.get(f"/runs?parent={parent.id}")
    flat = anonymous.get("/runs?children=flat&limit=100")

    assert folded.status_code == 200, folded.text
    text = _text(folded.text)
    assert "automl 30 child runs" in text
    assert "solo" in text
    assert "trial-" not in text
    assert f"parent={parent.id}" in folded.text
    assert "Child runs (AutoML trials) are folded under their parent run. List every run" in text
    assert len(re.findall(r">trial-\d\d</a>", trials.text)) == 30
    assert "Child runs of automl in default" in _text(trials.text)
    assert len(re.findall(r">trial-\d\d</a>", flat.text)) == 30
    assert ">solo</a>" in flat.text
    refused = anonymous.get("/runs?parent=nope")
    assert refused.status_code == 422
    assert "invalid parent &#39;nope&#39;: expected a run id (32 hex digits)" in refused.text
