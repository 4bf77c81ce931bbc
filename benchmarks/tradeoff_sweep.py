"""The runtime / static trade-off: Algorithm 1 at one budget for several rates R_r (paper Fig. 2 and 4).

For each ``R_r`` (and seed) this runs :func:`agents.algorithm1.run_algorithm1` from the same
checkpoint (default: the shipped digitnet on digits, after the importance stage) at a fixed
budget (default sparsity 0.45, as the paper's figures), then collects the final test accuracy,
the dense accuracy of the fine-tuned CNN, the uniform-keep reference, the MAC ratio and the
stored-parameter ratio. Results go to ``tradeoff.csv`` and ``tradeoff.json`` under ``--out``;
two figures to ``--figures``:

* ``tradeoff_params.png``: test accuracy against stored parameters (Fig. 4);
* ``tradeoff_rate.png``: test accuracy and stored parameters against ``R_r`` (Fig. 2).

Each run lives in ``<out>/rr<R_r>-s<seed>/`` (a normal Algorithm 1 run directory, so
``evaluate_run.py`` reads it) and its result in ``sweep_row.json`` there. The sweep is
resumable: a run whose result exists with the same settings is skipped, an interrupted run
continues from its last finished iteration.

    python benchmarks/tradeoff_sweep.py                       # the documented sweep (docs/results/tradeoff.md)
    python benchmarks/tradeoff_sweep.py --quick --rates 0 1 --out /tmp/sweep --figures /tmp/sweep
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from agents.algorithm1 import ALGORITHM1_STATE, Algorithm1Config, run_algorithm1  # noqa: E402
from prune_env.assets import default_checkpoint_path  # noqa: E402
from prune_env.cli import add_threads_option, set_threads  # noqa: E402
from prune_env.io import write_csv, write_json  # noqa: E402

RATES = (0.0, 0.25, 0.5, 0.75, 1.0)
#: the documented sweep: the digits schedule of agents.algorithm1.PRESETS, shortened to fit
#: about 10-15 minutes on two loaded CPU cores; the agents alternate (Algorithm1Config.agent_update), as
#: when the sweep in docs/results/tradeoff.md was recorded
DEFAULT = dict(iterations=3, agent_batches=60, cnn_batches=60, batch_size=64, static_episodes=8, n_envs=64,
               algo="recurrent_ppo", agent_update="alternating")
#: --quick: seconds per rate (tests)
QUICK = dict(iterations=1, agent_batches=1, cnn_batches=2, batch_size=16, static_episodes=2, n_envs=8, algo="ppo",
             agent_update="alternating")
ROW_FILE = "sweep_row.json"
CSV_FIELDS = ("rate", "seed", "accuracy", "delta_pp", "dense_accuracy", "uniform_accuracy", "macs_ratio", "speedup",
              "params_ratio", "stored_params", "within_budget", "macs_budget", "params_budget", "static_keep_ratios",
              "keep_ratio_mean", "seconds", "run_dir")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rates", type=float, nargs="+", default=list(RATES), help="R_r values (default %(default)s)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds per rate (default %(default)s)")
    p.add_argument("--budget", type=float, default=0.45, help="sparsity defining both budgets (default %(default)s)")
    p.add_argument("--checkpoint", default=None, help="starting checkpoint (default: the shipped digitnet/digits)")
    p.add_argument("--quick", action="store_true", help="tiny schedule and PPO (seconds per rate; for tests)")
    for key in ("iterations", "agent_batches", "cnn_batches", "batch_size", "static_episodes", "n_envs"):
        p.add_argument("--" + key.replace("_", "-"), type=int, default=None,
                       help=f"Algorithm 1 setting (default {DEFAULT[key]}; --quick {QUICK[key]})")
    p.add_argument("--algo", default=None, help=f"agent algorithm (default {DEFAULT['algo']}; --quick {QUICK['algo']})")
    p.add_argument("--agent-update", choices=("joint", "alternating"), default=None,
                   help="Algorithm 1's agent update (default alternating: the recorded sweep's)")
    p.add_argument("--out", type=Path, default=Path("runs/tradeoff_sweep"), help="sweep directory (default %(default)s)")
    p.add_argument("--figures", type=Path, default=None,
                   help="where the PNGs go (default docs/figures, or --out with --quick)")
    add_threads_option(p)
    p.add_argument("--fresh", action="store_true", help="rerun every rate even when its result exists")
    return p


def settings_of(args: argparse.Namespace) -> dict:
    base = dict(QUICK if args.quick else DEFAULT)
    for key in base:
        value = getattr(args, key)
        if value is not None:
            base[key] = value
    base["budget"] = float(args.budget)
    base["checkpoint"] = str(Path(args.checkpoint).resolve()) if args.checkpoint else str(default_checkpoint_path())
    return base


def rate_tag(rate: float) -> str:
    return f"rr{rate:.2f}"


def run_one(rate: float, seed: int, settings: dict, out: Path, *, fresh: bool, log=print) -> dict:
    """Algorithm 1 at ``R_r = rate`` (skipped when its result exists with the same settings)."""
    run_dir = out / f"{rate_tag(rate)}-s{seed}"
    row_path = run_dir / ROW_FILE
    if row_path.is_file() and not fresh:
        saved = json.loads(row_path.read_text())
        if saved.get("settings") == settings:
            log(f"R_r = {rate:g}, seed {seed}: result exists ({row_path}), skipped")
            return saved["row"]
        raise SystemExit(f"{row_path} holds a result with other settings; use --fresh or another --out")
    if fresh and run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    resume = (run_dir / ALGORITHM1_STATE).is_file()
    cfg = Algorithm1Config(
        checkpoint=settings["checkpoint"], out=str(run_dir), iterations=settings["iterations"],
        agent_batches=settings["agent_batches"], cnn_batches=settings["cnn_batches"], batch_size=settings["batch_size"],
        static_episodes=settings["static_episodes"], n_envs=settings["n_envs"], budget=settings["budget"],
        tradeoff_rate=float(rate), algo=settings["algo"], agent_update=settings["agent_update"],
        seed=seed, resume=resume, progress=False,
        command=" ".join(shlex.quote(a) for a in ["python", *sys.argv]),
    )
    log(f"R_r = {rate:g}, seed {seed}: Algorithm 1 ({'resuming' if resume else 'starting'}) in {run_dir}")
    start = time.time()
    m = run_algorithm1(cfg)
    row = {
        "rate": float(rate), "seed": int(seed),
        "accuracy": m["accuracy"], "delta_pp": 100 * (m["accuracy"] - m["dense_accuracy"]),
        "dense_accuracy": m["dense_accuracy"], "uniform_accuracy": m["uniform_accuracy"],
        "macs_ratio": m["macs_ratio"], "speedup": m["speedup"], "params_ratio": m["params_ratio"],
        "stored_params": m["stored_params"], "within_budget": m["within_budget"], "macs_budget": m["budget"],
        "params_budget": m["params_budget"], "static_keep_ratios": m["static_keep_ratios"],
        "keep_ratio_mean": m["keep_ratio_mean"], "seconds": time.time() - start, "run_dir": str(run_dir),
        "history": [{k: r[k] for k in ("iteration", "test_accuracy", "macs_ratio", "params_ratio")} for r in m["history"]],
    }
    write_json({"settings": settings, "row": row, "config": asdict(cfg)}, row_path)
    log(f"  top-1 {100 * row['accuracy']:.2f}% (dense {100 * row['dense_accuracy']:.2f}%), MACs {row['macs_ratio']:.3f}, "
        f"params {row['params_ratio']:.3f}, {row['seconds']:.0f}s")
    return row


def starting_accuracy(checkpoint: str) -> float:
    """Test accuracy of the starting checkpoint, nothing pruned (the network before Algorithm 1)."""
    from prune_env.envs.task import PruningTask, TaskConfig
    from prune_env.evaluation.split import evaluate_policies

    task = PruningTask(TaskConfig(checkpoint=checkpoint, split="test"))
    return evaluate_policies(task, 1.0, [1.0] * task.num_layers)["accuracy"]


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean and (population) standard deviation over seeds, per rate."""
    out = []
    for rate in sorted({r["rate"] for r in rows}):
        group = [r for r in rows if r["rate"] == rate]
        entry = {"rate": rate, "seeds": len(group)}
        for key in ("accuracy", "dense_accuracy", "uniform_accuracy", "macs_ratio", "params_ratio", "stored_params"):
            values = [float(r[key]) for r in group]
            entry[key] = statistics.fmean(values)
            entry[key + "_std"] = statistics.pstdev(values) if len(values) > 1 else 0.0
        out.append(entry)
    return out


