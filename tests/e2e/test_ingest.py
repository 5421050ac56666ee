"""``loopml ingest`` and ``loopml tables`` against a real ``loopml up``; a server killed
mid-ingest (RELIABILITY 23)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from loopml.client import Client
from tests.waiting import eventually

from .conftest import LOOPML, RunningServer, running_server

pytestmark = pytest.mark.e2e


def _uploading(pid: int, port: int) -> bool:
    """Whether process ``pid`` has a connection open to 127.0.0.1:``port``."""
    connections = psutil.Process(pid).net_connections(kind="tcp")
    return any(c.raddr and c.raddr.port == port and c.status == "ESTABLISHED" for c in connections)


def test_ingest_then_inspect_with_the_cli(server: RunningServer, tmp_path: Path) -> None:
    path = tmp_path / "sales.csv"
    path.write_text("id,amount\n1,2.5\n2,3.5\n3,4.5\n")
    done = server.cli("ingest", str(path), "--table", "sales")
    assert done.returncode == 0, done.stderr
    assert "ingested 3 rows into sales (version 0)" in done.stdout
    again = server.cli("ingest", str(path), "--table", "sales", "--mode", "overwrite")
    assert again.returncode == 0, again.stderr
    shown = server.cli("tables", "show", "sales")
    assert "version 1, 3 rows" in shown.stdout
    assert "amount" in shown.stdout
    assert "sales" in server.cli("tables", "list").stdout
    assert "2.5" in server.cli("tables", "head", "sales", "-n", "5").stdout
    assert "overwrite" in server.cli("tables", "history", "sales").stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("id,amount\nx,y\n")
    refused = server.cli("ingest", str(bad), "--table", "sales")
    assert refused.returncode != 0
    assert "'id' expected int64, found string" in refused.stderr
    assert server.cli("tables", "delete", "sales", "--yes").returncode == 0


def _big_csv(path: Path, rows: int) -> None:
    line = b"%d,%d.5,some text to make the row longer than a few bytes\n"
    with path.open("wb") as out:
        out.write(b"id,score,note\n")
        for start in range(0, rows, 10_000):
            out.write(b"".join(line % (i, i) for i in range(start, start + 10_000)))


def test_a_server_killed_mid_ingest_leaves_a_whole_version(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    small, big = tmp_path / "small.csv", tmp_path / "big.csv"
    small.write_text("id,score,note\n1,1.5,a\n")
    _big_csv(big, 1_500_000)
    limit = {"LOOPML_SERVER_MAX_UPLOAD_BYTES": str(1024**3)}
    with running_server(home, limit) as running:
        assert running.cli("ingest", str(small), "--table", "t").returncode == 0
        ingest = subprocess.Popen(
            [*LOOPML, "ingest", str(big), "--table", "t"],
            env=running.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # A CSV upload streams into the table (only Parquet is spooled): the upload is under
        # way once the client holds a connection to the server.
        port = int(running.url.rsplit(":", 1)[1])
        eventually(
            lambda: _uploading(ingest.pid, port), 60, "the upload to the server", interval_s=0.01
        )
        time.sleep(0.3)  # mid-upload or mid-write, whichever it reached
        os.kill(running.process.pid, signal.SIGKILL)
        running.process.wait(timeout=10)
        ingest.wait(timeout=60)
    with running_server(home, limit) as again, Client(again.url) as client:
        table = client.tables.get("default", "t")
        assert table.version in (0, 1)
        assert table.row_count == (1 if table.version == 0 else 1_500_001)
        history = client.tables.history("default", "t")
        assert history[0].version == table.version
        assert len(client.tables.head("default", "t", 5)) == min(5, table.row_count)
        small.write_text("id,score,note\n2,2.5,b\n")
        assert again.cli("ingest", str(small), "--table", "t").returncode == 0
        assert client.tables.get("default", "t").row_count == table.row_count + 1
