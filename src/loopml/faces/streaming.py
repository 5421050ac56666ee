"""Request bodies streamed into blocking readers and writers: the API routes that take uploads."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio.from_thread
import anyio.lowlevel

_PIECE = 1024 * 1024


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


def pulled_pieces(
    body: AsyncIterator[bytes], token: anyio.lowlevel.EventLoopToken
) -> Iterator[bytes]:
    """The chunks of an async body for a blocking reader, pulled from the event loop about
    a megabyte at a time (memory holds one piece). The socket delivers a body in chunks of
    tens of kilobytes; one trip to the event loop per chunk cost a 91 MB upload about a
    tenth of a second. Unlike ``blocking_chunks`` it may be iterated from any thread, not
    only the worker thread: Arrow's readers read ahead in threads of their own.
    """

    async def next_piece() -> bytes:
        parts: list[bytes] = []
        size = 0
        while size < _PIECE:
            try:
                chunk = await body.__anext__()
            except StopAsyncIteration:
                break
            parts.append(chunk)
            size += len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    while piece := anyio.from_thread.run(next_piece, token=token):
        yield piece
