"""Shared state of one CLI invocation: settings, the client and the current project."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from loopml.client import Client
    from loopml.settings import Settings

from loopml.core.layout import CURRENT_PROJECT_FILE

DEFAULT_PROJECT = "default"

_settings: list[Settings] = []


def settings() -> Settings:
    """The settings of this invocation, read once."""
    if not _settings:
        from loopml.settings import load_settings

        _settings.append(load_settings())
    return _settings[0]


def forget_settings() -> None:
    """Read the settings again on next use (each invocation reads its own)."""
    _settings.clear()


def project_file(home: Path) -> Path:
    """Where ``loopml use`` keeps the current project."""
    return home / CURRENT_PROJECT_FILE


def current_project() -> tuple[str, str]:
    """The current project and where it comes from: ``LOOPML_PROJECT`` (or ``project`` in
    loopml.toml), else what ``loopml use`` chose, else ``default``."""
    found = settings()
    if found.project:
        return found.project, "LOOPML_PROJECT"
    path = project_file(found.home)
    try:
        chosen = path.read_text(encoding="utf-8").strip()
    except OSError:
        chosen = ""
    if chosen:
        return chosen, f"loopml use ({path})"
    return DEFAULT_PROJECT, "nothing chosen"


def _current_project_name() -> str:
    return current_project()[0]


def project_option(help_text: str) -> Any:
    """``--project/-p``, defaulting to the current project (see ``current_project``)."""
    return typer.Option(
        ...,
        "--project",
        "-p",
        default_factory=_current_project_name,
        show_default="current project",
        help=help_text,
    )


@dataclass
class CliState:
    """Options given before the command (``loopml --url ... projects list``)."""

    url: str | None = None

    @property
    def settings(self) -> Settings:
        return settings()

    def client(self) -> Client:
        """A client for the configured server."""
        from loopml.client import Client

        settings = self.settings.client
        return Client(self.url or settings.url, timeout=settings.timeout_s, token=self.token())

    def token(self) -> str | None:
        """The API token: ``LOOPML_TOKEN`` (the settings), else the one `loopml login`
        stored."""
        from loopml.cli._token import stored_token

        token = self.settings.token
        return token.get_secret_value() if token else stored_token()


invoked: list[CliState] = []
"""The state of the command running in this process, for the error boundary in ``main``."""


def state(ctx: typer.Context) -> CliState:
    """The invocation's state, created by the root callback."""
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):
        obj = CliState()
        ctx.find_root().obj = obj
    return obj
