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
* ``executor@1``: the executor at keep ratio 1 (no channel pruned): its own dense reference;
* ``sliced``: runtime pruning (``R_r = 1``) in the slicing order (``runtime_order="static"``):
  every keep set a prefix of the export's order, run as ``weight[:k_out, :k_in]``;
  ``sliced@1`` its dense reference;
* ``executor~``, ``sliced~``: the same with keep ratios that differ per input (uniform in
  ``keep +- 0.2``, one ratio per input for all layers), so a batch holds different keep counts;
  ``sliced~/M``: the same with keep counts rounded up to a multiple of ``M`` (``--multiple``).

Beside each median wall-clock time: its spread (the quartiles of the repeats), its ratio to dense
and three speed-ups: against eager dense (the deployment's gain: pruning and the executor's own, BN
folding and all), against dense on the same path (the pruning's own gain: eager configurations
against ``dense``, executor ones against ``executor@1``, sliced ones against ``sliced@1``) and the
speed as a fraction of ``static+executor`` at the same keep (the same MACs with no per-input work:
what runtime pruning can at best reach); the ratio to dense in thread CPU time (steadier on a shared machine),
and the MACs it computes as a fraction of dense, from
:class:`~prune_env.costs.CostModel` (the masked network computes every channel: ratio 1).
Importances are random (timing does not depend on training), with inputs whose masks differ
per sample. Outputs are checked against the masked network before timing.

    python benchmarks/latency.py --repeats 30 --threads 1 --out runs/latency     # latency.json + latency.md there

GPU (CUDA): ``--device cuda`` runs every configuration on the GPU (synchronised around each call).
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

from prune_env.cli import add_threads_option, device, non_negative_int, positive_int, set_threads  # noqa: E402
from prune_env.costs import CostModel  # noqa: E402
from prune_env.deploy import RuntimeExecutor, export_static  # noqa: E402
from prune_env.evaluation.latency import time_interleaved  # noqa: E402
from prune_env.nets import build_net  # noqa: E402
from prune_env.nets.gated import GatedNet  # noqa: E402
from prune_env.progress import steps  # noqa: E402

#: the configurations that run through the executor, whose own dense reference is ``executor@1``
EXECUTOR_PATH = ("executor@1", "static+executor", "executor", "executor~")
#: the configurations in the slicing order, whose own dense reference is ``sliced@1``
SLICED_PATH = ("sliced@1", "sliced", "sliced~")

SHAPES = {"mcifarnet": (3, 32, 32), "digitnet": (1, 8, 8), "resnet20": (3, 32, 32)}


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


def varied_ratios(batch: int, layers: int, keep: float, seed: int) -> torch.Tensor:
    """``(B, L)`` keep ratios, one per input (uniform in ``keep +- 0.2``, within ``(0, 1]``) for all its layers."""
    g = torch.Generator().manual_seed(seed)
    r = (keep + 0.4 * (torch.rand(batch, 1, generator=g, dtype=torch.float64) - 0.5)).clamp(0.05, 1.0)
    return r.expand(batch, layers).contiguous()


def _twin(name: str, shape: tuple[int, int, int], net: GatedNet, **gate) -> GatedNet:
    twin = build_net(name, in_channels=shape[0]).eval().configure(**gate)
    twin.load_state_dict(net.state_dict())
    return twin.to(next(net.parameters()).device)


def _check(name: str, what: str, got: torch.Tensor, kept: torch.Tensor, ref) -> None:
    err = float((got - ref.logits).abs().max())
    if err > 1e-4 or not torch.equal(kept.cpu(), ref.kept.cpu()):
        raise AssertionError(f"{name}: {what} differs from the masked network (max |diff| {err})")


