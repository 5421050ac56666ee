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

5. V2 peers: KServe's Python ModelServer and BentoML on the deployment's own ONNX file,
   each from a virtual environment of its own, against loopml's V2 infer direct and through
   the gateway process (``bench/_serving_peers.py`` says how to make them).

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
infer direct >= 0.9 x ``/predict`` direct; direct >= 5 x mlflow; on V2, the gateway >= 3 x
and direct >= 5 x the best of KServe and BentoML; gateway req/s >= 0.6 x
direct; the gateway adds <= 0.2 ms at p50 on one connection; the model server's resident
memory after its runs <= 150 MB; scale-from-zero first answer <= 2 s; with ``--auth``,
gateway req/s with token auth on >= 0.95 x off; with ``--monitor``, gateway req/s with the
monitor loop on (every 30 s, the default; ``--monitor-interval``) >= 0.95 x off, judged
also by the serving processes' CPU per request (see ``monitor_rows``).

Each feature's cost (``--features``, instead of the rows above): one deployment switched in
turn between one revision, a 50 % canary and a shadow (``feature_rows``); the gateway's CPU
per request in each against plain, and the prediction log's work per answer.

Run: ``python bench/serving.py [--seconds 10] [--connections 32] [--mlflow-python PATH]
[--auth | --monitor | --features | --v2] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import _serving_platform
import orjson
from _load import LOAD_CORE, Result, measure, timed_first
from _serving_modes import auth_rows, feature_rows, monitor_rows, v2_rows
from _serving_peers import add_options, peer_rows
from _serving_platform import (
    DEPLOYMENT,
    MODEL,
    ZERO_DEPLOYMENT,
    _deploy,
    _gateway_pids,
    _model,
    _ms,
    _platform,
    _process,
    _records,
    _replica_pids,
    _rss_mb,
    _wait_scaled_to_zero,
    free_port,
)

HERE = Path(__file__).resolve().parent


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


def _cpu_rows(
    results: dict[str, Result],
    platform_pid: int,
    replicas: list[int],
    direct_pid: int,
    connections: int,
) -> None:
    """CPU per request of each process (user + system over the measured seconds): robust
    where the machine is shared, as it counts each process's own CPU, not the wall clock."""
    g, d = results["gateway in the platform"], results["direct (loopml.serve)"]
    gateway = g.cpu_per_request([platform_pid])
    behind = g.cpu_per_request(replicas)
    print(f"\nCPU per request, {connections} connections (user + system of each process)")
    print(
        f"  gateway run: platform process (gateway) {gateway * 1e6:.0f} us, its replica "
        f"{behind * 1e6:.0f} us ({gateway / behind:.2f} x); direct run: the model server "
        f"{d.cpu_per_request([direct_pid]) * 1e6:.0f} us, and on V2 infer "
        f"{results['direct, V2 [1, 30] FP32'].cpu_per_request([direct_pid]) * 1e6:.0f} us"
    )


