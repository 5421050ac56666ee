"""Serving benchmark (the serving issue): the model server direct, through the gateway,
against a bare Starlette JSON echo app (the floor) and ``mlflow models serve``, in one run.

One model: a 100-tree random forest (max depth 8) on breast cancer (30 float columns),
trained here, logged with ``loopml.start_run(url=...).log_model`` to a real ``loopml up``
(temporary home, free port), registered, promoted (forced, with a reason) and deployed.

Every server is pinned to core 0 (``taskset -c 0``; ``loopml up``'s replicas inherit it)
and the load generator to core 1: wrk (``-t1 -c32``, a Lua script for the POST body) when it
is installed, else an asyncio raw-socket client in this process (pinned to core 1). Each
measurement is 1-row ``POST`` requests on 32 keep-alive connections for ``--seconds``
(after a short warm-up), reporting req/s, p50 and p99:

1. direct: ``python -m loopml.serve`` on the deployment's own package (the same bytes),
   measured in turn with the floor, twice each, keeping each one's better run; and the
   same row as a V2 infer request (one ``[1, 30]`` FP32 tensor, as KServe and Triton
   clients send it) to the same server, in the same turns;
2. gateway: ``loopml up``'s ``POST /deployments/forest/predict`` (gateway + replica, both
   on core 0; the replica also posts its prediction log to the platform);
3. floor: ``bench/_echo_app.py``, a Starlette app that parses the JSON body and echoes it
   (while the platform idles, as for direct);
4. mlflow: ``mlflow models serve`` (``--env-manager local``) on the same forest, fitted and
   saved by ``bench/_mlflow_model.py`` under ``--mlflow-python`` (or
   ``LOOPML_BENCH_MLFLOW_PYTHON``): an interpreter in a virtual environment of its own, as
   mlflow's pins (pyarrow among them) differ from loopml's. Make one with
   ``python3 -m venv /tmp/mlflow && /tmp/mlflow/bin/pip install mlflow``. Without it, and
   without mlflow in this interpreter, the comparison is skipped and said so.

Scale-from-zero: a second deployment with ``min_replicas 0`` and ``--scale-to-zero-after``
10 s (the minimum) is woken once, left idle until its status is ``scaled_to_zero``, and the
first request after that is timed (connect to answer).

Direct and gateway are also measured on one connection: under 32 saturating connections a
p50 is about 32 x the CPU each request costs on the shared core, so the gateway's p50 there
is its CPU cost times 32; on one connection it is the latency the gateway adds.

CPU per request: for the 32-connection gateway and direct runs, each process's user +
system time over the measured seconds (psutil) divided by the requests answered: the
platform process (the gateway), its replica, and the model server direct. On a shared
machine this moves less than req/s, which counts the neighbours' load too.

Token auth (``--auth``, instead of the rows above): a ``loopml up`` with authentication on
(its admin made by ``loopml users create-admin``), the forest deployed once, and its gateway
path measured with the deployment switched between ``auth: token`` (every request carries a
viewer token narrowed to ``deployment:forest``, checked by ``ServingAuthMiddleware`` through
its cache) and ``auth: none`` (no token; the middleware only reads the deployment's setting
from the gateway's routes), in turn, twice each: the same server, replica and connections,
so the difference is the token check.

Targets (the serving data path issue): direct req/s >= 0.7 x floor with p99 <= 5 ms; V2
infer direct >= 0.9 x ``/predict`` direct; direct >= 5 x mlflow; gateway req/s >= 0.6 x
direct; the gateway adds <= 0.2 ms at p50 on one connection; the model server's resident
memory after its runs <= 150 MB; scale-from-zero first answer <= 2 s; with ``--auth``,
gateway req/s with token auth on >= 0.95 x off; with ``--monitor``, gateway req/s with the
monitor loop on (every 30 s, the default; ``--monitor-interval``) >= 0.95 x off, judged
also by the serving processes' CPU per request (see ``monitor_rows``).

Each feature's cost (``--features``, instead of the rows above): one deployment switched in
turn between one revision, a 50 % canary and a shadow (``feature_rows``); the gateway's CPU
per request in each against plain, and the prediction log's work per answer.

Run: ``python bench/serving.py [--seconds 10] [--connections 32] [--mlflow-python PATH]
[--auth | --monitor | --features] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import orjson
import pandas as pd
from _load import LOAD_CORE, Result, measure, timed_first

MODEL = "bench-forest"
DEPLOYMENT = "forest"
ZERO_DEPLOYMENT = "forest-zero"
SCALE_TO_ZERO_AFTER_S = 10  # the minimum the spec allows
SERVER_CORE = "0"
HERE = Path(__file__).resolve().parent
ADMIN_PASSWORD = "serving bench admin passphrase"
AUTH_TARGET = 0.95  # gateway req/s with token auth on >= 0.95 x off (issue 16)


def _model() -> tuple[Any, pd.DataFrame]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    frame, target = load_breast_cancer(return_X_y=True, as_frame=True)
    model = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0, n_jobs=1)
    return model.fit(frame, target), frame


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = orjson.loads(frame.to_json(orient="records"))
    return loaded


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pinned(command: list[str]) -> list[str]:
    return ["taskset", "-c", SERVER_CORE, *command] if shutil.which("taskset") else command


def _wait_http(url: str, process: subprocess.Popen[bytes], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer {url} in {timeout} s")


@contextmanager
def _process(command: list[str], ready_url: str, what: str, **kw: Any) -> Iterator[int]:
    """Start ``command`` pinned to the server core; yield its pid once ``ready_url`` is 200."""
    process = subprocess.Popen(
        _pinned(command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw
    )
    try:
        _wait_http(ready_url, process, what)
        yield process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------- the platform


@contextmanager
def _platform(
    home: Path, *, auth: bool = False, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[str, int, int]]:
    """A real ``loopml up`` on core 0 with a temporary home; yields its URL, port and pid. With
    ``auth``, authentication is on and platform admin ``root`` has password ``ADMIN_PASSWORD``
    (made first with ``loopml users create-admin``); ``extra_env`` adds settings."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    env.update(LOOPML_HOME=str(home), OMP_WAIT_POLICY="passive", **(extra_env or {}))
    loopml = str(Path(sys.executable).with_name("loopml"))
    if auth:
        env["LOOPML_AUTH_ENABLED"] = "true"
        admin = [loopml, "users", "create-admin", "root", "--password-stdin"]
        subprocess.run(admin, input=f"{ADMIN_PASSWORD}\n", text=True, env=env, check=True)
    with _process(
        [loopml, "up", "--port", str(port)], f"{url}/api/v1/health", "loopml up", env=env
    ) as pid:
        yield url, port, pid


