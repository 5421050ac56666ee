"""The kubernetes target is offered only when enabled, and then only with what it needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopml.core.errors import ConfigurationError
from loopml.platform import create_api_app
from loopml.settings import Settings


def _settings(tmp_path: Path, **kubernetes: object) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database={"url": f"sqlite:///{tmp_path / 'db.sqlite'}"},
        artifacts={"root": str(tmp_path / "artifacts")},
        kubernetes=kubernetes,
    )


def test_enabled_without_a_platform_url_is_a_clear_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"kubernetes\.platform_url"):
        create_api_app(_settings(tmp_path, enabled=True))


def test_kubernetes_target_offered_only_when_enabled(tmp_path: Path) -> None:
    off = create_api_app(_settings(tmp_path / "off"))
    assert set(off.state.running.serving.control.targets) == {"local"}
    on = create_api_app(_settings(tmp_path / "on", enabled=True, platform_url="http://loopml:8765"))
    assert set(on.state.running.serving.control.targets) == {"local", "kubernetes"}
