"""A barrage-like load on a running ``loopml up``, and the platform process's memory.

The load mixes what issue 36's hostile-input barrage did to the server: many small tables
with odd column types created by record posts and file uploads, SQL over them (good, failing
and refused), table reads, and bad input on every kind of route. ``tests/e2e/test_memory.py``
runs a short one and ``bench/server_memory.py`` a longer one, with and without each fix."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

API = "/api/v1/projects/default"


@dataclass(frozen=True)
class Memory:
    """A process's memory, in MB, from ``/proc/PID/status`` and ``smaps_rollup``."""

    rss: float
    anonymous: float
    file: float

    def __str__(self) -> str:
        return f"{self.rss:6.0f} MB (anon {self.anonymous:.0f}, file {self.file:.0f})"


def memory(pid: int) -> Memory:
    """The resident memory of process ``pid`` now."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0]) / 1024
    return Memory(fields["Rss"], fields["Anonymous"], fields["Rss"] - fields["Anonymous"])


def _odd_records(rng: random.Random, table: int, rows: int) -> list[dict[str, object]]:
    """Records whose columns differ by table: ints near the edges, floats, unicode text,
    nulls, booleans, timestamps, nested values."""
    records = []
    for row in range(rows):
        record: dict[str, object] = {
            "id": row,
            "big": 2**62 - row,
            "x": rng.random() * 10 ** rng.randint(-300, 300),
            "name": "é☃𝄞" * rng.randint(0, 40) + str(row),
            "flag": None if row % 3 == 0 else bool(row % 2),
            "at": f"2024-0{1 + row % 9}-1{row % 10}T12:00:00Z",
        }
        if table % 2:
            record["nested"] = {"a": [row, row + 1], "b": {"c": "x" * (row % 50)}}
        if table % 3 == 0:
            record[f"col_{table}"] = rng.choice(["a", "b", None, "ç" * 200])
        records.append(record)
    return records


def _csv(rng: random.Random, rows: int) -> bytes:
    lines = ["k,v,when,label"]
    for row in range(rows):
        lines.append(f"{row},{rng.gauss(0, 1e6):.6f},2024-01-{1 + row % 28:02d},l{row % 7}")
    return ("\n".join(lines) + "\n").encode()


def _fuzz(http: httpx.Client, rng: random.Random, step: int) -> None:
    """Bad input on many routes; every answer must be a 4xx."""
    junk = "".join(rng.choice("ab\u00e9\U0001f600'\";%$") for _ in range(rng.randint(1, 3000)))
    calls = [
        ("POST", f"{API}/tables", {"content": b"{not json"}),
        ("POST", f"{API}/tables", {"json": {"name": junk[:300], "columns": [{"name": "a"}]}}),
        ("POST", f"{API}/tables/t{step}/records", {"content": b"[1, 2, NaN]"}),
        ("POST", f"{API}/tables/t{step}/records", {"json": []}),
        ("POST", f"{API}/tables/t{step}/records", {"json": [{"a": {"b": [1] * 5000}}] * 50}),
        ("POST", f"{API}/sql", {"json": {"query": junk}}),
        ("POST", f"{API}/sql", {"json": {"query": "SELECT * FROM read_csv('/etc/passwd')"}}),
        ("POST", f"{API}/sql", {"json": {"query": "SELECT 1", "limit": 10**9}}),
        ("GET", f"{API}/tables/{junk[:40]}/head", {}),
        ("GET", f"{API}/tables/t{step}@x/history", {}),
        ("GET", "/api/v1/artifacts/../../etc/passwd", {}),
        ("GET", f"/api/v1/projects/{junk[:80]}/runs/search", {}),
        ("POST", "/api/v1/models", {"json": {"name": junk}}),
        ("POST", f"{API}/tables/t{step}/files?format=parquet", {"content": junk.encode()}),
    ]
    for method, path, kwargs in calls:
        answer = http.request(method, path, **kwargs)  # type: ignore[arg-type]
        assert answer.status_code < 500, (method, path, answer.status_code, answer.text[:300])


KINDS = frozenset({"sql", "read", "fuzz"})
"""What a round does besides ingest (which the others need)."""


def _queries(step: int) -> tuple[str, ...]:
    """Queries over a round's two tables: that work, and one that fails."""
    return (
        f"SELECT count(*), avg(x), max(length(name)) FROM t{step}",
        f"SELECT label, sum(v) AS s FROM f{step} GROUP BY label ORDER BY s",
        f"SELECT * FROM t{step} JOIN f{step} ON t{step}.id = f{step}.k LIMIT 50",
        f"SELECT nope FROM t{step}",
    )


def _round(url: str, seed: int, tables: int, kinds: frozenset[str]) -> None:
    """One client's share: ingest, query, read and fuzz a few tables."""
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=60, trust_env=False) as http:
        for step in range(seed * tables, (seed + 1) * tables):
            records = _odd_records(rng, step, rng.randint(5, 200))
            posted = http.post(f"{API}/tables/t{step}/records", json=records)
            assert posted.status_code == 201, posted.text[:300]
            uploaded = http.post(f"{API}/tables/f{step}/files?format=csv", content=_csv(rng, 300))
            assert uploaded.status_code == 201, uploaded.text[:300]
            for query in _queries(step) if "sql" in kinds else ():
                answer = http.post(f"{API}/sql", json={"query": query, "limit": 1000})
                assert answer.status_code in (200, 422), answer.text[:300]
            reads = (f"t{step}/head?n=100", f"t{step}/history", f"f{step}", "")
            for path in reads if "read" in kinds else ():
                assert http.get(f"{API}/tables/{path}".rstrip("/")).status_code == 200
            if "fuzz" in kinds:
                _fuzz(http, rng, step)


def run(
    url: str,
    clients: int = 4,
    tables_per_client: int = 10,
    kinds: frozenset[str] = KINDS,
    round_no: int = 0,
) -> int:
    """Drive the load from ``clients`` concurrent clients (round ``round_no``: tables of
    their own); returns the tables it made."""
    seeds = range(round_no * clients, (round_no + 1) * clients)
    with ThreadPoolExecutor(clients) as pool:
        shares = [pool.submit(_round, url, s, tables_per_client, kinds) for s in seeds]
        for done in shares:
            done.result()
    return 2 * clients * tables_per_client


def as_json(figures: dict[str, Memory]) -> str:
    """Figures as one JSON line (for a log)."""
    return json.dumps({k: round(v.rss, 1) for k, v in figures.items()})