def _deploy(
    url: str, home: Path, model: Any, frame: pd.DataFrame, token: str | None = None
) -> tuple[Path, str, int]:
    """Log, register, promote and deploy ``model``; also create the scale-to-zero
    deployment (not with ``token``: the auth rows need only the one). Returns the deployed
    package's folder, its manifest hash and version."""
    import loopml
    from loopml.client import Client

    with Client(url, token=token) as client:
        with loopml.start_run("bench-serving", client=client) as run:
            run.log_model(model, sample=frame.head(20))
        version = client.models.register_version(MODEL, run_id=run.id)
        assert str(version.status).lower().endswith("ready"), version.status_message
        client.models.promote(MODEL, version.version, force=True, reason="serving bench")
        client.deployments.create(DEPLOYMENT, f"{MODEL}@champion", min_replicas=1)
        if token is None:
            client.deployments.create(
                ZERO_DEPLOYMENT,
                f"{MODEL}@champion",
                min_replicas=0,
                scale_to_zero_after_s=SCALE_TO_ZERO_AFTER_S,
            )
        deployment = client.deployments.wait(DEPLOYMENT, timeout_s=120)
    revision = next(iter(deployment.traffic))
    package = home / "deployments" / "default" / DEPLOYMENT / str(revision) / "package"
    assert (package / "loopml-model.json").exists(), f"no package at {package}"
    return package, version.manifest_sha256, version.version


def _replica_pids(platform_pid: int, deployment: str) -> list[int]:
    """The pids of ``deployment``'s replicas (the platform's children serving it)."""
    import psutil

    pids = []
    for child in psutil.Process(platform_pid).children(recursive=True):
        command = child.cmdline()
        if "loopml.deploy.targets._replica" in command and deployment in _flag(command):
            pids.append(child.pid)
    return pids


