"""Features at prediction time: a deployment's instances completed from the online store.

A deployment that declares ``features`` (``core.deployments.FeatureServing``) is called with
instances that name each view's entity keys (and may carry some features themselves); the
gateway hands them to ``OnlineFeatureLookup.complete``, which reads every view's online
values for those entities in one batch per view and adds the features the instance does
not carry. An entity the store has nothing for, or whose newest values are older than the
view's TTL, is refused (422 naming it) or filled from the declared defaults, as the
deployment says. The completed instances are what the model gets and what the prediction
log records, so the skew check can compare them with the lake later.

This module is the seam between the serving programs (which may not import the stores)
and the feature store: the platform builds the lookup and passes it to the gateway.

Example:
    >>> lookup = OnlineFeatureLookup(store, online)
    >>> lookup.complete("default", FeatureServing(views=["user_stats"]), [{"user_id": 1}])
    [{'user_id': 1, 'spend': 11.0, 'visits': 2}]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from loopml.core.deployments import FeatureServing
from loopml.core.errors import NotFoundError, ValidationError
from loopml.core.features import FeatureView
from loopml.data.features import views as view_specs
from loopml.data.features.online import (
    LazyOnlineStore,
    OnlineRow,
    decode_values,
    encode_entity,
    is_fresh,
    namespace,
    now_us,
)
from loopml.store import MetadataStore

MAX_INSTANCES = 10_000


def check_serving(store: MetadataStore, project: str, serving: FeatureServing) -> None:
    """Check a deployment's ``features`` against the views as they are now.

    Raises:
        NotFoundError: a view that does not exist.
        ValidationError: two views with a feature of the same name, or a default for a
            feature no view has.
    """
    seen: dict[str, str] = {}
    for name in serving.views:
        view = view_specs.get(store, project, name)
        for feature in view.spec.features:
            if feature in seen:
                raise ValidationError(
                    f"feature {feature!r} is in views {seen[feature]!r} and {name!r}: a "
                    "deployment reads each feature from one view",
                    details={"field": "features.views", "feature": feature},
                )
            seen[feature] = name
    unknown = sorted(set(serving.defaults) - set(seen))
    if unknown:
        raise ValidationError(
            f"features.defaults names {unknown[:20]}, which no view of the deployment has "
            f"(they have {sorted(seen)[:50]})",
            details={"field": "features.defaults", "unknown": unknown[:20]},
        )


class OnlineFeatureLookup:
    """Completes instances from the online store; thread-safe (the gateway calls it from
    worker threads).

    View specs are read from the metadata store at most once per ``cache_s`` per view, so
    the hot path is one online-store read per view; a view applied anew is seen within
    ``cache_s``.

    Args:
        store: the metadata store (view specs).
        online: the platform's online store.
        cache_s: how long a view spec is reused.
        clock: microseconds since the epoch (the TTL's "now"); the wall clock by default.
    """

    def __init__(
        self,
        store: MetadataStore,
        online: LazyOnlineStore,
        *,
        cache_s: float = 5.0,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self._store = store
        self._online = online
        self._cache_s = cache_s
        self._clock = clock
        self._lock = threading.Lock()
        self._views: dict[tuple[str, str], tuple[float, FeatureView]] = {}

    def view(self, project: str, name: str) -> FeatureView:
        """The newest version of a view, from the cache when it is fresh enough."""
        key = (project, name)
        now = time.monotonic()
        with self._lock:
            cached = self._views.get(key)
        if cached is not None and now - cached[0] < self._cache_s:
            return cached[1]
        try:
            found = view_specs.get(self._store, project, name)
        except NotFoundError as exc:
            raise ValidationError(
                f"the deployment reads feature view {name!r}, which no longer exists: "
                "apply it again or change the deployment's features",
                details={"view": name},
            ) from exc
        with self._lock:
            self._views[key] = (now, found)
        return found

    def complete(
        self, project: str, serving: FeatureServing, instances: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Each instance with the features of ``serving.views`` it does not carry.

        Raises:
            ValidationError: an instance that is not an object or lacks a view's keys, or
                (under ``missing: reject``) an entity with no fresh values.
        """
        if not 1 <= len(instances) <= MAX_INSTANCES:
            raise ValidationError(
                f"expected 1 to {MAX_INSTANCES} instances, got {len(instances)}",
                details={"field": "instances"},
            )
        for index, instance in enumerate(instances):
            if not isinstance(instance, dict):
                raise ValidationError(
                    f"instance {index} is not an object of column values (with the entity "
                    "keys of the deployment's feature views)",
                    details={"field": "instances", "row": index},
                )
        done = [dict(instance) for instance in instances]
        at = self._clock()
        for name in serving.views:
            self._fill(project, self.view(project, name), serving, done, at)
        return done

    def _fill(
        self,
        project: str,
        view: FeatureView,
        serving: FeatureServing,
        rows: list[dict[str, Any]],
        at: int,
    ) -> None:
        spec = view.spec
        wanted = [i for i, row in enumerate(rows) if any(f not in row for f in spec.features)]
        if not wanted:
            return
        keys = [_entity_key(spec.entities, rows[i], i, view.name) for i in wanted]
        unique = list(dict.fromkeys(keys))
        found = dict(zip(unique, self._read(project, view.name, unique), strict=True))
        for index, key in zip(wanted, keys, strict=True):
            row = found[key]
            fresh = row is not None and is_fresh(row, spec.ttl_s, at)
            if fresh:
                assert row is not None
                values = decode_values(row.value)
            else:
                values = _fallback(view, serving, rows[index], index, row, at)
            for feature in spec.features:
                rows[index].setdefault(feature, values.get(feature))

    def _read(self, project: str, view: str, keys: list[str]) -> list[OnlineRow | None]:
        return self._online.get().read_batch(namespace(project, view), keys)


def _entity_key(keys: list[str], row: dict[str, Any], index: int, view: str) -> str:
    missing = [k for k in keys if k not in row]
    if missing:
        raise ValidationError(
            f"instance {index} lacks {missing}: feature view {view!r} is read by the "
            f"entity keys {keys}",
            details={"field": "instances", "row": index, "view": view, "missing": missing},
        )
    return encode_entity(keys, {k: row[k] for k in keys})


def _fallback(
    view: FeatureView,
    serving: FeatureServing,
    row: dict[str, Any],
    index: int,
    stored: OnlineRow | None,
    at: int,
) -> dict[str, Any]:
    """The defaults for an entity without fresh values, or the 422 that refuses it."""
    if serving.missing == "default":
        return {f: serving.defaults.get(f) for f in view.spec.features}
    entity = {k: row[k] for k in view.spec.entities}
    if stored is None:
        why = "the online store has no values for it (is the view materialized?)"
        reason = "missing"
    else:
        age_s = max(0, (at - stored.event_us) / 1e6)
        why = (
            f"its newest values are {age_s:.0f} s old, past the view's TTL of "
            f"{view.spec.ttl_s} s (materialize the view again)"
        )
        reason = "expired"
    raise ValidationError(
        f"instance {index}: entity {entity} of feature view {view.name!r}: {why}",
        details={"row": index, "view": view.name, "entity": entity, "reason": reason},
    )
