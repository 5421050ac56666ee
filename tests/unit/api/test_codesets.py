"""Codesets through the API and the SDK: versions by content, hostile uploads refused at the
edge, downloads, and the push webhook that registers a repository's new commits."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.core.errors import NotFoundError, PermissionDeniedError, ValidationError
from loopml.platform import create_api_app
from loopml.settings import Settings
from tests.unit.storage.test_codetree import TRAINER, git, make_repo, write

from .conftest import MAX_BODY, MAX_UPLOAD

CODESETS = "/api/v1/projects/default/codesets"


@pytest.fixture
def repos(tmp_path: Path) -> Path:
    path = tmp_path / "repos"
    path.mkdir()
    return path


@pytest.fixture
def settings(tmp_path: Path, migrated_database_url: str, repos: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database={"url": migrated_database_url},
        artifacts={"root": str(tmp_path / "artifacts")},
        server={"max_body_bytes": MAX_BODY, "max_upload_bytes": MAX_UPLOAD},
        codesets={"max_bytes": 100_000, "max_files": 50, "repository_roots": [str(repos)]},
    )


def test_versions_follow_content(client: Client, tmp_path: Path) -> None:
    code = tmp_path / "code"
    write(code, {**TRAINER, "data/rows.csv": "1\n"})
    first = client.codesets.register("trainer", code)
    assert first.created
    assert first.version.version == 1
    assert first.version.commit is None
    assert {f.path for f in first.version.files or []} == set(TRAINER)
    again = client.codesets.register("trainer", code)
    assert not again.created
    assert again.version.version == 1
    assert again.version.content_hash == first.version.content_hash
    write(code, {"train.py": "print('v2')\n"})
    second = client.codesets.register("trainer", code)
    assert second.created
    assert second.version.version == 2

    listed = client.codesets.list()
    assert [(c.name, c.latest_version) for c in listed] == [("trainer", 2)]
    assert [v.version for v in client.codesets.versions("trainer")] == [2, 1]
    shown = client.codesets.version("trainer", 1)
    train = next(f for f in shown.files or [] if f.path == "train.py")
    assert train.size == len(TRAINER["train.py"])
    written = client.codesets.download("trainer", tmp_path / "out", 1)
    assert (tmp_path / "out" / "train.py").read_text() == TRAINER["train.py"]
    assert "data/rows.csv" not in written
    events = client.events.list(type="codeset.versioned").items
    assert [e.payload["version"] for e in events] == [1, 2]


def test_a_commit_of_a_local_repository_records_its_sha(client: Client, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    head = make_repo(repo, TRAINER)
    made = client.codesets.register("trainer", f"{repo}@main")
    assert made.version.commit == head
    assert made.version.source == f"{repo}@main"
    # The same tree from its clean work tree is the same version, with the same commit.
    again = client.codesets.register("trainer", repo)
    assert not again.created
    assert again.version.commit == head


def _tar_with_link() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        link = tarfile.TarInfo("passwd")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        archive.addfile(link)
    return buffer.getvalue()


def test_hostile_uploads_are_refused_and_store_nothing(http: TestClient, client: Client) -> None:
    url = CODESETS + "/trainer/versions"
    answer = http.post(url, content=_tar_with_link())
    assert answer.status_code == 422
    assert "symbolic link" in answer.json()["error"]["message"]
    answer = http.post(url, content=b"plain text")
    assert answer.status_code == 422
    assert "expected a tar or tar.gz archive" in answer.json()["error"]["message"]
    answer = http.post(url, params={"commit": "HEAD"}, content=b"")
    assert answer.status_code == 422
    answer = http.post(CODESETS + "/Bad_Name/versions", content=b"")
    assert answer.status_code in (400, 422)
    with pytest.raises(NotFoundError):
        client.codesets.get("trainer")


def test_a_tree_over_the_server_limit_is_413(http: TestClient, tmp_path: Path) -> None:
    from loopml.storage.codetree import build_archive

    big = build_archive([("blob.bin", bytes(range(256)) * 500, False)])  # 128,000 bytes
    answer = http.post(CODESETS + "/trainer/versions", content=big)
    assert answer.status_code == 413
    assert "codesets.max_bytes" in answer.json()["error"]["message"]


def test_missing_things_are_404(client: Client, tmp_path: Path) -> None:
    write(tmp_path / "c", {"a.py": "x"})
    client.codesets.register("trainer", tmp_path / "c")
    with pytest.raises(NotFoundError, match="no version 7"):
        client.codesets.version("trainer", 7)
    with pytest.raises(NotFoundError, match="register it first"):
        client.codesets.versions("other")


def _push(http: TestClient, hook_path: str, secret: str, ref: str, after: str) -> dict[str, object]:
    answer = http.post(
        hook_path, json={"ref": ref, "after": after}, headers={"X-Loopml-Secret": secret}
    )
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert isinstance(body, dict)
    return body


def test_the_push_webhook_registers_each_new_commit(
    http: TestClient, client: Client, repos: Path, tmp_path: Path
) -> None:
    repo = repos / "trainer"
    first = make_repo(repo, TRAINER)
    client.codesets.register("trainer", f"{repo}@{first}")
    hook = client.codesets.set_webhook("trainer", str(repo), branch="main")
    assert hook.secret
    assert hook.path == f"/api/v1/codesets/{hook.id}/push"

    refused = http.post(hook.path, json={"ref": "refs/heads/main", "after": first})
    assert refused.status_code == 403
    wrong = http.post(hook.path, json={}, headers={"X-Loopml-Secret": "lmwh_wrong"})
    assert wrong.status_code == 403

    same = _push(http, hook.path, hook.secret, "refs/heads/main", first)
    assert same == {"outcome": "unchanged", "codeset": "trainer", "version": 1, "commit": first}
    write(repo, {"train.py": "print('v2')\n"})
    git(repo, "commit", "-qam", "second")
    second = git(repo, "rev-parse", "HEAD")
    made = _push(http, hook.path, hook.secret, "refs/heads/main", second)
    assert made == {"outcome": "registered", "codeset": "trainer", "version": 2, "commit": second}
    assert client.codesets.version("trainer").commit == second

    other = _push(http, hook.path, hook.secret, "refs/heads/dev", second)
    assert other["outcome"] == "skipped"
    assert "follows 'main'" in str(other["skipped"])
    tag = _push(http, hook.path, hook.secret, "refs/tags/v1", second)
    assert tag["outcome"] == "skipped"
    gone = _push(http, hook.path, hook.secret, "refs/heads/main", "0" * 40)
    assert gone["outcome"] == "skipped"
    assert "deleted" in str(gone["skipped"])

    gitlab = http.post(
        hook.path,
        json={"object_kind": "push", "ref": "refs/heads/main", "after": second},
        headers={"X-Gitlab-Token": hook.secret},
    )
    assert gitlab.status_code == 202
    assert gitlab.json()["outcome"] == "unchanged"
    bad = http.post(hook.path, json={"zen": "hi"}, headers={"X-Loopml-Secret": hook.secret})
    assert bad.status_code == 422
    assert "not a push event" in bad.json()["error"]["message"]
    unknown = http.post(
        hook.path,
        json={"ref": "refs/heads/main", "after": "a" * 40},
        headers={"X-Loopml-Secret": hook.secret},
    )
    assert unknown.status_code == 422
    assert "is no commit of the repository" in unknown.json()["error"]["message"]
    assert [v.version for v in client.codesets.versions("trainer")] == [2, 1]


def test_a_repository_outside_the_roots_is_refused(
    client: Client, tmp_path: Path, repos: Path
) -> None:
    outside = tmp_path / "elsewhere"
    make_repo(outside, TRAINER)
    client.codesets.register("trainer", outside)
    with pytest.raises(PermissionDeniedError, match=r"outside the folders"):
        client.codesets.set_webhook("trainer", str(outside))
    (repos / "plain").mkdir()
    with pytest.raises(ValidationError, match="no git repository"):
        client.codesets.set_webhook("trainer", str(repos / "plain"))


def test_no_roots_means_no_repository_is_read(tmp_path: Path, migrated_database_url: str) -> None:
    settings = Settings(
        home=tmp_path / "home2",
        database={"url": migrated_database_url},
        artifacts={"root": str(tmp_path / "artifacts2")},
    )
    repo = tmp_path / "repo"
    make_repo(repo, TRAINER)
    with TestClient(create_api_app(settings), base_url="http://127.0.0.1") as http:
        client = Client(http=http)
        client.codesets.register("trainer", repo)
        with pytest.raises(PermissionDeniedError, match=r"codesets\.repository_roots"):
            client.codesets.set_webhook("trainer", str(repo))


ASSIGNED = """\
name: train-code
inputs:
  code: {type: codeset}
  budget: {type: number, default: 5}
steps:
  - {name: a, python: "m:f"}
"""


def test_assign_runs_now_and_on_every_new_version(client: Client, tmp_path: Path) -> None:
    code = tmp_path / "code"
    write(code, {"train.py": "v1"})
    client.codesets.register("trainer", code)
    client.pipelines.apply(ASSIGNED)
    trigger, started = client.pipelines.assign("train-code", "trainer", inputs={"budget": 9})
    assert trigger.name == "train-code-on-trainer"
    assert trigger.on == "codeset.versioned"
    assert trigger.where == {"codeset": "trainer"}
    assert trigger.inputs == {"code": "trainer", "budget": 9}
    assert started is not None
    assert started.inputs == {"code": "trainer@1", "budget": 9}
    client.pipelines.apply(ASSIGNED.replace("budget", "other"))
    with pytest.raises(ValidationError, match="'nope' is not one"):
        client.pipelines.assign("train-code", "trainer", input="nope")
    client.pipelines.apply("name: plain\nsteps:\n  - {name: a, python: 'm:f'}\n")
    with pytest.raises(ValidationError, match="no input of type codeset"):
        client.pipelines.assign("plain", "trainer")
