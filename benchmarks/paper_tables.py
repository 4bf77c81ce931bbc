"""The paper's Tables 1-2 on one dataset: dense, runtime only, runtime + static, uniform, per sparsity.

One command runs the whole comparison from scratch (resumable at every step):

1. the shared CNN phase, once: pre-training, importance learning, and a warm-up under random
   keep ratios (``finetune_cnn.py method``'s first three stages);
2. for every sparsity ``s``, in parallel worker processes, from the warm-up checkpoint:
   * Algorithm 1 at ``R_r = 1`` (runtime only, the paper's "R_r = 1" rows) and at every other
     requested rate (default 0.5), each a ``finetune_cnn.py algorithm1`` run directory;
   * the FBS-like uniform reference: the same CNN fine-tuned for as many batches under the
     uniform runtime keep ratio that meets the same MAC budget (``R_r = 1``, nothing stored
     pruned), so that it gets as much fine-tuning as the agents' network;
3. the table: top-1 on the test split, change from the dense network (the pre-trained one the
   method starts from), MAC speed-up, stored parameters (count and fraction), fraction of inputs
   within the MAC budget; as markdown, JSON and CSV, plus a PNG of accuracy against MACs and
   stored parameters.

    python benchmarks/paper_tables.py --dataset fashion-mnist --model mcifarnet --device cuda --workers 4
    python benchmarks/paper_tables.py --quick --out /tmp/tables        # seconds, on digits (tests)

Every step is skipped when its output is complete, so re-running the command after an
interruption continues where it stopped (Algorithm 1 runs resume from their last iteration).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

from prune_env.checkpoint import read_checkpoint  # noqa: E402
from prune_env.cli import add_threads_option, device  # noqa: E402
from prune_env.cnn import epochs_for_batches  # noqa: E402
from prune_env.data import load_dataset  # noqa: E402
from prune_env.io import write_csv, write_json, write_text  # noqa: E402

#: The documented schedule for Fashion-MNIST on a GPU machine (see docs/results/benchmarks.md).
DEFAULT = dict(pretrain_epochs=20, importance_epochs=6, warmup_epochs=10, iterations=10, agent_batches=120,
               cnn_batches=400, final_cnn_batches=2000, batch_size=128, n_envs=64, steps_per_epoch=None)
#: --quick: a few seconds per step on digits (tests)
QUICK = dict(pretrain_epochs=1, importance_epochs=2, warmup_epochs=1, iterations=1, agent_batches=1,
             cnn_batches=2, final_cnn_batches=1, batch_size=16, n_envs=4, steps_per_epoch=3)
CSV_FIELDS = ("method", "sparsity", "tradeoff_rate", "accuracy", "delta_pp", "macs_ratio", "speedup", "stored_params",
              "params_ratio", "within_budget", "macs_budget", "run")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=None, help="dataset (default fashion-mnist; digits with --quick)")
    p.add_argument("--model", default=None, help="backbone (default mcifarnet; digitnet with --quick)")
    p.add_argument("--width", type=float, default=1.0, help="width multiplier of the backbone (default 1.0)")
    p.add_argument("--data-root", default=None, help="dataset root (see prune_env.data)")
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.7], help="sparsities (default 0.5 0.7)")
    p.add_argument("--agent-update", choices=("joint", "alternating"), default="alternating",
                   help="Algorithm 1's agent update (default alternating: the tables of docs/results/benchmarks.md section 6 "
                        "were measured with it; joint is the paper's and finetune_cnn.py's default)")
    p.add_argument("--rates", type=float, nargs="+", default=[1.0, 0.5],
                   help="R_r of the Algorithm 1 rows (default 1.0 0.5)")
    for key, value in DEFAULT.items():
        p.add_argument("--" + key.replace("_", "-"), type=int, default=None,
                       help=f"(default {value}; --quick {QUICK[key]})")
    p.add_argument("--algo", default="recurrent_ppo", help="agent algorithm (default recurrent_ppo)")
    p.add_argument("--quick", action="store_true", help="tiny schedule on digits, PPO agents (tests)")
    p.add_argument("--device", type=device, default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    p.add_argument("--workers", type=int, default=1, help="parallel runs in step 2 (default 1)")
    add_threads_option(p)
    p.add_argument("--num-workers", type=int, default=0, help="data loader workers of the CNN stages (default 0)")
    p.add_argument("--data-on-device", action="store_true",
                   help="hold the splits as tensors on the device and augment batches there (fast on a GPU)")
    p.add_argument("--agent-device", type=device, default=None, help="device of the agents' networks (default: --device)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/paper_tables"), help="output directory")
    return p


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    base = dict(QUICK if args.quick else DEFAULT)
    for key in base:
        if getattr(args, key) is not None:
            base[key] = getattr(args, key)
    base.update(dataset=args.dataset or ("digits" if args.quick else "fashion-mnist"),
                model=args.model or ("digitnet" if args.quick else "mcifarnet"), width=args.width,
                algo="ppo" if args.quick and args.algo == "recurrent_ppo" else args.algo)
    return base


def _completed(path: Path) -> bool:
    return path.is_file() and bool(read_checkpoint(path).get("completed"))


def _run(cmd: list[str], log: Path) -> None:
    """Run a command of this repository, its output to ``log``; raises with the log's tail on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with log.open("a") as f:
        f.write("$ " + " ".join(shlex.quote(c) for c in cmd) + "\n")
        f.flush()
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    if code != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(f"command failed ({code}): {' '.join(cmd)}\n{tail}")


