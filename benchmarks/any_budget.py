#!/usr/bin/env python
"""One agent for every budget against one agent per budget, on the embedded default.

    python benchmarks/any_budget.py                                   # seed 0: 1 any-budget + 5 per-budget agents
    python benchmarks/any_budget.py --seeds 0 1 2 --figures docs/figures

Per seed: one runtime agent trained over the MAC budgets of sparsity 0.3 to 0.7 (``budget=0.3:0.7
budget_mode=average``, ``--any-timesteps`` steps) and one agent per budget at 0.3, 0.4, 0.5, 0.6 and
0.7 (``budget=B budget_mode=average``, the main job's 300k steps), each a ``train_agents.py`` run
under ``--out`` (``any_budget-s<seed>``, ``per_budget-b<B>-s<seed>``). Finished runs (``metrics.json``)
are skipped, interrupted ones resumed (``--resume``): the benchmark can be stopped and restarted.
One run at a time, under ``nice``.

The any-budget run's own evaluation sweeps the five budgets on the test split (agent, calibrated
agent, uniform, best static: ``any_budget.json``); this script puts the per-budget agents beside
it and writes ``summary.json``, ``summary.csv`` and ``summary.md`` into ``--out`` (and, with
``--figures``, ``any_budget_curve.png``): per budget the mean over seeds of each method's top-1 and
mean MACs, whether the any-budget agent stays within the budget (+1%), its top-1 against the
per-budget agent's, against uniform, and the training cost of both (steps, wall seconds, CPU seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from prune_env.evaluation.budget_sweep import METHODS, TOLERANCE, attach_per_budget, read_per_budget_run, summarize_sweep  # noqa: E402
from prune_env.io import write_json, write_text  # noqa: E402

BUDGETS = (0.3, 0.4, 0.5, 0.6, 0.7)
#: the per-budget agents' steps: the main job's
PER_BUDGET_TIMESTEPS = 300_000


def any_dir(out: Path, seed: int) -> Path:
    return out / f"any_budget-s{seed}"


def per_dir(out: Path, budget: float, seed: int) -> Path:
    return out / f"per_budget-b{budget:g}-s{seed}"


def train(run_dir: Path, env_kwargs: list[str], seed: int, timesteps: int, extra: list[str], nice: int) -> dict:
    """One ``train_agents.py`` run (skipped when finished, resumed when started); its CPU seconds."""
    cpu_file = run_dir / "bench_cpu.json"
    if (run_dir / "metrics.json").is_file():
        print(f"  {run_dir.name}: finished, skipped", flush=True)
        return json.loads(cpu_file.read_text()) if cpu_file.is_file() else {}
    resume = ["--resume"] if (run_dir / "run.json").is_file() else []
    cmd = ["nice", "-n", str(nice), sys.executable, "train_agents.py", "--env", "RuntimePrune-v0", "--seed", str(seed),
           "--timesteps", str(timesteps), "--out", str(run_dir), "--no-progress", "--env-kwargs", *env_kwargs,
           *extra, *resume]
    print(f"  {run_dir.name}: {' '.join(cmd[3:])}", flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(run_dir.parent / f"{run_dir.name}.log", "a") as log:
        code = subprocess.call(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        raise SystemExit(f"{run_dir.name} failed (exit {code}); see {run_dir.parent / (run_dir.name + '.log')}")
    cpu = {"cpu_seconds": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
           "wall_seconds": time.time() - start, "resumed": bool(resume)}
    write_json(cpu, cpu_file)
    return cpu


def cpu_seconds(run_dir: Path) -> float | None:
    """The run's CPU seconds (training and evaluation): recorded by this script, else from a
    ``/usr/bin/time -v`` log beside the run."""
    path = run_dir / "bench_cpu.json"
    if path.is_file():
        return json.loads(path.read_text()).get("cpu_seconds")
    log = run_dir.parent / f"{run_dir.name}.log"
    if log.is_file():
        user = sys_ = None
        for line in log.read_text().splitlines():
            if "User time (seconds)" in line:
                user = float(line.split(":")[-1])
            if "System time (seconds)" in line:
                sys_ = float(line.split(":")[-1])
        if user is not None and sys_ is not None:
            return user + sys_
    return None


def seed_result(out: Path, seed: int, budgets: tuple[float, ...]) -> dict | None:
    """The any-budget run's sweep with this seed's per-budget runs attached; None if not all finished."""
    sweep_path = any_dir(out, seed) / "any_budget.json"
    runs = [per_dir(out, b, seed) for b in budgets]
    if not sweep_path.is_file() or not all((r / "metrics.json").is_file() for r in runs):
        return None
    sweep = json.loads(sweep_path.read_text())
    per = [read_per_budget_run(r) for r in runs]
    for p in sweep["points"]:
        for key in ("per_budget", "per_budget_calibrated"):
            p["rows"].pop(key, None)
    attach_per_budget(sweep["points"], per)
    any_metrics = json.loads((any_dir(out, seed) / "metrics.json").read_text())
    cost = {"any_budget": {"timesteps": any_metrics.get("timesteps"), "train_seconds": any_metrics.get("train_seconds"),
                           "cpu_seconds": cpu_seconds(any_dir(out, seed))},
            "per_budget_total": {"timesteps": sum(r["timesteps"] or 0 for r in per),
                                 "train_seconds": sum(r["train_seconds"] or 0 for r in per),
                                 "cpu_seconds": _sum_or_none([cpu_seconds(r) for r in runs])}}
    return {"seed": seed, "points": sweep["points"], "summary": summarize_sweep(sweep["points"]), "cost": cost}


def _sum_or_none(values: list) -> float | None:
    return None if any(v is None for v in values) else float(sum(values))


def aggregate(results: list[dict], budgets: tuple[float, ...]) -> dict:
    """Per budget and method: mean and std over seeds of top-1 and mean MACs; the checks of the issue."""
    table = []
    for i, b in enumerate(budgets):
        row: dict = {"budget": b, "macs_budget": results[0]["points"][i]["macs_budget"]}
        for method, _ in METHODS:
            vals = [r["points"][i]["rows"][method] for r in results if method in r["points"][i]["rows"]]
            if vals:
                acc = [100 * v["accuracy"] for v in vals]
                macs = [v["macs_ratio"] for v in vals]
                row[method] = {"accuracy": float(np.mean(acc)), "accuracy_std": float(np.std(acc)),
                               "macs_ratio": float(np.mean(macs)), "seeds": len(vals),
                               "max_overshoot": float(max(m / row["macs_budget"] - 1 for m in macs))}
        table.append(row)
    checks = {}
    for agent in ("agent", "agent_calibrated"):
        checks[agent] = {
            "within_budget_everywhere": all(r[agent]["max_overshoot"] <= TOLERANCE for r in table if agent in r),
            "within_half_point_of_per_budget": all(r[agent]["accuracy"] >= r["per_budget"]["accuracy"] - 0.5
                                                   for r in table if agent in r and "per_budget" in r),
            "on_or_above_uniform": all(r[agent]["accuracy"] >= r["uniform"]["accuracy"] for r in table if agent in r),
            "gap_to_per_budget_points": [r[agent]["accuracy"] - r["per_budget"]["accuracy"] for r in table
                                         if agent in r and "per_budget" in r],
        }
    cost = {k: {m: _sum_or_none([r["cost"][k][m] for r in results]) for m in ("timesteps", "train_seconds", "cpu_seconds")}
            for k in ("any_budget", "per_budget_total")}
    return {"seeds": [r["seed"] for r in results], "budgets": list(budgets), "table": table, "checks": checks,
            "cost_all_seeds": cost, "per_seed": results}


def markdown(agg: dict) -> str:
    methods = [(m, label) for m, label in METHODS if any(m in r for r in agg["table"])]
    lines = [f"Seeds {agg['seeds']}; cells: top-1 % (mean over seeds ± std) and mean MACs (fraction of dense).", "",
             "| budget (MACs) | " + " | ".join(label for _, label in methods) + " |",
             "|---|" + "---|" * len(methods)]
    for r in agg["table"]:
        cells = [f"{r[m]['accuracy']:.2f} ± {r[m]['accuracy_std']:.2f} ({r[m]['macs_ratio']:.3f})" if m in r else ""
                 for m, _ in methods]
        lines.append(f"| {r['budget']:g} ({r['macs_budget']:.3f}) | " + " | ".join(cells) + " |")
    lines.append("")
    for agent, c in agg["checks"].items():
        gaps = ", ".join(f"{g:+.2f}" for g in c["gap_to_per_budget_points"])
        lines.append(f"- {agent}: within budget (+1%) at every budget: {c['within_budget_everywhere']}; "
                     f"within 0.5 points of the per-budget agent everywhere: {c['within_half_point_of_per_budget']} "
                     f"(gaps {gaps}); on or above uniform everywhere: {c['on_or_above_uniform']}")
    one, five = agg["cost_all_seeds"]["any_budget"], agg["cost_all_seeds"]["per_budget_total"]
    lines.append(f"- training cost (all seeds): any-budget {_fmt(one['timesteps'])} steps, {_fmt(one['train_seconds'])} s wall, "
                 f"{_fmt(one['cpu_seconds'])} CPU s; five per-budget agents {_fmt(five['timesteps'])} steps, "
                 f"{_fmt(five['train_seconds'])} s wall, {_fmt(five['cpu_seconds'])} CPU s "
                 "(CPU seconds include each run's evaluation)")
    return "\n".join(lines) + "\n"


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0f}"


def plot(agg: dict, path: Path) -> Path:
    from prune_env.evaluation.budget_sweep import plot_sweep

    points = [{"budget": r["budget"], "macs_budget": r["macs_budget"],
               "rows": {m: {"accuracy": r[m]["accuracy"] / 100, "macs_ratio": r[m]["macs_ratio"]}
                        for m, _ in METHODS if m in r}} for r in agg["table"]]
    return plot_sweep({"points": points}, path, title=f"one agent for sparsity 0.3-0.7 vs one per budget "
                                                      f"(digits, seeds {agg['seeds']})")


def main(argv: list[str] | None = None) -> dict | None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--out", type=Path, default=Path("runs/any_budget"))
    p.add_argument("--budgets", type=float, nargs="+", default=list(BUDGETS), help="sparsities (default %(default)s)")
    p.add_argument("--any-timesteps", type=int, default=600_000, help="steps of the any-budget agent (default %(default)s)")
    p.add_argument("--per-budget-timesteps", type=int, default=PER_BUDGET_TIMESTEPS)
    p.add_argument("--any-env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                   help="more keywords for the any-budget agent's environment (e.g. dual_bins=8)")
    p.add_argument("--nice", type=int, default=5)
    p.add_argument("--only-summary", action="store_true", help="train nothing; summarise the finished runs")
    p.add_argument("--runs", choices=("all", "any", "per-budget"), default="all",
                   help="which agents to train (default: all; the summary needs every run of a seed)")
    p.add_argument("--figures", type=Path, default=None, help="also write any_budget_curve.png here")
    args = p.parse_args(argv)
    budgets = tuple(sorted(args.budgets))
    span = f"{budgets[0]:g}:{budgets[-1]:g}"
    sweep = ["--sweep-budgets", *(f"{b:g}" for b in budgets)]
    if not args.only_summary:
        for seed in args.seeds:
            print(f"seed {seed}", flush=True)
            if args.runs in ("all", "any"):
                train(any_dir(args.out, seed), [f"budget={span}", "budget_mode=average", *args.any_env_kwargs],
                      seed, args.any_timesteps, sweep, args.nice)
            for b in budgets if args.runs in ("all", "per-budget") else ():
                train(per_dir(args.out, b, seed), [f"budget={b:g}", "budget_mode=average"], seed,
                      args.per_budget_timesteps, [], args.nice)
    results = [r for r in (seed_result(args.out, s, budgets) for s in args.seeds) if r is not None]
    if not results:
        print("no seed has all its runs finished yet")
        return None
    agg = aggregate(results, budgets)
    write_json(agg, args.out / "summary.json")
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["budget", "macs_budget", "method", "accuracy_mean", "accuracy_std", "macs_ratio_mean", "seeds"])
    for r in agg["table"]:
        for m, _ in METHODS:
            if m in r:
                writer.writerow([r["budget"], r["macs_budget"], m, r[m]["accuracy"], r[m]["accuracy_std"],
                                 r[m]["macs_ratio"], r[m]["seeds"]])
    write_text(buffer.getvalue(), args.out / "summary.csv")
    text = markdown(agg)
    write_text(text, args.out / "summary.md")
    plot(agg, args.out / "any_budget_curve.png")
    if args.figures is not None:
        plot(agg, args.figures / "any_budget_curve.png")
    print(text)
    return agg


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
