"""Packing code for codesets: .gitignore, links, limits, commits, archives, on real folders
and real git repositories."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from loopml.core.errors import PayloadTooLargeError, ValidationError
from loopml.storage.codetree import (
    TreeLimits,
    archive_of,
    build_archive,
    export_commit,
    export_remote,
    extract_archive,
    pack_directory,
    read_archive,
)

BIG = TreeLimits(max_bytes=10_000_000, max_files=1000)


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    done = subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def make_repo(root: Path, files: dict[str, str]) -> str:
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    write(root, files)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    return git(root, "rev-parse", "HEAD")


TRAINER = {
    "train.py": "print('train')\n",
    "requirements.txt": "scikit-learn\n",
    ".gitignore": "*.pyc\ndata/\n!keep.pyc\n",
    "pkg/util.py": "X = 1\n",
    "pkg/.gitignore": "local.cfg\n",
}
IGNORED = {
    "cache.pyc": "x",
    "keep.pyc": "kept",
    "data/big.csv": "1,2\n",
    "pkg/local.cfg": "secret",
    "pkg/mod.pyc": "x",
}


def test_a_plain_folder_respects_its_gitignore_files(tmp_path: Path) -> None:
    write(tmp_path, {**TRAINER, **IGNORED})
    tree = pack_directory(tmp_path, BIG)
    assert sorted(tree.files) == [
        ".gitignore",
        "keep.pyc",
        "pkg/.gitignore",
        "pkg/util.py",
        "requirements.txt",
        "train.py",
    ]
    assert tree.commit is None


def test_a_git_work_tree_is_listed_by_git_and_a_clean_one_records_head(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    head = make_repo(repo, TRAINER)
    write(repo, IGNORED)  # ignored: nothing changes for git
    tree = pack_directory(repo, BIG)
    assert "cache.pyc" not in tree.files
    assert "data/big.csv" not in tree.files
    assert "keep.pyc" in tree.files  # untracked, not ignored: part of the tree, so dirty
    assert tree.commit is None
    (repo / "keep.pyc").unlink()
    clean = pack_directory(repo, BIG)
    assert clean.commit == head
    assert ".git/HEAD" not in clean.files


def test_the_same_files_from_a_folder_and_from_its_commit_are_the_same_content(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    head = make_repo(repo, TRAINER)
    from_folder = pack_directory(repo, BIG)
    from_commit = export_commit(repo, "main", BIG)
    assert from_commit.commit == head
    assert from_folder.content_hash() == from_commit.content_hash()
    assert archive_of(from_folder) == archive_of(from_commit)  # byte for byte


def test_an_older_ref_and_a_clone_export_that_commit(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    first = make_repo(repo, TRAINER)
    write(repo, {"train.py": "print('v2')\n"})
    git(repo, "commit", "-qam", "second")
    old = export_commit(repo, first, BIG)
    assert old.files["train.py"][0] == b"print('train')\n"
    assert old.commit == first
    cloned = export_remote(f"file://{repo}", None, BIG)
    assert cloned.files["train.py"][0] == b"print('v2')\n"
    assert cloned.commit == git(repo, "rev-parse", "HEAD")


def test_an_unknown_ref_or_a_ref_like_an_option_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, TRAINER)
    with pytest.raises(ValidationError, match="is no commit of the repository"):
        export_commit(repo, "nope", BIG)
    with pytest.raises(ValidationError, match="invalid git ref"):
        export_commit(repo, "--output=/tmp/x", BIG)


def test_a_link_out_of_the_tree_is_refused_and_one_inside_is_a_copy(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("do not ship")
    root = tmp_path / "code"
    write(root, {"train.py": "print(1)\n"})
    (root / "alias.py").symlink_to("train.py")
    tree = pack_directory(root, BIG)
    assert tree.files["alias.py"] == tree.files["train.py"]
    (root / "leak.txt").symlink_to(outside)
    with pytest.raises(ValidationError, match="symbolic link pointing out of the tree"):
        pack_directory(root, BIG)


def test_a_committed_link_out_of_the_tree_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "train.py").write_text("x\n")
    (repo / "inside").symlink_to("train.py")
    (repo / "escape").symlink_to("../../etc/passwd")
    make_repo(repo, {})
    with pytest.raises(ValidationError, match="'escape' is a symbolic link pointing out"):
        export_commit(repo, "HEAD", BIG)
    (repo / "escape").unlink()
    git(repo, "commit", "-qam", "no escape")
    tree = export_commit(repo, "HEAD", BIG)
    assert tree.files["inside"] == tree.files["train.py"]


def test_the_size_and_file_limits(tmp_path: Path) -> None:
    write(tmp_path, {"a.py": "a" * 600, "b.py": "b" * 600})
    with pytest.raises(PayloadTooLargeError, match=r"codesets\.max_bytes"):
        pack_directory(tmp_path, TreeLimits(max_bytes=1000, max_files=10))
    with pytest.raises(PayloadTooLargeError, match=r"codesets\.max_files"):
        pack_directory(tmp_path, TreeLimits(max_bytes=10_000, max_files=1))
    assert pack_directory(tmp_path, TreeLimits(max_bytes=1200, max_files=2)).size == 1200


def _tar(members: list[tarfile.TarInfo], data: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for member in members:
            content = data.get(member.name)
            if content is not None:
                member.size = len(content)
            archive.addfile(member, io.BytesIO(content) if content is not None else None)
    return buffer.getvalue()


def test_an_uploaded_archive_holds_regular_files_only(tmp_path: Path) -> None:
    link = tarfile.TarInfo("link")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    data = _tar([tarfile.TarInfo("a.py"), link], {"a.py": b"x"})
    with pytest.raises(ValidationError, match="'link' is a symbolic link"):
        read_archive(data, BIG, "upload")
    hard = tarfile.TarInfo("hard")
    hard.type = tarfile.LNKTYPE
    hard.linkname = "a.py"
    with pytest.raises(ValidationError, match="not a regular file"):
        read_archive(_tar([tarfile.TarInfo("a.py"), hard], {"a.py": b"x"}), BIG, "upload")
    with pytest.raises(ValidationError, match="cannot be stored"):
        read_archive(_tar([tarfile.TarInfo("../up.py")], {"../up.py": b"x"}), BIG, "upload")
    with pytest.raises(ValidationError, match=r"expected a tar or tar\.gz archive"):
        read_archive(b"not an archive at all", BIG, "upload")


def test_an_archive_over_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tarfile.TarInfo("big.bin")
    data = _tar([big], {"big.bin": b"\0" * 5000})
    with pytest.raises(PayloadTooLargeError):
        read_archive(data, TreeLimits(max_bytes=4000, max_files=10), "upload")


def test_archives_are_deterministic_and_round_trip(tmp_path: Path) -> None:
    files = [("b.py", b"b", False), ("run.sh", b"#!/bin/sh\n", True), ("a/c.py", b"c", False)]
    first = build_archive(files)
    assert first == build_archive(list(reversed(files)))
    tree = read_archive(first, BIG, "archive")
    assert tree.files["run.sh"] == (b"#!/bin/sh\n", True)
    written = extract_archive(first, tmp_path / "out", BIG)
    assert written == ["a/c.py", "b.py", "run.sh"]
    assert os.access(tmp_path / "out" / "run.sh", os.X_OK)
