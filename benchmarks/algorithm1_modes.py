"""Algorithm 1's agent update, joint against alternating, in both budget modes (docs/results/algorithm1.md).

For every budget mode (``per_input``: the paper's Eq. 10 / 15 on each episode; ``average``: the
mean cost held to the budget by a dual variable), agent update (``joint``: both agents act in one
episode and one reward batch updates both; ``alternating``: each against the other's frozen
policy) and seed, this runs :func:`agents.algorithm1.run_algorithm1` from one checkpoint and
collects, per iteration and at the end, the test accuracy under the agents' masks, the mean MAC
ratio, the stored-parameter ratio, the share of inputs within the MAC budget and the time of the
agents' phase. It writes ``modes.json`` / ``modes.csv`` under ``--out`` and the figure
``--figure`` (MAC ratio and accuracy per iteration, every seed, both budget modes).

Each run is an Algorithm 1 run directory ``<out>/<budget_mode>/<update>-s<seed>/`` (readable by
``evaluate_run.py``); the sweep is resumable: a finished run is read back, an interrupted one
continues from its last finished iteration.

    python benchmarks/algorithm1_modes.py --prepare                 # digits: the CNN stages, then 2 x 2 x 3 runs
    python benchmarks/algorithm1_modes.py --checkpoint fm/imp.pt --schedule fashion-mnist --out runs/alg1/fmnist
    python benchmarks/algorithm1_modes.py --summarize --out runs/alg1/digits   # tables and figure from what exists
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from agents.algorithm1 import AGENT_UPDATES, ALGORITHM1_STATE, PRESETS, Algorithm1Config, run_algorithm1  # noqa: E402
from prune_env.benchmark.statistics import t_interval  # noqa: E402
from prune_env.io import write_csv, write_json  # noqa: E402

BUDGET_MODES = ("per_input", "average")
RESULT = "modes_row.json"
SCHEDULE_KEYS = ("iterations", "agent_batches", "cnn_batches", "batch_size", "static_episodes", "lr", "final_cnn_batches")
ITERATION_KEYS = ("iteration", "test_accuracy", "macs_ratio", "params_ratio", "within_budget", "budget", "params_budget",
                  "dense_test_accuracy", "agent_seconds", "seconds")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="the checkpoint Algorithm 1 starts from (default: <out>/stages/warmup.pt, made by --prepare)")
    p.add_argument("--prepare", action="store_true",
                   help="digits: run the CNN stages first (pre-training, importance, 25 warm-up epochs; about 40 s)")
    p.add_argument("--schedule", default="digits", choices=sorted(PRESETS), help="Algorithm 1 preset (default digits)")
    for key in SCHEDULE_KEYS:
        p.add_argument("--" + key.replace("_", "-"), type=float if key == "lr" else int, default=None,
                       help="override the preset's value")
    p.add_argument("--budget", type=float, default=0.5, help="sparsity defining both budgets (default 0.5, the issue's)")
    p.add_argument("--tradeoff-rate", type=float, default=0.5, help="R_r (default 0.5)")
    p.add_argument("--updates", nargs="+", choices=AGENT_UPDATES, default=list(AGENT_UPDATES))
    p.add_argument("--budget-modes", nargs="+", choices=BUDGET_MODES, default=list(BUDGET_MODES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--algo", default="recurrent_ppo")
    p.add_argument("--n-envs", type=int, default=64)
    p.add_argument("--data-root", default=None)
    p.add_argument("--workers", type=int, default=1, help="runs at a time, one thread each (default 1)")
    p.add_argument("--out", type=Path, default=Path("runs/alg1/digits"))
    p.add_argument("--figure", type=Path, default=None, help="the figure (default <out>/algorithm1_modes.png)")
    p.add_argument("--summarize", action="store_true", help="no runs: tables and figure from the finished runs")
    return p


def _run(job: dict) -> dict:
    """One Algorithm 1 run (in a worker process, one thread); its row, also saved as ``RESULT`` in the run directory."""
    import torch

    torch.set_num_threads(1)
    run_dir = Path(job["out"])
    done = run_dir / RESULT
    if done.is_file():
        return json.loads(done.read_text())
    cfg = Algorithm1Config(**{**job["config"], "resume": (run_dir / ALGORITHM1_STATE).is_file()})
    start = time.time()
    m = run_algorithm1(cfg)
    row = {
        "budget_mode": job["budget_mode"], "agent_update": cfg.agent_update, "seed": cfg.seed,
        "accuracy": m["accuracy"], "dense_accuracy": m["dense_accuracy"], "uniform_accuracy": m["uniform_accuracy"],
        "calibrated_accuracy": m.get("calibrated_accuracy"), "macs_ratio": m["macs_ratio"], "budget": m["budget"],
        "within_budget": m["within_budget"], "params_ratio": m["params_ratio"], "params_budget": m["params_budget"],
        "stored_params": m.get("stored_params"), "static_keep_ratios": m.get("static_keep_ratios"),
        "seconds": time.time() - start, "run_dir": str(run_dir),
        "history": [{k: r.get(k) for k in ITERATION_KEYS} for r in m["history"]],
    }
    write_json(row, done)
    return row


def jobs_of(args: argparse.Namespace, checkpoint: Path) -> list[dict]:
    schedule = dict(PRESETS[args.schedule])
    for key in SCHEDULE_KEYS:
        if getattr(args, key) is not None:
            schedule[key] = getattr(args, key)
    command = " ".join(shlex.quote(a) for a in ["python", *sys.argv])
    jobs = []
    for seed in args.seeds:  # seed-major: every finished seed has all four settings
        for budget_mode in args.budget_modes:
            for update in args.updates:
                out = args.out / budget_mode / f"{update}-s{seed}"
                config = dict(checkpoint=str(checkpoint), out=str(out), budget=args.budget, tradeoff_rate=args.tradeoff_rate,
                              algo=args.algo, seed=seed, n_envs=args.n_envs, data_root=args.data_root, progress=False,
                              env_kwargs={"budget_mode": budget_mode}, agent_update=update, command=command, **schedule)
                jobs.append({"out": str(out), "budget_mode": budget_mode, "config": config})
    return jobs


def prepare(out: Path) -> Path:
    """The digits CNN stages of ``finetune_cnn.py method`` (pre-training, importance, warm-up) into ``out/stages``."""
    from agents.cnn_stages import run_method_stages

    return run_method_stages(out / "stages", model="digitnet", width=1.0, warmup_epochs=25, resume=True,
                             dataset="digits", seed=0, threads=1, device="cpu", data_on_device=False,
                             data_root=None, progress=False)


def _mean_sd(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def summarize(rows: list[dict]) -> str:
    """Markdown: one row per run, then mean ± sd per budget mode and update."""
    lines = ["| budget mode | update | seed | top-1 | dense | MACs (budget) | inputs within | params (budget) | "
             "MACs per iteration | over budget (iterations) | agents' time |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["budget_mode"], r["agent_update"], r["seed"])):
        macs = [h["macs_ratio"] for h in r["history"]]
        over = sum(m > r["budget"] + 1e-9 for m in macs)
        agent = sum(h.get("agent_seconds") or 0.0 for h in r["history"])
        lines.append(f"| {r['budget_mode']} | {r['agent_update']} | {r['seed']} | {100 * r['accuracy']:.2f}% | "
                     f"{100 * r['dense_accuracy']:.2f}% | {r['macs_ratio']:.3f} ({r['budget']:.3f}) | "
                     f"{100 * r['within_budget']:.0f}% | {r['params_ratio']:.3f} ({r['params_budget']:.3f}) | "
                     f"{' / '.join(f'{m:.3f}' for m in macs)} | {over} of {len(macs)} | {agent / 60:.1f} min |")
    lines += ["", "| budget mode | update | seeds | top-1 | MACs / budget | inputs within | params / budget | "
              "max MACs / budget over iterations 2-K |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["budget_mode"], r["agent_update"]), []).append(r)
    for (mode, update), rs in sorted(groups.items()):
        late = [max(h["macs_ratio"] for h in r["history"][1:] or r["history"]) / r["budget"] for r in rs]
        lines.append(f"| {mode} | {update} | {len(rs)} | {_mean_sd([100 * r['accuracy'] for r in rs])} | "
                     f"{_mean_sd([r['macs_ratio'] / r['budget'] for r in rs])} | "
                     f"{_mean_sd([r['within_budget'] for r in rs])} | "
                     f"{_mean_sd([r['params_ratio'] / r['params_budget'] for r in rs])} | {_mean_sd(late)} |")
    paired = paired_differences(rows)
    if paired:
        lines += ["", "Joint minus alternating, paired by seed (same checkpoint, seed and schedule): mean, 95% Student-t "
                  "interval and paired t-test p over the seeds column's seeds (at least 2).", "",
                  "| budget mode | seeds | top-1 (points) | MACs / budget | params / budget |", "|---|---:|---:|---:|---:|"]
        for mode, cells in paired.items():
            lines.append(f"| {mode} | {cells['seeds']} | " + " | ".join(cells[k] for k in ("accuracy", "macs", "params")) + " |")
    return "\n".join(lines)


def _paired_cell(diffs: list[float], digits: int) -> str:
    """Mean of paired differences with its 95% t-interval and the paired t-test's p (one value: just it)."""
    from scipy import stats

    mean, low, high = t_interval(diffs)
    if len(diffs) < 2:
        return f"{mean:+.{digits}f}"
    p = float(stats.ttest_1samp(diffs, 0.0).pvalue) if high > low else (1.0 if mean == 0 else 0.0)
    return f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}], p = {p:.2f}"


