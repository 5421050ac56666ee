"""Training from a codeset: its entry point run in a virtual environment of its own, with
MLflow's client pointed at loopml, on a run that records the codeset version it ran.

- The **entry point** is an ``MLproject`` file's ``main`` entry (``command`` and
  ``parameters`` with defaults, as MLflow reads them), or a ``loopml.yaml`` with the same
  ``entry_points: {main: ...}`` shape. ``{name}`` in the command is replaced by the
  parameter's value, shell-quoted.
- The **environment** is a virtualenv made by the running interpreter with
  ``--system-site-packages`` and a ``.pth`` naming the running environment's own
  site-packages (a venv made from a venv sees only the base interpreter's packages), so a
  requirement already installed here is satisfied without the network; ``pip install
  --only-binary=:all: -r requirements.txt`` installs only what is missing, and only wheels
  (a source distribution's build script would run as the server's user). The caller says
  who runs pip: ``host_pip`` for a codeset (its own code runs as that user next), the
  sandbox for an MLflow model's converter (``registry.env_install``). Only plain
  requirements are read (``check_requirements``: a name, extras, version specifiers and
  markers), never a URL, a path or a pip option. It is cached under
  ``<home>/codeset-envs/<sha256 of the requirements and the interpreter>``, made under a
  file lock and marked ready last.
- The **run** is created first (experiment: the codeset's name by default) with the input
  ``codeset NAME@VERSION`` (its commit and content hash in the details); the process gets
  ``MLFLOW_TRACKING_URI`` (loopml's MLflow API for the run's project) and
  ``MLFLOW_RUN_ID``, so ``mlflow.start_run()`` continues that run and ``mlflow.log_*`` lands
  on it. The run ends FINISHED or FAILED with
  the process, unless the code ended it itself.
- A **model in MLflow's format** the code logged (``mlflow.sklearn.log_model``: an
  ``MLmodel`` folder of the run, or MLflow 3's ``models:/<id>``) is then packaged as
  loopml's ONNX / skops package on the same run by ``loopml runs package-mlflow`` run with
  the environment's own interpreter (``package_mlflow``): the pickle is loaded where the
  code already ran, never by the server.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shlex
import shutil
import site
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopml.core.codesets import CodesetVersion
from loopml.core.errors import UserCodeError, ValidationError

ENTRY_FILES = ("MLproject", "loopml.yaml")
PIP_TIMEOUT_S = 1800
PACKAGE_TIMEOUT_S = 900


@dataclass(frozen=True)
class EntryPoint:
    """The command to run and where it was read."""

    command: str
    origin: str


def _load_yaml(path: Path, shape: str = "") -> dict[str, Any]:
    import yaml  # type: ignore[import-untyped]

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValidationError(f"{path.name} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValidationError(shape or f"{path.name} must be a mapping with entry_points")
    return data


def _value(name: str, spec: Any, given: Mapping[str, Any], origin: str) -> str:
    if name in given:
        return str(given[name])
    default = spec.get("default") if isinstance(spec, dict) else None
    if default is None:
        raise ValidationError(
            f"{origin}: parameter {name!r} has no default: pass it in the step's params",
            details={"parameter": name},
        )
    return str(default)


def entry_point(folder: Path, params: Mapping[str, Any] | None = None) -> EntryPoint:
    """The ``main`` entry point of the codeset in ``folder``, its parameters filled in.

    Raises:
        ValidationError: no MLproject / loopml.yaml, no ``main`` entry, a parameter without
            a value, or a parameter given that the entry does not declare.
    """
    given = dict(params or {})
    for name in ENTRY_FILES:
        path = folder / name
        if path.is_file():
            break
    else:
        raise ValidationError(
            "the codeset has no MLproject and no loopml.yaml: add one with "
            "entry_points: {main: {command: 'python train.py'}}"
        )
    entries = _load_yaml(path).get("entry_points") or {}
    main = entries.get("main") if isinstance(entries, dict) else None
    if not isinstance(main, dict) or not isinstance(main.get("command"), str):
        raise ValidationError(f"{name} has no entry_points.main.command")
    declared = main.get("parameters") or {}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ValidationError(
            f"{name}: the main entry declares no parameter {unknown[0]!r} "
            f"(it declares: {', '.join(declared) or 'none'})"
        )
    values = {k: shlex.quote(_value(k, v, given, name)) for k, v in declared.items()}
    try:
        command = main["command"].format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValidationError(
            f"{name}: the main command names {exc} that is no parameter"
        ) from None
    return EntryPoint(command=command, origin=name)


def _parent_site_packages() -> list[str]:
    """The running environment's site-packages, and the folder loopml itself is imported
    from: an editable install puts it there through a ``.pth`` of its own, which a path
    named in another ``.pth`` does not follow (the codeset's ``loopml runs package-mlflow``
    then found no ``loopml``)."""
    folders = [p for p in site.getsitepackages() if Path(p).is_dir()]
    own = str(Path(__file__).resolve().parents[2])  # .../loopml/train/codeset.py
    return folders if own in folders else [*folders, own]


def requirements(folder: Path, log: Callable[[str], None] | None = None) -> str:
    """What the codeset's environment installs: MLflow's ``python_env.yaml`` (its
    ``dependencies``, a ``-r FILE`` line read from the codeset) when there is one, else
    ``requirements.txt``, else nothing. The environment always runs the worker's Python: a
    different ``python`` there is logged, not installed.

    Raises:
        ValidationError: a ``python_env.yaml`` that is not a mapping with a list of
            dependency strings, or a ``-r`` file outside the codeset or missing.
    """
    env_file = folder / "python_env.yaml"
    if not env_file.is_file():
        plain = folder / "requirements.txt"
        text = plain.read_text(encoding="utf-8") if plain.is_file() else ""
        check_requirements(text, "requirements.txt")
        return text
    data = _load_yaml(env_file, "python_env.yaml must be a mapping with dependencies")
    wanted = str(data.get("python") or "")
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if wanted and log is not None and not (wanted + ".").startswith(running + "."):
        log(f"python_env.yaml asks for Python {wanted}; the environment runs {running}")
    dependencies = data.get("dependencies") or []
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise ValidationError("python_env.yaml: dependencies must be a list of strings")
    lines: list[str] = []
    for line in dependencies:
        if line.startswith("-r"):
            included = line[2:].strip()
            text = _included(folder, included)
            check_requirements(text, included)
            lines.append(text)
        else:
            check_requirements(line, "python_env.yaml")
            lines.append(line)
    return "\n".join(lines) + "\n" if lines else ""


_ONLY_PLAIN = (
    "only plain requirements are installed: a name, [extras], version specifiers and "
    "markers, from the package index, as wheels (no URLs, paths, -e, -r, -c, --index-url or "
    "--extra-index-url)"
)


def check_requirements(text: str, source: str) -> None:
    """Refuse any line of ``text`` (from ``source``, a file's name) that is not a plain
    requirement: a pip option (``-e``, ``-r``, ``-c``, ``--index-url``, ...), a URL, a path
    or a direct reference (``name @ url``). Blank lines and comments pass.

    Raises:
        ValidationError: naming the file, the line's number and the line.
    """
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].split("\t#", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        reason = _not_plain(line)
        if reason is not None:
            raise ValidationError(
                f"{source}, line {number}: {line[:200]!r} {reason}; {_ONLY_PLAIN}",
                details={"file": source, "line": number, "requirement": line[:200]},
            )


def _not_plain(line: str) -> str | None:
    if line.startswith("-"):
        return f"is a pip option ({line.split()[0][:40]})"
    # Here, not at the top: its grammar costs 0.09 s to import, which `loopml up` paid.
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        parsed = Requirement(line)
    except InvalidRequirement:
        return "is not a requirement (a URL or a path?)"
    if parsed.url:
        return "names where to get it (a direct reference)"
    return None


def _included(folder: Path, name: str) -> str:
    path = (folder / name).resolve()
    if not path.is_relative_to(folder.resolve()) or not path.is_file():
        raise ValidationError(
            f"python_env.yaml: -r {name[:100]!r} is not a file inside the codeset",
            details={"file": name[:100]},
        )
    return path.read_text(encoding="utf-8")


def _env_key(requirements: str) -> str:
    text = f"{sys.executable}\n{sys.version}\n{_parent_site_packages()}\n{requirements}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def pip_argv(python: Path, requirements_file: Path) -> list[str]:
    """The pip command that installs ``requirements_file`` into ``python``'s environment:
    wheels only, quiet, no version check."""
    return [
        str(python),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "-q",
        "-r",
        str(requirements_file),
    ]


# Runs pip's command (``pip_argv``) with the environment's folder writable; says how it ended.
Installer = Callable[[Sequence[str], Path], tuple[int, str]]


def host_pip(argv: Sequence[str], folder: Path) -> tuple[int, str]:
    """Run pip as the calling process's user, with its environment (a codeset's steps run the
    codeset's own code as that user anyway); the MLflow converter's environment is built by
    ``registry.env_install``'s sandboxed pip instead."""
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    return done.returncode, done.stderr


def _make_env(
    folder: Path, requirements: str, log: Callable[[str], None], install: Installer
) -> None:
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(folder)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    python = folder / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "_loopml_parent.pth").write_text("\n".join(_parent_site_packages()) + "\n")
    if not requirements.strip():
        return
    (folder / "requirements.txt").write_text(requirements)
    log(f"installing requirements.txt into {folder.name}")
    returncode, output = install(pip_argv(python, folder / "requirements.txt"), folder)
    if returncode != 0:
        raise UserCodeError(
            "pip could not install the requirements (what is already "
            "installed needs no network; the rest does, and only wheels are installed: a "
            f"requirement with no wheel for this platform cannot be): {output.strip()[-1500:]}"
        )


