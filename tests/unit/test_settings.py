from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from loopml._settings_doc import render_markdown
from loopml.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_defaults_are_embedded_in_the_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'loopml.db'}"
    assert settings.artifact_root == str(tmp_path / "artifacts")
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8765)


def test_every_documented_environment_variable_takes_effect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOOPML_DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("LOOPML_SERVER_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("LOOPML_ARTIFACTS_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("LOOPML_ARTIFACTS_S3_SECRET_ACCESS_KEY", "s3cr3t")
    monkeypatch.setenv("LOOPML_CLIENT_URL", "http://127.0.0.1:1")
    settings = Settings()
    assert settings.database_url == "postgresql://u@h/db"
    assert settings.server.max_body_bytes == 2048
    assert settings.artifacts.s3_endpoint_url == "http://127.0.0.1:9000"
    assert settings.artifacts.s3_secret_access_key is not None
    assert settings.artifacts.s3_secret_access_key.get_secret_value() == "s3cr3t"
    assert "s3cr3t" not in repr(settings)
    assert settings.client.url == "http://127.0.0.1:1"


def test_precedence_code_then_env_then_toml(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "custom.toml"
    config.write_text('[server]\nport = 7000\nlog_level = "debug"\n[database]\nurl = "sqlite://"\n')
    monkeypatch.setenv("LOOPML_CONFIG", str(config))
    monkeypatch.setenv("LOOPML_SERVER_PORT", "7001")
    settings = Settings()
    assert settings.server.log_level == "debug"
    assert settings.server.port == 7001
    assert Settings(server={"port": 7002}).server.port == 7002
    assert settings.database_url == "sqlite://"


def test_loopml_toml_in_the_working_folder_is_read(tmp_path: Path) -> None:
    (tmp_path / "loopml.toml").write_text("[server]\nport = 7100\n")
    assert Settings().server.port == 7100


def test_unknown_and_invalid_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "loopml.toml").write_text("[server]\nprot = 7100\n")
    with pytest.raises(ValidationError, match="prot"):
        Settings()
    (tmp_path / "loopml.toml").unlink()
    monkeypatch.setenv("LOOPML_SERVER_PORT", "99999")
    with pytest.raises(ValidationError, match="port"):
        Settings()


def test_missing_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPML_CONFIG", "/nonexistent/loopml.toml")
    with pytest.raises(FileNotFoundError, match="LOOPML_CONFIG"):
        Settings()


def test_configuration_doc_matches_the_settings() -> None:
    assert DOC.read_text() == render_markdown(), (
        "docs/configuration.md is stale: run `python -m loopml._settings_doc > "
        "docs/configuration.md`"
    )


def test_a_setting_in_error_is_the_operator_s_error_named_with_its_value(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A bad value or an unknown name reads as a ConfigurationError (the CLI's one line,
    exit 1), not a pydantic traceback reported as loopml's bug."""
    from loopml.core.errors import ConfigurationError
    from loopml.settings import load_settings

    monkeypatch.setenv("LOOPML_HOME", str(tmp_path))
    monkeypatch.setenv("LOOPML_SERVER_PORT", "notaport")
    with pytest.raises(ConfigurationError, match=r"server\.port: .*integer.*'notaport'"):
        load_settings()
    monkeypatch.delenv("LOOPML_SERVER_PORT")
    monkeypatch.setenv("LOOPML_SERVER__PORT", "8000")  # a doubled underscore: no such setting
    with pytest.raises(ConfigurationError, match=r"server\._port: Extra inputs"):
        load_settings()


def test_the_cli_prints_the_settings_error_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {**os.environ, "LOOPML_HOME": str(tmp_path), "LOOPML_SERVER_PORT": "notaport"}
    done = subprocess.run(
        [sys.executable, "-m", "loopml.cli.main", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("error: the settings are not valid: server.port"), done.stderr
    assert "Traceback" not in done.stderr
