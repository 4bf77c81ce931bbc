#!/usr/bin/env python
"""Steps per second of ``gym.make_vec``: the batched ``vector_entry_point`` against ``"sync"`` (and ``"async"``).

Both vector environments are built by Gymnasium's own ``gym.make_vec(env_id, num_envs, vectorization_mode=...)``
on the same environment keywords (default: the embedded default network, ``RuntimePrune-v0``)
with Gymnasium's default autoreset mode (next step), and stepped with the same bank of random
keep ratios. A step of the vector env counts ``num_envs`` environment steps, less the
sub-environments that were only resetting in it (next-step autoreset), as
``gymnasium.utils.performance.benchmark_vector_step`` counts them.

Measurements are interleaved (batched, sync, batched, ...) in one process, each for at least
``--seconds`` after a warm-up episode; the ratio is the median of the ratios of the measurements
taken side by side in the same repeat, which cancels most of the drift of a machine shared with
other work. ``--clock cpu`` (the default) times this process's CPU time: with one torch thread it
does not count the time the process waited for a core.

    python benchmarks/gym_vector_throughput.py                        # 64 envs, default network
    python benchmarks/gym_vector_throughput.py --num-envs 64 256 --repeats 5 --seconds 2 --modes sync async
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import prune_env  # noqa: E402,F401  (registers the ids)
from prune_env.cli import add_threads_option, parse_key_values, set_threads  # noqa: E402

BATCHED = "vector_entry_point"


def steps_per_second(envs: gym.vector.VectorEnv, actions: np.ndarray, seconds: float, clock) -> float:
    """Environment steps per second over whole steps for at least ``seconds`` of ``clock``."""
    done = np.zeros(envs.num_envs, dtype=bool)
    steps, i = 0, 0
    start = clock()
    while True:
        _, _, terminated, truncated, _ = envs.step(actions[i % len(actions)])
        steps += envs.num_envs - int(done.sum())  # a sub-environment that only reset took no step
        done = terminated | truncated
        i += 1
        elapsed = clock() - start
        if elapsed >= seconds:
            return steps / elapsed


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-id", default="RuntimePrune-v0")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                        help="environment keywords, e.g. budget=0.3 (or KEY:VALUE; a JSON object is read too)")
    parser.add_argument("--n-envs", "--num-envs", dest="num_envs", type=int, nargs="+", default=[64],
                        help="sub-environments per vector env (default 64)")
    parser.add_argument("--modes", nargs="+", default=["sync"], choices=["sync", "async"],
                        help="Gymnasium's vectorizations the batched env is compared with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.5, help="minimum duration of one measurement")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    add_threads_option(parser)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.clock == "cpu" and "async" in args.modes:
        print("note: --clock cpu does not count the async workers' processes; use --clock wall for async", file=sys.stderr)
    text = " ".join(args.env_kwargs).strip()
    try:
        env_kwargs = json.loads(text) if text.startswith("{") else parse_key_values(args.env_kwargs, "--env-kwargs")
    except (json.JSONDecodeError, argparse.ArgumentTypeError) as err:
        parser.error(str(err))
    rows = []
    for n in args.num_envs:
        envs, build = {}, {}
        for mode in (BATCHED, *args.modes):
            t0 = time.perf_counter()
            envs[mode] = gym.make_vec(args.env_id, num_envs=n, vectorization_mode=mode, **env_kwargs)
            build[mode] = time.perf_counter() - t0
        space = envs[BATCHED].action_space
        space.seed(0)
        actions = np.stack([space.sample() for _ in range(64)])
        for venv in envs.values():
            venv.reset(seed=0)
            for k in range(envs[BATCHED].unwrapped.env.num_layers + 1):  # warm-up: one whole episode
                venv.step(actions[k])
        measured: dict[str, list[float]] = {mode: [] for mode in envs}
        for _ in range(args.repeats):
            for mode, venv in envs.items():
                measured[mode].append(steps_per_second(venv, actions, args.seconds, clock))
        for mode in args.modes:
            ratios = [b / s for b, s in zip(measured[BATCHED], measured[mode])]
            rows.append({
                "num_envs": n, "mode": mode, "batched_sps": statistics.median(measured[BATCHED]),
                "other_sps": statistics.median(measured[mode]), "ratio": statistics.median(ratios),
                "ratios": ratios, "build_seconds": {BATCHED: build[BATCHED], mode: build[mode]},
            })
        for venv in envs.values():
            venv.close()
    print(f"{args.env_id} {env_kwargs or '(defaults)'}; {args.clock} clock; torch threads {torch.get_num_threads()}; "
          f"median of {args.repeats} interleaved measurements of >= {args.seconds} s; load average {os.getloadavg()[0]:.1f}")
    print("| num_envs | vectorization | vector_entry_point steps/s | other steps/s | ratio (median) | ratios "
          "| build s (batched / other) |")
    print("|---:|---|---:|---:|---:|---|---|")
    for r in rows:
        b = r["build_seconds"]
        print(f"| {r['num_envs']} | {r['mode']} | {r['batched_sps']:,.0f} | {r['other_sps']:,.0f} | {r['ratio']:.1f}x | "
              f"{', '.join(f'{x:.1f}' for x in r['ratios'])} | {b[BATCHED]:.1f} / {b[r['mode']]:.1f} |")
    result = {"env_id": args.env_id, "env_kwargs": env_kwargs, "clock": args.clock, "threads": torch.get_num_threads(),
              "python": platform.python_version(), "torch": torch.__version__, "gymnasium": gym.__version__, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
