"""How much of its budget a whole ``loopml train`` call uses (issue 38, "the whole budget"),
before and after, side by side, in one run.

Each cell is one ``train_model`` call (what ``loopml train`` runs: reading the frozen split,
search, ensemble, refit, packaging, registration and the registry's scoring on the eval
set) in a fresh embedded home, in its own process, on the code of a source tree given by
``--before`` and ``--after`` (``PYTHONPATH``): by default git main's checkout against this
one. Reported: the call's wall time over the budget (timed around the call, so without
the interpreter's start and the imports before it), its score on the frozen eval set
(the registry's evaluation), its trials, and, for code that records it, why the search
stopped and where the budget went.

Data sets, all made or shipped by scikit-learn (nothing downloaded):

- ``diabetes``: 442 rows x 10, regression; R².
- ``cancer``: breast cancer, 569 rows x 30, binary; ROC AUC.
- ``digits``: 1,797 rows x 64 pixels, 10 classes; log loss (lower is better). Its blends
  were refused on the AutoML bench (``docs/training.md``): the case issue 38 is about.
- ``friedman``: ``make_friedman1``, 20,000 rows x 10 (5 of them noise), regression; R².

Run ``python bench/automl_budget.py [--budgets 30,60] [--datasets digits,cancer,friedman]
[--before /work/main/src] [--n-jobs 1]``; the machine is shared, so compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

HERE = Path(__file__).resolve().parent
METRICS = {"diabetes": "r2", "cancer": "roc_auc", "digits": "log_loss", "friedman": "r2"}


def _frame(name: str) -> tuple[Any, str]:
    import pandas as pd
    from sklearn import datasets

    if name == "diabetes":
        frame = datasets.load_diabetes(as_frame=True).frame
        return frame, "regression"
    if name == "cancer":
        frame = datasets.load_breast_cancer(as_frame=True).frame
        return frame, "classification"
    if name == "digits":
        frame = datasets.load_digits(as_frame=True).frame
        return frame, "classification"
    x, y = datasets.make_friedman1(n_samples=20_000, n_features=10, noise=1.0, random_state=0)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(10)])
    frame["target"] = y
    return frame, "regression"


def _child(name: str, budget: float, n_jobs: int) -> dict[str, Any]:
    """One ``train_model`` call on ``name`` in a fresh embedded home."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from automl import whole_train_call  # bench/automl.py: the same home, table and call

    frame, task = _frame(name)
    outcome, wall = whole_train_call(frame, task, METRICS[name], budget, n_jobs)
    metrics = outcome.evaluation.metrics if outcome.evaluation else {}
    return {
        "wall": wall,
        "score": metrics.get(METRICS[name]),
        "trials": outcome.trials,
        "best": outcome.best_estimator,
        "budget": outcome.details.get("budget"),
    }


def _run(src: str, name: str, budget: float, n_jobs: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=src, OMP_WAIT_POLICY="passive")
    args = [sys.executable, str(Path(__file__)), "--child", name, "--budgets", f"{budget:g}"]
    done = subprocess.run(
        [*args, "--n-jobs", str(n_jobs)], env=env, capture_output=True, text=True, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:]}
    found: dict[str, Any] = json.loads(lines[-1])
    return found


def _cell(found: dict[str, Any], budget: float) -> str:
    if "error" in found:
        return f"{'failed':>32}"
    score = found["score"]
    shown = f"{score:.4f}" if isinstance(score, float) else "-"
    return f"{found['wall']:6.1f} s {found['wall'] / budget:5.2f}x {shown:>7} {found['trials']:>5}"


def _spend(found: dict[str, Any]) -> str:
    spend = found.get("budget")
    if not spend:
        return ""
    keys = ("read", "prepare", "search", "ensemble", "final_fit", "package", "register")
    phases = " ".join(f"{k} {spend[k]:.1f}" for k in keys if k in spend)
    return f"{phases} unused {spend['unused']:.1f} ({spend['stopped']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="30,60", help="Comma-separated seconds.")
    parser.add_argument(
        "--datasets", default="digits,cancer,friedman", help="Comma-separated names."
    )
    parser.add_argument("--before", default="/work/main/src", help="The 'before' source tree.")
    parser.add_argument("--after", default=str(HERE.parent / "src"), help="The 'after' one.")
    parser.add_argument("--n-jobs", type=int, default=1, help="AutoML's threads.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    budgets = [float(b) for b in args.budgets.split(",")]
    if args.child:
        print(json.dumps(_child(args.child, budgets[0], args.n_jobs)))
        return
    print(f"before: {args.before}\nafter:  {args.after}")
    head = f"{'wall':>8} {'x budget':>6} {'score':>7} {'trials':>5}"
    print(f"\n{'data set':<9} {'budget':>6}   {'before: ' + head:<40} {'after: ' + head}")
    worst = [float("inf"), 0.0]
    for budget in budgets:
        for name in args.datasets.split(","):
            before = _run(args.before, name, budget, args.n_jobs)
            after = _run(args.after, name, budget, args.n_jobs)
            print(f"{name:<9} {budget:6g}   {_cell(before, budget):<40} {_cell(after, budget)}")
            print(f"{'':<18} after's spend (s): {_spend(after)}", flush=True)
            if "wall" in after:
                ratio = after["wall"] / budget
                worst = [min(worst[0], ratio), max(worst[1], ratio)]
    print(
        f"\nafter: wall time {worst[0]:.2f}-{worst[1]:.2f} x the budget "
        f"(target 0.90-1.10: {'met' if worst[0] >= 0.9 and worst[1] <= 1.1 else 'missed'}); "
        f"scores: {METRICS} on each data set's frozen eval set (20 %)"
    )


if __name__ == "__main__":
    main()