def _inner_port(platform_pid: int, public: int) -> int:
    """The loopback port the platform listens on behind its gateway processes."""
    import psutil

    listening = {
        c.laddr.port
        for c in psutil.Process(platform_pid).net_connections("tcp")
        if c.status == psutil.CONN_LISTEN
    }
    inner = sorted(listening - {public})
    if len(inner) != 1:
        raise SystemExit(f"the platform's own port is not one of {sorted(listening)}")
    return inner[0]


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
    add_options(parser)
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
        "--v2",
        action="store_true",
        help="only /predict against V2 (one tensor, per-column tensors) through the gateway "
        "process, in turn (see v2_rows)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="with --auth/--monitor/--features/--v2: rounds"
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
    if args.auth or args.monitor or args.features or args.v2:
        print(
            f"load: {args.generator}, {args.connections} connections (core {LOAD_CORE}); "
            f"servers on core {_serving_platform.SERVER_CORE}; 1-row POST, "
            f"{args.seconds:g} s per measurement"
        )
        modes = {"auth": auth_rows, "monitor": monitor_rows, "v2": v2_rows}
        rows = next((run for flag, run in modes.items() if getattr(args, flag)), feature_rows)
        rows(args, model, frame, body)
        print(f"  total bench time {time.monotonic() - started:.0f} s")
        return
    results: dict[str, Result] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        home = work / "home"
        # loopml up as it starts by default: a gateway process in front on its one port, the
        # platform (with its own gateway) behind it on a loopback port.
        front = {"LOOPML_GATEWAY_FRONT": "true", "LOOPML_GATEWAY_PROCESSES": "1"}
        with _platform(home, extra_env=front) as (url, platform_port, platform_pid):
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

            replicas = _replica_pids(platform_pid, DEPLOYMENT)
            # The gateway inside the platform (gateway.front=false), on the platform's own
            # loopback port behind the gateway process.
            inner = _inner_port(platform_pid, platform_port)
            gateway_url = f"http://127.0.0.1:{inner}/deployments/{DEPLOYMENT}/predict"
            watched = [platform_pid, *replicas]
            results["gateway in the platform"] = measure(
                gateway_url, body, args, work, watch=watched
            )
            results["gateway in platform, 1 conn."] = measure(
                gateway_url, body, args, work, connections=1
            )
            # The gateway process in front, on loopml up's port (on core 0 too).
            gateway_pids = _gateway_pids(platform_pid)
            own_url = f"{url}/deployments/{DEPLOYMENT}/predict"
            results["gateway process (front)"] = measure(
                own_url, body, args, work, watch=[*gateway_pids, platform_pid, *replicas]
            )
            results["gateway process, 1 conn."] = measure(own_url, body, args, work, connections=1)
            # V2 infer through the gateway process, as KServe and Triton clients call it.
            own_v2 = f"{url}/deployments/{DEPLOYMENT}/v2/models/{MODEL}/infer"
            results["gateway process, V2"] = measure(own_v2, v2_body, args, work)

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
        results.update(peer_rows(args, package / "model.onnx", v2_body, work))

    generator = (
        f"wrk -t1 -c{args.connections} (taskset -c {LOAD_CORE})"
        if args.generator == "wrk"
        else f"asyncio raw sockets, {args.connections} connections, in-process (core {LOAD_CORE})"
    )
    print(
        f"model: 100-tree random forest (depth 8) on breast cancer (30 columns), onnx; "
        f"{os.cpu_count()} CPUs; servers on core {_serving_platform.SERVER_CORE}; "
        f"load: {generator}; "
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
    own = results["gateway process (front)"]
    print(
        f"  gateway process run: the gateway process {own.cpu_per_request(gateway_pids) * 1e6:.0f}"
        f" us, the platform (reports, prediction log) "
        f"{own.cpu_per_request([platform_pid]) * 1e6:.0f} us, the replica "
        f"{own.cpu_per_request(replicas) * 1e6:.0f} us"
    )
    print(f"  resident memory of the model server direct, after its runs: {direct_rss:.0f} MB")

    d = results["direct (loopml.serve)"]
    g = results["gateway in the platform"]
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
        ("gateway process in front", own, results["gateway process, 1 conn."]),
        ("gateway in the platform", g, results["gateway in platform, 1 conn."]),
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
    peers = {name: r for name, r in results.items() if name.startswith(("kserve", "bentoml"))}
    if peers:
        best_name, best = max(peers.items(), key=lambda item: item[1].rps)
        own_v2 = results["gateway process, V2"]
        for label, mine, target in (("gateway, V2", own_v2, 3), ("direct, V2", v2, 5)):
            ratio = mine.rps / best.rps
            print(
                f"  {verdict(ratio >= target)} {label} >= {target} x the best peer on V2 "
                f"({best_name}): {ratio:.1f} x ({mine.rps:.0f} / {best.rps:.0f})"
            )
    else:
        print("  n/a    against KServe and BentoML: not measured (see bench/_serving_peers.py)")
    print(f"  {verdict(cold <= 2.0)} scale-from-zero first response <= 2 s: {cold:.2f} s")
    print(f"  {verdict(direct_rss <= 150)} model server RSS <= 150 MB: {direct_rss:.0f} MB")
    print("\nnotes")
    for note in notes:
        print(f"  {note}")
    print(f"  total bench time {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