def _common(args: argparse.Namespace, s: dict) -> list[str]:
    out = ["--seed", str(args.seed), "--threads", str(args.threads), "--device", args.device, "--no-progress"]
    if args.data_on_device:
        out.append("--data-on-device")
    if args.data_root:
        out += ["--data-root", str(Path(args.data_root).resolve())]
    return out


def _stage_caps(s: dict) -> list[str]:
    return ["--steps-per-epoch", str(s["steps_per_epoch"])] if s["steps_per_epoch"] else []


def cnn_phase(args: argparse.Namespace, s: dict, out: Path, log=print) -> dict[str, Path]:
    """Step 1: pre-training, importance, warm-up under random keep ratios (each skipped when done)."""
    py, fc = sys.executable, str(ROOT / "finetune_cnn.py")
    shared = [*_common(args, s), "--dataset", s["dataset"], "--num-workers", str(args.num_workers),
              "--batch-size", str(s["batch_size"]), *_stage_caps(s)]
    paths = {k: out / f"{k}.pt" for k in ("pretrain", "importance", "warmup")}
    steps = [
        ("pretrain", ["pretrain", "--model", s["model"], "--width", str(s["width"]), "--epochs", str(s["pretrain_epochs"])]),
        ("importance", ["importance", "--checkpoint", str(paths["pretrain"]), "--epochs", str(s["importance_epochs"])]),
        ("warmup", ["finetune", "--checkpoint", str(paths["importance"]), "--random-keep", "0.2", "--tradeoff-rate", "1.0",
                    "--epochs", str(s["warmup_epochs"])]),
    ]
    names = [name for name, _ in steps]
    for i, (name, cmd) in enumerate(steps):
        if any(_completed(paths[later]) for later in names[i:]):  # done, or a later stage is
            log(f"{name}: done")
            continue
        log(f"{name}: running")
        t0 = time.time()
        _run([py, fc, *cmd, *shared, "--out", str(paths[name]), "--resume"], out / "logs" / f"{name}.log")
        log(f"{name}: {time.time() - t0:.0f}s")
    return paths


def _tag(sparsity: float, rate: float | None = None) -> str:
    return f"s{sparsity:g}-" + ("uniform" if rate is None else f"rr{rate:g}")


def cnn_batches_total(s: dict) -> int:
    """CNN fine-tuning batches an Algorithm 1 run does (the uniform reference gets as many)."""
    return s["iterations"] * s["cnn_batches"] + s["final_cnn_batches"]


