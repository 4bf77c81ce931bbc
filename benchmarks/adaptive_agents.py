#!/usr/bin/env python
"""Does the runtime agent adapt? The main job over seeds, beside every reference at the same budget.

Trains the runtime agent once per seed (``agents.training.run``, the same code as
``train_agents.py``), then collects from each run's ``metrics.json`` / ``references.json``: the agent
(and its budget-calibrated variant), uniform at the budget and at the agent's MACs, the best static
allocation searched on the training split, the shuffled and layer-mean controls and the per-input
oracle. Writes ``summary.json``, ``seeds.csv``, ``summary.md`` and ``summary.png`` (accuracy against
MACs, each seed and each reference) to ``--out``; finished seeds are kept and skipped on a rerun.

    python benchmarks/adaptive_agents.py --seeds 0 1 2 3 4 --out bench_adaptive/main
    python benchmarks/adaptive_agents.py --seeds 0 1 2 3 4 --env-kwargs budget=0.5 --out bench_adaptive/s05
    python benchmarks/adaptive_agents.py --seeds 0 1 2 --env-kwargs budget_mode=per_input --out bench_adaptive/per_input
    python benchmarks/adaptive_agents.py --seeds 0 1 2 3 4 --supervised-start loss --out bench_adaptive/supervised
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from prune_env.cli import fraction, parse_key_values, positive_int  # noqa: E402

#: (column, metrics / references key path, label)
COLUMNS = (
    ("agent", ("metrics", "accuracy"), "agent top-1"),
    ("agent_macs", ("metrics", "macs_ratio"), "agent MACs"),
    ("calibrated", ("metrics", "calibrated_accuracy"), "calibrated top-1"),
    ("calibrated_macs", ("metrics", "calibrated_macs_ratio"), "calibrated MACs"),
    ("uniform", ("refs", "uniform", "accuracy"), "uniform @ budget"),
    ("uniform_iso_mac", ("refs", "uniform_iso_mac", "accuracy"), "uniform @ agent MACs"),
    ("best_static", ("refs", "best_static", "accuracy"), "best static (train)"),
    ("shuffled", ("refs", "shuffled", "accuracy"), "agent shuffled"),
    ("layer_mean", ("refs", "layer_mean", "accuracy"), "agent layer mean"),
    ("cascade", ("refs", "cascade", "accuracy"), "confidence cascade"),
    ("cascade_macs", ("refs", "cascade", "macs_ratio"), "cascade MACs"),
    ("oracle", ("refs", "oracle_accuracy", "accuracy"), "oracle (labels)"),
    ("dense", ("refs", "dense", "accuracy"), "dense"),
    ("headroom_captured", ("metrics", "headroom_captured_accuracy"), "headroom captured"),
    ("adaptation_p", ("metrics", "adaptation_p_value_shuffled"), "McNemar p, agent vs shuffled"),
    ("train_seconds", ("metrics", "train_seconds"), "train s"),
)


def run_seed(seed: int, args_dict: dict) -> Path:
    """Train and evaluate one seed in its own directory (skipped when already finished)."""
    import torch

    torch.set_num_threads(1)
    from agents.config import RunConfig
    from agents.training import run

    out = Path(args_dict["out"]) / f"seed{seed}"
    if (out / "metrics.json").is_file():
        return out
    cfg = RunConfig(env_id="RuntimePrune-v0", algo=args_dict["algo"], seed=seed, timesteps=args_dict["timesteps"],
                    env_kwargs=args_dict["env_kwargs"], hyperparams=args_dict["hyperparams"], out=str(out),
                    progress=False, resume=(out / "checkpoint.zip").is_file(), command=args_dict["command"],
                    search_rounds=args_dict["search_rounds"], supervised_start=args_dict.get("supervised_start"),
                    supervised_family=args_dict.get("supervised_family", "uniform"),
                    supervised_levels=args_dict.get("supervised_levels"))
    run(cfg)
    return out


def rescore_seed(run_dir: Path) -> Path:
    """Score a finished seed again (its saved agent, the current reference code); keeps its training figures."""
    import torch

    torch.set_num_threads(1)
    from agents.config import RunConfig
    from agents.evaluate import evaluate_run
    from agents.registry import RUNTIME, env_kwargs_for
    from agents.saved import agent_policy, load_agent
    from prune_env.envs.task import PruningTask, TaskConfig
    from prune_env.io import write_json

    model, meta = load_agent(run_dir)
    old = json.loads((run_dir / "metrics.json").read_text())
    task = PruningTask(TaskConfig(**env_kwargs_for(meta["algo"], RUNTIME, meta["env_kwargs"])))
    cfg = RunConfig(env_id=RUNTIME, algo=meta["algo"], seed=meta["seed"], out=str(run_dir), progress=False)
    metrics = evaluate_run(cfg, task, runtime_policy=agent_policy(model, meta), static_ratios=np.ones(task.num_layers),
                           out=run_dir)
    metrics.update({k: old[k] for k in ("train_seconds", "timesteps") if k in old})
    write_json(metrics, run_dir / "metrics.json")
    return run_dir


def collect(run_dir: Path) -> dict:
    """One seed's row: the :data:`COLUMNS` from its ``metrics.json`` and ``references.json``."""
    sources = {"metrics": json.loads((run_dir / "metrics.json").read_text()),
               "refs": json.loads((run_dir / "references.json").read_text())}
    row = {}
    for name, path, _ in COLUMNS:
        value = sources[path[0]]
        for key in path[1:]:
            value = value.get(key) if isinstance(value, dict) else None
        row[name] = value
    row["budget"] = sources["metrics"]["budget"]
    return row


