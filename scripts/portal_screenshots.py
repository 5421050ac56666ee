"""Regenerate the portal's screenshots in docs/img/ (used by docs/portal.md).

Starts ``loopml up`` in a temporary home with authentication on, runs the demo through it,
logs a platform admin in with Debian's Chromium and saves one PNG per page, in the light
theme. Takes a few minutes (the demo trains and deploys). Needs Chromium at
/usr/bin/chromium (or LOOPML_TEST_CHROMIUM) and Playwright for Python (the dev extra).

    python scripts/portal_screenshots.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

USER, PASSWORD = "admin", "a long screenshot passphrase"
# (file name, path on the server or a callable choosing it from the data, what it shows)
PAGES = [
    ("login", "/login", "the login form"),
    ("overview", "/", "the overview"),
    ("deployment", "/projects/demo/deployments/cancer-api", "a deployment's detail page"),
    ("deploy", "/deploy?project=demo", "the deploy form"),
    ("models", "/models/demo/cancer", "a model's versions, gate reports and lineage"),
    ("runs", "/runs?project=demo", "the runs table"),
    ("data", "/data?project=demo", "tables, datasets and contracts"),
    ("pipelines", "/pipelines?project=demo", "pipelines, schedules and triggers"),
    ("settings", "/settings", "tokens and users"),
    ("docs", "/docs", "the API reference"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _loopml(env: dict[str, str], *args: str, stdin: str | None = None) -> None:
    command = [sys.executable, "-m", "loopml.cli.main", *args]
    subprocess.run(command, env=env, input=stdin, text=True, check=True, timeout=900)


def _wait(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=2).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("loopml up did not become ready")


def shoot(out: Path) -> list[Path]:
    """Start a server, fill it with the demo, save the screenshots; the files written."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="loopml-shots-"))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    env.update(LOOPML_HOME=str(home), LOOPML_AUTH_ENABLED="true", OMP_WAIT_POLICY="passive")
    _loopml(env, "users", "create-admin", USER, "--password-stdin", stdin=PASSWORD + "\n")
    server = subprocess.Popen(
        [sys.executable, "-m", "loopml.cli.main", "up", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    written: list[Path] = []
    try:
        _wait(url, server)
        login = httpx.post(
            f"{url}/api/v1/auth/login",
            json={"user": USER, "password": PASSWORD, "expires_in_days": 1},
        )
        login.raise_for_status()
        client_env = {**env, "LOOPML_CLIENT_URL": url, "LOOPML_TOKEN": login.json()["token"]}
        _loopml(client_env, "demo", "--budget-s", "20", "--canary-s", "3")
        chromium = os.environ.get("LOOPML_TEST_CHROMIUM", "/usr/bin/chromium")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{url}/login")
            page.screenshot(path=str(out / "portal-login.png"))
            written.append(out / "portal-login.png")
            page.get_by_label("User name").fill(USER)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(f"{url}/")
            for name, path, _ in PAGES[1:]:
                answer = page.goto(url + path)
                page.wait_for_load_state("networkidle")
                if answer is None or answer.status >= 400:
                    print(f"skipped {name}: {path} answered {answer and answer.status}")
                    continue
                target = out / f"portal-{name}.png"
                page.screenshot(path=str(target), full_page=True)
                written.append(target)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    for path in shoot(args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