def environment(
    cache: Path, requirements: str, log: Callable[[str], None], install: Installer
) -> Path:
    """The python of the virtual environment for ``requirements`` (made once, cached), its
    requirements installed by ``install`` (``host_pip``, or a sandboxed pip).

    A venv's scripts name its own folder, so it is made in place; a ``ready`` marker written
    last tells a finished one from one a killed process left half-made (made again).
    """
    cache.mkdir(parents=True, exist_ok=True)
    key = _env_key(requirements)
    folder = cache / key
    with (cache / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / "ready").exists():
            log(f"environment {key[:12]} reused")
            return folder / "bin" / "python"
        shutil.rmtree(folder, ignore_errors=True)
        try:
            _make_env(folder, requirements, log, install)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        (folder / "ready").write_text("ok\n")
    return folder / "bin" / "python"


def run_entry(
    python: Path,
    folder: Path,
    command: str,
    *,
    env: Mapping[str, str],
    timeout_s: float | None = None,
) -> int:
    """Run ``command`` (bash) in ``folder`` with the environment's ``bin`` first on PATH;
    its output goes to this process's (the step's log). Returns the exit status."""
    sys.stdout.flush()
    sys.stderr.flush()
    done = subprocess.run(
        ["bash", "-c", command],  # noqa: S607
        cwd=folder,
        env=_inside(python, env),
        timeout=timeout_s,
        check=False,
    )
    return done.returncode


