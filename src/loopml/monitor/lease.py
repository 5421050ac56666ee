"""One monitor per database: the lease a monitor holds to run its rounds.

Every ``loopml up`` runs a monitor; on one database only the lease's holder reads the
prediction logs, so each row is counted once. A round first takes or renews the lease
(``now + lease_s``); a monitor that finds it held by another, unexpired, skips the round. A
holder that stops releases it; one that dies is replaced once its lease has expired. The
monitor's writes check, under the lease row's lock, that it still holds the lease: a holder
paused past its expiry and taken over commits nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import datetime
from typing import Any

from loopml.core.errors import ConflictError
from loopml.store import MetadataStore
from loopml.store import monitor as rows

log = logging.getLogger("loopml.monitor")
MIN_LEASE_S = 30.0


class LeaseLost(Exception):
    """Another monitor took the lease over while this one was in its round."""


def lease_seconds(interval_s: float) -> float:
    """How long a taken lease lasts: three rounds, at least ``MIN_LEASE_S``."""
    return max(3 * interval_s, MIN_LEASE_S)


class Lease:
    """This monitor's claim on the database's lease (a random id, with host and pid for
    people reading the row)."""

    def __init__(self, store: MetadataStore, lease_s: float) -> None:
        self.store, self.lease_s = store, lease_s
        self.holder: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "host": socket.gethostname()[:100],
            "pid": os.getpid(),
        }
        self.held = False

    @property
    def id(self) -> str:
        return str(self.holder["id"])

    def take(self, now: datetime) -> bool:
        """Take or renew the lease; whether this monitor holds it now."""
        try:
            with self.store.session() as session:
                found = rows.take_lease(session, self.holder, now=now, lease_s=self.lease_s)
        except ConflictError:
            found = {}
        mine = found.get("id") == self.id
        if mine and not self.held:
            log.info(
                "this server (%s, pid %s) now runs the monitor; lease until %s",
                self.holder["host"],
                self.holder["pid"],
                found["expires_at"],
            )
        elif not mine:
            log.debug(
                "monitor round skipped: %s (pid %s) holds the lease until %s",
                found.get("host"),
                found.get("pid"),
                found.get("expires_at"),
            )
        self.held = mine
        return mine

    def check(self, session: Any) -> None:
        """Raise ``LeaseLost`` unless this monitor still holds the lease (inside the
        transaction whose writes it fences)."""
        if not rows.holds_lease(session, self.id):
            self.held = False
            raise LeaseLost(f"monitor {self.id} lost its lease")

    def release(self) -> None:
        """Let the lease go, if held (a monitor stopping)."""
        with self.store.session() as session:
            released = rows.release_lease(session, self.id)
        if released:
            log.info("monitor lease released")
        self.held = False
