"""Episodes per second of ``RuntimePrune-v0``: the bare batched forward, the batched VecEnv, DummyVecEnv.

For each model and each ``n_envs`` three things run ``n_envs`` episodes of ``L`` steps at a time
(one *round*), on the same bank of random keep ratios:

1. **bare forward** (the limit): ``net.run(images, d_r, d_s)`` under ``torch.no_grad()`` on a
   batch of ``n_envs`` images, ``d_r`` a ``(B, L)`` tensor of runtime keep ratios, ``d_s`` the
   environment's static ratios;
2. **VecEnv**: ``prune_env.make_vec_env("RuntimePrune-v0", n_envs=n, ...)`` (monitored, as SB3
   trains on it) stepped ``L`` times with ``(n, 1)`` actions;
3. **DummyVecEnv**: SB3's ``DummyVecEnv`` over ``n`` single ``RuntimePruneEnv`` s, wrapped in the
   same episode monitor as the VecEnv (``EpisodeMonitor``, a vectorised ``VecMonitor``). Building
   an M-CifarNet environment takes one to a few seconds (data, cost tracing, calibration), so by
   default one environment is built and the others are shallow copies sharing its task (network,
   data, costs, normaliser) with their own episode state: the per-step work is that of
   independent environments, only the build is shared (``--construct-envs`` builds each one;
   construction times are reported apart and never counted in the throughput).

Measurements are interleaved (bare, VecEnv, Dummy, bare, ...) in one process, each running
whole rounds for at least ``--seconds`` after one warm-up round; the table shows the median of
``--repeats`` measurements. Episodes/s = ``n_envs * rounds / elapsed`` on ``--clock``: wall
(default) or this process's CPU time (with ``--threads 1``, robust on a shared machine). The ratio
columns are medians of the ratios of measurements taken side by side in the same repeat, which
cancels most of the drift of a machine shared with other work.

    python benchmarks/env_throughput.py --threads 1 --clock cpu   # the reference run (3-5 min on 2 cores)
    python benchmarks/env_throughput.py                           # torch's default threads, wall clock
    python benchmarks/env_throughput.py --models default --n-envs 1 64 --seconds 0.5
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import prune_env  # noqa: E402
from prune_env.cli import add_threads_option, set_threads  # noqa: E402
from prune_env.envs import RuntimePruneEnv  # noqa: E402
from prune_env.envs.runtime import RuntimeEpisodes  # noqa: E402
from prune_env.envs.vec_env import MONITOR_KEYWORDS, EpisodeMonitor  # noqa: E402

#: Environment keywords of each benchmarked model.
MODELS: dict[str, dict] = {
    "default": {},  # gym.make("RuntimePrune-v0"): the shipped digitnet on digits
    "mcifarnet": {"model": "mcifarnet", "dataset": "synthetic"},  # random init, CIFAR-10-shaped data
}
METHODS = ("bare", "vecenv", "dummy")
#: distinct random keep-ratio matrices cycled through (same bank for all three methods)
BANK = 8


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--n-envs", nargs="+", type=int, default=[1, 16, 64, 256])
    p.add_argument("--seconds", type=float, default=1.0, help="minimum duration of one measurement")
    p.add_argument("--repeats", type=int, default=3, help="interleaved measurements per method (median reported)")
    add_threads_option(p)
    p.add_argument("--no-progress", action="store_true", help="do not report each measurement on standard error")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: perf_counter; cpu: this process's CPU time (with --threads 1, insensitive to "
                        "other processes sharing the cores)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--construct-envs", action="store_true",
                   help="build every DummyVecEnv environment instead of sharing one task")
    p.add_argument("--max-round-seconds", type=float, default=15.0,
                   help="skip a method whose round of n_envs episodes takes longer than this (predicted from "
                        "the previous n_envs, else timed on the warm-up round)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


# --------------------------------------------------------------------------- runners
def timed(build: Callable):
    start = time.perf_counter()
    value = build()
    return value, time.perf_counter() - start


def shared_task_copy(env: RuntimePruneEnv) -> RuntimePruneEnv:
    """A single environment sharing ``env``'s task and normaliser, with its own episode and RNG."""
    clone = copy.copy(env)
    clone.episodes = RuntimeEpisodes(env.task, env.static_ratios, env.normalizer)
    clone._np_random = None
    clone._np_random_seed = None
    return clone


