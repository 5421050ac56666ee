"""Feature serving in the gateway: a ``/predict`` body's instances completed from the online
store before a replica sees them.

The gateway may not import the feature store (serving programs never import the stores), so
the platform hands it a ``FeatureSource`` (``loopml.data.features.serving``'s
``OnlineFeatureLookup``), which the gateway calls in a worker thread: a Redis round trip must
not hold up the event loop. The completed body is what the replica predicts on, what the
shadow gets, and what the prediction log records (entity keys and feature values), so a
request carries entity keys only, and the log still says which values the model saw.
"""

from __future__ import annotations

from typing import Any, Protocol

import anyio.to_thread
import orjson

from loopml.core.deployments import FeatureServing
from loopml.core.errors import ServiceUnavailableError, ValidationError


class FeatureSource(Protocol):
    """Completes instances with the online features of a deployment's views."""

    def complete(
        self, project: str, serving: FeatureServing, instances: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Each instance with the features it does not carry (see ``FeatureServing``);
        raises ``ValidationError`` (422) for an entity refused by the missing policy."""
        ...


async def with_features(
    source: FeatureSource | None,
    project: str,
    name: str,
    serving: FeatureServing,
    body: bytes,
    predict: bool,
) -> bytes:
    """``body`` with its instances completed (``/predict`` only).

    The replica is told to ignore columns its model does not take (``"extra": "ignore"``,
    unless the client said otherwise): entity keys are sent along so that the log keeps them.
    """
    if not predict:
        raise ValidationError(
            f"deployment {name!r} completes requests from feature views, which it does for "
            f"POST /deployments/{name}/predict with instances only; V2 inference is not "
            "completed with features",
            details={"deployment": name, "views": serving.views},
        )
    if source is None:
        raise ServiceUnavailableError(
            f"deployment {name!r} reads feature views, but this server's gateway has no "
            "online store connected",
            details={"deployment": name},
        )
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValidationError("the body is not valid JSON", details={"field": "body"}) from None
    instances = parsed.get("instances") if isinstance(parsed, dict) else None
    if not isinstance(instances, list):
        raise ValidationError(
            'the body must be a JSON object {"instances": [{"entity_key": value, ...}, ...]}',
            details={"field": "instances"},
        )
    done = await anyio.to_thread.run_sync(source.complete, project, serving, instances)
    parsed["instances"] = done
    parsed.setdefault("extra", "ignore")
    return orjson.dumps(parsed)
