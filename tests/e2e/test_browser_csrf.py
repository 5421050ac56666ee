"""A real browser (Debian's Chromium) on a page from another port cannot change loopml's state
(issue 16): the forms and ``fetch`` calls a hostile page can send reach ``loopml up`` and are
refused, and nothing is written. The unit matrix (tests/unit/api/test_csrf.py) sends the
headers by hand; this test lets the browser choose them, so it fails if a browser sends
something the guard does not expect (an ``Origin`` it omits, a content type it spells
differently)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from loopml.client import Client
from tests.conftest import serving

from .conftest import RunningServer, running_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Response

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

TABLE = "/api/v1/projects/default/tables/victim"
# Without the guard, each of these writes: a CSV body (the form's text/plain, or a no-cors
# fetch's) is sniffed and ingested by /files, and /compact reads no body at all.
FILES = f"{TABLE}/files?format=csv"
COMPACT = f"{TABLE}/compact"
PROJECTS = "/api/v1/projects"

# The page another site would serve. {loopml} is the server's origin. The form posts land in
# hidden frames so the page stays; each fetch reports how it ended in window.outcomes.
ATTACKER_PAGE = """<!doctype html>
<html><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe><iframe name="sink3"></iframe>
<form id="plain" method="post" enctype="text/plain" target="sink1" action="{loopml}{files}">
  <textarea name="note&#10;form-text-plain&#10;tail"></textarea>
</form>
<form id="urlencoded" method="post" target="sink2" action="{loopml}{projects}">
  <input type="hidden" name="name" value="pwned">
</form>
<form id="multipart" method="post" enctype="multipart/form-data" target="sink3"
      action="{loopml}{compact}">
  <input type="hidden" name="x" value="1">
</form>
<iframe sandbox="allow-scripts allow-forms" src="/sandboxed"></iframe>
<script>
window.outcomes = [];
window.addEventListener("message", (e) => window.outcomes.push(...e.data));
async function attempt(label, url, init) {{
  try {{
    const r = await fetch(url, init);
    window.outcomes.push([label, "sent:" + r.type]);
  }} catch (err) {{
    window.outcomes.push([label, "failed:" + err.name]);
  }}
}}
for (const id of ["plain", "urlencoded", "multipart"]) document.getElementById(id).submit();
attempt("no-cors csv", "{loopml}{files}",
        {{method: "POST", mode: "no-cors", body: "note\\nfetch-no-cors\\n"}});
attempt("no-cors compact", "{loopml}{compact}", {{method: "POST", mode: "no-cors"}});
attempt("cors json", "{loopml}{projects}", {{method: "POST",
        headers: {{"Content-Type": "application/json"}}, body: '{{"name": "pwned"}}'}});
</script>
</body></html>
"""
# Served into a sandboxed frame: its origin is opaque, so the browser sends Origin: null.
SANDBOXED_PAGE = """<!doctype html>
<html><body>
<form id="plain" method="post" enctype="text/plain" action="{loopml}{compact}">
  <input type="hidden" name="a" value="b">
</form>
<script>
(async () => {{
  const outcomes = [];
  async function attempt(label, url, init) {{
    try {{
      const r = await fetch(url, init);
      outcomes.push([label, "sent:" + r.type]);
    }} catch (err) {{
      outcomes.push([label, "failed:" + err.name]);
    }}
  }}
  await attempt("null no-cors csv", "{loopml}{files}",
                {{method: "POST", mode: "no-cors", body: "note\\nsandboxed\\n"}});
  await attempt("null cors json", "{loopml}{projects}", {{method: "POST",
                headers: {{"Content-Type": "application/json"}}, body: '{{"name": "pwned"}}'}});
  parent.postMessage(outcomes, "*");
  document.getElementById("plain").submit();
}})();
</script>
</body></html>
"""
# The POSTs the browser sends to loopml (the two JSON ones never leave it: their preflight,
# an OPTIONS loopml never grants, fails first).
SENT_POSTS = 7
EXPECTED_OUTCOMES = {
    ("no-cors csv", "sent:opaque"),
    ("no-cors compact", "sent:opaque"),
    ("cors json", "failed:TypeError"),
    ("null no-cors csv", "sent:opaque"),
    ("null cors json", "failed:TypeError"),
}


@contextmanager
def _serving(pages: dict[str, bytes]) -> Iterator[str]:
    """Another origin on this machine (127.0.0.1, another port) serving ``pages``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as url:
        yield url


