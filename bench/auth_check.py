"""What the serving path's token check costs per request (issue 16's serving benchmark, in
part): the gateway's ``ServingAuthMiddleware`` with a remembered token, against no check, on
the same trivial ASGI app, in this process (no network, no model), so the difference is the
check alone. The full gateway benchmark with auth on is ``bench/serving.py`` (not yet wired
to turn auth on).

Run: ``python bench/auth_check.py [--requests 20000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from loopml.api.serving_auth import ServingAuthMiddleware
from loopml.auth import service
from loopml.auth.cache import TokenCache
from loopml.auth.ratelimit import FailureLimiter
from loopml.core.auth import Principal
from loopml.store import MetadataStore


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _run(app: Any, headers: list[tuple[bytes, bytes]], n: int) -> float:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/deployments/churn-api/predict",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(_: Any) -> None:
        return None

    started = time.perf_counter()
    for _ in range(n):
        await app(dict(scope), receive, send)
    return (time.perf_counter() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = MetadataStore(f"sqlite:///{Path(folder) / 'db.sqlite'}")
        store.upgrade()
        service.create_user(
            store, "root", "a long admin passphrase", platform_admin=True, actor="b"
        )
        root = Principal(user="root", token_id=None, platform_admin=True, roles={})
        token = service.create_token(store, b"k" * 32, root, name="bench").token
        assert token is not None
        checked = ServingAuthMiddleware(_app, TokenCache(store, b"k" * 32), FailureLimiter(10))
        headers = [(b"authorization", f"Bearer {token}".encode())]
        for label, app, sent in (("no check", _app, []), ("token check", checked, headers)) * 2:
            per = asyncio.run(_run(app, sent, args.requests))
            print(f"{label:12s} {per * 1e6:8.1f} us per request")
        store.dispose()


if __name__ == "__main__":
    main()
