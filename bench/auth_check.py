"""Issue 16's authentication figures, in this process (no network):

- **check**: what the serving path's token check costs per request: the gateway's
  ``ServingAuthMiddleware`` with a remembered token, against no check, on the same trivial
  ASGI app (no model), so the difference is the check alone. The whole gateway with auth on
  against off is ``bench/serving.py --auth``.
- **login**: ``POST /api/v1/auth/login`` through the real app (argon2id verification, the new
  token, its row), median and p95 of ``--logins`` calls, beside one argon2id verification
  alone, against the 300 ms target.

Run: ``python bench/auth_check.py [--only check|login] [--requests 20000] [--logins 30]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from loopml.auth import passwords, service
from loopml.auth.cache import TokenCache
from loopml.auth.ratelimit import FailureLimiter
from loopml.core.auth import Principal
from loopml.platform.serving_auth import ServingAuthMiddleware
from loopml.store import MetadataStore

LOGIN_TARGET_MS = 300.0
PASSWORD = "a long admin passphrase"


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


def check(requests: int) -> None:
    """Print the per-request cost without and with the token check (twice, interleaved)."""
    with tempfile.TemporaryDirectory() as folder:
        store = MetadataStore(f"sqlite:///{Path(folder) / 'db.sqlite'}")
        store.upgrade()
        service.create_user(store, "root", PASSWORD, platform_admin=True, actor="b")
        root = Principal(user="root", token_id=None, platform_admin=True, roles={})
        token = service.create_token(store, b"k" * 32, root, name="bench").token
        assert token is not None
        checked = ServingAuthMiddleware(_app, TokenCache(store, b"k" * 32), FailureLimiter(10))
        headers = [(b"authorization", f"Bearer {token}".encode())]
        for label, app, sent in (("no check", _app, []), ("token check", checked, headers)) * 2:
            per = asyncio.run(_run(app, sent, requests))
            print(f"{label:12s} {per * 1e6:8.1f} us per request")
        store.dispose()


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1e3, p95 * 1e3


def login(logins: int) -> None:
    """Print the median and p95 of real logins through the app, and of one verification."""
    from fastapi.testclient import TestClient

    from loopml.platform import create_api_app
    from loopml.settings import Settings

    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            home=Path(folder) / "home",
            database={"url": f"sqlite:///{Path(folder) / 'db.sqlite'}"},
            artifacts={"root": str(Path(folder) / "artifacts")},
            auth={"enabled": True},
        )
        with TestClient(create_api_app(settings), base_url="http://127.0.0.1") as http:
            store = http.app.state.running.context.store  # type: ignore[attr-defined]
            service.create_user(store, "root", PASSWORD, platform_admin=True, actor="b")
            body = {"user": "root", "password": PASSWORD}
            took: list[float] = []
            for i in range(logins + 2):
                started = time.perf_counter()
                answer = http.post("/api/v1/auth/login", json=body)
                if i >= 2:  # the first two warm the app up
                    took.append(time.perf_counter() - started)
                assert answer.status_code == 201, answer.text
    stored = passwords.hash_password(PASSWORD)
    verify: list[float] = []
    for _ in range(logins):
        started = time.perf_counter()
        assert passwords.verify_password(stored, PASSWORD)
        verify.append(time.perf_counter() - started)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"argon2id {stored.split('$')[3]}, {logins} calls each, load average {load:.1f}")
    print(f"{'':22s} {'median':>9s} {'p95':>9s} {'target':>9s}")
    for label, samples in (("login (whole request)", took), ("argon2id verify alone", verify)):
        median, p95 = _ms(samples)
        target = f"{LOGIN_TARGET_MS:.0f} ms" if samples is took else ""
        verdict = ("  met" if median <= LOGIN_TARGET_MS else "  NOT met") if target else ""
        print(f"{label:22s} {median:6.1f} ms {p95:6.1f} ms {target:>9s}{verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["check", "login"], default=None)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--logins", type=int, default=30)
    args = parser.parse_args()
    if args.only in (None, "check"):
        check(args.requests)
    if args.only in (None, "login"):
        login(args.logins)


if __name__ == "__main__":
    main()