def write_tables(rows: list[dict], summary: list[dict], meta: dict, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    cells = [{k: (json.dumps([round(v, 4) for v in r[k]]) if isinstance(r[k], list) else r[k]) for k in CSV_FIELDS} for r in rows]
    write_csv(cells, out / "tradeoff.csv", fieldnames=CSV_FIELDS)
    write_json({**meta, "rows": rows, "summary": summary}, out / "tradeoff.json")
    return {"csv": out / "tradeoff.csv", "json": out / "tradeoff.json"}


def plot(rows: list[dict], summary: list[dict], meta: dict, figures: Path) -> dict[str, Path]:
    """Fig. 4 (accuracy vs stored parameters) and Fig. 2 (accuracy and parameters vs R_r) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures.mkdir(parents=True, exist_ok=True)
    s = meta["settings"]
    title = f"{meta['network']} on {meta['dataset']}, sparsity {s['budget']:g}"
    start_acc = 100 * meta["starting_accuracy"]
    paths = {}

    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    ax.scatter([r["params_ratio"] for r in rows], [100 * r["accuracy"] for r in rows], s=14, color="tab:blue", alpha=0.4,
               label="runs" if len(rows) > len(summary) else None)
    xs, ys = [e["params_ratio"] for e in summary], [100 * e["accuracy"] for e in summary]
    ax.errorbar(xs, ys, yerr=[100 * e["accuracy_std"] for e in summary], fmt="o-", color="tab:blue", capsize=3,
                label="agents (mean over seeds)" if len(rows) > len(summary) else "agents")
    for e, x, y in zip(summary, xs, ys):
        ax.annotate(f"R_r={e['rate']:g}", (x, y), textcoords="offset points", xytext=(4, 5), fontsize=8)
    ax.axhline(start_acc, color="gray", ls="--", lw=1, label=f"start checkpoint, dense ({start_acc:.1f}%)")
    ax.axvline(meta["params_budget"], color="tab:red", ls=":", lw=1, label="parameter budget")
    ax.set_xlabel(f"stored parameters (fraction of dense, {meta['dense_params'] / 1e3:.1f} k)")
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.set_title(f"Fig. 4: accuracy vs storage\n{title}", fontsize=9)
    ax.margins(x=0.12, y=0.15)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    paths["params"] = figures / "tradeoff_params.png"
    fig.savefig(paths["params"], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    rates = [e["rate"] for e in summary]
    ax.scatter([r["rate"] for r in rows], [100 * r["accuracy"] for r in rows], s=14, color="tab:blue", alpha=0.4)
    ax.errorbar(rates, ys, yerr=[100 * e["accuracy_std"] for e in summary], fmt="o-", color="tab:blue", capsize=3,
                label="test accuracy (agents)")
    ax.plot(rates, [100 * e["dense_accuracy"] for e in summary], "s--", color="tab:cyan", ms=4,
            label="fine-tuned CNN, nothing pruned")
    ax.axhline(start_acc, color="gray", ls="--", lw=1, label="start checkpoint, dense")
    ax.set_xlabel("trade-off rate R_r (0 = static, 1 = runtime)")
    ax.set_ylabel("test top-1 accuracy (%)")
    ax2 = ax.twinx()
    ax2.plot(rates, [e["params_ratio"] for e in summary], "^-", color="tab:orange", label="stored parameters")
    ax2.plot(rates, [e["macs_ratio"] for e in summary], "v:", color="tab:green", label="MACs")
    ax2.set_ylabel("fraction of dense")
    ax2.set_ylim(0, 1.05)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    fig.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="lower center", ncol=3, frameon=False)
    ax.set_title(f"Fig. 2: trade-off rate\n{title}", fontsize=9)
    ax.margins(y=0.15)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    paths["rate"] = figures / "tradeoff_rate.png"
    fig.savefig(paths["rate"], dpi=120)
    plt.close(fig)
    return paths


def format_table(summary: list[dict], seeds: int) -> str:
    pm = seeds > 1
    head = "| R_r | top-1 % | Δ vs own dense (pp) | fine-tuned dense % | uniform keep % | MACs | stored params |"
    lines = [head, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for e in summary:
        acc = f"{100 * e['accuracy']:.2f}" + (f" ± {100 * e['accuracy_std']:.2f}" if pm else "")
        lines.append(f"| {e['rate']:g} | {acc} | {100 * (e['accuracy'] - e['dense_accuracy']):+.2f} | "
                     f"{100 * e['dense_accuracy']:.2f} | {100 * e['uniform_accuracy']:.2f} | {e['macs_ratio']:.3f} | "
                     f"{e['params_ratio']:.3f} ({e['stored_params'] / 1e3:.2f} k) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    set_threads(args.threads)
    for rate in args.rates:
        if not 0.0 <= rate <= 1.0:
            raise SystemExit(f"--rates: R_r must be in [0, 1], got {rate}")
    settings = settings_of(args)
    figures = args.figures or (args.out if args.quick else Path("docs/figures"))
    start = time.time()
    rows = [run_one(rate, seed, settings, args.out, fresh=args.fresh) for rate in args.rates for seed in args.seeds]
    from prune_env.envs.task import PruningTask, TaskConfig

    probe = PruningTask(TaskConfig(checkpoint=settings["checkpoint"], split="test", budget=settings["budget"]))
    meta = {
        "settings": settings, "rates": list(args.rates), "seeds": list(args.seeds),
        "network": probe.net.config.get("name"), "dataset": probe.dataset_name,
        "dense_params": float(probe.costs.dense_params), "dense_macs": float(probe.costs.dense_macs),
        "macs_budget": float(probe.macs_budget), "params_budget": float(probe.params_budget),
        "starting_accuracy": starting_accuracy(settings["checkpoint"]),
        "sweep_seconds": time.time() - start, "threads": args.threads, "torch": torch.__version__,
        "python": platform.python_version(),
    }
    summary = aggregate(rows)
    files = write_tables(rows, summary, meta, args.out)
    files.update(plot(rows, summary, meta, figures))
    print()
    print(format_table(summary, len(args.seeds)))
    print(f"\nstart checkpoint dense top-1 {100 * meta['starting_accuracy']:.2f}%; MAC budget {meta['macs_budget']:.3f}, "
          f"parameter budget {meta['params_budget']:.3f} of dense")
    print("written: " + ", ".join(str(p) for p in files.values()))
    return {"rows": rows, "summary": summary, "meta": meta, "files": {k: str(v) for k, v in files.items()}}


if __name__ == "__main__":
    main()
