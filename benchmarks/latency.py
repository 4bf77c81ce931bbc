"""CPU wall clock of dense, statically exported, masked-runtime and executor inference.

For each backbone, batch size and keep ratio this times (median over interleaved repeats, after
warm-up, all in one process so that the ratios to dense share the machine's state):

* ``dense``: the plain backbone (``GatedNet`` with gating off);
* ``static``: the network statically pruned at that keep ratio (``R_r = 0``, exported by
  :func:`~prune_env.deploy.export_static`, the eager ``DeployedNet``; no runtime masks);
* ``static+executor``: the same network through :class:`~prune_env.deploy.RuntimeExecutor`
  (BN folded; the constant mask lets whole batches run together);
* ``masked``: runtime pruning as trained (``R_r = 1``): full convolutions, then the mask (Eq. 2);
* ``executor``: runtime pruning (``R_r = 1``) through the executor, which computes only the
  kept channels of each input;
* ``executor@1``: the executor at keep ratio 1 (no channel pruned): its own dense reference.

Beside each median wall-clock time: its ratio to dense and two speed-ups: against eager dense
(the deployment's gain: pruning and the executor's own, BN folding and all) and against dense on
the same path (the pruning's own gain: eager configurations against ``dense``, executor ones
against ``executor@1``); the ratio to dense in thread CPU time (steadier on a shared machine),
and the MACs it computes as a fraction of dense, from
:class:`~prune_env.costs.CostModel` (the masked network computes every channel: ratio 1).
Importances are random (timing does not depend on training), with inputs whose masks differ
per sample. Outputs are checked against the masked network before timing.

    python benchmarks/latency.py --repeats 30 --threads 1 --out runs/latency     # latency.json + latency.md there
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from prune_env.cli import add_threads_option, non_negative_int, positive_int, set_threads  # noqa: E402
from prune_env.costs import CostModel  # noqa: E402
from prune_env.deploy import RuntimeExecutor, export_static  # noqa: E402
from prune_env.evaluation.latency import time_interleaved  # noqa: E402
from prune_env.nets import build_net  # noqa: E402
from prune_env.nets.gated import GatedNet  # noqa: E402
from prune_env.progress import steps  # noqa: E402

#: the configurations that run through the executor, whose own dense reference is ``executor@1``
EXECUTOR_PATH = ("executor@1", "static+executor", "executor")

SHAPES = {"mcifarnet": (3, 32, 32), "digitnet": (1, 8, 8)}


def randomize(net: GatedNet, seed: int) -> GatedNet:
    """Random importances: ``u_r`` near 1 but ranked by the input, distinct ``u_s``, BN statistics."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in net.layers:
            w = layer.predictor.weight
            w.copy_(0.5 * torch.randn(w.shape, generator=g) / w.shape[1] ** 0.5)
            layer.predictor.bias.copy_(1.0 + 0.05 * torch.randn(w.shape[0], generator=g))
            layer.static_importance.copy_(0.5 + torch.rand(w.shape[0], generator=g))
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
    return net.eval()


def images(batch: int, shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *shape, generator=g) + torch.randn(batch, shape[0], 1, 1, generator=g)