class Case:
    """The three runners of one (model, n_envs), each running one round of ``n`` episodes."""

    def __init__(self, base: RuntimePruneEnv, kwargs: dict, n: int, args: argparse.Namespace, *, dummy: bool = True):
        from stable_baselines3.common.vec_env import DummyVecEnv

        self.n, self.base = n, base
        task = base.task
        self.num_layers = L = task.num_layers
        rng = np.random.default_rng(args.seed)
        alpha = task.cfg.alpha
        self.ratios = [rng.uniform(alpha, 1.0, (n, L)).astype(np.float32) for _ in range(BANK)]
        self.actions = [[r[:, t : t + 1].copy() for t in range(L)] for r in self.ratios]
        self.d_r = [torch.as_tensor(r, dtype=torch.float64) for r in self.ratios]
        indices = [rng.integers(len(task.source), size=n) for _ in range(BANK)]
        self.images = [task.source.get(i)[0] for i in indices]
        self.static = base.static_ratios
        self.k = {m: 0 for m in METHODS}
        self.construction = {}

        self.vec, self.construction["vecenv"] = timed(
            lambda: prune_env.make_vec_env("RuntimePrune-v0", n_envs=n, seed=args.seed, **kwargs)
        )
        self.vec.reset()

        def build_dummy():
            if args.construct_envs:
                envs = [RuntimePruneEnv(**kwargs) for _ in range(n)]
            else:
                envs = [base] + [shared_task_copy(base) for _ in range(n - 1)]
            venv = EpisodeMonitor(DummyVecEnv([lambda e=e: e for e in envs]), info_keywords=MONITOR_KEYWORDS)
            venv.seed(args.seed)
            venv.reset()
            return venv

        self.dummy = None
        if dummy:
            self.dummy, self.construction["dummy"] = timed(build_dummy)

    def bare(self) -> None:
        k = self.k["bare"] = (self.k["bare"] + 1) % BANK
        with torch.no_grad():
            self.base.task.net.run(self.images[k], self.d_r[k], self.static)

    def _steps(self, venv, method: str) -> None:
        k = self.k[method] = (self.k[method] + 1) % BANK
        for action in self.actions[k]:
            venv.step(action)

    def vecenv(self) -> None:
        self._steps(self.vec, "vecenv")

    def dummy_round(self) -> None:
        self._steps(self.dummy, "dummy")

    def runner(self, method: str) -> Callable[[], None]:
        return {"bare": self.bare, "vecenv": self.vecenv, "dummy": self.dummy_round}[method]

    def close(self) -> None:
        self.vec.close()
        if self.dummy is not None:
            self.dummy.close()


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def measure(round_fn: Callable[[], None], n: int, seconds: float, clock: Callable[[], float] = time.perf_counter) -> float:
    """Episodes per second over whole rounds lasting at least ``seconds`` of ``clock``."""
    rounds, start = 0, clock()
    while True:
        round_fn()
        rounds += 1
        elapsed = clock() - start
        if elapsed >= seconds:
            return n * rounds / elapsed