def bench_model(name: str, keeps: list[float], batches: list[int], repeats: int, warmup: int, seed: int,
                multiple: int = 8, device: str = "cpu") -> list[dict]:
    shape = SHAPES[name]
    torch.manual_seed(seed)
    net = randomize(build_net(name, in_channels=shape[0]), seed).to(device)
    costs = CostModel(net, shape)
    dense_net = _twin(name, shape, net, gating=False)
    runtime_net = _twin(name, shape, net, tradeoff_rate=1.0)
    sliced_net = _twin(name, shape, net, tradeoff_rate=1.0, runtime_order="static")
    quantised_net = _twin(name, shape, net, tradeoff_rate=1.0, runtime_order="static", count_multiple=multiple)
    static_net = _twin(name, shape, net, tradeoff_rate=0.0)
    executor = RuntimeExecutor(runtime_net)  # d_s = 1: nothing removed, pure runtime pruning
    sliced = RuntimeExecutor(sliced_net)  # the same in the slicing order
    quantised = RuntimeExecutor(quantised_net)
    statics = {k: export_static(static_net, k) for k in keeps}
    static_executors = {k: RuntimeExecutor(m) for k, m in statics.items()}
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def timed(fn: Callable[[], object]) -> Callable[[int], object]:
        return lambda i: (fn(), sync())

    rows = []
    for batch in batches:
        x = images(batch, shape, seed + batch).to(device)
        fns: dict[str, Callable[[], object]] = {"dense": lambda x=x: dense_net(x), "executor@1": lambda x=x: executor(x, 1.0),
                                                "sliced@1": lambda x=x: sliced(x, 1.0)}
        macs: dict[str, float] = {"dense": 1.0, "executor@1": 1.0, "sliced@1": 1.0}
        with torch.no_grad():
            for k in keeps:
                varied = varied_ratios(batch, net.num_layers, k, seed + batch)
                cases = {"executor": (executor, runtime_net, k), "sliced": (sliced, sliced_net, k),
                         "executor~": (executor, runtime_net, varied), "sliced~": (sliced, sliced_net, varied),
                         f"sliced~/{multiple}": (quantised, quantised_net, varied)}
                for label, (ex, masked, ratios) in cases.items():
                    ref = masked.run(x, ratios, 1.0)
                    _check(name, f"{label} at batch {batch}", *ex.run(x, ratios), ref)
                    fns[f"{label} {k}"] = lambda ex=ex, x=x, ratios=ratios: ex(x, ratios)
                    macs[f"{label} {k}"] = float(costs.macs(ref.kept.cpu()).mean()) / costs.dense_macs
                if float((static_executors[k](x) - statics[k](x)).abs().max()) > 1e-4:
                    raise AssertionError(f"{name}: static executor differs from the exported network")
                static_ratio = float(costs.macs(torch.tensor(statics[k].stored_channels))[0]) / costs.dense_macs
                fns[f"static {k}"] = lambda k=k, x=x: statics[k](x)
                fns[f"static+executor {k}"] = lambda k=k, x=x: static_executors[k](x)
                fns[f"masked {k}"] = lambda k=k, x=x: runtime_net(x, k, 1.0)
                macs.update({f"static {k}": static_ratio, f"static+executor {k}": static_ratio, f"masked {k}": 1.0})
        order = ["dense", "executor@1", "sliced@1"] + [f"{c} {k}" for k in keeps for c in (
            "static", "static+executor", "masked", "executor", "sliced", "executor~", "sliced~", f"sliced~/{multiple}")]
        timings = time_interleaved({key: timed(fns[key]) for key in order}, repeats, warmup)
        dense_wall, dense_cpu = timings["dense"]["median_ms"], timings["dense"]["cpu_median_ms"]
        for key, t in timings.items():
            config, _, keep = key.partition(" ")
            base = config.split("/")[0]
            same_path = timings["executor@1" if base in EXECUTOR_PATH else "sliced@1" if base in SLICED_PATH else "dense"]
            static_ms = timings[f"static+executor {keep}"]["median_ms"] if keep else None
            ms = t["median_ms"]
            rows.append({
                "model": name, "batch": batch, "config": config, "keep": float(keep) if keep else 1.0,
                "ms": ms, "p25_ms": t["p25_ms"], "p75_ms": t["p75_ms"], "time_ratio": ms / dense_wall,
                "speedup": dense_wall / ms, "speedup_same_path": same_path["median_ms"] / ms,
                "vs_static": None if static_ms is None else static_ms / ms,
                "cpu_ms": t["cpu_median_ms"], "cpu_ratio": t["cpu_median_ms"] / dense_cpu, "macs_ratio": macs[key],
            })
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | batch | config | keep | median ms | spread (p25-p75) ms | speed-up vs eager dense | "
             "speed-up vs dense, same path | speed / static+executor | CPU time / dense | MACs / dense |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        vs_static = "" if r["vs_static"] is None else f"{r['vs_static']:.2f}x"
        lines.append(f"| {r['model']} | {r['batch']} | {r['config']} | {r['keep']:.1f} | {r['ms']:.3f} | "
                     f"{r['p25_ms']:.3f}-{r['p75_ms']:.3f} | {r['speedup']:.2f}x | {r['speedup_same_path']:.2f}x | "
                     f"{vs_static} | {r['cpu_ratio']:.3f} | {r['macs_ratio']:.3f} |")
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
    parser.add_argument("--keep", nargs="+", type=float, default=[0.5], help="keep ratios to time")
    parser.add_argument("--batches", nargs="+", type=positive_int, default=[1, 8, 64])
    parser.add_argument("--multiple", type=positive_int, default=8,
                        help="the sliced~/M configuration rounds keep counts up to a multiple of this")
    parser.add_argument("--device", type=device, default="cpu",
                        help="cpu, cuda or auto (a GPU: every configuration runs there, synchronised around each call)")
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
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None
    setup = {"torch": torch.__version__, "threads": args.threads, "cpu": cpu_name(), "gpu": gpu, "repeats": args.repeats,
             "warmup": args.warmup, "python": platform.python_version(), "argv": sys.argv[1:]}
    setup["load_before"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    started = time.perf_counter()
    rows = []
    for name in args.models:
        say(f"{name}: batches {args.batches}, keep {args.keep}")
        rows += bench_model(name, args.keep, args.batches, args.repeats, args.warmup, args.seed, args.multiple, args.device)
    setup["seconds"] = round(time.perf_counter() - started, 1)
    setup["load_after"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    machine = f"{setup['cpu']} ({os.cpu_count()} cores){', ' + gpu if gpu else ''}"
    heading = (f"# {machine}, torch {setup['torch']}, {torch.get_num_threads()} thread(s), "
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
