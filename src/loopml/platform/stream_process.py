"""``python -m loopml.platform.stream_process SETTINGS_FILE STREAM_ID``: one stream's consumer
process, started and restarted by the supervisor. SIGTERM commits what it holds and exits."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from loopml.data.streams.consumer import StreamConsumer
from loopml.settings import Settings
from loopml.store import streams as stream_rows
from loopml.system import heap
from loopml.wiring import open_artifact_store, open_metadata_store


def run(settings: Settings, stream_id: str) -> int:
    """Consume the stream until SIGTERM, SIGINT or its deletion; the exit status."""
    store = open_metadata_store(settings)
    try:
        with store.session() as session:
            stream = stream_rows.by_id(session, stream_id)
        online = None
        push = None
        if stream.config.push:
            from loopml.data.features.online import open_online_store
            from loopml.data.features.push import OnlinePush

            online = open_online_store(settings.features.online, settings.home)
            config = stream.config
            push = OnlinePush(store, online, stream.project, config.table, config.push)
        consumer = StreamConsumer(
            store,
            open_artifact_store(settings),
            settings.lake,
            stream,
            push=push,
            secrets=settings.streams,
        )
        # See loopml.system.heap: at the default thresholds each fetched batch of 5,000
        # entries started collections that walked every message in hand, more than half of
        # a consumer's time (bench/streams.py).
        heap.settle()

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, consumer.stop)
            await consumer.run()

        try:
            asyncio.run(main())
        finally:
            if online is not None:
                online.close()
        return 0
    finally:
        store.dispose()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    data = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    return run(Settings.model_validate(data), argv[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
