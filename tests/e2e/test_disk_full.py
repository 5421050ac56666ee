"""A full disk under ``LOOPML_HOME`` (a 40 MB tmpfs, filled): ingest and registration are
refused with 507 ``disk_full`` naming what and where, predictions are still answered (their
log rows dropped and counted), ``/metrics`` shows the free space and the refusals, nothing
stored before is changed, and once space is freed everything works again without a restart
(RELIABILITY 32); and a disk filled to its last byte is freed with loopml itself (a table
delete, a vacuum, a gc), the disk reserve given back for them (issue 51). Needs root for the
mount: skipped without it, failed with ``LOOPML_REQUIRE_SERVICES=1``."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import fill_disk as _fill
from tests.conftest import small_disk
from tests.unit.deploy.deploy_support import instances
from tests.waiting import REQUEST_GUARD_S, eventually

from .conftest import RunningServer, log_cancer_model, running_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

TABLE = "/api/v1/projects/default/tables/sales"
VERSIONS = "/api/v1/projects/default/models/cancer/versions"
CSV = "id,amount\n" + "".join(f"{i},{i * 0.5}\n" for i in range(500))
RESERVE = 4 * 1024 * 1024
RESERVE_GAUGE = 'loopml_disk_reserve_bytes{path="home"}'
FREE_GAUGE = 'loopml_disk_free_bytes{path="home"}'


@pytest.fixture
def small_home(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "home", "40m") as home:
        yield home


def _ingest(server: RunningServer, table: str = TABLE, csv: str = CSV) -> httpx.Response:
    return httpx.post(
        f"{server.url}{table}/files",
        content=csv.encode(),
        headers={"Content-Type": "text/csv"},
        trust_env=False,
        timeout=REQUEST_GUARD_S,
    )


def _predict(server: RunningServer) -> dict[str, Any]:
    answer = httpx.post(
        f"{server.url}/deployments/churn/predict",
        json={"instances": instances(3)},
        trust_env=False,
        timeout=REQUEST_GUARD_S,
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return {"predictions": body["predictions"], "probabilities": body["probabilities"]}


def _metrics(server: RunningServer) -> dict[str, float]:
    text = httpx.get(f"{server.url}/metrics", trust_env=False, timeout=REQUEST_GUARD_S).text
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("loopml_disk_")
    }


def _get(server: RunningServer, path: str) -> Any:
    answer = httpx.get(f"{server.url}{path}", trust_env=False, timeout=REQUEST_GUARD_S)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_full_home_refuses_writes_clearly_serves_and_recovers(
    small_home: Path, tmp_path: Path
) -> None:
    stderr = tmp_path / "server.log"  # off the full disk, to read what the server said
    with running_server(small_home, log_path=stderr) as server:
        first = _ingest(server)
        assert first.status_code == 201, first.text
        run_id = log_cancer_model(server, tmp_path / "pkg")
        deployed = server.cli("deploy", "cancer/1", "--name", "churn", "--replicas", "1")
        assert deployed.returncode == 0, deployed.stderr
        before = _predict(server)
        history = _get(server, f"{TABLE}/history")
        versions = _get(server, VERSIONS)

        filler = _fill(small_home)
        refused = _ingest(server)
        assert refused.status_code == 507, refused.text
        error = refused.json()["error"]
        assert error["code"] == "disk_full"
        assert f"the disk holding {small_home}/" in error["message"]
        assert "table default/sales's new version was not written" in error["message"]
        registered = httpx.post(
            f"{server.url}{VERSIONS}",
            json={"run_id": run_id},
            trust_env=False,
            timeout=REQUEST_GUARD_S,
        )
        assert registered.status_code == 507, registered.text
        assert f"the disk holding {small_home}/loopml.db is full" in registered.text
        cli = server.cli("models", "register", "cancer", "--run", run_id)
        assert cli.returncode != 0
        assert "is full" in cli.stderr
        assert "Traceback" not in cli.stderr
        # Enough refusals for their log lines to outgrow the log file's last page.
        for _ in range(20):
            assert _ingest(server).status_code == 507

        for _ in range(5):
            assert _predict(server) == before  # served, while its log rows cannot be written
        eventually(
            lambda: (
                _metrics(server).get('loopml_disk_full_refusals_total{store="prediction_log"}', 0)
                >= 1
            ),
            60,
            "a prediction-log refusal counted on /metrics",
            interval_s=0.3,
            describe=lambda: _metrics(server),
        )
        figures = _metrics(server)
        assert figures['loopml_disk_free_bytes{path="home"}'] < 64 * 1024
        assert figures['loopml_disk_size_bytes{path="home"}'] == 40 * 1024 * 1024
        assert figures['loopml_disk_full_refusals_total{store="lake"}'] >= 21
        assert figures['loopml_disk_full_refusals_total{store="database"}'] >= 2
        assert figures['loopml_disk_full_refusals_total{store="log"}'] >= 1
        said = stderr.read_text()
        assert said.count("prediction log: the disk holding") == 1
        assert said.count("loopml: the disk holding the server log") == 1
        assert "panicked" not in said
        assert "Traceback" not in said
        assert _get(server, f"{TABLE}/history") == history
        assert _get(server, VERSIONS) == versions
        assert server.process.poll() is None

        filler.unlink()  # space returns: no restart
        assert _metrics(server)['loopml_disk_free_bytes{path="home"}'] > 30 * 1024 * 1024
        again = _ingest(server)
        assert again.status_code == 201, again.text
        assert again.json()["version"] == first.json()["version"] + 1
        version = httpx.post(
            f"{server.url}{VERSIONS}",
            json={"run_id": run_id},
            trust_env=False,
            timeout=REQUEST_GUARD_S,
        )
        assert version.status_code in (200, 201), version.text
        assert version.json()["status"] == "READY"
        assert _predict(server) == before


def _incompressible_csv(size: int) -> str:
    """About ``size`` bytes of CSV whose Parquet file is about as large (random hex)."""
    rows = size // 70
    return "id,payload\n" + "".join(f"{i},{secrets.token_hex(32)}\n" for i in range(rows))


def _reserve_made(server: RunningServer) -> None:
    eventually(
        lambda: _metrics(server).get(RESERVE_GAUGE) == RESERVE,
        60,
        "the disk reserve made again once space returned",
        interval_s=0.3,
        describe=lambda: _metrics(server),
    )


def test_a_full_home_is_freed_with_loopml_itself(small_home: Path, tmp_path: Path) -> None:
    env = {"LOOPML_SERVER_DISK_RESERVE_BYTES": str(RESERVE)}
    with running_server(small_home, env, log_path=tmp_path / "server.log") as server:
        big = "/api/v1/projects/default/tables/big"
        for _ in range(3):
            answer = _ingest(server, big, _incompressible_csv(2_500_000))
            assert answer.status_code == 201, answer.text
        for _ in range(3):
            assert _ingest(server).status_code == 201
        compacted = server.cli("tables", "compact", "sales", "--json")
        assert compacted.returncode == 0, compacted.stderr
        orphan = small_home / "artifacts" / "projects" / "deleted-project" / "model.bin"
        orphan.parent.mkdir(parents=True)
        orphan.write_bytes(secrets.token_bytes(1024 * 1024))  # left by a deleted project

        filler = _fill(small_home)
        assert _ingest(server).status_code == 507
        deleted = server.cli("tables", "delete", "big", "--yes")
        assert deleted.returncode == 0, deleted.stderr
        names = [t["name"] for t in _get(server, "/api/v1/projects/default/tables")["items"]]
        assert "big" not in names
        assert "sales" in names
        figures = _metrics(server)
        assert figures[RESERVE_GAUGE] == RESERVE  # made again: the delete freed enough
        assert figures[FREE_GAUGE] > 4 * 1024 * 1024

        _fill(small_home)  # full again, the reserve held
        vacuumed = server.cli("tables", "vacuum", "sales", "--retention-hours", "0", "--json")
        assert vacuumed.returncode == 0, vacuumed.stderr
        report = json.loads(vacuumed.stdout)
        assert report["files_deleted"] >= 3
        assert report["bytes_freed"] > 0
        assert _metrics(server)[RESERVE_GAUGE] == 0  # no room for it twice yet

        filler.unlink()  # space returns: the next housekeeping round makes the reserve
        _reserve_made(server)
        _fill(small_home)
        collected = server.cli("gc", "--json")
        assert collected.returncode == 0, collected.stderr
        assert json.loads(collected.stdout)["bytes"] >= 1024 * 1024
        assert not orphan.exists()

        again = _ingest(server)  # in the space the gc freed and the reserve gave back
        assert again.status_code == 201, again.text
        filler.unlink()
        _reserve_made(server)
        assert _ingest(server).status_code == 201
        said = (tmp_path / "server.log").read_text()
        assert said.count(f"its reserve ({RESERVE} bytes) was released") == 3
        assert "Traceback" not in said


def test_up_without_room_for_the_reserve_starts_and_says_so(
    small_home: Path, tmp_path: Path
) -> None:
    env = {"LOOPML_SERVER_DISK_RESERVE_BYTES": str(32 * 1024 * 1024)}  # twice is 64 MB
    with running_server(small_home, env, log_path=tmp_path / "server.log") as server:
        assert _ingest(server).status_code == 201
        assert _metrics(server)[RESERVE_GAUGE] == 0
        assert not (small_home / "disk.reserve").exists()
    said = (tmp_path / "server.log").read_text()
    assert "no disk reserve: the disk holding" in said
