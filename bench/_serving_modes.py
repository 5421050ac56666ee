"""The serving benchmark's paired modes (``bench/serving.py --auth | --monitor |
--features | --v2``): one deployment measured with a feature on and off (or in its request
forms) in turns, on one ``loopml up``; their docstrings say what each compares."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
from _load import Result, measure
from _serving_platform import (
    ADMIN_PASSWORD,
    DEPLOYMENT,
    MODEL,
    _deploy,
    _descendants,
    _gateway_pids,
    _ms,
    _platform,
    _replica_pids,
)

AUTH_TARGET = 0.95  # gateway req/s with token auth on >= 0.95 x off (issue 16)


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
    answer: the rows built from the request and response bodies (``answer_rows``, as
    ``PredictionLog.log_answer`` queues them) and made an Arrow table 5,000 at a time (its
    append batch). The table's Delta commit, once a second, is apart."""
    from loopml.predictions import _rows
    from loopml.predictions.intake import Answer

    reply = orjson.dumps(
        {"predictions": [1], "probabilities": [[0.03, 0.97]], "classes": ["0", "1"]}
    )

    def answer(n: int) -> Answer:
        return Answer(
            project="default", deployment=DEPLOYMENT, revision=1, model=MODEL, version=1,
            role="primary", inference_id=f"bench-{n}", path="/predict", status=200,
            latency_s=0.002, arrived=time.time(), request_body=body, body=reply,
        )  # fmt: skip

    made = [answer(n) for n in range(answers)]
    started = time.process_time()
    built: list[Any] = []
    for one in made:
        built += _rows.answer_rows(one)
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


# ---------------------------------------------------------------- V2 through the gateway

V2_TAIL_TARGET = 2.0  # V2's p99 through the gateway process <= 2 x /predict's (issue 53)


def v2_rows(args: argparse.Namespace, model: Any, frame: pd.DataFrame, body: bytes) -> None:
    """``/predict`` and V2 infer through the gateway process in front (``loopml up`` as it
    starts by default), in turn on one platform, ``--rounds`` rounds, the order turned each
    round so that neither form always follows the other's log backlog: V2 with one
    ``[1, 30]`` FP32 tensor and with 30 one-column ``[1]`` tensors (as a client that follows
    the model's V2 metadata, shape ``[-1]`` per column, sends it: tritonclient among them).
    Per form: each run's req/s, p50 and p99, and the CPU per request of the gateway
    process, the platform (which takes the prediction log) and the replica."""
    row = frame.iloc[:1].to_numpy(dtype="float32").ravel().tolist()
    one = {"name": "input-0", "shape": [1, len(row)], "datatype": "FP32", "data": row}
    columns = [
        {"name": str(name), "shape": [1], "datatype": "FP32", "data": [value]}
        for name, value in zip(frame.columns, row, strict=True)
    ]
    forms = {
        "/predict": ("predict", body),
        "V2 [1, 30]": ("v2", orjson.dumps({"inputs": [one]})),
        "V2 30 x [1]": ("v2", orjson.dumps({"inputs": columns})),
    }
    runs: dict[str, list[tuple[Result, float, float, float]]] = {f: [] for f in forms}
    front = {"LOOPML_GATEWAY_FRONT": "true", "LOOPML_GATEWAY_PROCESSES": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        home = work / "home"
        with _platform(home, extra_env=front) as (url, _, platform_pid):
            _deploy(url, home, model, frame)
            paths = {
                "predict": f"{url}/deployments/{DEPLOYMENT}/predict",
                "v2": f"{url}/deployments/{DEPLOYMENT}/v2/models/{MODEL}/infer",
            }
            gateways = _gateway_pids(platform_pid)
            replicas = _replica_pids(platform_pid, DEPLOYMENT)
            names = list(forms)
            for i in range(args.rounds):
                for form in names[i % 3 :] + names[: i % 3]:
                    kind, payload = forms[form]
                    watched = [*gateways, platform_pid, *replicas]
                    got = measure(paths[kind], payload, args, work, watch=watched)
                    cpu = (
                        got.cpu_per_request(gateways),
                        got.cpu_per_request([platform_pid]),
                        got.cpu_per_request(replicas),
                    )
                    runs[form].append((got, *cpu))
    print(
        f"\n{'':18}{'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  errors  CPU us/req: gateway, ", end=""
    )
    print("platform, replica (each run)")
    for form, got in runs.items():
        for r, gateway, platform, replica in got:
            print(
                f"  {form:<16}{r.rps:9.0f} {_ms(r.p50)} {_ms(r.p99)}  {r.errors:6d}  "
                f"{gateway * 1e6:7.0f} {platform * 1e6:9.0f} {replica * 1e6:8.0f}"
            )
    predict_p99 = statistics.median(r.p99 for r, *_ in runs["/predict"])
    predict_rps = statistics.median(r.rps for r, *_ in runs["/predict"])
    for form in names[1:]:
        p99 = statistics.median(r.p99 for r, *_ in runs[form])
        rps = statistics.median(r.rps for r, *_ in runs[form])
        ratio = p99 / predict_p99
        met = "met   " if ratio <= V2_TAIL_TARGET else "MISSED"
        print(
            f"  {met} {form} p99 {p99 * 1e3:.1f} ms <= {V2_TAIL_TARGET:g} x /predict's "
            f"{predict_p99 * 1e3:.1f} ms (medians of the rounds): {ratio:.2f} x; "
            f"req/s {rps / predict_rps:.2f} x /predict's"
        )
