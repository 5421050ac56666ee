"""Replica autoscaling for the local target: between ``min_replicas`` and ``max_replicas``, on
the requests in flight per replica (the gateway counts them on each ``Backend``).

At every supervisor round the deployment's in-flight count is folded into a moving average
over about ``window_s``, so one burst does not start a process. Then:

- **up**: when the average per replica is over ``target_inflight``, the count goes straight
  to what the load asks for (``ceil(inflight / target_inflight)``, from the larger of the
  average and the count now, at most the maximum), and then holds for ``up_cooldown_s``:
  a new replica takes a second or more to start, and the average must see it serve before
  asking again;
- **down**: one replica at a time, once the average would stay at or under the target with
  one replica fewer and has done so for ``down_after_s`` (the cool-down), so a lull between
  bursts does not stop processes that are needed again a moment later.

A scaled-to-zero deployment starts again at the minimum (at least one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class AutoscalePolicy:
    """When the local target adds or removes replicas.

    Attributes:
        target_inflight: requests in flight per replica above which it scales up.
        window_s: the moving average's time constant.
        up_cooldown_s: the least time between two scale-ups.
        down_after_s: how long the load must fit one replica fewer before one stops.
    """

    target_inflight: float = 8.0
    window_s: float = 2.0
    up_cooldown_s: float = 5.0
    down_after_s: float = 60.0


class Autoscaler:
    """One deployment's replica count (see the module docstring). Not thread-safe: the
    supervisor thread alone calls it."""

    def __init__(self, policy: AutoscalePolicy, replicas: int, now: float) -> None:
        self.policy = policy
        self.replicas = replicas
        self.average = 0.0
        self._seen_at = now
        self._changed_at = now
        self._calm_since: float | None = None

    def observe(self, inflight: int, low: int, high: int, now: float) -> int:
        """Fold in the requests in flight now; the replica count wanted, within
        ``[low, high]``."""
        policy = self.policy
        elapsed = max(0.0, now - self._seen_at)
        self._seen_at = now
        weight = 1.0 - math.exp(-elapsed / policy.window_s) if policy.window_s > 0 else 1.0
        self.average += weight * (inflight - self.average)
        current = min(max(self.replicas, low), high)
        asked = self._asked(self.average, low, high)
        if asked > current:
            self._calm_since = None
            if now - self._changed_at >= policy.up_cooldown_s:
                # The average says the load is real; what is in flight now says how much.
                current = max(asked, self._asked(inflight, low, high))
                self._changed_at = now
        elif asked < current:
            if self._calm_since is None:
                self._calm_since = now
            if now - self._calm_since >= policy.down_after_s:
                current -= 1
                self._changed_at = self._calm_since = now
        else:
            self._calm_since = None
        self.replicas = current
        return current

    def _asked(self, inflight: float, low: int, high: int) -> int:
        return min(high, max(low, math.ceil(inflight / self.policy.target_inflight - 1e-9)))

    def reset(self, replicas: int, now: float) -> None:
        """Start again from ``replicas`` with no load seen (after scaling to zero)."""
        self.replicas = replicas
        self.average = 0.0
        self._seen_at = self._changed_at = now
        self._calm_since = None
