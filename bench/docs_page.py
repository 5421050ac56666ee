"""The API reference (``/docs``) in Chromium: how soon it shows its tags and opens one.

Starts ``loopml up`` on a fresh home (loopback, authentication off) and opens ``/docs`` in
Debian's Chromium (Playwright; ``--chromium PATH``), each time in a fresh browser context
(an empty cache), alternating two documents in the same rounds:
- **shared**: the document loopml serves, with the error answers and the common
  parameters written once and referred to (``loopml.api.openapi``);
- **inline**: FastAPI's own, every answer and parameter written out in every operation
  (the served one with its references followed, as ``tests/unit/api/test_openapi.py``
  proves it is), handed to the page in place of the served one.
For each it prints the document's size and, median and max of ``--rounds``: the time from
navigation to the ``deployments`` tag drawn, and from its click to its operations drawn.

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
from pathlib import Path

import httpx
from playwright.sync_api import Browser, sync_playwright

from loopml.api.openapi import inline_shared

TAG = "#operations-tag-deployments"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _open(browser: Browser, url: str, body: bytes | None) -> tuple[float, float, float]:
    """Seconds to the tag drawn; of those, until the page asked for the document (Swagger
    UI's bundle loaded and started); then from the tag's click to its operations drawn."""
    context = browser.new_context()
    try:
        page = context.new_page()
        if body is not None:
            page.route(
                "**/api/v1/openapi.json",
                lambda route: route.fulfill(body=body, content_type="application/json"),
            )
        started = time.perf_counter()
        page.goto(url + "/docs")
        page.locator(TAG).wait_for(timeout=120_000)
        drawn = time.perf_counter() - started
        asked = page.evaluate(
            "performance.getEntriesByType('resource')"
            ".filter(e => e.name.endsWith('/api/v1/openapi.json'))[0].startTime / 1000"
        )
        clicked = time.perf_counter()
        page.locator(TAG).click()
        page.locator(".opblock-tag-section.is-open .opblock").first.wait_for(timeout=120_000)
        return drawn, float(asked), time.perf_counter() - clicked
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
        bodies = {"shared": None, "inline": inline}
        sizes = {"shared": len(served), "inline": len(inline)}
        figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in bodies}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=args.chromium,
                headless=True,
                args=["--no-sandbox", "--disable-gpu"],
            )
            _open(browser, url, None)  # warm-up: the server's first answers
            for _ in range(args.rounds):
                for name, body in bodies.items():
                    figures[name].append(_open(browser, url, body))
            browser.close()
    finally:
        server.terminate()
        server.wait(30)
    print(f"/docs in Chromium, {args.rounds} rounds, a fresh context each (seconds)")
    head = ("document", "KB", "tag drawn", "max", "document asked at", "opened", "max")
    print("{:<8} {:>6} {:>10} {:>6} {:>18} {:>7} {:>6}".format(*head))
    for name, rows in figures.items():
        drawn, asked, opened = ([r[i] for r in rows] for i in range(3))
        print(
            f"{name:<8} {sizes[name] / 1024:>6.0f} {statistics.median(drawn):>10.2f} "
            f"{max(drawn):>6.2f} {statistics.median(asked):>18.2f} "
            f"{statistics.median(opened):>7.2f} {max(opened):>6.2f}"
        )
    print("(medians but for max; 'document asked at': Swagger UI's bundle loaded and started)")
    ratio = statistics.median(r[0] for r in figures["inline"]) / statistics.median(
        r[0] for r in figures["shared"]
    )
    print(f"tag drawn: inline / shared = {ratio:.2f}x")


if __name__ == "__main__":
    main()