def bench_model(name: str, keeps: list[float], batches: list[int], repeats: int, warmup: int, seed: int) -> list[dict]:
    shape = SHAPES[name]
    torch.manual_seed(seed)
    net = randomize(build_net(name, in_channels=shape[0]), seed)
    costs = CostModel(net, shape)
    dense_net = build_net(name, in_channels=shape[0]).eval().configure(gating=False)
    dense_net.load_state_dict(net.state_dict())
    runtime_net = build_net(name, in_channels=shape[0]).eval().configure(tradeoff_rate=1.0)
    runtime_net.load_state_dict(net.state_dict())
    static_net = build_net(name, in_channels=shape[0]).eval().configure(tradeoff_rate=0.0)
    static_net.load_state_dict(net.state_dict())
    executor = RuntimeExecutor(runtime_net)  # d_s = 1: nothing removed, pure runtime pruning
    statics = {k: export_static(static_net, k) for k in keeps}
    static_executors = {k: RuntimeExecutor(m) for k, m in statics.items()}

    rows = []
    for batch in batches:
        x = images(batch, shape, seed + batch)
        fns: dict[str, Callable[[], object]] = {"dense": lambda x=x: dense_net(x), "executor@1": lambda x=x: executor(x, 1.0)}
        macs: dict[str, float] = {"dense": 1.0, "executor@1": 1.0}
        with torch.no_grad():
            for k in keeps:
                ref = runtime_net.run(x, k, 1.0)
                got, kept = executor.run(x, k)
                err = float((got - ref.logits).abs().max())
                if err > 1e-4 or not torch.equal(kept, ref.kept):
                    raise AssertionError(f"{name}: executor differs from the masked network (max |diff| {err})")
                if float((static_executors[k](x) - statics[k](x)).abs().max()) > 1e-4:
                    raise AssertionError(f"{name}: static executor differs from the exported network")
                runtime_ratio = float(costs.macs(ref.kept).mean()) / costs.dense_macs
                static_ratio = float(costs.macs(torch.tensor(statics[k].stored_channels))[0]) / costs.dense_macs
                fns[f"static {k}"] = lambda k=k, x=x: statics[k](x)
                fns[f"static+executor {k}"] = lambda k=k, x=x: static_executors[k](x)
                fns[f"masked {k}"] = lambda k=k, x=x: runtime_net(x, k, 1.0)
                fns[f"executor {k}"] = lambda k=k, x=x: executor(x, k)
                macs.update({f"static {k}": static_ratio, f"static+executor {k}": static_ratio, f"masked {k}": 1.0,
                             f"executor {k}": runtime_ratio})
        timings = time_interleaved({k: (lambda i, f=f: f()) for k, f in fns.items()}, repeats, warmup)
        times = {k: (t["median_ms"] / 1e3, t["cpu_median_ms"] / 1e3) for k, t in timings.items()}
        dense_wall, dense_cpu = times["dense"]
        executor_wall = times["executor@1"][0]
        for key, (seconds, cpu_seconds) in times.items():
            config, _, keep = key.partition(" ")
            same_path = executor_wall if config in EXECUTOR_PATH else dense_wall
            rows.append({
                "model": name, "batch": batch, "config": config, "keep": float(keep) if keep else 1.0,
                "ms": seconds * 1e3, "time_ratio": seconds / dense_wall, "speedup": dense_wall / seconds,
                "speedup_same_path": same_path / seconds,
                "cpu_ms": cpu_seconds * 1e3, "cpu_ratio": cpu_seconds / dense_cpu, "macs_ratio": macs[key],
            })
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | batch | config | keep | median ms | time / dense | speed-up vs eager dense | "
             "speed-up vs dense, same path | CPU time / dense | MACs / dense |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['batch']} | {r['config']} | {r['keep']:.1f} | {r['ms']:.3f} | "
                     f"{r['time_ratio']:.3f} | {r['speedup']:.2f}x | {r['speedup_same_path']:.2f}x | "
                     f"{r['cpu_ratio']:.3f} | {r['macs_ratio']:.3f} |")
    return "\n".join(lines)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["mcifarnet", "digitnet"], choices=sorted(SHAPES))
    parser.add_argument("--keep", nargs="+", type=float, default=[0.5, 0.7], help="keep ratios to time")
    parser.add_argument("--batches", nargs="+", type=positive_int, default=[1, 32])
    parser.add_argument("--repeats", type=positive_int, default=30, help="timed calls per configuration (median reported)")
    parser.add_argument("--warmup", type=non_negative_int, default=5, help="untimed calls per configuration first")
    add_threads_option(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="directory for latency.json (rows and setup) and latency.md (the table)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the JSON to this file")
    parser.add_argument("--no-progress", action="store_true", help="do not report each measurement on standard error")
    args = parser.parse_args(argv)

    set_threads(args.threads)
    say = steps("latency", disable=args.no_progress)
    setup = {"torch": torch.__version__, "threads": args.threads, "cpu": cpu_name(), "repeats": args.repeats,
             "warmup": args.warmup, "python": platform.python_version(), "argv": sys.argv[1:]}
    setup["load_before"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    started = time.perf_counter()
    rows = []
    for name in args.models:
        say(f"{name}: batches {args.batches}, keep {args.keep}")
        rows += bench_model(name, args.keep, args.batches, args.repeats, args.warmup, args.seed)
    setup["seconds"] = round(time.perf_counter() - started, 1)
    setup["load_after"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    heading = (f"# {setup['cpu']} ({os.cpu_count()} cores), torch {setup['torch']}, {torch.get_num_threads()} thread(s), "
               f"median of {args.repeats} (warm-up {args.warmup}), {setup['seconds']} s, "
               f"1-min load average {setup['load_before']} before / {setup['load_after']} after")
    print(heading)
    print(table(rows))
    from prune_env.io import write_text

    for path in ([args.out / "latency.json"] if args.out else []) + ([args.json] if args.json else []):
        write_text(json.dumps({"setup": setup, "rows": rows}, indent=2), path)
    if args.out:
        write_text(heading + "\n\n" + table(rows) + "\n", args.out / "latency.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
