"""Applying feature views: checked at the edge, versioned, no-op when unchanged."""

from __future__ import annotations

import pytest

from loopml.core.errors import NotFoundError, ValidationError
from loopml.core.features import FeatureViewSpec, parse_ttl
from loopml.data.features import views
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, events

from .conftest import ACTOR, VIEW_YAML, P, ingest, stats


@pytest.fixture
def with_stats(store: MetadataStore, artifacts: ArtifactStore) -> None:
    ingest(store, artifacts, "stats", stats([(1, 0, 10.0, 1), (2, 0.5, 20.0, 2)]))


@pytest.mark.usefixtures("with_stats")
def test_apply_versions_and_noop(store: MetadataStore, artifacts: ArtifactStore) -> None:
    first = views.apply(store, artifacts, P, VIEW_YAML, actor=ACTOR)
    assert (first.created, first.view.version, first.view.spec.ttl_s) == (True, 1, 2 * 86400)
    # The same spec, written differently (flow style, reordered keys): a no-op.
    same = views.apply(
        store,
        artifacts,
        P,
        "{features: [spend, visits], name: user_stats, entities: [user_id], event_time: ts,"
        " ttl: 172800, source: stats, description: spend per user}",
        actor=ACTOR,
    )
    assert (same.created, same.view.version) == (False, 1)
    changed = views.apply(store, artifacts, P, VIEW_YAML.replace("2d", "3d"), actor=ACTOR)
    assert (changed.created, changed.view.version) == (True, 2)
    assert views.get(store, P, "user_stats", 1).spec.ttl_s == 2 * 86400
    assert [v.version for v in views.list_views(store, P)] == [2]
    with store.session() as session:
        kinds = [e.type for e in events.list_(session, project=P).items]
    assert kinds.count("feature_view.applied") == 2


@pytest.mark.usefixtures("with_stats")
def test_apply_sql_source(store: MetadataStore, artifacts: ArtifactStore) -> None:
    text = VIEW_YAML.replace(
        "source: stats",
        "source: SELECT user_id, ts, spend * 2 AS spend, visits FROM stats",
    )
    assert views.apply(store, artifacts, P, text, actor=ACTOR).view.spec.source.startswith("SELECT")


@pytest.mark.usefixtures("with_stats")
def test_apply_refuses_bad_specs(store: MetadataStore, artifacts: ArtifactStore) -> None:
    with pytest.raises(NotFoundError):
        views.apply(
            store, artifacts, P, VIEW_YAML.replace("source: stats", "source: nope"), actor=ACTOR
        )
    with pytest.raises(ValidationError) as missing:
        views.apply(
            store, artifacts, P, VIEW_YAML.replace("visits]", "visits, age, x]"), actor=ACTOR
        )
    assert missing.value.details["missing"] == ["age", "x"]
    with pytest.raises(ValidationError, match="timestamp or a date"):
        views.apply(
            store,
            artifacts,
            P,
            VIEW_YAML.replace("event_time: ts", "event_time: spend").replace(
                "[spend, visits]", "[visits]"
            ),
            actor=ACTOR,
        )
    with pytest.raises(ValidationError, match="not valid YAML"):
        views.apply(store, artifacts, P, "name: [", actor=ACTOR)
    # The safe loader: a Python tag is an error, never a call.
    with pytest.raises(ValidationError):
        views.apply(store, artifacts, P, "!!python/object/apply:os.system ['true']", actor=ACTOR)
    with pytest.raises(ValidationError, match="name"):
        views.apply(store, artifacts, P, VIEW_YAML.replace("user_stats", "User-Stats"), actor=ACTOR)
    with pytest.raises(ValidationError, match=r"online: Extra"):
        views.apply(store, artifacts, P, VIEW_YAML + "online: true\n", actor=ACTOR)
    assert views.list_views(store, P) == []


def test_spec_rules() -> None:
    assert [parse_ttl(v) for v in (30, "30s", "15m", "12h", "7d", "2w")] == [
        30,
        30,
        900,
        43200,
        604800,
        1209600,
    ]
    for bad in (0, -1, "7 days", "1y", True, None):
        with pytest.raises(ValidationError):
            parse_ttl(bad)
    doc = {
        "name": "v",
        "entities": ["a"],
        "event_time": "ts",
        "ttl": 1,
        "source": "t",
        "features": ["a"],
    }
    with pytest.raises(ValidationError, match="more than once"):
        FeatureViewSpec.from_document(doc)
    with pytest.raises(ValidationError, match="reserved"):
        FeatureViewSpec.from_document({**doc, "name": "views", "features": ["b"]})
    with pytest.raises(ValidationError, match="column"):
        FeatureViewSpec.from_document({**doc, "features": ['b"; DROP']})