@pytest.fixture
def attacker(server: RunningServer) -> Iterator[str]:
    """The hostile pages, on another port of 127.0.0.1."""
    fields = {"loopml": server.url, "files": FILES, "compact": COMPACT, "projects": PROJECTS}
    pages = {
        "/": ATTACKER_PAGE.format(**fields).encode(),
        "/sandboxed": SANDBOXED_PAGE.format(**fields).encode(),
    }
    with _serving(pages) as url:
        yield url


def _state(client: Client) -> dict[str, Any]:
    victim = client.tables.get("default", "victim")
    return {
        "projects": sorted(p.name for p in client.projects.list().items),
        "tables": sorted(t.name for t in client.tables.list("default")),
        "victim": (victim.version, victim.row_count),
        "events": len(client.events.list(limit=1000).items),
    }


def _wait(page: Page, done: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    # Playwright's sync API delivers events only while it is called: wait inside it.
    for _ in range(int(timeout_s / 0.05)):
        if done():
            return
        page.wait_for_timeout(50)
    pytest.fail(f"timed out waiting for {what}")


def test_a_page_on_another_port_cannot_change_state(
    server: RunningServer, attacker: str, chromium: Browser
) -> None:
    with Client(server.url) as client:
        for note in ("first", "second"):  # two files, so a compaction would write a version
            client.tables.append_records("default", "victim", [{"note": note}])
        before = _state(client)
        assert before["victim"][1] == 2

        context = chromium.new_context()
        posts: list[Response] = []

        def seen(response: Response) -> None:
            if response.url.startswith(server.url) and response.request.method == "POST":
                posts.append(response)

        context.on("response", seen)
        page = context.new_page()
        try:
            page.goto(attacker)
            _wait(page, lambda: len(posts) >= SENT_POSTS, f"{SENT_POSTS} POSTs to loopml")
            _wait(page, lambda: len(page.evaluate("window.outcomes")) >= 5, "the fetches")
            outcomes = {tuple(o) for o in page.evaluate("window.outcomes")}
            page.wait_for_timeout(300)  # anything late would show up in `posts` below

            assert outcomes == EXPECTED_OUTCOMES
            answers = [(r.status, r.request.header_value("origin")) for r in posts]
            assert len(answers) == SENT_POSTS, answers
            assert {status for status, _ in answers} == {403}, answers
            # Playwright sees the raw headers of the form posts (navigations), not of the
            # fetches: those show that Chromium sent this page's origin, and null from the
            # sandboxed frame.
            assert {origin for _, origin in answers} - {None} == {attacker, "null"}, answers
            assert _state(client) == before

            # The control: the same browser, on loopml's own origin, does write with JSON
            # (so the checks above can see a write), and still cannot post a form type.
            page.goto(f"{server.url}/api/v1/health")
            own = page.evaluate(
                """async () => [
                  (await fetch("/api/v1/projects", {method: "POST",
                    headers: {"Content-Type": "application/json"},
                    body: JSON.stringify({name: "own-origin"})})).status,
                  (await fetch("/api/v1/projects/default/tables/victim/files?format=csv",
                    {method: "POST", body: "note\\nown-origin-form\\n"})).status]"""
            )
            assert own == [201, 403]
        finally:
            context.close()
        client.tables.append_records("default", "victim", [{"note": "sdk"}])
        after = _state(client)
        assert after["projects"] == sorted(["default", "own-origin"])
        assert after["victim"][1] == 3
        assert after["events"] > before["events"]


# Logged in with the session cookie, the user visits a page on another port: the same site
# for the browser (ports do not count), so even SameSite=Lax sends the cookie along. Without
# the CSRF token that page cannot read, every post is refused.
SESSION_ATTACKER_PAGE = """<!doctype html>
<html><body>
<iframe name="sink"></iframe>
<form id="plain" method="post" enctype="text/plain" target="sink" action="{loopml}{files}">
  <textarea name="note&#10;with-session&#10;tail"></textarea>
</form>
<script>
window.outcomes = [];
document.getElementById("plain").submit();
fetch("{loopml}{compact}", {{method: "POST", mode: "no-cors", credentials: "include"}})
  .then(r => window.outcomes.push("sent:" + r.type), e => window.outcomes.push("failed"));
</script>
</body></html>
"""
ADMIN_PASSWORD = "a long browser passphrase 5"


def test_a_logged_in_browser_session_is_safe_from_a_page_on_another_port(
    tmp_path: Path, chromium: Browser
) -> None:
    with running_server(tmp_path, {"LOOPML_AUTH_ENABLED": "true"}) as server:
        made = server.cli(
            "users", "create-admin", "ada", "--password-stdin", input=f"{ADMIN_PASSWORD}\n"
        )
        assert made.returncode == 0, made.stdout + made.stderr
        with Client(server.url) as anonymous:
            token = anonymous.login("ada", ADMIN_PASSWORD)["token"]
        fields = {"loopml": server.url, "files": FILES, "compact": COMPACT}
        pages = {"/": SESSION_ATTACKER_PAGE.format(**fields).encode()}
        with Client(server.url, token=token) as client, _serving(pages) as attacker:
            for note in ("first", "second"):  # two files, so a compaction would write
                client.tables.append_records("default", "victim", [{"note": note}])
            context = chromium.new_context()
            try:
                page = context.new_page()
                page.goto(f"{server.url}/api/v1/health")
                own = page.evaluate(
                    """async (password) => {
                      const start = await fetch("/api/v1/auth/session", {method: "POST",
                        headers: {"Content-Type": "application/json"},
                        body: JSON.stringify({user: "ada", password})});
                      const csrf = (await start.json()).csrf_token;
                      const post = (headers) => fetch("/api/v1/projects", {method: "POST",
                        headers: {"Content-Type": "application/json", ...headers},
                        body: JSON.stringify({name: "own-origin"})});
                      return [start.status, document.cookie.includes("loopml_session"),
                              document.cookie.includes("loopml_csrf=" + csrf),
                              (await fetch("/api/v1/auth/whoami")).status,
                              (await post({})).status,
                              (await post({"X-CSRF-Token": csrf})).status];
                    }""",
                    ADMIN_PASSWORD,
                )
                # Logged in; the page cannot read the session cookie, only its CSRF token; a
                # read works with the cookie, a write only with the token too.
                assert own == [201, False, True, 200, 403, 201]
                before = _state(client)
                posts: list[Response] = []
                context.on(
                    "response",
                    lambda r: (
                        posts.append(r)
                        if r.url.startswith(server.url) and r.request.method == "POST"
                        else None
                    ),
                )
                page.goto(attacker)
                _wait(page, lambda: len(posts) >= 2, "2 POSTs to loopml")
                _wait(page, lambda: len(page.evaluate("window.outcomes")) >= 1, "the fetch")
                page.wait_for_timeout(300)
                assert [r.status for r in posts] == [403, 403]
                assert page.evaluate("window.outcomes") == ["sent:opaque"]
                # The browser did send the session cookie along (Playwright shows the raw
                # headers of the form post, a navigation): it is the CSRF checks that refuse.
                cookies = [r.request.header_value("cookie") or "" for r in posts]
                assert any("loopml_session=" in c for c in cookies), cookies
                assert _state(client) == before
            finally:
                context.close()