def jobs(args: argparse.Namespace, s: dict, out: Path, warmup: Path) -> list[tuple[str, list[str], Path]]:
    """Step 2's commands: (tag, command, what marks it done)."""
    py, fc = sys.executable, str(ROOT / "finetune_cnn.py")
    train_size = len(load_dataset(s["dataset"], args.data_root).train)
    todo = []
    for sparsity in args.sparsities:
        for rate in args.rates:
            run_dir = out / _tag(sparsity, rate)
            cmd = [py, fc, "algorithm1", "--checkpoint", str(warmup), "--budget", str(sparsity),
                   "--tradeoff-rate", str(rate), "--iterations", str(s["iterations"]),
                   "--agent-batches", str(s["agent_batches"]), "--cnn-batches", str(s["cnn_batches"]),
                   "--final-cnn-batches", str(s["final_cnn_batches"]), "--batch-size", str(s["batch_size"]),
                   "--algo", s["algo"], "--agent-update", args.agent_update, "--n-envs", str(s["n_envs"]),
                   *_common(args, s), "--out", str(run_dir),
                   "--resume", *(["--agent-device", args.agent_device] if args.agent_device else [])]
            todo.append((_tag(sparsity, rate), cmd, run_dir / "metrics.json"))
        # the uniform reference: the same number of CNN batches, under the uniform keep ratio
        epochs, per_epoch = epochs_for_batches(cnn_batches_total(s), train_size, s["batch_size"])
        path = out / f"{_tag(sparsity)}.pt"
        cmd = [py, fc, "finetune", "--checkpoint", str(warmup), "--keep", f"{sparsity:g}", "--tradeoff-rate", "1.0",
               "--epochs", str(epochs), "--steps-per-epoch", str(per_epoch), "--batch-size", str(s["batch_size"]),
               "--num-workers", str(args.num_workers), *_common(args, s), "--out", str(path), "--resume"]
        todo.append((_tag(sparsity), cmd, path))
    return todo


def run_jobs(todo: list[tuple[str, list[str], Path]], out: Path, workers: int, log=print) -> None:
    """Step 2: the runs not yet done, ``workers`` at a time."""
    def done(marker: Path) -> bool:
        return marker.is_file() and (marker.suffix == ".json" or _completed(marker))

    pending = [(tag, cmd) for tag, cmd, marker in todo if not done(marker)]
    for tag, _, marker in todo:
        if done(marker):
            log(f"{tag}: done")

    def one(item: tuple[str, list[str]]) -> str:
        tag, cmd = item
        t0 = time.time()
        _run(cmd, out / "logs" / f"{tag}.log")
        log(f"{tag}: {time.time() - t0:.0f}s")
        return tag

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for future in [pool.submit(one, item) for item in pending]:
            future.result()


def _evaluate_reference(checkpoint: Path, sparsity: float, device: str, data_root: str | None) -> dict:
    """Dense and uniform metrics of a checkpoint on the test split, at the sparsity's MAC budget."""
    from prune_env.envs.task import PruningTask, TaskConfig
    from prune_env.evaluation.split import reference_metrics

    task = PruningTask(TaskConfig(checkpoint=str(checkpoint), split="test", budget=sparsity, tradeoff_rate=1.0,
                                  device=device, data_root=data_root))
    return reference_metrics(task)


def _row(method: str, sparsity: float | None, rate: float | None, m: dict, dense_acc: float, run: str) -> dict:
    return {
        "method": method, "sparsity": sparsity, "tradeoff_rate": rate, "accuracy": m["accuracy"],
        "delta_pp": 100 * (m["accuracy"] - dense_acc), "macs_ratio": m["macs_ratio"], "speedup": 1 / m["macs_ratio"],
        "stored_params": m["stored_params"], "params_ratio": m["params_ratio"], "within_budget": m["within_budget"],
        "macs_budget": m["budget"] if sparsity is not None else 1.0, "run": run,
    }


