"""``loopml backup`` and ``loopml restore`` like an operator (RELIABILITY 29): a platform
with every kind of object (``backup_platform.py``; every table of the metadata schema holds
rows, or a test here fails), backed up while predictions, ingests and the pipeline runs
they trigger go on; restored into a fresh home on SQLite and into PostgreSQL + S3 from the
one build, where every row of every table and every artifact's hash equal the snapshot's,
the restored platform answers the same predictions, and its Redis online store, refilled
from the lake under a key prefix of its own, the same feature values; a damaged backup is
refused with the file named and nothing restored."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable
from sqlalchemy import create_engine, select

from loopml.backup import BackupVault, Manifest
from loopml.backup.manifest import ARTIFACTS, DATABASE_PATH, blob_key
from loopml.storage import ArtifactStore, LocalArtifactStore, open_artifact_store
from loopml.store.orm import Base
from tests.waiting import eventually

from .backup_platform import (
    Load,
    build,
    ok,
    online_store,
    online_values,
    predict,
    server_env,
    wait_for_every_table,
)
from .conftest import running_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

PASSPHRASE = "correct horse battery staple"


@dataclass
class Backed:
    """The platform as it was backed up, and what it answered."""

    dest: Path
    passphrase_file: Path
    client_token: str
    admin_token: str
    answers: list[Any]
    online: list[dict[str, Any]] = field(default_factory=list)
    redis_prefix: str = ""
    empty_tables: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)


def _drop_keys(prefix: str) -> None:
    import redis

    from .backup_platform import REDIS

    with redis.Redis.from_url(REDIS) as r:
        keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            r.unlink(*keys)


@pytest.fixture(scope="module")
def backed(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Iterator[Backed]:
    prefix = f"loopml-backup-test-{uuid.uuid4().hex[:10]}"
    try:
        yield _backed(tmp_path_factory.mktemp("backed"), prefix)
    finally:
        _drop_keys(prefix)


def _backed(tmp: Path, prefix: str) -> Backed:
    home = tmp / "home"
    home.mkdir()
    dest = tmp / "backup"
    secret = tmp / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    with running_server(home, server_env(prefix)) as server:
        started = time.monotonic()
        built = build(server, tmp, prefix)
        answers = predict(server.url, built.client_token)
        empty = wait_for_every_table(home / "loopml.db", 30)
        build_s = time.monotonic() - started
        args = ("backup", str(dest), "--include-secrets", "--passphrase-file", str(secret))
        with Load(server, built.client_token, tmp) as load:
            started = time.monotonic()
            first = server.cli(*args, timeout=300)
            first_s = time.monotonic() - started
        ok(first)
        assert load.errors == []
        assert load.done["predictions"] > 0
        started = time.monotonic()
        ok(server.cli(*args, timeout=300))
        second_s = time.monotonic() - started
        first_in_process_s = BackupVault(LocalArtifactStore(dest)).manifests()[0].seconds
        # Stopped, with retention: the platform needs no server to be backed up.
        started = time.monotonic()
        kept = ok(server.cli(*args, "--keep", "2", timeout=300))
        third_s = time.monotonic() - started
    assert "removed 1 snapshots" in kept
    vault = BackupVault(LocalArtifactStore(dest))
    two, three = vault.manifests()
    db = next(f for f in three.files if f.path == DATABASE_PATH)
    figures = {
        "build_s": build_s,
        "first_cli_s": first_s,
        "second_cli_s": second_s,
        "third_cli_s": third_s,
        "first_s": first_in_process_s,
        "second_s": two.seconds,
        "third_s": three.seconds,
        "size": three.size,
        "files": len(three.files),
        "database_bytes": db.size,
        "second_new_bytes": two.new_bytes,
        "third_new_bytes": three.new_bytes,
        "dest_bytes": sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()),
        "load_predictions": load.done["predictions"],
        "load_ingests": load.done["ingests"],
    }
    print(f"\n[backup figures] {figures}")
    return Backed(
        dest, secret, built.client_token, built.admin_token, answers, built.online, prefix,
        empty, figures,
    )  # fmt: skip


def test_the_backed_up_platform_has_rows_in_every_table(backed: Backed, tmp_path: Path) -> None:
    """Every table of the metadata schema holds rows in the snapshot, so the row-by-row
    comparisons below cover it: a new table fails here until the platform above makes
    some."""
    assert backed.empty_tables == [], f"tables with no row: {backed.empty_tables}"
    vault = BackupVault(LocalArtifactStore(backed.dest))
    manifest = vault.manifests()[0]
    rows = _rows(_snapshot_db(vault, manifest, tmp_path))
    assert [name for name, found in rows.items() if not found] == []


def _rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t.name: sorted((tuple(r) for r in conn.execute(select(t))), key=repr)
                for t in Base.metadata.sorted_tables
            }
    finally:
        engine.dispose()


def _hashes(store: ArtifactStore) -> dict[str, str]:
    return {
        ARTIFACTS + info.key: hashlib.sha256(store.read_bytes(info.key)).hexdigest()
        for info in store.list("")
    }


def _snapshot_db(vault: BackupVault, manifest: Manifest, tmp: Path) -> str:
    entry = next(f for f in manifest.files if f.path == DATABASE_PATH)
    path = tmp / f"snapshot-{manifest.id}.db"
    path.write_bytes(b"".join(vault.read(entry.sha256)))
    return f"sqlite:///{path}"


def _restore(backed: Backed, env: dict[str, str], *extra: str) -> Any:
    import subprocess

    from .conftest import LOOPML

    return subprocess.run(
        [*LOOPML, "restore", str(backed.dest), "--passphrase-file", str(backed.passphrase_file),
         *extra],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _every_ready_version_verifies(db_url: str, artifacts: ArtifactStore) -> None:
    """RELIABILITY 29's checker: every READY model version's package is present and matches
    the hashes its manifest records (the registry's own verification)."""
    from loopml.core import layout
    from loopml.registry._verify import verify_package

    versions, logged, runs = (
        Base.metadata.tables[name] for name in ("model_versions", "logged_models", "runs")
    )
    query = (
        select(runs.c.project_id, logged.c.run_id, logged.c.path, logged.c.manifest_sha256)
        .select_from(versions)
        .join(logged, versions.c.logged_model_id == logged.c.id)
        .join(runs, logged.c.run_id == runs.c.id)
        .where(versions.c.status == "READY")
    )
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            ready = list(conn.execute(query))
    finally:
        engine.dispose()
    assert len(ready) == 2
    for project_id, run_id, path, sha in ready:
        verify_package(artifacts, f"{layout.run_artifacts_prefix(project_id, run_id)}/{path}", sha)


def _check_restored(vault: BackupVault, tmp: Path, db_url: str, artifacts: ArtifactStore) -> None:
    manifest = vault.latest()
    assert manifest is not None
    assert _rows(db_url) == _rows(_snapshot_db(vault, manifest, tmp))
    expected = {f.path: f.sha256 for f in manifest.files if f.path.startswith(ARTIFACTS)}
    assert _hashes(artifacts) == expected
    _every_ready_version_verifies(db_url, artifacts)
    # Each lake table reads at the version its row records, with the rows it records.
    table = Base.metadata.tables["lake_tables"]
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            query = select(table.c.project_id, table.c.id, table.c.version, table.c.row_count)
            tables = list(conn.execute(query))
    finally:
        engine.dispose()
    assert len(tables) >= 2  # sales and the deployment's prediction log
    for project_id, table_id, version, row_count in tables:
        prefix = f"projects/{project_id}/lake/{table_id}"
        if version < 0:  # made, never written to (the stream's dead letters): no files
            assert prefix not in manifest.lake
            continue
        assert manifest.lake[prefix] == version
        loc = artifacts.native_location(prefix)
        delta = DeltaTable(loc.uri, storage_options=loc.storage_options)
        assert (delta.version(), delta.count()) == (version, row_count)


def _serves_the_same(backed: Backed, home: Path, env: dict[str, str], prefix: str) -> None:
    """The restored platform answers the same predictions, and its online store (refilled
    from the lake under ``prefix``) the same feature values."""
    from loopml.client import Client

    with running_server(home, {**server_env(prefix), **env}) as server:
        server.env["LOOPML_TOKEN"] = backed.admin_token
        shown = json.loads(ok(server.cli("deployments", "show", "churn", "--json")))
        assert shown["name"] == "churn"
        assert shown["canary_revision"] is not None, shown
        eventually(
            lambda: predict(server.url, backed.client_token) == backed.answers,
            120,
            "the restored deployment to answer as before the backup",
            interval_s=1,
            describe=lambda: (predict(server.url, backed.client_token), backed.answers),
        )
        with Client(server.url, token=backed.admin_token) as client:
            assert online_values(client) == backed.online


def _refilled(done: Any) -> None:
    assert "online store refilled from the lake: 1 feature views, 5 entities" in done.stdout, (
        done.stdout + done.stderr
    )


def test_restore_into_a_fresh_home_on_sqlite(backed: Backed, tmp_path: Path) -> None:
    from .conftest import base_env

    home = tmp_path / "restored"
    prefix = f"{backed.redis_prefix}-sqlite"
    env = {**base_env(home), "LOOPML_FEATURES_ONLINE": online_store(prefix)}
    listed = subprocess_run(["backup", "--list", str(backed.dest)], {**env, "COLUMNS": "200"})
    assert listed.stdout.count("sqlite +secrets") == 2, listed.stdout  # --keep 2
    started = time.monotonic()
    done = _restore(backed, env)
    print(f"\n[restore figures] sqlite: {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "restored snapshot" in done.stdout
    _refilled(done)
    artifacts = LocalArtifactStore(home / "artifacts")
    vault = BackupVault(LocalArtifactStore(backed.dest))
    _check_restored(vault, tmp_path, f"sqlite:///{home / 'loopml.db'}", artifacts)
    again = _restore(backed, env)
    assert again.returncode != 0
    assert "is not empty" in again.stderr
    assert "loopml.db" in again.stderr
    _serves_the_same(backed, home, {}, prefix)


@pytest.mark.postgres
@pytest.mark.s3
def test_restore_moves_an_embedded_home_to_postgres_and_s3(
    backed: Backed, tmp_path: Path, postgres_url: str, s3_endpoint: str, s3_bucket: str
) -> None:
    from .conftest import base_env

    home = tmp_path / "restored"
    s3 = {
        "LOOPML_DATABASE_URL": postgres_url,
        "LOOPML_ARTIFACTS_ROOT": f"s3://{s3_bucket}/loopml",
        "LOOPML_ARTIFACTS_S3_ENDPOINT_URL": s3_endpoint,
        "LOOPML_ARTIFACTS_S3_ACCESS_KEY_ID": "testing",
        "LOOPML_ARTIFACTS_S3_SECRET_ACCESS_KEY": "testing",
    }
    prefix = f"{backed.redis_prefix}-pg"
    env = {**base_env(home), **s3, "LOOPML_FEATURES_ONLINE": online_store(prefix)}
    started = time.monotonic()
    done = _restore(backed, env)
    print(f"\n[restore figures] postgres+s3: {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "database rows loaded" in done.stdout
    _refilled(done)
    artifacts = open_artifact_store(s3["LOOPML_ARTIFACTS_ROOT"], **_s3_options(s3_endpoint))
    url = postgres_url.replace("postgresql://", "postgresql+psycopg://")
    _check_restored(BackupVault(LocalArtifactStore(backed.dest)), tmp_path, url, artifacts)
    _serves_the_same(backed, home, s3, prefix)

    # And back: the PostgreSQL + S3 platform into an S3 prefix, then into a SQLite home.
    dest = f"s3://{s3_bucket}/backups"
    ok(subprocess_run(["backup", dest], env))
    assert "all intact" in ok(subprocess_run(["restore", dest, "--verify"], env))
    back = tmp_path / "back"
    restored = subprocess_run(["restore", dest], {**base_env(back), **_s3_access(s3)})
    assert "restored snapshot" in restored.stdout
    _refilled(restored)  # from Redis into the embedded online store
    vault = BackupVault(open_artifact_store(dest, **_s3_options(s3_endpoint)))
    manifest = vault.latest()
    assert manifest is not None
    assert manifest.source_database == "postgresql"
    assert manifest.secrets is None
    assert "API tokens made before it stop working" in restored.stderr
    _check_restored(
        vault, tmp_path, f"sqlite:///{back / 'loopml.db'}", LocalArtifactStore(back / "artifacts")
    )


def _s3_access(s3: dict[str, str]) -> dict[str, str]:
    """The S3 settings that reach the backup, without naming S3 as the artifact store."""
    return {k: v for k, v in s3.items() if k.startswith("LOOPML_ARTIFACTS_S3_")}


def _s3_options(endpoint: str) -> dict[str, str]:
    return {
        "s3_endpoint_url": endpoint,
        "s3_access_key_id": "testing",
        "s3_secret_access_key": "testing",
    }


def subprocess_run(args: list[str], env: dict[str, str]) -> Any:
    import subprocess

    from .conftest import LOOPML

    done = subprocess.run([*LOOPML, *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _damaged(backed: Backed, tmp: Path) -> tuple[Path, Manifest]:
    copy = tmp / "damaged"
    shutil.copytree(backed.dest, copy)
    manifest = BackupVault(LocalArtifactStore(copy)).latest()
    assert manifest is not None
    return copy, manifest


def _blob_of(copy: Path, manifest: Manifest, suffix: str) -> tuple[str, Path]:
    entry = next(f for f in manifest.files if f.path.endswith(suffix) and f.size > 100)
    return entry.path, copy / blob_key(entry.sha256)


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "manifest"])
def test_a_damaged_backup_is_refused_naming_the_file(
    backed: Backed, tmp_path: Path, damage: str
) -> None:
    from .conftest import base_env

    copy, manifest = _damaged(backed, tmp_path)
    named, blob = _blob_of(copy, manifest, ".parquet")
    if damage == "flip":
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0x01
        blob.write_bytes(bytes(data))
    elif damage == "truncate":
        blob.write_bytes(blob.read_bytes()[:-7])
    elif damage == "delete":
        blob.unlink()
    else:
        path = copy / "snapshots" / f"{manifest.id}.json"
        path.write_bytes(path.read_bytes()[:-40])
        named = f"snapshots/{manifest.id}.json"
    home = tmp_path / "restored"
    env = base_env(home)
    done = _restore(Backed(copy, backed.passphrase_file, "", "", []), env)
    assert done.returncode != 0
    assert named in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not home.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".restored")] == []