def paired_differences(rows: list[dict]) -> dict[str, dict]:
    """Per budget mode, the joint run minus the alternating run of the same seed: top-1 in points, the
    MAC ratio and the stored-parameter ratio each over its budget (seeds with both updates only)."""
    out: dict[str, dict] = {}
    for mode in BUDGET_MODES:
        by = {(r["agent_update"], r["seed"]): r for r in rows if r["budget_mode"] == mode}
        seeds = sorted(s for (u, s) in by if u == "joint" and ("alternating", s) in by)
        if not seeds:
            continue
        pairs = [(by[("joint", s)], by[("alternating", s)]) for s in seeds]
        out[mode] = {
            "seeds": len(seeds),
            "accuracy": _paired_cell([100 * (j["accuracy"] - a["accuracy"]) for j, a in pairs], 2),
            "macs": _paired_cell([j["macs_ratio"] / j["budget"] - a["macs_ratio"] / a["budget"] for j, a in pairs], 3),
            "params": _paired_cell([j["params_ratio"] / j["params_budget"] - a["params_ratio"] / a["params_budget"]
                                    for j, a in pairs], 3),
        }
    return out


def plot(rows: list[dict], path: Path, title: str) -> None:
    """MAC ratio, stored parameters (each over its budget) and test accuracy per iteration: a column per
    budget mode, a colour per update, a line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    modes = [m for m in BUDGET_MODES if any(r["budget_mode"] == m for r in rows)]
    colours = {"joint": "tab:blue", "alternating": "tab:orange"}
    fig, axes = plt.subplots(3, len(modes), figsize=(5.2 * len(modes), 9.5), squeeze=False, sharex=True)
    for col, mode in enumerate(modes):
        ax_macs, ax_params, ax_acc = axes[0, col], axes[1, col], axes[2, col]
        for update, colour in colours.items():
            rs = sorted((r for r in rows if r["budget_mode"] == mode and r["agent_update"] == update), key=lambda r: r["seed"])
            for i, r in enumerate(rs):
                it = [h["iteration"] for h in r["history"]]
                label = f"{update} ({len(rs)} seed{'s' if len(rs) > 1 else ''})" if i == 0 else None
                ax_macs.plot(it, [h["macs_ratio"] / r["budget"] for h in r["history"]], "o-", color=colour, alpha=0.75,
                             lw=1.2, ms=4, label=label)
                ax_params.plot(it, [h["params_ratio"] / h["params_budget"] for h in r["history"]], "o-", color=colour,
                               alpha=0.75, lw=1.2, ms=4, label=label)
                ax_acc.plot(it, [100 * h["test_accuracy"] for h in r["history"]], "o-", color=colour, alpha=0.75,
                            lw=1.2, ms=4, label=label)
                ax_acc.plot(it, [100 * h["dense_test_accuracy"] for h in r["history"]], ":", color=colour, alpha=0.5, lw=1)
        ax_macs.axhline(1.0, color="k", ls="--", lw=1, label="MAC budget")
        ax_macs.set_title(f"budget_mode={mode}", fontsize=10)
        ax_macs.set_ylabel("mean MAC ratio / budget (test split)")
        ax_params.axhline(1.0, color="k", ls="--", lw=1, label="parameter budget")
        ax_params.set_ylabel("stored parameters / budget")
        ax_acc.set_ylabel("test top-1 (%), agents' masks; dotted: dense")
        ax_acc.set_xlabel("Algorithm 1 iteration")
        for ax in (ax_macs, ax_params, ax_acc):
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def collect(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob(f"*/*/{RESULT}"))]


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    if not args.summarize:
        checkpoint = args.checkpoint or args.out / "stages" / "warmup.pt"
        if args.prepare and not checkpoint.is_file():
            checkpoint = prepare(args.out)
        if not checkpoint.is_file():
            raise SystemExit(f"--checkpoint: {checkpoint} does not exist (--prepare makes the digits one)")
        jobs = jobs_of(args, checkpoint)
        if args.workers > 1:
            with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
                for row in pool.map(_run, jobs):
                    print(f"{row['budget_mode']} {row['agent_update']} s{row['seed']}: {100 * row['accuracy']:.2f}% "
                          f"MACs {row['macs_ratio']:.3f} ({row['seconds']:.0f} s)", flush=True)
        else:
            for job in jobs:
                row = _run(job)
                print(f"{row['budget_mode']} {row['agent_update']} s{row['seed']}: {100 * row['accuracy']:.2f}% "
                      f"MACs {row['macs_ratio']:.3f} ({row['seconds']:.0f} s)", flush=True)
    rows = collect(args.out)
    if not rows:
        raise SystemExit(f"no finished runs under {args.out}")
    table = summarize(rows)
    print(table)
    (args.out / "modes.md").write_text(table + "\n")
    write_json(rows, args.out / "modes.json")
    write_csv([{k: v for k, v in r.items() if k != "history"} for r in rows], args.out / "modes.csv")
    plot(rows, args.figure or args.out / "algorithm1_modes.png", f"Algorithm 1: joint vs alternating agent update ({args.out})")
    return rows


if __name__ == "__main__":
    main()