def collect(args: argparse.Namespace, s: dict, out: Path, paths: dict[str, Path]) -> list[dict]:
    """Step 3: the table's rows."""
    data_root = str(Path(args.data_root).resolve()) if args.data_root else None
    dense = _evaluate_reference(paths["pretrain"], args.sparsities[0], args.device, data_root)["dense"]
    rows = [_row("dense", None, None, dense, dense["accuracy"], str(paths["pretrain"]))]
    for sparsity in args.sparsities:
        uniform = _evaluate_reference(out / f"{_tag(sparsity)}.pt", sparsity, args.device, data_root)["uniform"]
        rows.append(_row(f"uniform keep {uniform['uniform_keep_ratio']:.2f} (FBS-like)", sparsity, 1.0, uniform,
                         dense["accuracy"], str(out / f"{_tag(sparsity)}.pt")))
        for rate in args.rates:
            run_dir = out / _tag(sparsity, rate)
            m = json.loads((run_dir / "metrics.json").read_text())
            name = "ours, runtime only" if rate == 1.0 else ("ours, static only" if rate == 0.0 else "ours, runtime + static")
            rows.append(_row(name, sparsity, rate, m, dense["accuracy"], str(run_dir)))
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| sparsity | method | R_r | top-1 | delta (pp) | MAC speed-up | stored params | params / dense "
             "| inputs within MAC budget |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        dense = r["sparsity"] is None
        within = "-" if dense else f"{100 * r['within_budget']:.1f}%"
        lines.append(
            f"| {'-' if dense else r['sparsity']} | {r['method']} | {'-' if dense else r['tradeoff_rate']} | "
            f"{100 * r['accuracy']:.2f}% | {r['delta_pp']:+.2f} | {r['speedup']:.2f}x | {r['stored_params'] / 1e6:.3f} M | "
            f"{r['params_ratio']:.3f} | {within} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str = "") -> None:
    """Accuracy against MAC ratio and against stored parameters, one marker per method, under ``title``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    markers = {"dense": "*", "uniform": "s", "runtime only": "o", "runtime + static": "D", "static only": "v"}
    for r in rows:
        key = next(k for k in markers if k in r["method"])
        label = r["method"] if r["sparsity"] is None else f"{key}, s={r['sparsity']:g}"
        for ax, x in zip(axes, (r["macs_ratio"], r["params_ratio"])):
            ax.scatter(x, 100 * r["accuracy"], marker=markers[key], s=60, label=label)
    for ax, xlabel in zip(axes, ("MACs / dense", "stored parameters / dense")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test top-1 (%)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.suptitle(title or "the paper's Tables 1-2: test top-1 against MACs and stored parameters", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_table(rows: list[dict], out: Path, record: dict) -> None:
    write_json({"rows": rows, **record}, out / "table.json")
    write_csv(rows, out / "table.csv", fieldnames=CSV_FIELDS)
    write_text(markdown(rows) + "\n", out / "table.md")
    s = record.get("settings", {})
    rates = sorted({float(r["tradeoff_rate"]) for r in rows if r.get("tradeoff_rate") is not None})
    title = (f"The paper's Tables 1-2 on {s.get('dataset', '?')} ({s.get('model', '?')}): test top-1 against MACs "
             f"and stored parameters (R_r: {', '.join(f'{v:g}' for v in rates)})")
    plot(rows, out / "table.png", title=title)


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    for name, values, low, high in (("--sparsities", args.sparsities, 0.0, 1.0), ("--rates", args.rates, 0.0, 1.0)):
        bad = [v for v in values if not (low <= v <= high) or (name == "--sparsities" and v in (0.0, 1.0))]
        if bad:
            raise SystemExit(f"{name} must lie in {'(0, 1)' if name == '--sparsities' else '[0, 1]'}, got {bad}")
    s = settings_of(args)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    paths = cnn_phase(args, s, out)
    run_jobs(jobs(args, s, out, paths["warmup"]), out, args.workers)
    rows = collect(args, s, out, paths)
    record = {"settings": s, "command": " ".join(shlex.quote(a) for a in ["python", *sys.argv]),
              "device": args.device, "platform": platform.platform(), "seconds_this_invocation": time.time() - start}
    write_table(rows, out, record)
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