def _gateway_pids(platform_pid: int) -> list[int]:
    """The pids of the platform's gateway processes (``gateway.port``)."""
    import psutil

    children = psutil.Process(platform_pid).children(recursive=True)
    return [c.pid for c in children if "loopml.serve.gateway" in c.cmdline()]


def _descendants(pid: int) -> list[int]:
    """Every process ``pid`` started (replicas, gateway processes), recursively."""
    import psutil

    return [c.pid for c in psutil.Process(pid).children(recursive=True)]


def _flag(command: list[str]) -> list[str]:
    """The values of ``--deployment`` in ``command``."""
    return [command[i + 1] for i, arg in enumerate(command[:-1]) if arg == "--deployment"]


def _deployment_status(url: str, name: str) -> str:
    from loopml.client import Client

    with Client(url) as client:
        return str(client.deployments.get(name).status)


def _wait_scaled_to_zero(url: str, timeout: float) -> float:
    """Wait until the zero deployment says ``scaled_to_zero``; return the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if _deployment_status(url, ZERO_DEPLOYMENT).endswith("scaled_to_zero"):
            return time.monotonic() - started
        time.sleep(0.25)
    raise RuntimeError(f"{ZERO_DEPLOYMENT} did not scale to zero in {timeout} s")


# ---------------------------------------------------------------- token auth on vs off


def _narrow_token(url: str, admin: str) -> str:
    """A viewer token narrowed to ``deployment:forest``: what a client of it would hold."""
    import httpx

    body = {"name": "bench", "project": "default", "role": "viewer"}
    body["resource"] = f"deployment:{DEPLOYMENT}"
    answer = httpx.post(
        f"{url}/api/v1/tokens", json=body, headers={"Authorization": f"Bearer {admin}"}
    )
    answer.raise_for_status()
    token: str = answer.json()["token"]
    return token


def auth_rows(args: argparse.Namespace, model: Any, frame: pd.DataFrame, body: bytes) -> None:
    """The gateway with the token check on and off, in one run, on one deployment and its one
    replica: a platform with authentication on, the deployment switched between ``auth:
    token`` (requests carry a token narrowed to it) and ``auth: none`` (no token, the check
    skipped). ``--rounds`` rounds of one run each, the order flipped every round so that a
    drift of the machine's load does not side with one mode; reported: each mode's best run
    (as floor and direct) and the median of the rounds' on/off ratios."""
    from loopml.client import Client

    modes = [("off", "none", None), ("on", "token", None)]
    runs: dict[str, list[Result]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        home = work / "home"
        with _platform(home, auth=True) as (url, _, _):
            admin = Client(url).login("root", ADMIN_PASSWORD)["token"]
            _deploy(url, home, model, frame, token=admin)
            modes[1] = ("on", "token", {"Authorization": f"Bearer {_narrow_token(url, admin)}"})
            gateway_url = f"{url}/deployments/{DEPLOYMENT}/predict"
            with Client(url, token=admin) as client:
                for i in range(args.rounds):
                    for mode, auth, headers in modes if i % 2 == 0 else modes[::-1]:
                        client.deployments.update(DEPLOYMENT, auth=auth)
                        runs[mode].append(measure(gateway_url, body, args, work, None, headers))
    _pair(runs, "token auth", AUTH_TARGET, args.rounds)


def _pair(runs: dict[str, list[Result]], what: str, target: float, rounds: int) -> None:
    """Each mode's best run, and the on/off ratios (best of each, median of the rounds)."""
    off, on = (max(runs[m], key=lambda r: r.rps) for m in ("off", "on"))
    print(f"\n{'':30}{'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  errors  (best of {rounds})")
    for label, r in ((f"gateway, {what} off", off), (f"gateway, {what} on", on)):
        print(f"  {label:<28}{r.rps:9.0f} {_ms(r.p50)} {_ms(r.p99)}  {r.errors:6d}")
    errors = sum(r.errors for r in runs["off"] + runs["on"])
    paired = statistics.median(a.rps / b.rps for a, b in zip(runs["on"], runs["off"], strict=True))
    for label, ratio in (("best on / best off", on.rps / off.rps), ("median round", paired)):
        met = "met   " if ratio >= target and not errors else "MISSED"
        print(f"  {met} {what} on >= {target} x off, {label}: {ratio:.3f} x")
    print(f"  req/s per round: off {[round(r.rps) for r in runs['off']]}, ", end="")
    print(f"on {[round(r.rps) for r in runs['on']]}")


# ---------------------------------------------------------------- monitoring on vs off

MONITOR_TARGET = 0.95  # gateway req/s with monitoring on >= 0.95 x off (issue 15)
MONITOR_OFF = {"LOOPML_MONITOR_ENABLED": "false"}
MONITOR_WARM_S = 6.0  # the monitor's lag (2 s) and first rounds, before the measurement


def monitor_rows(args: argparse.Namespace, model: Any, frame: pd.DataFrame, body: bytes) -> None:
    """The gateway with the monitor loop on (every second) and off, in one run: one home
    with the forest deployed once, ``loopml up`` restarted for each measurement with the
    monitor on or off (the replica is started again from the stored deployment), the order
    flipped every round. Both modes log every prediction; the difference is the monitor."""
    from loopml.client import Client

    # A round reads the prediction log, moves the windows, evaluates the rules and samples
    # the replicas, every --monitor-interval seconds (the product's 30 s by default; 1 s is
    # a stress case). Each measurement spans at least two rounds.
    on = {"LOOPML_MONITOR_INTERVAL_S": f"{args.monitor_interval:g}", "LOOPML_MONITOR_LAG_S": "2"}
    args = argparse.Namespace(
        **{**vars(args), "seconds": max(args.seconds, 2 * args.monitor_interval)}
    )
    print(f"monitor every {args.monitor_interval:g} s, {args.seconds:g} s per measurement")
    modes = {"off": MONITOR_OFF, "on": on}
    runs: dict[str, list[Result]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        home = work / "home"
        with _platform(home, extra_env=MONITOR_OFF) as (url, _, _):
            _deploy(url, home, model, frame)
        order = list(modes)
        for i in range(args.rounds):
            for mode in order if i % 2 == 0 else order[::-1]:
                with _platform(home, extra_env=modes[mode]) as (url, _, pid):
                    with Client(url) as client:
                        client.deployments.wait(DEPLOYMENT, timeout_s=120)
                    gateway_url = f"{url}/deployments/{DEPLOYMENT}/predict"
                    # Load, discarded, until the monitor's first rounds over logged rows
                    # (past its lag) are done: they import the log reader's libraries
                    # once per process, which is start-up, not serving, cost.
                    warm = argparse.Namespace(**{**vars(args), "seconds": MONITOR_WARM_S})
                    measure(gateway_url, body, warm, work)
                    serving = [pid, *_descendants(pid)]
                    runs[mode].append(measure(gateway_url, body, args, work, watch=serving))
                    cpu[mode].append(runs[mode][-1].cpu_per_request(serving))
    _pair(runs, "monitoring", MONITOR_TARGET, args.rounds)
    # On one saturated core req/s is the inverse of the CPU a request takes there; the CPU
    # each process used moves far less with the neighbours' load than req/s does.
    off_us, on_us = (statistics.median(cpu[m]) * 1e6 for m in ("off", "on"))
    ratio = off_us / on_us
    met = "met   " if ratio >= MONITOR_TARGET else "MISSED"
    print(
        f"  CPU per request of the platform (gateway, log capture, the monitor when on) and "
        f"its replica: off {off_us:.0f} us, on {on_us:.0f} us (medians of the rounds)"
    )
    print(f"  {met} monitoring on >= {MONITOR_TARGET} x off, by CPU per request: {ratio:.3f} x")


# ---------------------------------------------------------------- each feature's cost

FEATURE_MODES = ("plain", "canary 50 %", "shadow")


def _set_mode(client: Any, mode: str) -> None:
    """Switch the deployment to ``mode`` and wait until every revision's replica is ready
    (a canary or shadow revision starts its own replica, on the same core)."""
    second = f"{MODEL}/2"
    if mode == "plain":
        client.deployments.update(DEPLOYMENT, canary=None, shadow=None)
    elif mode == "canary 50 %":
        client.deployments.update(
            DEPLOYMENT, canary=second, canary_percent=50, canary_policy={"auto": False}, shadow=None
        )
    else:
        client.deployments.update(DEPLOYMENT, canary=None, shadow=second)
    client.deployments.wait(DEPLOYMENT, timeout_s=120)
    time.sleep(2)  # a replica the change stopped finishes draining


def _log_capture_cost(body: bytes, answers: int = 20_000) -> tuple[float, float]:
    """CPU per answer, in this process, of the prediction log's work for one gatewayed
    answer: the rows built from the request and response bodies (``shadow_rows``, as
    ``PredictionLog.log_answer`` queues them) and made an Arrow table 5,000 at a time (its
    append batch). The table's Delta commit, once a second, is apart."""
    from loopml.predictions import _rows
    from loopml.predictions.sink import ShadowAnswer

    reply = orjson.dumps(
        {"predictions": [1], "probabilities": [[0.03, 0.97]], "classes": ["0", "1"]}
    )

    def answer(n: int) -> ShadowAnswer:
        return ShadowAnswer(
            project="default", deployment=DEPLOYMENT, revision=1, model=MODEL, version=1,
            inference_id=f"bench-{n}", path="/predict", request_body=body, status=200,
            body=reply, latency_s=0.002, primary_revision=1,
        )  # fmt: skip

    made = [answer(n) for n in range(answers)]
    started = time.process_time()
    built: list[Any] = []
    for one in made:
        built += _rows.shadow_rows(one, time.time(), "primary")
    rows_s = time.process_time() - started
    started = time.process_time()
    for first in range(0, len(built), 5000):
        _rows.to_arrow(built[first : first + 5000])
    arrow_s = time.process_time() - started
    return rows_s / answers, arrow_s / answers


def feature_rows(args: argparse.Namespace, model: Any, frame: pd.DataFrame, body: bytes) -> None:
    """What each gateway feature costs per request, in one run: one deployment switched in
    turn between one revision (plain), a 50 % canary of a second version (the same forest,
    registered again) and a shadow of it; ``--rounds`` rounds, the order turned each round.
    Reported per mode: req/s, p50, and the CPU per request of the platform process (the
    gateway) and of all replicas, whose differences from plain are the canary draw's and
    the shadow copy's costs; and, measured in this process, the prediction log's work per
    answer (every mode pays it)."""
    import loopml
    from loopml.client import Client

    runs: dict[str, list[tuple[Result, float, float]]] = {m: [] for m in FEATURE_MODES}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        home = work / "home"
        with _platform(home) as (url, _, platform_pid):
            _deploy(url, home, model, frame)
            with Client(url) as client:
                with loopml.start_run("bench-serving", client=client) as run:
                    run.log_model(model, sample=frame.head(20))
                client.models.register_version(MODEL, run_id=run.id)
                gateway_url = f"{url}/deployments/{DEPLOYMENT}/predict"
                for i in range(args.rounds):
                    order = FEATURE_MODES[i % 3 :] + FEATURE_MODES[: i % 3]
                    for mode in order:
                        _set_mode(client, mode)
                        replicas = _replica_pids(platform_pid, DEPLOYMENT)
                        got = measure(
                            gateway_url, body, args, work, watch=[platform_pid, *replicas]
                        )
                        platform = got.cpu_per_request([platform_pid])
                        runs[mode].append((got, platform, got.cpu_per_request(replicas)))
    rows_s, arrow_s = _log_capture_cost(body)
    print(f"\n{'':22}{'req/s':>9} {'p50 ms':>8}  {'gateway CPU/req':>15}  {'replicas CPU/req':>16}")
    print(f"  (medians of {args.rounds} rounds; CPU per request in us)")
    medians: dict[str, tuple[float, float]] = {}
    for mode, got in runs.items():
        rps = statistics.median(r.rps for r, _, _ in got)
        p50 = statistics.median(r.p50 for r, _, _ in got)
        gateway = statistics.median(g for _, g, _ in got) * 1e6
        behind = statistics.median(b for _, _, b in got) * 1e6
        medians[mode] = (gateway, rps)
        print(f"  {mode:<20}{rps:9.0f} {_ms(p50)}  {gateway:15.0f}  {behind:16.0f}")
    plain_cpu, plain_rps = medians["plain"]
    print("\neach feature's cost per request (against plain, same run)")
    for mode in FEATURE_MODES[1:]:
        cpu, rps = medians[mode]
        print(
            f"  {mode:<20} gateway CPU {cpu - plain_cpu:+.0f} us/req, "
            f"req/s {rps / plain_rps:.2f} x plain"
        )
    print(
        f"  {'log capture':<20} {rows_s * 1e6:.1f} us/answer building its rows, "
        f"{arrow_s * 1e6:.1f} us/answer into Arrow (in this process; every mode pays it)"
    )


# ---------------------------------------------------------------- main


def _mlflow_python(given: str | None) -> str | None:
    """The interpreter that has mlflow: ``--mlflow-python``, else this one if it has it."""
    if given:
        return given
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return None
    return sys.executable


def _mlflow(python: str, body: bytes, args: argparse.Namespace, work: Path) -> Result:
    """``mlflow models serve`` (core 0) on the same forest, saved by ``_mlflow_model.py``
    under ``python`` (the same data, parameters and seed: the same trees)."""
    path = work / "mlflow-model"
    subprocess.run([python, str(HERE / "_mlflow_model.py"), str(path)], check=True)
    port = free_port()
    bin_dir = Path(python).parent
    command = [str(bin_dir / "mlflow"), "models", "serve", "-m", str(path), "-p", str(port)]
    command += ["--env-manager", "local", "-h", "127.0.0.1"]
    records = orjson.loads(body)["instances"]
    mlflow_body = orjson.dumps({"dataframe_records": records})
    # mlflow starts its server as `uvicorn ...` from the PATH: its own environment's.
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    ready = f"http://127.0.0.1:{port}/ping"
    with _process(command, ready, "mlflow models serve", env=env):
        return measure(f"http://127.0.0.1:{port}/invocations", mlflow_body, args, work)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:8.2f}"


def _rss_mb(pid: int) -> float:
    import psutil

    return float(psutil.Process(pid).memory_info().rss / 1e6)


def _cpu_rows(
    results: dict[str, Result],
    platform_pid: int,
    replicas: list[int],
    direct_pid: int,
    connections: int,
) -> None:
    """CPU per request of each process (user + system over the measured seconds): robust
    where the machine is shared, as it counts each process's own CPU, not the wall clock."""
    g, d = results["gateway (loopml up)"], results["direct (loopml.serve)"]
    gateway = g.cpu_per_request([platform_pid])
    behind = g.cpu_per_request(replicas)
    print(f"\nCPU per request, {connections} connections (user + system of each process)")
    print(
        f"  gateway run: platform process (gateway) {gateway * 1e6:.0f} us, its replica "
        f"{behind * 1e6:.0f} us ({gateway / behind:.2f} x); direct run: the model server "
        f"{d.cpu_per_request([direct_pid]) * 1e6:.0f} us, and on V2 infer "
        f"{results['direct, V2 [1, 30] FP32'].cpu_per_request([direct_pid]) * 1e6:.0f} us"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--generator", choices=("auto", "wrk", "asyncio"), default="auto", help="load generator"
    )
    parser.add_argument(
        "--mlflow-python",
        default=os.environ.get("LOOPML_BENCH_MLFLOW_PYTHON"),
        help="an interpreter with mlflow installed (its own venv); by default this one, "
        "if it has mlflow, else mlflow is skipped",
    )
    parser.add_argument(
        "--auth",
        action="store_true",
        help="only the gateway with token auth on against off (see auth_rows)",
    )
    parser.add_argument(
        "--monitor",
        action="store_true",
        help="only the gateway with the monitor loop on against off (see monitor_rows)",
    )
    parser.add_argument(
        "--features",
        action="store_true",
        help="only the gateway's per-feature costs: plain, canary, shadow (see feature_rows)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="with --auth/--monitor/--features: rounds"
    )
    parser.add_argument(
        "--monitor-interval",
        type=float,
        default=30.0,
        help="with --monitor: seconds per round (the product's default)",
    )
    args = parser.parse_args()
    if args.generator == "auto":
        args.generator = "wrk" if shutil.which("wrk") else "asyncio"
    started = time.monotonic()
    # This process is the load generator (or drives it): core 1. Servers go to core 0.
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > LOAD_CORE:
        os.sched_setaffinity(0, {LOAD_CORE})

    model, frame = _model()
    body = orjson.dumps({"instances": _records(frame.iloc[:1])})
    # The same row as KServe and Triton clients send it: one [1, 30] FP32 tensor.
    row = frame.iloc[:1].to_numpy(dtype="float32").ravel().tolist()
    tensor = {"name": "input-0", "shape": [1, len(row)], "datatype": "FP32", "data": row}
    v2_body = orjson.dumps({"inputs": [tensor]})
    if args.auth or args.monitor or args.features:
        print(
            f"load: {args.generator}, {args.connections} connections (core {LOAD_CORE}); "
            f"servers on core {SERVER_CORE}; 1-row POST, {args.seconds:g} s per measurement"
        )
        rows = auth_rows if args.auth else monitor_rows if args.monitor else feature_rows
        rows(args, model, frame, body)
        print(f"  total bench time {time.monotonic() - started:.0f} s")
        return
    results: dict[str, Result] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        home = work / "home"
        gateway_port = free_port()
        own_gateway = {"LOOPML_GATEWAY_PORT": str(gateway_port), "LOOPML_GATEWAY_PROCESSES": "1"}
        with _platform(home, extra_env=own_gateway) as (url, platform_port, platform_pid):
            package, manifest_sha256, version = _deploy(url, home, model, frame)
            # Wake the scale-to-zero deployment once (fetches its package), so that it
            # scales down while the throughput runs go.
            asleep_first, status = timed_first(
                platform_port, f"/deployments/{ZERO_DEPLOYMENT}/predict", body
            )
            assert status == 200, status
            notes.append(f"first request to the deployment created asleep: {asleep_first:.2f} s")

            port = free_port()
            direct = [sys.executable, "-m", "loopml.serve", "--package", str(package)]
            direct += ["--manifest-sha256", manifest_sha256, "--name", MODEL]
            direct += ["--version", str(version), "--deployment", "bench", "--port", str(port)]
            ready = f"http://127.0.0.1:{port}/v2/health/ready"
            echo_port = free_port()
            echo = [sys.executable, str(HERE / "_echo_app.py"), str(echo_port)]
            floor_url = f"http://127.0.0.1:{echo_port}/predict"
            direct_url = f"http://127.0.0.1:{port}/predict"
            with (
                _process(direct, ready, "loopml.serve") as direct_pid,
                _process(echo, f"http://127.0.0.1:{echo_port}/health", "echo app"),
            ):
                # Floor and direct in turn, twice, keeping each one's better run: the
                # machine is shared, and a neighbour's burst during one run would otherwise
                # decide the ratio.
                floors, directs, v2s = [], [], []
                v2_url = f"http://127.0.0.1:{port}/v2/models/{MODEL}/infer"
                for _ in range(2):
                    floors.append(measure(floor_url, body, args, work))
                    directs.append(measure(direct_url, body, args, work, watch=[direct_pid]))
                    v2s.append(measure(v2_url, v2_body, args, work, watch=[direct_pid]))
                results["floor (Starlette echo)"] = max(floors, key=lambda r: r.rps)
                results["direct (loopml.serve)"] = max(directs, key=lambda r: r.rps)
                results["direct, V2 [1, 30] FP32"] = max(v2s, key=lambda r: r.rps)
                results["direct, 1 connection"] = measure(
                    direct_url, body, args, work, connections=1
                )
                direct_rss = _rss_mb(direct_pid)

            gateway_url = f"{url}/deployments/{DEPLOYMENT}/predict"
            replicas = _replica_pids(platform_pid, DEPLOYMENT)
            watched = [platform_pid, *replicas]
            results["gateway (loopml up)"] = measure(gateway_url, body, args, work, watch=watched)
            results["gateway, 1 connection"] = measure(gateway_url, body, args, work, connections=1)
            # The same deployment through the gateway process (gateway.port), on core 0 too.
            gateway_pids = _gateway_pids(platform_pid)
            own_url = f"http://127.0.0.1:{gateway_port}/deployments/{DEPLOYMENT}/predict"
            results["gateway process"] = measure(
                own_url, body, args, work, watch=[*gateway_pids, platform_pid, *replicas]
            )
            results["gateway process, 1 conn."] = measure(own_url, body, args, work, connections=1)

            waited = _wait_scaled_to_zero(url, timeout=90)
            cold, status = timed_first(
                platform_port, f"/deployments/{ZERO_DEPLOYMENT}/predict", body
            )
            assert status == 200, status
            notes.append(f"waited {waited:.1f} s more for scaled_to_zero after the runs")

        mlflow_python = _mlflow_python(args.mlflow_python)
        if mlflow_python is not None:
            results["mlflow models serve"] = _mlflow(mlflow_python, body, args, work)
        else:
            print("mlflow: skipped (give --mlflow-python, see the module docs)")

    generator = (
        f"wrk -t1 -c{args.connections} (taskset -c {LOAD_CORE})"
        if args.generator == "wrk"
        else f"asyncio raw sockets, {args.connections} connections, in-process (core {LOAD_CORE})"
    )
    print(
        f"model: 100-tree random forest (depth 8) on breast cancer (30 columns), onnx; "
        f"{os.cpu_count()} CPUs; servers on core {SERVER_CORE}; load: {generator}; "
        f"1-row POST, {args.seconds:g} s per measurement"
    )
    print(f"\n{'':28}{'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  errors  core0 busy  core1 busy")
    for name, r in results.items():
        busy0, busy1 = r.core_busy.get(0, float("nan")), r.core_busy.get(1, float("nan"))
        print(
            f"  {name:<26}{r.rps:9.0f} {_ms(r.p50)} {_ms(r.p99)}  {r.errors:6d}  "
            f"{busy0:9.0%}  {busy1:9.0%}"
        )
    print(f"  {'scale-from-zero, first':<26}{'':9} {_ms(cold)}  (one request after idle)")
    _cpu_rows(results, platform_pid, replicas, direct_pid, args.connections)
    own = results["gateway process"]
    print(
        f"  gateway process run: the gateway process {own.cpu_per_request(gateway_pids) * 1e6:.0f}"
        f" us, the platform (reports, prediction log) "
        f"{own.cpu_per_request([platform_pid]) * 1e6:.0f} us, the replica "
        f"{own.cpu_per_request(replicas) * 1e6:.0f} us"
    )
    print(f"  resident memory of the model server direct, after its runs: {direct_rss:.0f} MB")

    d = results["direct (loopml.serve)"]
    g = results["gateway (loopml up)"]
    floor = results["floor (Starlette echo)"]
    mlflow = results.get("mlflow models serve")

    def verdict(ok: bool) -> str:
        return "met   " if ok else "MISSED"

    print("\ntargets")
    ratio = d.rps / floor.rps
    print(
        f"  {verdict(ratio >= 0.7)} direct req/s >= 0.7 x floor: {ratio:.2f} x "
        f"({d.rps:.0f} / {floor.rps:.0f})"
    )
    print(f"  {verdict(d.p99 <= 0.005)} direct p99 <= 5 ms: {d.p99 * 1e3:.2f} ms")
    v2 = results["direct, V2 [1, 30] FP32"]
    ratio = v2.rps / d.rps
    print(
        f"  {verdict(ratio >= 0.9)} V2 infer direct >= 0.9 x /predict direct: {ratio:.2f} x "
        f"({v2.rps:.0f} / {d.rps:.0f})"
    )
    if mlflow is not None:
        ratio = d.rps / mlflow.rps
        print(
            f"  {verdict(ratio >= 5)} direct >= 5 x mlflow: {ratio:.1f} x "
            f"({d.rps:.0f} / {mlflow.rps:.0f})"
        )
    else:
        print("  n/a    direct >= 5 x mlflow: not measured (mlflow not installed)")
    for label, gw, g1 in (
        ("gateway process", own, results["gateway process, 1 conn."]),
        ("gateway in loopml up", g, results["gateway, 1 connection"]),
    ):
        ratio = gw.rps / d.rps
        print(
            f"  {verdict(ratio >= 0.6)} {label} req/s >= 0.6 x direct: {ratio:.2f} x "
            f"({gw.rps:.0f} / {d.rps:.0f}; p50 {gw.p50 * 1e3:.2f} against {d.p50 * 1e3:.2f} ms)"
        )
        # Under a saturating closed loop, p50 is about connections x CPU per request, so the
        # line above measures the gateway's CPU cost; one connection measures its latency.
        d1 = results["direct, 1 connection"]
        alone = g1.p50 - d1.p50
        print(
            f"  {verdict(alone <= 0.0002)} {label} adds <= 0.2 ms at p50, 1 connection: "
            f"{alone * 1e3:+.2f} ms ({g1.p50 * 1e3:.2f} - {d1.p50 * 1e3:.2f})"
        )
    print(f"  {verdict(cold <= 2.0)} scale-from-zero first response <= 2 s: {cold:.2f} s")
    print(f"  {verdict(direct_rss <= 150)} model server RSS <= 150 MB: {direct_rss:.0f} MB")
    print("\nnotes")
    for note in notes:
        print(f"  {note}")
    print(f"  total bench time {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
