"""The CLI's side of authentication: create-admin, the stored login token, the bind rule."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loopml.cli._token import save_token, stored_token
from loopml.cli.main import app
from loopml.cli.server import check_bind
from loopml.core.errors import ConfigurationError


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path


def test_create_admin_refuses_short_and_default_passwords(env: Path) -> None:
    runner = CliRunner()
    for weak in ["short", "password1234"]:
        result = runner.invoke(
            app, ["users", "create-admin", "root", "--password-stdin"], input=weak + "\n"
        )
        assert result.exit_code == 1, result.output
    good = runner.invoke(
        app,
        ["users", "create-admin", "root", "--password-stdin"],
        input="a long admin passphrase\n",
    )
    assert good.exit_code == 0, good.output
    assert "platform admin root created" in good.output
    again = runner.invoke(
        app,
        ["users", "create-admin", "root", "--password-stdin"],
        input="a long admin passphrase\n",
    )
    assert again.exit_code == 1
    assert "already exists" in str(again.exception)


def test_the_login_token_is_kept_readable_by_its_owner_only(env: Path) -> None:
    path = save_token("lm_abcdefgh_" + "x" * 43)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stored_token() == "lm_abcdefgh_" + "x" * 43
    os.chmod(path, 0o644)
    assert stored_token() is None  # a token others can read is not used


def test_listening_beyond_loopback_needs_auth() -> None:
    check_bind("127.0.0.1", auth_enabled=False)
    check_bind("::1", auth_enabled=False)
    with pytest.raises(ConfigurationError, match="authentication is off"):
        check_bind("0.0.0.0", auth_enabled=False)
    check_bind("0.0.0.0", auth_enabled=True)


def test_up_beyond_loopback_without_auth_exits_before_listening(env: Path) -> None:
    result = CliRunner().invoke(app, ["up", "--host", "0.0.0.0", "--port", "1"])
    assert result.exit_code == 1
    assert "authentication is off" in str(result.exception)


def test_up_says_when_auth_is_on_without_an_admin(tmp_path: Path) -> None:
    from loopml.auth import service
    from loopml.cli.server import _auth_line
    from loopml.settings import Settings
    from loopml.store import MetadataStore

    store = MetadataStore(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.upgrade()
    off = Settings(home=tmp_path)
    on = Settings(home=tmp_path, auth={"enabled": True})
    assert _auth_line(store, off).startswith("off")
    assert "no platform admin yet" in _auth_line(store, on)
    service.create_user(store, "root", "a long admin passphrase", platform_admin=True, actor="t")
    assert _auth_line(store, on) == "on (1 platform admin)"
    store.dispose()


@pytest.mark.parametrize("source", ["environment", "login"])
def test_a_printed_curl_line_sends_the_clis_token_without_printing_it(
    env: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    import http.server
    import subprocess
    import threading

    from loopml.cli._endpoints import curl_line

    token = "lm_abcdefgh_" + "t" * 43
    if source == "environment":
        monkeypatch.setenv("LOOPML_TOKEN", token)
    else:
        monkeypatch.delenv("LOOPML_TOKEN", raising=False)
        save_token(token)
    seen: list[str | None] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.headers.get("authorization"))
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.handle_request, daemon=True).start()
    line = curl_line(f"http://127.0.0.1:{server.server_port}/predict", {"x": 1}, token)
    assert token not in line
    assert "authorization: Bearer $" in line
    pasted = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=30)
    server.server_close()
    assert pasted.returncode == 0, pasted.stderr
    assert seen == [f"Bearer {token}"]
    # Without a token (authentication off) the line sends none.
    assert "authorization" not in curl_line("http://127.0.0.1:1/predict", {"x": 1})


def test_up_with_an_install_key_others_can_read_says_chmod_600_in_one_line(
    tmp_path: Path,
) -> None:
    """Issue 51, item 7: it was "internal error (a bug in loopml)" and a traceback."""
    import subprocess
    import sys

    import loopml
    from tests.conftest import free_port

    key = tmp_path / "home" / "secrets" / "install.key"
    key.parent.mkdir(parents=True, mode=0o700)
    key.write_text("ab" * 32 + "\n")
    key.chmod(0o644)
    environment = {
        **os.environ,
        "PYTHONPATH": str(Path(loopml.__file__).parents[1]),
        "LOOPML_HOME": str(tmp_path / "home"),
        "LOOPML_SERVER_PORT": str(free_port()),
        "LOOPML_SERVER_STREAMS": "false",
        "LOOPML_MONITOR_ENABLED": "false",
    }
    command = [sys.executable, "-c", "from loopml.cli.main import main; main()", "up"]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert errors[-1].startswith("error: "), done.stderr
    assert f"run `chmod 600 {key}`" in errors[-1]
    assert "Traceback" not in done.stderr
    assert "internal error" not in done.stderr
