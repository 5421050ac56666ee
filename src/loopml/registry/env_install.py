"""Building an MLflow model's environment in the sandbox: pip reads the model's own
requirements, so it runs as the converter does (``registry.sandbox``), with the host's network
for its downloads and the environment's folder its only writable folder but a scratch home.

The sandboxed pip cannot read the server's pip configuration (its files, its ``PIP_*``
variables) or the local indexes and certificates it names, so the server reads it first
(``pip config list``, the same precedence pip applies) and hands it over: every setting as a
``PIP_*`` variable, and every local path a setting names (``find-links = /opt/wheels``,
``file:///opt/pypi/simple``, ``cert = ...``) bound read-only.
"""

from __future__ import annotations

import ast
import logging
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path

from loopml.registry.sandbox import SandboxLimits, interpreter_folders, run_sandboxed
from loopml.train.codeset import Installer

_CONFIG_TIMEOUT_S = 60

log = logging.getLogger("loopml.registry")


def pip_configuration(python: str = sys.executable) -> tuple[dict[str, str], list[Path]]:
    """The server's pip settings as ``PIP_*`` variables, and the local paths they name.

    ``pip config list`` prints ``section.name='value'`` lines, the environment's
    (``:env:``) last; a name set in several places keeps its last value, as pip does.
    """
    try:
        done = subprocess.run(
            [python, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=_CONFIG_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("the server's pip settings could not be read (%s): pip's defaults", exc)
        return {}, []
    if done.returncode != 0:
        log.warning("`pip config list` failed, pip's defaults: %s", done.stderr.strip()[-300:])
    variables: dict[str, str] = {}
    for line in done.stdout.splitlines():
        key, sep, quoted = line.partition("=")
        if not sep or "." not in key:
            continue
        try:
            value = ast.literal_eval(quoted)
        except (SyntaxError, ValueError):
            continue
        name = key.split(".", 1)[1].strip()
        variables[f"PIP_{name.upper().replace('-', '_')}"] = str(value)
    return variables, _local_paths(variables.values())


def _local_paths(values: Iterable[str]) -> list[Path]:
    paths: set[Path] = set()
    for value in values:
        for token in value.split():
            if token.startswith("file:"):
                token = urllib.request.url2pathname(urllib.parse.urlparse(token).path)
            if token.startswith("/") and Path(token).exists():
                paths.add(Path(token))
    return sorted(paths)


def sandboxed_pip(hidden: Sequence[Path], limits: SandboxLimits) -> Installer:
    """An ``Installer`` (``train.codeset.environment``) that runs pip in the sandbox: the
    environment's folder writable, a fresh scratch folder its home (pip's cache is gone with
    it), the host's network, the server's pip settings; ``hidden`` never shown (the home's
    other folders, the database, the artifact root). A wall-clock timeout or a limit (file
    size, memory, CPU) ends it with a message that says which.

    Raises (when called):
        SandboxUnavailable: the sandbox cannot be made here; pip did not run.
    """

    def install(argv: Sequence[str], folder: Path) -> tuple[int, str]:
        variables, paths = pip_configuration()
        python = Path(argv[0])
        shown = [p for p in interpreter_folders(python) if p != folder]
        with tempfile.TemporaryDirectory(prefix="loopml-pip-") as scratch:
            result = run_sandboxed(
                argv,
                scratch=Path(scratch),
                read_only=[*shown, *paths],
                hidden=hidden,
                limits=limits,
                writable=[folder],
                network=True,
                environment=variables,
            )
        if result.timed_out:
            return 1, f"{result.output}\npip ran past its limit of {limits.timeout_s:g} s"
        if result.returncode < 0:
            return result.returncode, (
                f"{result.output}\npip was killed by signal {-result.returncode} (a limit of "
                "the sandbox: file size, memory or CPU time)"
            )
        return result.returncode, result.output

    return install