def _inside(python: Path, env: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with ``env``, as seen from inside the virtualenv."""
    bin_dir = str(python.parent)
    full = {
        **os.environ,
        **env,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(python.parent.parent),
        "PYTHONUNBUFFERED": "1",
    }
    full.pop("PYTHONHOME", None)
    return full


def package_mlflow(
    python: Path,
    folder: Path,
    run_id: str,
    source: str,
    *,
    project: str,
    env: Mapping[str, str],
    timeout_s: float = PACKAGE_TIMEOUT_S,
) -> str:
    """Package the MLflow model the code logged (``source``: a folder of the run, or
    ``models:/<id>``) as a loopml package on the same run: ``loopml runs package-mlflow``,
    run by the codeset's own interpreter. Loading the code's pickle there adds no trust the
    entry point did not already have; the server never loads it. Returns the command's
    answer.

    Raises:
        UserCodeError: the model could not be packaged (not scikit-learn, no input
            example, a model ONNX and skops both refuse); the command's error says why.
    """
    command = [str(python), "-m", "loopml.cli.main", "runs", "package-mlflow", run_id]
    command += ["--source", source, "--project", project]
    done = subprocess.run(
        command,
        cwd=folder,
        env=_inside(python, env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        why = (done.stderr.strip() or done.stdout.strip())[-1500:]
        raise UserCodeError(
            f"the run's MLflow model ({source}) could not be packaged for loopml in the "
            f"codeset's environment: {why}"
        )
    return done.stdout.strip()


def codeset_input(version: CodesetVersion) -> dict[str, Any]:
    """The run input that records which code a run ran."""
    details = {"content_hash": version.content_hash}
    if version.commit:
        details["commit"] = version.commit
    return {"kind": "codeset", "ref": f"{version.codeset}@{version.version}", "details": details}
