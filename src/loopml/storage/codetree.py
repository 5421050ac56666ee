"""Trees of code packed for a codeset: from a folder, from a git commit, from an archive.

Each way ends in the same ``PackedTree``: the files' bytes and hashes, checked the same way
(names that are valid artifact keys, no link out of the tree, under the size and file-count
limits), and ``build_archive`` writes it as one deterministic ``.tar.gz`` (sorted, no times,
no owners), which is what the artifact store keeps and what a download returns.

- A folder inside a git work tree lists its files with git itself (``git ls-files --cached
  --others --exclude-standard``: every ``.gitignore``, ``.git/info/exclude`` and the global
  excludes, exactly as git reads them), and records ``HEAD`` as the commit when the folder
  has no change against it. A plain folder reads its ``.gitignore`` files with ``pathspec``
  (git's own matching rules, deeper files first).
- A commit is exported with ``git archive`` (only what was committed); a URL that is no
  folder here is cloned first (``git clone --bare``), which needs the network.
- A link to a file inside the tree is stored as a copy of that file; a link that leaves the
  tree, dangles, or names a folder is refused.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from loopml.core.codesets import CodesetFile, content_hash, validate_commit
from loopml.core.errors import InvalidPathError, PayloadTooLargeError, ValidationError
from loopml.core.keys import validate_key

GIT_TIMEOUT_S = 300
_MAX_LINK_HOPS = 40


@dataclass(frozen=True)
class TreeLimits:
    """How large a tree may be: total bytes of its files, and how many files."""

    max_bytes: int
    max_files: int


@dataclass
class PackedTree:
    """Files ready to store: ``path -> (bytes, executable)``, and the commit they came from."""

    files: dict[str, tuple[bytes, bool]] = field(default_factory=dict)
    commit: str | None = None

    def manifest(self) -> list[CodesetFile]:
        """The file list with sizes and SHA-256s, by path."""
        return [
            CodesetFile(
                path=path,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                executable=executable,
            )
            for path, (data, executable) in sorted(self.files.items())
        ]

    def content_hash(self) -> str:
        """The tree's identity (``loopml.core.codesets.content_hash``)."""
        return content_hash(self.manifest())

    @property
    def size(self) -> int:
        """Total bytes of its files."""
        return sum(len(data) for data, _ in self.files.values())


class _Collector:
    """Adds files to a tree, checking each name and the limits as it goes."""

    def __init__(self, limits: TreeLimits, origin: str) -> None:
        self.limits = limits
        self.origin = origin
        self.tree = PackedTree()
        self.total = 0

    def add(self, path: str, data: bytes, executable: bool) -> None:
        try:
            key = validate_key(path)
        except InvalidPathError as exc:
            raise ValidationError(
                f"{self.origin}: file {path[:200]!r} cannot be stored: {exc.message}",
                details={"path": path[:200]},
            ) from None
        if key in self.tree.files:
            raise ValidationError(f"{self.origin}: file {key!r} appears twice")
        self.fits(len(data))
        if len(self.tree.files) >= self.limits.max_files:
            raise PayloadTooLargeError(
                f"{self.origin} holds more than {self.limits.max_files} files "
                "(the setting codesets.max_files); ignore generated files in .gitignore",
                details={"max_files": self.limits.max_files},
            )
        self.tree.files[key] = (data, executable)
        self.total += len(data)

    def fits(self, size: int) -> None:
        """Refuse, before reading it, a file that would take the tree over its limit."""
        if self.total + size > self.limits.max_bytes:
            raise PayloadTooLargeError(
                f"{self.origin} is larger than {self.limits.max_bytes} bytes (the setting "
                "codesets.max_bytes); ignore data and build outputs in .gitignore",
                details={"max_bytes": self.limits.max_bytes},
            )


def _git(cwd: Path, *args: str, binary: bool = False) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["git", *args],  # noqa: S607 (git from PATH, as a user runs it)
            cwd=cwd,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
        )
    except FileNotFoundError:
        raise ValidationError("git is not installed: it is needed to read a repository") from None


def _git_ok(cwd: Path, *args: str) -> bytes:
    done = _git(cwd, *args)
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()[-500:]
        raise ValidationError(f"git {args[0]} failed in {cwd}: {message}")
    return done.stdout


def _inside_work_tree(folder: Path) -> bool:
    done = _git(folder, "rev-parse", "--is-inside-work-tree")
    return done.returncode == 0 and done.stdout.strip() == b"true"


def _ignore_specs(root: Path, rel_dir: str) -> pathspec.GitIgnoreSpec | None:
    path = root / rel_dir / ".gitignore"
    if not path.is_file() or path.is_symlink():
        return None
    return pathspec.GitIgnoreSpec.from_lines(path.read_text(errors="replace").splitlines())