# --------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> dict:
    set_threads(args.threads)
    if args.clock == "cpu" and torch.get_num_threads() > 1:
        warnings.warn("--clock cpu sums the CPU time of all torch threads; use it with --threads 1", stacklevel=2)
    results = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "loadavg_start": list(os.getloadavg()),
        },
        "clock": args.clock,
        "seconds": args.seconds,
        "repeats": args.repeats,
        "dummy_envs": "constructed" if args.construct_envs else "shared task",
        "rows": [],
    }
    started = time.perf_counter()
    for model in args.models:
        kwargs = MODELS[model]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "randomly initialised" for mcifarnet
            base, first_build = timed(lambda kwargs=kwargs: RuntimePruneEnv(**kwargs))
            _, again_build = timed(lambda kwargs=kwargs: RuntimePruneEnv(**kwargs))
        print(f"# {model}: L={base.num_layers}, single env built in {first_build:.2f} s "
              f"(first) / {again_build:.2f} s (again)", flush=True)
        last_eps: dict[str, float] = {}  # per method, at the previous n_envs (a round's time grows with n)
        for n in sorted(args.n_envs):
            if not getattr(args, "no_progress", False):  # progress, as every script shows it (prune_env.progress)
                print(f"env_throughput: {model}, n_envs={n}: {len(METHODS)} methods x {args.repeats} rounds "
                      f"({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
            skipped: dict[str, str] = {}
            for method, eps in last_eps.items():
                if n / eps > args.max_round_seconds:
                    skipped[method] = f"a round of {n} episodes would take about {n / eps:.1f} s (at {eps:.0f} eps/s)"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                case = Case(base, kwargs, n, args, dummy="dummy" not in skipped)
            samples: dict[str, list[float]] = {m: [] for m in METHODS}
            for method in METHODS:  # warm-up round; skip a method whose round is far too slow
                if method in skipped:
                    continue
                _, warm = timed(case.runner(method))
                if warm > args.max_round_seconds:
                    skipped[method] = f"one round of {n} episodes took {warm:.1f} s"
            for _ in range(args.repeats):
                for method in METHODS:
                    if method not in skipped:
                        samples[method].append(measure(case.runner(method), n, args.seconds, CLOCKS[args.clock]))
            case.close()
            for method in METHODS:
                if samples[method]:
                    last_eps[method] = statistics.median(samples[method])
            row = {
                "model": model,
                "num_layers": base.num_layers,
                "n_envs": n,
                **{f"{m}_eps": (statistics.median(samples[m]) if samples[m] else None) for m in METHODS},
                "vecenv_over_bare": paired_ratio(samples["vecenv"], samples["bare"]),
                "vecenv_over_dummy": paired_ratio(samples["vecenv"], samples["dummy"]),
                "samples": samples,
                "skipped": skipped,
                "loadavg_1min": os.getloadavg()[0],
                "construction_s": {"single_first": first_build, "single_again": again_build, **case.construction},
            }
            results["rows"].append(row)
            print(format_row(row), flush=True)
    results["machine"]["loadavg_end"] = list(os.getloadavg())
    results["elapsed_s"] = time.perf_counter() - started
    return results


def paired_ratio(a: list[float], b: list[float]) -> float | None:
    """Median over repeats of ``a[i] / b[i]``: measurements taken side by side, so load drifts cancel."""
    return statistics.median(x / y for x, y in zip(a, b)) if a and b else None


def _ratio(r) -> str:
    return "-" if r is None else f"{r:.2f}x"


def _eps(v) -> str:
    return "skipped" if v is None else f"{v:,.0f}"


HEADER = ("| model | n_envs | bare forward eps/s | batched VecEnv eps/s | DummyVecEnv eps/s "
          "| VecEnv/bare | VecEnv/Dummy |\n|---|---:|---:|---:|---:|---:|---:|")


def format_row(r: dict) -> str:
    return (f"| {r['model']} | {r['n_envs']} | {_eps(r['bare_eps'])} | {_eps(r['vecenv_eps'])} | "
            f"{_eps(r['dummy_eps'])} | {_ratio(r['vecenv_over_bare'])} | {_ratio(r['vecenv_over_dummy'])} |")


def main(argv=None) -> None:
    args = parse_args(argv)
    results = run(args)
    m = results["machine"]
    print()
    print(f"{results['date']}, {m['cpu_count']} CPU cores, torch {m['torch']} with {m['torch_threads']} threads, "
          f"load average {m['loadavg_start'][0]:.2f} -> {m['loadavg_end'][0]:.2f}, {results['clock']} clock, "
          f"median of {results['repeats']} x >= {results['seconds']} s, total {results['elapsed_s']:.0f} s")
    print(HEADER)
    for row in results["rows"]:
        print(format_row(row))
    for row in results["rows"]:
        for method, why in row["skipped"].items():
            print(f"skipped {method} for {row['model']} n_envs={row['n_envs']}: {why}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
