"""The API reference in Chromium: how soon it shows its tags and opens one.

Starts ``loopml up`` on a fresh home (loopback, authentication off) and opens, each time in
a fresh browser context (an empty cache), alternating in the same rounds:
- **/docs**: the reference loopml draws on the server from its OpenAPI document
  (``loopml.portal.reference``: HTML, no script);
- **swagger**: Swagger UI (``/docs/try``, which ``/docs`` was until issue 55) over the
  document as loopml serves it (error answers and common parameters written once);
- **swagger-inline**: Swagger UI over FastAPI's own document, every answer and parameter
  written out in every operation (the served one with its references followed, as
  ``tests/unit/api/test_openapi.py`` proves it is), handed to the page in its place.
For each it prints the page's or the document's size and, median and max of ``--rounds``:
the time from navigation to the ``deployments`` tag drawn, and from its click to its
operations drawn.

Target (issue 55): the reference usable within 1 s of opening on this machine.

Run: ``.venv/bin/python bench/docs_page.py`` (``--rounds 5``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from playwright.sync_api import Browser, sync_playwright

from loopml.api.openapi import inline_shared


@dataclass(frozen=True)
class Face:
    path: str
    tag: str
    """The deployments tag, once drawn."""
    operation: str
    """An operation of the tag, once it shows."""
    document: bytes | None = None
    """What the page gets in place of the served OpenAPI document."""


SERVER = Face("/docs", "#tag-deployments > summary", "#tag-deployments details.op")
SWAGGER = Face("/docs/try", "#operations-tag-deployments", ".opblock-tag-section.is-open .opblock")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _open(browser: Browser, url: str, face: Face) -> tuple[float, float]:
    """Seconds to the tag drawn, then from the tag's click to its operations drawn."""
    context = browser.new_context()
    try:
        page = context.new_page()
        if face.document is not None:
            body = face.document
            page.route(
                "**/api/v1/openapi.json",
                lambda route: route.fulfill(body=body, content_type="application/json"),
            )
        started = time.perf_counter()
        page.goto(url + face.path)
        page.locator(face.tag).wait_for(timeout=120_000)
        drawn = time.perf_counter() - started
        clicked = time.perf_counter()
        page.locator(face.tag).click()
        page.locator(face.operation).first.wait_for(timeout=120_000)
        return drawn, time.perf_counter() - clicked
    finally:
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="loopml-bench-docs-"))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LOOPML_HOME": str(home), "LOOPML_MONITOR_INTERVAL_S": "3600"}
    command = [str(Path(sys.executable).with_name("loopml")), "up", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit("loopml up did not answer within 120 s")
            time.sleep(0.2)
        served = httpx.get(url + "/api/v1/openapi.json", timeout=60).content
        inline = json.dumps(inline_shared(json.loads(served)), separators=(",", ":")).encode()
        faces = {
            "/docs": SERVER,
            "swagger": SWAGGER,
            "swagger-inline": Face(SWAGGER.path, SWAGGER.tag, SWAGGER.operation, inline),
        }
        sizes = {
            "/docs": len(httpx.get(url + "/docs", timeout=60).content),
            "swagger": len(served),
            "swagger-inline": len(inline),
        }
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in faces}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=args.chromium,
                headless=True,
                args=["--no-sandbox", "--disable-gpu"],
            )
            for face in faces.values():
                _open(browser, url, face)  # warm-up: the server's first answers
            for _ in range(args.rounds):
                for name, face in faces.items():
                    figures[name].append(_open(browser, url, face))
            browser.close()
    finally:
        server.terminate()
        server.wait(30)
    print(f"The API reference in Chromium, {args.rounds} rounds, a fresh context each (seconds)")
    head = ("page", "KB", "tag drawn", "max", "opened", "max")
    print("{:<15} {:>6} {:>10} {:>6} {:>7} {:>6}".format(*head))
    for name, rows in figures.items():
        drawn, opened = ([r[i] for r in rows] for i in range(2))
        print(
            f"{name:<15} {sizes[name] / 1024:>6.0f} {statistics.median(drawn):>10.2f} "
            f"{max(drawn):>6.2f} {statistics.median(opened):>7.2f} {max(opened):>6.2f}"
        )
    print("(medians but for max; KB: the page for /docs, the OpenAPI document for Swagger UI)")
    ours = statistics.median(r[0] for r in figures["/docs"])
    for name in ("swagger", "swagger-inline"):
        theirs = statistics.median(r[0] for r in figures[name])
        print(f"tag drawn: {name} / /docs = {theirs / ours:.1f}x")


if __name__ == "__main__":
    main()
