"""Feature view rows: the materialization watermark of a version never moves back."""

from __future__ import annotations

from datetime import UTC, datetime

from loopml.core.features import FeatureViewSpec
from loopml.store import MetadataStore
from loopml.store import feature_views as rows

SPEC = FeatureViewSpec(
    name="user_stats",
    entities=["user_id"],
    event_time="ts",
    ttl_s=60,
    source="stats",
    features=["spend"],
)


def test_watermark_never_moves_back(store: MetadataStore) -> None:
    early, late = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    with store.session() as session:
        rows.apply(session, "default", SPEC, spec_text="x", spec_hash="a" * 64, actor="t")

    def record(version: int, watermark: datetime | None) -> datetime | None:
        with store.session() as session:
            return rows.record_materialized(
                session,
                "default",
                "user_stats",
                version=version,
                watermark=watermark,
                rows=1,
                full=False,
                actor="t",
            ).watermark

    assert record(1, late) == late
    assert record(1, early) == late
    assert record(1, None) == late
    # Another version starts from its own watermark.
    assert record(2, early) == early