def _ignored(specs: list[tuple[str, pathspec.GitIgnoreSpec]], rel: str, is_dir: bool) -> bool:
    # The deepest .gitignore with a matching pattern decides, as in git.
    for base, spec in reversed(specs):
        inner = rel[len(base) + 1 :] if base else rel
        found = spec.check_file(inner + "/" if is_dir else inner)
        if found.include is not None:
            return bool(found.include)
    return False


def _walk_plain(root: Path) -> list[str]:
    """Files of a folder outside git, less what its ``.gitignore`` files ignore."""
    found: list[str] = []
    stack: list[tuple[str, list[tuple[str, pathspec.GitIgnoreSpec]]]] = [("", [])]
    while stack:
        rel_dir, inherited = stack.pop()
        spec = _ignore_specs(root, rel_dir)
        specs = [*inherited, (rel_dir, spec)] if spec is not None else inherited
        for entry in sorted(os.scandir(root / rel_dir), key=lambda e: e.name):
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            if entry.name == ".git" or _ignored(specs, rel, is_dir):
                continue
            if is_dir:
                stack.append((rel, specs))
            else:
                found.append(rel)
    return found


def _local_file(root: Path, real_root: Path, rel: str) -> tuple[Path, int, bool]:
    """Where a file's bytes are, its size and executable bit; a link is read through only
    when it stays in the tree and names a file."""
    path = root / rel
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        target = Path(os.path.realpath(path))
        if not target.is_relative_to(real_root):
            raise ValidationError(
                f"{rel!r} is a symbolic link pointing out of the tree ({os.readlink(path)!r}): "
                "copy what it names into the folder, or remove the link",
                details={"path": rel},
            )
        if not target.exists():
            raise ValidationError(f"{rel!r} is a dangling symbolic link", details={"path": rel})
        if not target.is_file():
            raise ValidationError(
                f"{rel!r} is a symbolic link to a folder: codesets hold files only; "
                "replace it with the folder itself",
                details={"path": rel},
            )
        info = target.stat()
        path = target
    if not stat.S_ISREG(info.st_mode):
        raise ValidationError(f"{rel!r} is not a regular file", details={"path": rel})
    return path, info.st_size, bool(info.st_mode & stat.S_IXUSR)


