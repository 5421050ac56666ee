"""An MLflow model's environment is built by pip in the sandbox (``registry.env_install``):
with the host's network, the server's pip settings, the environment's folder its only
writable host folder, and the sandbox's limits. The index is a local HTTP server of the test
(wheels made here), so no test reaches beyond loopback."""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.core.errors import UserCodeError
from loopml.registry.env_install import pip_configuration, sandboxed_pip
from loopml.registry.sandbox import SandboxLimits
from loopml.train.codeset import Installer, environment, host_pip
from tests.conftest import missing_service
from tests.pip_index import Index, serve_index, wheel

LIMITS = SandboxLimits(
    timeout_s=300, cpu_s=120, memory_bytes=4 << 30, max_processes=64, max_file_bytes=1 << 20
)


@pytest.fixture(autouse=True)
def _bubblewrap() -> None:
    """Skipped without ``bwrap``, failed under ``LOOPML_REQUIRE_SERVICES=1`` (CI installs it)."""
    if shutil.which("bwrap") is None or shutil.which("prlimit") is None:
        missing_service("bubblewrap and prlimit (apt-get install bubblewrap util-linux)")


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Index]:
    """The only place pip looks: the server's own pip settings, handed to the sandbox."""
    with serve_index(tmp_path / "index", monkeypatch) as served:
        yield served


def _sandboxed(home: Path) -> Installer:
    return sandboxed_pip([home], LIMITS)


def test_pip_downloads_over_the_network_and_installs_into_the_environment_alone(
    tmp_path: Path, index: Index
) -> None:
    wheel(index.folder, "loopml_probe", {"loopml_probe/__init__.py": b"ANSWER = 42\n"})
    home = tmp_path / "home"
    said: list[str] = []
    python = environment(home / "envs", "loopml-probe==1.0\n", said.append, _sandboxed(home))
    assert "/loopml_probe-1.0-py3-none-any.whl" in index.asked, index.asked
    installed = list((python.parent.parent).rglob("loopml_probe/__init__.py"))
    assert len(installed) == 1, installed
    assert installed[0].read_text() == "ANSWER = 42\n"
    assert said == [f"installing requirements.txt into {python.parent.parent.name}"]


def test_a_file_over_the_sandboxs_size_limit_stops_the_install(
    tmp_path: Path, index: Index
) -> None:
    """``RLIMIT_FSIZE`` (``mlflow.convert_max_bytes``) holds pip too: a wheel unpacking a
    2 MiB file under a 1 MiB limit fails, and the half-made environment is removed. A pip
    run as the server's user (before) installed it."""
    big = {"loopml_big/__init__.py": b"", "loopml_big/blob.bin": b"\0" * (2 << 20)}
    wheel(index.folder, "loopml_big", big)
    home = tmp_path / "home"
    with pytest.raises(UserCodeError, match="File too large") as refused:
        environment(home / "envs", "loopml-big==1.0\n", lambda _: None, _sandboxed(home))
    assert "pip could not install the requirements" in refused.value.message
    assert not list((home / "envs").glob("*/lib")), "the half-made environment was kept"


@pytest.mark.parametrize("who", ["host", "sandbox"])
def test_a_source_distribution_is_never_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, who: str
) -> None:
    """A requirement found only as a source distribution whose ``setup.py`` writes a marker:
    refused (wheels only) whoever runs pip, and the marker never appears. The index is a
    local folder (``PIP_FIND_LINKS``), bound read-only into the sandbox."""
    marker = tmp_path / "built"
    source = tmp_path / "src" / "evil_setup-1.0"
    source.mkdir(parents=True)
    (source / "setup.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from setuptools import setup\nsetup(name='evil-setup', version='1.0')\n"
    )
    (source / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: evil-setup\nVersion: 1.0\n")
    folder = tmp_path / "index"
    folder.mkdir()
    with tarfile.open(folder / "evil_setup-1.0.tar.gz", "w:gz") as sdist:
        sdist.add(source, arcname="evil_setup-1.0")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    monkeypatch.setenv("PIP_NO_BUILD_ISOLATION", "0")  # pip's inverted flag: no isolation
    home = tmp_path / "home"
    install = host_pip if who == "host" else _sandboxed(home)
    with pytest.raises(UserCodeError, match="only wheels are installed") as refused:
        environment(home / "envs", "evil-setup==1.0\n", lambda _: None, install)
    assert "No matching distribution found for evil-setup" in refused.value.message
    assert not marker.exists()


def test_the_servers_pip_settings_are_handed_over_with_the_local_paths_they_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    simple = tmp_path / "simple"
    simple.mkdir()
    config = tmp_path / "pip.conf"
    config.write_text(f"[global]\nextra-index-url = file://{simple}\ntimeout = 42\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    monkeypatch.setenv("PIP_FIND_LINKS", f"{wheels} https://example.invalid/wheels")
    variables, paths = pip_configuration()
    assert variables["PIP_EXTRA_INDEX_URL"] == f"file://{simple}"
    assert variables["PIP_TIMEOUT"] == "42"
    assert variables["PIP_FIND_LINKS"] == f"{wheels} https://example.invalid/wheels"
    assert wheels in paths
    assert simple in paths
