"""Request bodies streamed into blocking writers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio.from_thread


def blocking_chunks(body: AsyncIterator[bytes]) -> Iterator[bytes]:
    """The chunks of an async body, for a blocking writer running in a worker thread.

    Each chunk is awaited on the event loop as the writer asks for it, so memory holds one
    chunk whatever the body's size. Iterate it only inside ``anyio.to_thread.run_sync``.
    """

    async def next_chunk() -> bytes:
        return await body.__anext__()

    while True:
        try:
            chunk = anyio.from_thread.run(next_chunk)
        except StopAsyncIteration:
            return
        if chunk:
            yield chunk