def pack_directory(root: Path, limits: TreeLimits) -> PackedTree:
    """The files of ``root``, ``.gitignore`` respected (see the module docstring).

    Raises:
        ValidationError: not a folder, a bad name, a link out of the tree.
        PayloadTooLargeError: over ``limits``.
    """
    if not root.is_dir():
        raise ValidationError(f"{root} is not a folder", details={"path": str(root)})
    commit: str | None = None
    if _inside_work_tree(root):
        listed = _git_ok(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
        names = sorted({n.decode() for n in listed.split(b"\0") if n})
        # Deleted but still tracked files are gone; a submodule is a folder: neither is kept.
        names = [n for n in names if (root / n).is_symlink() or (root / n).is_file()]
        dirty = _git_ok(root, "status", "--porcelain", "--", ".").strip()
        head = _git(root, "rev-parse", "--verify", "HEAD")
        if not dirty and head.returncode == 0:
            commit = validate_commit(head.stdout.decode().strip())
    else:
        names = _walk_plain(root)
    collector = _Collector(limits, str(root))
    real_root = Path(os.path.realpath(root))
    for name in names:
        path, size, executable = _local_file(root, real_root, name)
        collector.fits(size)
        collector.add(name, path.read_bytes(), executable)
    collector.tree.commit = commit
    return collector.tree


def _check_ref(ref: str) -> str:
    if not ref or ref.startswith("-") or any(c in ref for c in " \t\n\0~^:?*[\\"):
        raise ValidationError(
            f"invalid git ref {ref[:100]!r}: expected a branch, tag or commit id",
            details={"field": "ref"},
        )
    return ref


def export_commit(repository: Path, ref: str | None, limits: TreeLimits) -> PackedTree:
    """The tree of one commit of a local repository (``git archive``), with its sha.

    Raises:
        ValidationError: no repository there, an unknown ref, a link out of the tree.
        PayloadTooLargeError: over ``limits``.
    """
    if not repository.is_dir():
        raise ValidationError(f"{repository} is not a folder", details={"path": str(repository)})
    wanted = _check_ref(ref or "HEAD")
    found = _git(repository, "rev-parse", "--verify", "--end-of-options", f"{wanted}^{{commit}}")
    if found.returncode != 0:
        raise ValidationError(
            f"{wanted!r} is no commit of the repository {repository}: fetch it, or name a "
            "branch, tag or commit id that exists there",
            details={"ref": wanted},
        )
    commit = validate_commit(found.stdout.decode().strip())
    assert commit is not None
    archive = _git_ok(repository, "archive", "--format=tar", commit)
    tree = read_archive(archive, limits, f"commit {commit[:12]} of {repository}", links=True)
    tree.commit = commit
    return tree


def export_remote(url: str, ref: str | None, limits: TreeLimits) -> PackedTree:
    """``export_commit`` of a repository cloned from ``url`` into a temporary folder."""
    if url.startswith("-"):
        raise ValidationError(f"invalid repository URL {url[:100]!r}")
    with tempfile.TemporaryDirectory(prefix="loopml-codeset-") as folder:
        done = _git(Path(folder), "clone", "--quiet", "--bare", "--", url, "repo.git")
        if done.returncode != 0:
            message = done.stderr.decode(errors="replace").strip()[-500:]
            raise ValidationError(f"could not clone {url[:200]}: {message}")
        return export_commit(Path(folder) / "repo.git", ref, limits)


def _resolve_link(name: str, links: dict[str, str], files: set[str], origin: str) -> str:
    current = name
    for _ in range(_MAX_LINK_HOPS):
        target = posixpath.normpath(posixpath.join(posixpath.dirname(current), links[current]))
        if target.startswith("../") or target == ".." or posixpath.isabs(links[current]):
            raise ValidationError(
                f"{origin}: {name!r} is a symbolic link pointing out of the tree "
                f"({links[name]!r}); codesets never follow links out of their tree",
                details={"path": name},
            )
        if target in files:
            return target
        if target not in links:
            raise ValidationError(
                f"{origin}: {name!r} is a symbolic link to {links[name]!r}, which is no file "
                "of the tree (dangling, or a folder)",
                details={"path": name},
            )
        current = target
    raise ValidationError(f"{origin}: {name!r} is a loop of symbolic links")


def _members(archive: tarfile.TarFile, collector: _Collector, links: dict[str, str]) -> None:
    for member in archive:
        name = member.name.removeprefix("./")
        if member.isdir() or member.type in (tarfile.XGLTYPE, tarfile.XHDTYPE):
            continue
        if member.issym():
            links[name] = member.linkname
            continue
        if not member.isreg():
            raise ValidationError(
                f"{collector.origin}: {name[:200]!r} is not a regular file (links to other "
                "entries, devices and pipes are refused)",
                details={"path": name[:200]},
            )
        collector.fits(member.size)
        handle = archive.extractfile(member)
        assert handle is not None  # a regular member
        collector.add(name, handle.read(), bool(member.mode & stat.S_IXUSR))


def read_archive(
    data: bytes, limits: TreeLimits, origin: str, *, links: bool = False
) -> PackedTree:
    """A tree from a tar archive (plain or gzip): regular files only; with ``links``
    (``git archive``'s output), links within the tree are stored as copies of their files.

    Raises:
        ValidationError: not a tar archive, a bad name, a link (out of the tree).
        PayloadTooLargeError: over ``limits``.
    """
    collector = _Collector(limits, origin)
    found: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            _members(archive, collector, found)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, OSError) as exc:
        raise ValidationError(
            f"{origin}: expected a tar or tar.gz archive: {exc}", details={"field": "body"}
        ) from None
    if found and not links:
        name = sorted(found)[0]
        raise ValidationError(
            f"{origin}: {name!r} is a symbolic link: an uploaded codeset holds regular files "
            "only (the CLI stores a link within the tree as a copy of its file)",
            details={"path": name},
        )
    for name in sorted(found):
        target = _resolve_link(name, found, set(collector.tree.files), origin)
        data_, executable = collector.tree.files[target]
        collector.add(name, data_, executable)
    return collector.tree


def build_archive(files: Iterable[tuple[str, bytes, bool]]) -> bytes:
    """A deterministic ``.tar.gz`` of ``(path, bytes, executable)``: sorted by path, no
    times, no owners, so one tree always gives the same bytes."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=6) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for path, data, executable in sorted(files):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o755 if executable else 0o644
            info.mtime = 0
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def archive_of(tree: PackedTree) -> bytes:
    """``build_archive`` of a packed tree."""
    return build_archive((p, d, x) for p, (d, x) in tree.files.items())


def extract_archive(data: bytes, destination: Path, limits: TreeLimits) -> list[str]:
    """Write a codeset archive's files under ``destination`` (checked like an upload);
    returns their paths."""
    tree = read_archive(data, limits, "codeset archive")
    for path, (content, executable) in tree.files.items():
        target = destination / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(0o755 if executable else 0o644)
    return sorted(tree.files)
