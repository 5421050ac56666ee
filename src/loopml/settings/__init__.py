"""One settings tree for all of loopml.

Precedence, highest first (written once, here, and in docs/configuration.md):

1. values passed to ``Settings(...)`` in code;
2. environment variables ``LOOPML_<SECTION>_<FIELD>`` (``LOOPML_DATABASE_URL``,
   ``LOOPML_SERVER_PORT``) and ``LOOPML_HOME``;
3. the TOML file named by ``LOOPML_CONFIG``, else ``./loopml.toml`` when present, with the
   same keys in sections (``[database] url = "..."``);
4. the defaults below.

Library code receives a ``Settings`` object as an argument; only this module reads the
environment.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from loopml.core.errors import ConfigurationError
from loopml.settings._base import CONFIG_FILE_ENV as CONFIG_FILE_ENV
from loopml.settings._base import DEFAULT_CONFIG_FILE as DEFAULT_CONFIG_FILE
from loopml.settings._base import ArtifactSettings as ArtifactSettings
from loopml.settings._base import AuthSettings as AuthSettings
from loopml.settings._base import ClientSettings as ClientSettings
from loopml.settings._base import CodesetsSettings as CodesetsSettings
from loopml.settings._base import DatabaseSettings as DatabaseSettings
from loopml.settings._base import FeaturesSettings as FeaturesSettings
from loopml.settings._base import LakeSettings as LakeSettings
from loopml.settings._base import MlflowSettings as MlflowSettings
from loopml.settings._base import ServerSettings as ServerSettings
from loopml.settings._base import StreamsSettings as StreamsSettings
from loopml.settings._base import TrackingSettings as TrackingSettings
from loopml.settings._monitor import DefaultAlertRule as DefaultAlertRule
from loopml.settings._monitor import MonitorSettings as MonitorSettings
from loopml.settings._serving import AutoscaleSettings as AutoscaleSettings
from loopml.settings._serving import CanarySettings as CanarySettings
from loopml.settings._serving import DeploymentsSettings as DeploymentsSettings
from loopml.settings._serving import GatewaySettings as GatewaySettings
from loopml.settings._serving import KubernetesSettings as KubernetesSettings
from loopml.settings._serving import LocalSettings as LocalSettings
from loopml.settings._serving import WorkerSettings as WorkerSettings
from loopml.system.logfiles import LogFile


class Settings(BaseSettings):
    """Every loopml setting. See docs/configuration.md for the generated reference."""

    model_config = SettingsConfigDict(
        env_prefix="LOOPML_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="forbid",
        validate_default=True,
    )

    home: Path = Field(
        default=Path("~/.loopml"),
        description="Folder for the embedded defaults: the SQLite database and artifacts.",
    )
    project: str | None = Field(
        default=None,
        description="The current project: what CLI commands and `loopml.start_run` use when "
        "given none (before the one `loopml use` chose; `default` when neither is set).",
    )
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    artifacts: ArtifactSettings = Field(default_factory=ArtifactSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    streams: StreamsSettings = Field(default_factory=StreamsSettings)
    client: ClientSettings = Field(default_factory=ClientSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    token: SecretStr | None = Field(
        default=None,
        description="The API token the CLI and SDK send (env LOOPML_TOKEN); when unset, the "
        "CLI uses the one `loopml login` stored.",
    )
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    lake: LakeSettings = Field(default_factory=LakeSettings)
    features: FeaturesSettings = Field(default_factory=FeaturesSettings)
    codesets: CodesetsSettings = Field(default_factory=CodesetsSettings)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    local: LocalSettings = Field(default_factory=LocalSettings)
    autoscale: AutoscaleSettings = Field(default_factory=AutoscaleSettings)
    deployments: DeploymentsSettings = Field(default_factory=DeploymentsSettings)
    canary: CanarySettings = Field(default_factory=CanarySettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @property
    def database_url(self) -> str:
        """The database URL in force: the configured one, or SQLite in the home folder."""
        return self.database.url or f"sqlite:///{self.home / 'loopml.db'}"

    @property
    def artifact_root(self) -> str:
        """The artifact root in force: the configured URI, or `artifacts` in the home."""
        return self.artifacts.root or str(self.home / "artifacts")

    @property
    def server_log(self) -> LogFile | None:
        """The server's log file (in the home unless `server.log_file` is absolute), or
        ``None`` when `server.log_file` is empty."""
        if not self.server.log_file:
            return None
        return LogFile(
            self.home / self.server.log_file,
            self.server.log_max_bytes,
            self.server.log_backups,
        )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = os.environ.get(CONFIG_FILE_ENV) or DEFAULT_CONFIG_FILE
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if Path(toml_path).is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        elif os.environ.get(CONFIG_FILE_ENV):
            raise FileNotFoundError(f"{CONFIG_FILE_ENV} names {toml_path!r}, which is not a file")
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Read settings from code overrides, the environment and the TOML file, in that order.

    Raises:
        ConfigurationError: a value that is not valid, or a name no setting has, each named
            with the reason (the operator's input, not a bug: the CLI prints one line).
    """
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(_settings_problems(exc)) from None


def _settings_problems(exc: Any) -> str:
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error["loc"])
        given = error.get("input")
        shown = f" (given {given!r})" if isinstance(given, str | int | float) else ""
        problems.append(f"{where}: {error['msg']}{shown}")
    more = len(exc.errors()) - len(problems)
    return (
        "the settings are not valid: "
        + "; ".join(problems)
        + (f"; and {more} more" if more > 0 else "")
        + ". They come from LOOPML_* environment variables and loopml.toml; each setting's "
        "name and variable (server.port: LOOPML_SERVER_PORT) are in docs/configuration.md"
    )


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def settings_payload(settings: Settings) -> dict[str, Any]:
    """The settings a child process of the platform needs, as plain data (secrets in clear,
    no client section); ``Settings.model_validate`` reads it back."""
    data: dict[str, Any] = _plain(settings.model_dump(mode="python"))
    data.pop("client", None)
    return data


def write_settings_file(settings: Settings, path: Path) -> Path:
    """``settings_payload`` as JSON in a new file ``path`` only this user can read (the
    settings hold their secrets in clear); ``path`` itself."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(settings_payload(settings), handle, default=str)
    return path