def over_seeds_p_value(agent: np.ndarray, reference: np.ndarray) -> float | None:
    """One-sided paired t-test over seeds that the agent scores above ``reference`` (None below 3
    seeds or with no spread)."""
    from scipy.stats import ttest_rel

    gains = agent - reference
    if len(gains) < 3 or np.isnan(gains).any() or np.all(gains == gains[0]):
        return None
    return float(ttest_rel(agent, reference, alternative="greater").pvalue)


def summarize(rows: list[dict]) -> dict:
    """Mean and sample standard deviation of every numeric column over seeds, and the derived gains."""
    out = {}
    for name, *_ in COLUMNS:
        values = np.array([r[name] for r in rows if r.get(name) is not None], dtype=np.float64)
        if len(values):
            out[name] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                         "values": values.tolist()}
    budget = rows[0]["budget"]
    out["budget"] = budget
    for agent in ("agent", "calibrated"):
        acc = np.array([r[agent] for r in rows if r.get(agent) is not None])
        if not len(acc):
            continue
        ref = {k: np.array([np.nan if r.get(k) is None else r[k] for r in rows if r.get(agent) is not None])
               for k in ("uniform", "best_static", "shuffled", "layer_mean", "cascade")}
        macs = np.array([r[f"{agent}_macs"] if agent == "calibrated" else r["agent_macs"]
                         for r in rows if r.get(agent) is not None])
        out[f"{agent}_checks"] = {
            "every_seed_within_1pct_of_budget": bool(np.all(macs <= budget * 1.01 + 1e-12)),
            "no_seed_below_uniform": bool(np.all(acc >= ref["uniform"] - 1e-12)),
            "mean_gain_over_uniform_points": float(100 * (acc - ref["uniform"]).mean()),
            "mean_gain_over_best_static_points": float(100 * (acc - ref["best_static"]).mean()),
            "mean_adaptation_gain_shuffled_points": float(100 * (acc - ref["shuffled"]).mean()),
            "mean_adaptation_gain_layer_mean_points": float(100 * (acc - ref["layer_mean"]).mean()),
            "least_adaptation_gain_shuffled_points": float(100 * (acc - ref["shuffled"]).min()),
            "mean_gain_over_cascade_points": (float(100 * (acc - ref["cascade"]).mean())
                                              if not np.isnan(ref["cascade"]).any() else None),
            "p_value_over_seeds_vs_best_static": over_seeds_p_value(acc, ref["best_static"]),
        }
    return out


