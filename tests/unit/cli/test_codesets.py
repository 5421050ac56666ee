"""``loopml codesets`` against a running platform, as a user types it: register a folder and
a commit, list, versions, show, download, and the errors a user meets."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.storage.test_codetree import TRAINER, git, make_repo, write

from .conftest import Platform


def test_register_list_show_download(platform: Platform, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    head = make_repo(repo, TRAINER)
    done = platform.cli("codesets", "register", "clitrainer", str(repo))
    assert done.exit_code == 0, done.output
    assert "codeset clitrainer registered as version 1: 5 files" in done.output
    assert f"commit {head[:12]}" in done.output
    again = platform.cli("codesets", "register", "clitrainer", f"{repo}@main")
    assert again.exit_code == 0, again.output
    assert "codeset clitrainer unchanged at version 1" in again.output

    write(repo, {"train.py": "print('v2')\n"})
    git(repo, "commit", "-qam", "second")
    newer = platform.cli("codesets", "register", "clitrainer", f"{repo}@HEAD", "--json")
    assert newer.exit_code == 0, newer.output
    made = json.loads(newer.output)
    assert made["created"]
    assert made["version"]["version"] == 2
    assert made["version"]["commit"] == git(repo, "rev-parse", "HEAD")

    listed = platform.cli("codesets", "list", "-o", "json")
    assert [c["name"] for c in json.loads(listed.output)] == ["clitrainer"]
    versions = platform.cli("codesets", "versions", "clitrainer", "-o", "csv")
    assert versions.output.splitlines()[0].startswith("version,content,commit")
    assert len(versions.output.splitlines()) == 3
    shown = platform.cli("codesets", "show", "clitrainer", "--version", "1")
    assert shown.exit_code == 0, shown.output
    assert "codeset clitrainer version 1: 5 files" in shown.output
    assert "requirements.txt" in shown.output

    out = tmp_path / "checkout"
    fetched = platform.cli("codesets", "download", "clitrainer", str(out), "--version", "1")
    assert fetched.exit_code == 0, fetched.output
    assert (out / "train.py").read_text() == TRAINER["train.py"]
    refused = platform.cli("codesets", "download", "clitrainer", str(out))
    assert refused.exit_code != 0
    assert "is not empty" in str(refused.exception)


def test_errors_say_what_is_wrong(platform: Platform, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    code = tmp_path / "code"
    write(code, {"a.py": "x"})
    (code / "leak").symlink_to(outside)
    done = platform.cli("codesets", "register", "leaky", str(code))
    assert done.exit_code != 0
    assert "symbolic link pointing out of the tree" in str(done.exception)
    missing = platform.cli("codesets", "register", "x", str(tmp_path / "nowhere"))
    assert "no folder, no local repository" in str(missing.exception)
    unknown = platform.cli("codesets", "show", "nosuch")
    assert "register it first" in str(unknown.exception)


def test_pipelines_assign(platform: Platform, tmp_path: Path) -> None:
    code = tmp_path / "code"
    write(code, {"train.py": "x"})
    assert platform.cli("codesets", "register", "assigned", str(code)).exit_code == 0
    with platform.client() as client:
        client.pipelines.apply(
            "name: on-code\ninputs:\n  code: codeset\nsteps:\n  - {name: a, python: 'm:f'}\n"
        )
    done = platform.cli("pipelines", "assign", "on-code", "--codeset", "assigned")
    assert done.exit_code == 0, done.output
    assert "trigger on-code-on-assigned: on-code runs on each new version" in done.output
    assert "of on-code on assigned@1" in done.output
    shown = platform.cli("triggers", "show", "on-code-on-assigned")
    assert "codeset.versioned" in shown.output
    # The runs list names the codeset version each run was pinned to (like FuseML's).
    listed = platform.cli("pipelines", "runs", "on-code", "-o", "csv")
    assert listed.exit_code == 0, listed.output
    header, first = listed.stdout.splitlines()[:2]
    assert header.startswith("run,pipeline,status,inputs,")
    assert "code=assigned@1" in first
