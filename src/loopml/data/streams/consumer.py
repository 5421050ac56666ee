"""A stream's consumer: fetch, gather micro-batches, commit in a worker thread, then ack.

A micro-batch closes at ``batch_rows`` messages or ``batch_ms`` after its first message,
whichever comes first. While one batch commits, the next one gathers; a third waits for
the commit (backpressure: at most two batches are held, and what the broker has not
delivered stays there). Messages are acknowledged only once their commit is recorded; a
commit that fails is retried with backoff, acking nothing meanwhile, so the broker holds
the messages until the lake takes them.

The consumer reports its status, lag, rate and errors on the stream's row every few
seconds, and reads back whether the stream was paused (it then stops fetching; the batch
in hand is committed first), deleted (it stops) or updated (it stops, and the supervisor
starts it again with the new definition).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import anyio.to_thread

from loopml.core.clock import utcnow
from loopml.core.errors import ConfigurationError, ConflictError, LoopmlError, NotFoundError
from loopml.core.streams import Stream, StreamStats
from loopml.data.streams._commit import HoldLostError, Outcome, StreamCommitter
from loopml.data.streams.base import Message, StreamSource, consumer_name, open_source
from loopml.settings import LakeSettings, StreamsSettings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore
from loopml.store import streams as stream_rows

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("loopml.data.streams")
T = TypeVar("T")
CLOSE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ConsumerOptions:
    """Knobs of a consumer that are not part of a stream's definition.

    Attributes:
        fetch_max: most messages asked of the broker at once.
        report_every_s: how often the status is written to the stream's row.
        retry_first_s: first wait after a failed commit or fetch, doubled up to
            ``retry_max_s``.
        stop_grace_s: once asked to stop, how long a failing commit of the batch in hand
            is still retried before the consumer gives it up (unacked: the broker
            redelivers it to the next consumer).
    """

    fetch_max: int = 5_000
    report_every_s: float = 2.0
    retry_first_s: float = 0.2
    retry_max_s: float = 30.0
    stop_grace_s: float = 10.0


class StreamConsumer:
    """Consumes one stream into its table until ``stop`` is set.

    Args:
        store: the metadata store.
        artifacts: the artifact store holding the lake.
        settings: the lake's settings.
        stream: the stream to consume.
        source: the broker source (made from the stream's config when omitted).
        options: see ``ConsumerOptions``.
        push: gets each batch's rows before they are committed (the stream's ``push``
            feature views: ``loopml.data.features.push.OnlinePush``).
        secrets: the server's stream settings, for the source's login (a Kafka SASL
            password).
    """

    def __init__(
        self,
        store: MetadataStore,
        artifacts: ArtifactStore,
        settings: LakeSettings,
        stream: Stream,
        *,
        source: StreamSource | None = None,
        options: ConsumerOptions | None = None,
        push: Callable[[pa.Table], None] | None = None,
        secrets: StreamsSettings | None = None,
    ) -> None:
        self.store = store
        self.stream = stream
        self.options = options or ConsumerOptions()
        self.source = source or open_source(
            stream.config.source, consumer_name(stream), stream.config.redeliver_s, secrets
        )
        self.owner = f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.committer = StreamCommitter(
            store,
            artifacts,
            settings,
            stream,
            self.source.id_text,
            actor=f"stream:{stream.name}",
            owner=self.owner,
            push=push,
        )
        self.stats = StreamStats(status="starting")
        self.paused = stream.paused
        self._stop = asyncio.Event()
        self._stopped_at = 0.0
        self._since = time.monotonic()
        self._counted = 0
        self.committed = 0
        """Messages this consumer has committed (rows and dead letters)."""

    def stop(self) -> None:
        """Ask the consumer to commit what it holds, ack it, and return."""
        if not self._stop.is_set():
            self._stopped_at = time.monotonic()
        self._stop.set()

    async def run(self) -> None:
        """Consume until ``stop``; a failed commit or fetch is retried, a missing JetStream
        stream or client library raises ``ConfigurationError``."""
        await self._retry(lambda: anyio.to_thread.run_sync(self._claim))
        try:
            await self._open()
            await self._retry(lambda: anyio.to_thread.run_sync(self.committer.load))
            self.stats.status = "paused" if self.paused else "running"
            # Say so before the first batch: a stream whose messages landed reads "running",
            # not the "stopped" it was created with, even if it ends within one interval.
            await self._retry(self._report)
            reporter = asyncio.create_task(self._report_loop())
            try:
                await self._consume()
            finally:
                # The reporter ends on the stop itself; the cancel only cuts its sleep or
                # report short. A cancel alone can be lost: Python 3.11's asyncio.wait_for
                # returns the inner result when the inner call ends as the cancel arrives,
                # and a consumer sent SIGTERM then awaited its reporter for ever (census
                # run 21).
                self.stop()
                reporter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reporter
                self.stats.status = "stopped"
                await self._report()
        finally:
            await self._close_source()
            with contextlib.suppress(Exception):
                await anyio.to_thread.run_sync(self._release)

    async def _close_source(self) -> None:
        """Disconnect, but never hold a stopping consumer for longer than ``CLOSE_TIMEOUT_S``:
        a broker client whose close hangs (a half-open socket) is left to the process's end."""
        try:
            await asyncio.wait_for(self.source.close(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.warning(
                "stream %s: the broker connection did not close within %g s; left open",
                self.stream.name,
                CLOSE_TIMEOUT_S,
            )

    async def _open(self) -> None:
        """Open the source; a definition it cannot serve (no JetStream stream for the
        subject) is reported on the stream's row before it is raised, so ``streams show``,
        the API and ``/metrics`` say why, not only the foreground ``streams run``."""
        try:
            await self._retry(self.source.open)
        except ConfigurationError as exc:
            self._failed("starting", exc)
            with contextlib.suppress(Exception):
                await self._report()
            raise

    def _claim(self) -> None:
        # A consumer killed without a word holds the stream until its heartbeat is stale.
        stale_s = 3 * self.options.report_every_s
        with self.store.session() as session:
            other = stream_rows.claim(session, self.stream.id, self.owner, stale_s)
        if other is not None:
            raise ConflictError(
                f"stream {self.stream.name!r} is consumed by {other}; waiting for it to stop "
                f"or for its heartbeat to be {stale_s:g} s old"
            )

    def _release(self) -> None:
        with self.store.session() as session:
            stream_rows.release(session, self.stream.id, self.owner)

    async def _consume(self) -> None:
        config = self.stream.config
        window = config.batch_ms / 1000
        pending: list[Message] = []
        first_at = 0.0
        inflight: asyncio.Task[None] | None = None
        while not self._stop.is_set():
            if self.paused:
                if pending:
                    inflight = await self._hand_over(inflight, pending)
                    pending = []
                await self._sleep(0.2)
                continue
            wait = window if not pending else max(0.0, first_at + window - time.monotonic())
            want = min(self.options.fetch_max, config.batch_rows - len(pending))
            got = await self._fetch(want, wait)
            if got and not pending:
                first_at = time.monotonic()
            pending.extend(got)
            full = len(pending) >= config.batch_rows
            if pending and (full or time.monotonic() >= first_at + window):
                inflight = await self._hand_over(inflight, pending)
                pending = []
        if pending:
            inflight = await self._hand_over(inflight, pending)
        if inflight is not None:
            await inflight

    async def _hand_over(
        self, inflight: asyncio.Task[None] | None, batch: list[Message]
    ) -> asyncio.Task[None]:
        if inflight is not None:
            await inflight  # backpressure: one batch commits while the next gathers
        return asyncio.create_task(self._commit_and_ack(batch))

    async def _fetch(self, want: int, wait: float) -> list[Message]:
        try:
            return await self.source.fetch(want, wait)
        except Exception as exc:
            self._failed("fetching", exc)
            await self._sleep(self.options.retry_first_s)
            return []

    async def _commit_and_ack(self, batch: list[Message]) -> None:
        delay = self.options.retry_first_s
        while True:
            try:
                floor = await self.source.floor()
                outcome: Outcome = await anyio.to_thread.run_sync(
                    self.committer.commit, batch, floor
                )
                await self.source.ack(batch)
            except HoldLostError as exc:
                self._failed("committing", exc)
                self.stop()  # another consumer has the stream: it will redeliver the batch
                return
            except Exception as exc:
                self._failed("committing", exc)
                if self._stop.is_set():
                    if self._give_up(exc):
                        return  # shutting down: the broker redelivers the batch
                    await asyncio.sleep(min(delay, 1.0))  # _sleep returns at once now
                else:
                    await self._sleep(delay)
                delay = min(delay * 2, self.options.retry_max_s)
                continue
            self.committed += outcome.rows + outcome.dead
            self._counted += outcome.rows + outcome.dead
            if self.stats.status == "failing":
                self.stats.status = "running"
            return

    def _give_up(self, exc: Exception) -> bool:
        """Whether a stopping consumer leaves a failing batch to the broker: at once for an
        error of loopml's own (it will not pass), after ``stop_grace_s`` for any other (a
        broker or disk that does not come back must not hold the process forever)."""
        if isinstance(exc, LoopmlError):
            return True
        return time.monotonic() - self._stopped_at >= self.options.stop_grace_s

    def _failed(self, what: str, exc: Exception) -> None:
        self.stats.errors += 1
        self.stats.last_error = f"{what}: {type(exc).__name__}: {exc}"[:500]
        self.stats.last_error_at = utcnow()
        self.stats.status = "failing"
        log.warning("stream %s: %s failed: %s", self.stream.name, what, exc, exc_info=True)

    async def _retry(self, call: Callable[[], Awaitable[T]]) -> T:
        delay = self.options.retry_first_s
        while True:
            try:
                return await call()
            except ConfigurationError:
                raise
            except Exception as exc:
                self._failed("starting", exc)
                if self._stop.is_set():
                    raise
                await self._sleep(delay)
                delay = min(delay * 2, self.options.retry_max_s)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _report_loop(self) -> None:
        # Also how a pause reaches the consumer: within one interval. Until the stop.
        while not self._stop.is_set():
            await self._sleep(self.options.report_every_s)
            if self._stop.is_set():
                return
            try:
                await self._report()
            except Exception:
                log.warning("stream %s: reporting failed", self.stream.name, exc_info=True)

    async def _report(self) -> None:
        now = time.monotonic()
        self.stats.rate = round(self._counted / max(now - self._since, 1e-6), 1)
        self._since, self._counted = now, 0
        try:  # between commits too (a burst's last batch, a pause): the lag as of now
            await asyncio.wait_for(self.source.floor(), 5)
        except Exception as exc:  # a measurement only: the commits' own reads decide
            log.debug("stream %s: measuring the lag failed: %s", self.stream.name, exc)
        self.stats.lag = self.source.lag
        stats = self.stats.model_copy()

        def write() -> bool | None:
            with self.store.session() as session:
                try:
                    found = stream_rows.by_id(session, self.stream.id)
                except NotFoundError:
                    return None
                if found.config != self.stream.config:
                    return None  # updated: commit what is held, the supervisor restarts us
                paused = found.paused
                if stats.status in ("running", "paused"):
                    stats.status = "paused" if paused else "running"
                if not stream_rows.report(session, self.stream.id, stats, self.owner):
                    return None  # another consumer took the stream over
                return paused

        paused = await anyio.to_thread.run_sync(write)
        if paused is None:  # deleted, updated, or another consumer's now
            self.stop()
            return
        self.paused = paused
        if self.stats.status in ("running", "paused"):
            self.stats.status = stats.status
