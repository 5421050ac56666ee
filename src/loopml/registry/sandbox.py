"""Run a command on untrusted input in a sandbox: bubblewrap namespaces plus resource limits.

The command (the MLflow converter, which unpickles a client's model) sees a read-only view of
the system folders and the interpreter it runs, a private ``/tmp``, and one writable folder,
the scratch folder, mounted at ``/scratch``; nothing else of the host, so not the loopml home,
its database or its artifact store. ``--unshare-all`` gives it its own network namespace (no
network), PID, IPC, UTS and cgroup namespaces; it runs as uid/gid 65534 of its own user
namespace, or, started by root, as a host uid of its own (``sandbox_uid``), with no
capabilities on the host. ``prlimit`` caps its CPU time, address space,
processes (against fork bombs) and file sizes, and a wall-clock timeout kills its process
group. Without ``bwrap`` or ``prlimit``, or where namespaces cannot be made, nothing runs:
``SandboxUnavailable`` says what is missing.

Building a model's environment (``registry.env_install``: pip, reading the model's own
requirements) runs in the same sandbox with two differences: the host's network (pip
downloads what the platform's environment lacks; DNS and the CA certificates shown too), and
the environment's own folder bound read-write at its own path (a venv's scripts name it).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import site
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SCRATCH = "/scratch"
# The sandbox's own /tmp: an empty tmpfs of its mount namespace, not the host's.
_TMP = "/tmp"  # noqa: S108
NOBODY = "65534"
# Started by root, each sandbox runs as a host uid (and gid) of its own, drawn from a range
# no system or desktop account uses: RLIMIT_NPROC counts a uid's processes host-wide, so
# under one shared uid (65534, before) a fork bomb in one conversion left every other
# conversion on the host unable to start a thread (OpenBLAS then raised SIGINT in numpy's
# import). Two sandboxes at once draw the same uid once in 2**24 pairs.
_UID_BASE = 1 << 30
_UID_SPAN = 1 << 24
# What the dynamic loader and Python read from /etc; the rest of /etc stays unseen.
_ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group")
# And, for a sandbox with the network, what name resolution and TLS read.
_NETWORK_ETC = ("resolv.conf", "hosts", "nsswitch.conf", "host.conf", "gai.conf", "ssl/certs")
_SYSTEM = ("/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin")
_TAIL = 4000


class SandboxUnavailable(Exception):
    """The sandbox cannot be made here (no ``bwrap``, no ``prlimit``, no user namespaces, or
    a folder it must show holds one it must hide); the message says which."""


@dataclass(frozen=True)
class SandboxLimits:
    """What the sandboxed process may use."""

    timeout_s: float
    cpu_s: int
    memory_bytes: int
    max_processes: int
    max_file_bytes: int


@dataclass(frozen=True)
class SandboxResult:
    """How the sandboxed command ended: its exit status (negative: the signal that killed
    it), whether the wall-clock timeout killed it, and the tail of its output."""

    returncode: int
    timed_out: bool
    output: str


def _tools() -> tuple[str, str]:
    bwrap, prlimit = shutil.which("bwrap"), shutil.which("prlimit")
    if bwrap is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed on the server: install the 'bubblewrap' "
            "package; the converter never runs unsandboxed"
        )
    if prlimit is None:
        raise SandboxUnavailable(
            "prlimit (util-linux) is not installed on the server; the converter never runs "
            "without its resource limits"
        )
    return bwrap, prlimit


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_hidden(shown: Sequence[Path], hidden: Sequence[Path]) -> None:
    """Refuse when a folder the sandbox shows holds one it must hide (the environment's own
    folder may sit inside the home: shown alone, it reveals nothing else of it).

    Raises:
        SandboxUnavailable: naming both folders.
    """
    for folder in shown:
        real = folder.resolve()
        for secret in hidden:
            target = secret.resolve()
            if _within(target, real):
                raise SandboxUnavailable(
                    f"the sandbox would have to show {real}, which holds {target} "
                    "(the loopml home, database or artifact store): keep the interpreter and "
                    "its packages outside the home"
                )


def _namespaces(root: bool, network: bool) -> list[str]:
    if not root:
        # Unprivileged: a user namespace of its own, mapping uid/gid 65534 to this user.
        shared = ["--share-net"] if network else []
        return ["--unshare-all", *shared, "--unshare-user", "--uid", NOBODY, "--gid", NOBODY]
    # Started by root, no user namespace: a process mapped to root is exempt from
    # RLIMIT_NPROC (a fork bomb would meet no limit), so the command becomes a host uid/gid
    # of its own instead (setpriv, after bwrap mounted the view), with no capabilities.
    unshared = ["--unshare-ipc", "--unshare-pid", "--unshare-uts"]
    return unshared if network else [*unshared, "--unshare-net"]


def sandbox_uid() -> int:
    """A host uid (and gid) for one sandbox started by root: its own process count."""
    return _UID_BASE + secrets.randbelow(_UID_SPAN)


def _drop(uid: int | None) -> list[str]:
    if uid is None:
        return []
    return [
        *("setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups"),
        *("--bounding-set", "-all", "--inh-caps", "-all", "--no-new-privs", "--"),
    ]


def _system_binds(network: bool) -> list[str]:
    """The system folders and the few ``/etc`` files, read-only (and with the network what
    name resolution and TLS read)."""
    argv = []
    for folder in _SYSTEM:
        if Path(folder).is_symlink():
            argv += ["--symlink", os.readlink(folder), folder]
        elif Path(folder).is_dir():
            argv += ["--ro-bind", folder, folder]
    argv += ["--perms", "0755", "--dir", "/etc"]
    for name in _ETC_FILES + (_NETWORK_ETC if network else ()):
        if Path("/etc", name).exists():
            if "/" in name:  # its folder searchable (bwrap would make it 0700)
                argv += ["--perms", "0755", "--dir", f"/etc/{name.rsplit('/', 1)[0]}"]
            argv += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    return argv


def _folder_binds(read_only: Sequence[Path], writable: Sequence[Path]) -> list[str]:
    """``read_only`` and ``writable`` at their own paths, their parents searchable."""
    argv = []
    # bwrap makes a bound folder's missing parents 0700, which the sandbox's uid could not
    # search.
    shown = [*read_only, *writable]
    parents = {a for p in shown for a in Path(p).parents if a != Path("/")}
    for parent in sorted(parents - {Path(p) for p in shown}):
        if not any(_within(parent, Path(s)) for s in _SYSTEM):
            argv += ["--perms", "0755", "--dir", str(parent)]
    for folder in sorted({str(p) for p in read_only}):
        argv += ["--ro-bind", folder, folder]
    # After the read-only ones: a writable folder inside one of them stays writable.
    for folder in sorted({str(p) for p in writable}):
        argv += ["--bind", folder, folder]
    return argv


def bwrap_argv(
    bwrap: str,
    scratch: Path,
    read_only: Sequence[Path],
    *,
    uid: int | None = None,
    writable: Sequence[Path] = (),
    network: bool = False,
) -> list[str]:
    """The ``bwrap`` arguments: system folders and ``read_only`` bound read-only, ``scratch``
    read-write at ``/scratch`` and ``writable`` read-write at their own paths, everything
    else absent; ``uid``: started by root (see ``_namespaces``), followed by the ``setpriv``
    that drops to that host uid; ``network``: the host's network, not a namespace without
    one."""
    root = uid is not None
    argv = [bwrap, *_namespaces(root, network), "--die-with-parent", "--new-session"]
    argv += _system_binds(network)
    # Before the folders: one of them may live under the host's /tmp.
    argv += ["--perms", "1777", "--tmpfs", _TMP]
    argv += _folder_binds(read_only, writable)
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += ["--bind", str(scratch), SCRATCH, "--chdir", SCRATCH]
    argv += ["--setenv", "HOME", SCRATCH, "--setenv", "TMPDIR", _TMP]
    # A uid with no passwd entry: a library asking the user's name (getpass) gets one.
    argv += ["--setenv", "USER", "sandbox", "--setenv", "LOGNAME", "sandbox"]
    return [*argv, *_drop(uid)]


def prlimit_argv(prlimit: str, limits: SandboxLimits) -> list[str]:
    """The ``prlimit`` prefix applying ``limits`` (soft and hard) to what it runs."""
    return [
        prlimit,
        f"--cpu={limits.cpu_s}",
        f"--as={limits.memory_bytes}",
        f"--nproc={limits.max_processes}",
        f"--fsize={limits.max_file_bytes}",
        "--core=0",
        "--",
    ]


def _environment(extra: Mapping[str, str]) -> dict[str, str]:
    # The host's environment is not passed: it may hold the server's secrets.
    return {**extra, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONNOUSERSITE": "1"}


def run_sandboxed(
    command: Sequence[str],
    *,
    scratch: Path,
    read_only: Sequence[Path],
    hidden: Sequence[Path],
    limits: SandboxLimits,
    writable: Sequence[Path] = (),
    network: bool = False,
    environment: Mapping[str, str] | None = None,
) -> SandboxResult:
    """Run ``command`` in the sandbox, ``scratch`` (``/scratch``) and ``writable`` its only
    writable folders.

    Args:
        command: what to run, with paths as the sandbox sees them.
        scratch: the host folder mounted read-write at ``/scratch``.
        read_only: host folders the command needs (its interpreter and packages).
        hidden: folders that must stay invisible (the home, the database, the artifacts);
            refused if any of ``read_only`` or ``writable`` holds one.
        limits: CPU, memory, processes, file size and wall-clock limits.
        writable: host folders bound read-write at their own paths.
        network: the host's network instead of none (only for pip's downloads).
        environment: variables set for the command, beside ``PATH`` and ``LANG`` (the
            host's own are never passed).

    Raises:
        SandboxUnavailable: the sandbox cannot be made here; nothing was run.
    """
    bwrap, prlimit = _tools()
    check_hidden([*read_only, *writable, scratch], hidden)
    uid = sandbox_uid() if os.geteuid() == 0 else None
    if uid is not None:
        for folder in [scratch, *writable]:
            for path in [folder, *folder.rglob("*")]:
                os.lchown(path, uid, uid)
    sandbox = bwrap_argv(bwrap, scratch, read_only, uid=uid, writable=writable, network=network)
    argv = [*prlimit_argv(prlimit, limits), *sandbox, *command]
    returncode, timed_out, tail = _run(argv, limits.timeout_s, _environment(environment or {}))
    if returncode != 0 and _no_namespaces(tail):
        raise SandboxUnavailable(
            "bubblewrap cannot create the sandbox's namespaces here (user namespaces "
            f"disabled?): {tail.strip()[-300:]}"
        )
    return SandboxResult(returncode, timed_out, tail)


def _run(argv: list[str], timeout_s: float, env: dict[str, str]) -> tuple[int, bool, str]:
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        timed_out = False
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            # The whole group: bwrap, and whatever it left (--die-with-parent kills the rest).
            _kill_group(process.pid)
            process.wait()
        output.seek(max(0, output.seek(0, os.SEEK_END) - _TAIL))
        tail = output.read().decode("utf-8", "replace")
    return process.returncode, timed_out, tail


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _no_namespaces(output: str) -> bool:
    return output.startswith("bwrap:") and any(
        word in output for word in ("namespace", "Operation not permitted", "setting up uid")
    )


def interpreter_folders(python: Path) -> list[Path]:
    """The folders an interpreter (a virtual environment's ``bin/python`` made by
    ``train.codeset.environment``) reads: its environment, the running Python's installation,
    environment and site-packages, and the folder loopml is imported from (its source, when
    installed editable)."""
    folders = {python.parent.parent, Path(sys.prefix), Path(sys.base_prefix)}
    folders |= {Path(p) for p in site.getsitepackages() if Path(p).is_dir()}
    folders.add(Path(__file__).resolve().parents[2])  # .../loopml/registry/sandbox.py
    system = [Path(s) for s in _SYSTEM]
    return sorted(f for f in folders if not any(_within(f.resolve(), s) for s in system))
