"""Regenerate the portal's screenshots in docs/img/ (used by docs/portal.md).

Starts ``loopml up`` in a temporary home with authentication on, runs the demo through it,
adds a viewer of the demo project (so the user management shows more than the admin), logs
a platform admin in with Debian's Chromium and saves one PNG per page, in the light theme,
plus the deployment page's drift histograms and the settings page's user management on
their own. Pages whose address needs an id (a run, a pipeline run, runs compared) take it
from the demo's data. Takes a few minutes (the demo trains and deploys). Needs Chromium at
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
from typing import TYPE_CHECKING
from urllib.parse import quote_plus

import httpx

if TYPE_CHECKING:
    from playwright.sync_api import Page

USER, PASSWORD = "admin", "a long screenshot passphrase"
SQL = "SELECT * FROM patients ORDER BY 1 LIMIT 20"
VIEWER, VIEWER_PASSWORD = "vera", "a long viewer passphrase 1"
# (file name, path on the server, what it shows); {run}, {runs} and {pipeline_run} are
# filled from the demo's data (a run's id, up to three runs' ids, the retrain's newest run).
PAGES = [
    ("login", "/login", "the login form"),
    ("overview", "/", "the overview"),
    ("deployment", "/projects/demo/deployments/cancer-api", "a deployment's detail page"),
    ("deploy", "/deploy?project=demo", "the deploy form"),
    ("models", "/models/demo/cancer", "a model's versions, gate reports and lineage graph"),
    ("model-compare", "/models/demo/cancer/compare?a=1&b=2", "two versions compared"),
    ("runs", "/runs?project=demo", "the runs table"),
    ("run", "/runs/demo/{run}", "a run: params, metric charts, artifacts"),
    ("runs-compare", "/runs/compare?project=demo&ids={runs}", "runs compared side by side"),
    ("data", "/data?project=demo", "tables, datasets and contracts"),
    ("sql", "/data/demo/sql?q=" + quote_plus(SQL), "the read-only SQL console"),
    ("pipelines", "/pipelines?project=demo", "pipelines, schedules and triggers"),
    ("pipeline-run", "/pipelines/demo/runs/{pipeline_run}", "a pipeline run's DAG by step state"),
    ("settings", "/settings", "tokens and users"),
    ("docs", "/docs", "the API reference"),
]
# (file name, page, the element shot alone, what it shows)
PARTS = [
    (
        "drift",
        "/projects/demo/deployments/cancer-api",
        "section[aria-labelledby=drift-h]",
        "drift per feature with each feature's two histograms",
    ),
    ("users", "/settings", "section[aria-labelledby=users-h]", "user management"),
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


def _ids(url: str, token: str) -> dict[str, str]:
    """The ids the pages with one in their address need, from the demo's data."""
    from loopml.client import Client

    with Client(url, token=token) as client:
        runs = client.runs.search(project="demo").items[:3]
        pipeline_runs = client.pipelines.runs(project="demo", pipeline="retrain").items
        client.users.create(VIEWER, VIEWER_PASSWORD)
        client.users.set_role("demo", VIEWER, "viewer")
    return {
        "run": runs[0].id,
        "runs": ",".join(r.id for r in runs),
        "pipeline_run": pipeline_runs[0].id,
    }


def _visit(page: Page, url: str) -> bool:
    """Load a page and let its requests and charts settle; whether it answered 200."""
    answer = page.goto(url)
    page.wait_for_load_state("networkidle")
    if answer is None or answer.status != 200:
        print(f"skipped {url}: answered {answer and answer.status}")
        return False
    return True


def _shoot_pages(page: Page, url: str, out: Path, ids: dict[str, str]) -> list[Path]:
    written = []
    for name, path, _ in PAGES[1:]:
        if _visit(page, url + path.format(**ids)):
            target = out / f"portal-{name}.png"
            page.screenshot(path=str(target), full_page=True)
            written.append(target)
    for name, path, selector, _ in PARTS:
        part = page.locator(selector)
        if _visit(page, url + path) and part.count() == 1:
            target = out / f"portal-{name}.png"
            part.screenshot(path=str(target))
            written.append(target)
    return written


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
        token = login.json()["token"]
        client_env = {**env, "LOOPML_CLIENT_URL": url, "LOOPML_TOKEN": token}
        _loopml(client_env, "demo", "--budget-s", "20", "--canary-s", "3")
        ids = _ids(url, token)
        chromium = os.environ.get("LOOPML_TEST_CHROMIUM", "/usr/bin/chromium")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900}, color_scheme="light")
            page.goto(f"{url}/login")
            page.screenshot(path=str(out / "portal-login.png"))
            written.append(out / "portal-login.png")
            page.get_by_label("User name").fill(USER)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(f"{url}/")
            written += _shoot_pages(page, url, out, ids)
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