def write_outputs(rows: list[dict], summary: dict, out: Path, command: str) -> None:
    from prune_env.io import write_json

    write_json({"command": command, "seeds": rows, "summary": summary}, out / "summary.json")
    with open(out / "seeds.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["seed", *[c[0] for c in COLUMNS], "budget"])
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"Command: `{command}`", "", f"MAC budget {summary['budget']:.3f} of dense; test split; mean ± std over "
             f"{len(rows)} seeds.", "", "| | " + " | ".join(label for _, _, label in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    for r in rows:
        lines.append(f"| seed {r['seed']} | " + " | ".join(_cell(name, r.get(name)) for name, *_ in COLUMNS) + " |")
    lines.append("| **mean** | " + " | ".join(
        _cell(name, summary[name]["mean"]) + " ± " + _cell(name, summary[name]["std"])
        if name in summary else "" for name, *_ in COLUMNS) + " |")
    for agent in ("agent", "calibrated"):
        if f"{agent}_checks" in summary:
            lines += ["", f"**{agent}**: " + "; ".join(f"{k.replace('_', ' ')}: {_fmt(v, k)}"
                                                       for k, v in summary[f"{agent}_checks"].items())]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    plot(rows, summary, out / "summary.png")


def _scale(name: str) -> float:
    return 1.0 if name.endswith("macs") or name == "train_seconds" else 100.0


def _cell(name: str, value) -> str:
    if value is None:
        return "-"
    if name.endswith("macs"):
        return f"{value:.4f}"
    if name == "train_seconds":
        return f"{value:.0f}"
    if name == "adaptation_p":  # a p-value, not a share
        return f"{value:.3g}"
    return f"{100 * value:.2f}"


def _fmt(v, key: str = "") -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if "p_value" in key else f"{v:+.2f}"
    return str(v)


def plot(rows: list[dict], summary: dict, path: Path) -> None:
    """Test top-1 against mean MACs: the agent per seed (raw and calibrated) beside the references."""
    from prune_env.evaluation.plots import pyplot
    from prune_env.evaluation.plots import save_figure as _save

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    agent = np.array([[r["agent_macs"], r["agent"]] for r in rows])
    ax.scatter(agent[:, 0], 100 * agent[:, 1], color="tab:blue", label="agent (each seed)", zorder=3)
    calibrated = np.array([[r["calibrated_macs"], r["calibrated"]] for r in rows if r.get("calibrated") is not None])
    if len(calibrated):
        ax.scatter(calibrated[:, 0], 100 * calibrated[:, 1], color="tab:blue", marker="^", facecolors="none",
                   label="agent calibrated to the budget", zorder=3)
    budget = summary["budget"]
    styles = {"uniform": ("tab:red", "uniform @ budget"), "best_static": ("tab:green", "best static (searched on train)"),
              "layer_mean": ("tab:purple", "agent's layer means"), "shuffled": ("tab:gray", "agent shuffled"),
              "cascade": ("tab:orange", "confidence cascade (chosen on train)"),
              "oracle": ("black", "per-input oracle (labels)"), "dense": ("tab:brown", "dense")}
    for key, (color, label) in styles.items():
        if key in summary:
            ax.axhline(100 * summary[key]["mean"], color=color, ls="--" if key != "oracle" else ":", lw=1.2, label=label)
    ax.axvline(budget, color="tab:red", lw=0.8, alpha=0.6)
    ax.axvspan(budget, 1.01 * budget, color="tab:red", alpha=0.08, label="within 1% over the budget")
    ax.text(budget, ax.get_ylim()[0], " budget", color="tab:red", fontsize=8, va="bottom")
    ax.set_xlabel("mean MAC ratio of dense (test split)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(f"runtime agent over {len(rows)} seeds at MAC budget {budget:.3f}", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    _save(fig, path)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--algo", default="recurrent_ppo")
    p.add_argument("--timesteps", type=positive_int, default=None, help="default: the algorithm's")
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE", help="on top of the main job's")
    p.add_argument("--hyperparams", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--workers", type=positive_int, default=1, help="seeds trained at once (one thread each)")
    p.add_argument("--out", required=True, help="directory for the seeds' runs and the summary")
    p.add_argument("--search-rounds", type=positive_int, default=40,
                   help="rounds of the best-static-allocation search (default 40; fewer for deep networks)")
    p.add_argument("--supervised-start", choices=["loss", "accuracy"], default=None, metavar="OBJECTIVE",
                   help="behaviour-clone each seed's policy on the training split's oracle targets first "
                        "(train_agents.py --supervised-start)")
    p.add_argument("--supervised-family", choices=["uniform", "best_static"], default="uniform",
                   help="the allocations of --supervised-start's oracle (train_agents.py --supervised-family)")
    p.add_argument("--supervised-levels", type=fraction, nargs="+", default=None, metavar="KEEP",
                   help="their uniform keep ratios (train_agents.py --supervised-levels)")
    p.add_argument("--rescore", action="store_true",
                   help="score finished seeds again with the current reference code (their agents are not retrained)")
    args = p.parse_args(argv)
    try:
        env_kwargs = parse_key_values(args.env_kwargs, "--env-kwargs")
        hyperparams = parse_key_values(args.hyperparams, "--hyperparams")
    except argparse.ArgumentTypeError as exc:
        p.error(str(exc))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(shlex.quote(a)
                       for a in ["python", "benchmarks/adaptive_agents.py", *(sys.argv[1:] if argv is None else argv)])
    shared = {"algo": args.algo, "timesteps": args.timesteps, "env_kwargs": env_kwargs, "hyperparams": hyperparams,
              "out": str(out), "command": command, "search_rounds": args.search_rounds,
              "supervised_start": args.supervised_start, "supervised_family": args.supervised_family,
              "supervised_levels": args.supervised_levels}
    start = time.time()
    if args.workers > 1:
        with cf.ProcessPoolExecutor(args.workers) as pool:
            dirs = list(pool.map(run_seed, args.seeds, [shared] * len(args.seeds)))
    else:
        dirs = [run_seed(s, shared) for s in args.seeds]
    if args.rescore:
        dirs = [rescore_seed(d) for d in dirs]
    rows = [{"seed": s, **collect(d)} for s, d in zip(args.seeds, dirs)]
    summary = summarize(rows)
    write_outputs(rows, summary, out, command)
    print((out / "summary.md").read_text())
    print(f"{len(rows)} seeds in {time.time() - start:.0f} s; files in {out}/")
    return summary


if __name__ == "__main__":
    main()
