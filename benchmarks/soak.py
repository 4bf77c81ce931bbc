#!/usr/bin/env python
"""Soak test: resident memory over a long run of the batched VecEnv and of agent training.

Samples the process's resident set size (``VmRSS``) along the way and reports whether it grew
after the first minute (allocator warm-up, caches and the first rollouts settle by then):

    python benchmarks/soak.py vecenv --steps 1000000 --out soak_vecenv.json
    python benchmarks/soak.py train --steps 1000000 --out soak_train.json

``vecenv`` steps ``BatchedPruneVecEnv`` (64 envs, random actions) for ``--steps`` layer steps;
``train`` runs ``train_agents.py``'s engine (the main job's agent and environment) for ``--steps``
environment steps with a callback that samples memory. Writes the samples and a summary as JSON.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from prune_env.cli import positive_int  # noqa: E402

WARM_UP_SECONDS = 60.0


def rss_mib() -> float:
    """This process's resident set size in MiB (Linux ``/proc/self/status``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("VmRSS not found in /proc/self/status (Linux only)")


class Sampler:
    """``(seconds, steps, RSS MiB)`` every ``every`` seconds."""

    def __init__(self, every: float = 5.0):
        self.start, self.every, self.samples, self._next = time.time(), every, [], 0.0

    def maybe(self, steps: int) -> None:
        elapsed = time.time() - self.start
        if elapsed >= self._next:
            self.samples.append((round(elapsed, 2), int(steps), round(rss_mib(), 1)))
            self._next = elapsed + self.every

    def summary(self) -> dict:
        after = [s for s in self.samples if s[0] >= WARM_UP_SECONDS] or self.samples[-1:]
        first, last, peak = after[0][2], self.samples[-1][2], max(s[2] for s in after)
        return {"rss_at_first_minute_mib": first, "rss_at_end_mib": last, "rss_peak_after_first_minute_mib": peak,
                "growth_after_first_minute_mib": round(last - first, 1), "seconds": self.samples[-1][0],
                "steps": self.samples[-1][1]}


def soak_vecenv(steps: int, n_envs: int, seed: int) -> Sampler:
    from prune_env.envs import BatchedPruneVecEnv

    venv = BatchedPruneVecEnv("RuntimePrune-v0", n_envs, {})
    venv.seed(seed)
    venv.reset()
    rng = np.random.default_rng(seed)
    sampler = Sampler()
    done = 0
    while done < steps:
        venv.step(rng.uniform(0.1, 1.0, size=(n_envs, 1)).astype(np.float32))
        done += n_envs
        sampler.maybe(done)
    sampler.samples.append((round(time.time() - sampler.start, 2), done, round(rss_mib(), 1)))
    return sampler


def soak_train(steps: int, seed: int, out_dir: str) -> Sampler:
    from stable_baselines3.common.callbacks import BaseCallback

    import agents.training as training
    from agents.config import RunConfig

    sampler = Sampler()

    class Sample(BaseCallback):
        def _on_step(self) -> bool:
            sampler.maybe(self.num_timesteps)
            return True

    original = training.CallbackList

    def with_sampler(callbacks):  # the engine builds its callbacks; add ours to them
        return original([*callbacks, Sample()])

    training.CallbackList = with_sampler
    try:
        training.run(RunConfig(timesteps=steps, seed=seed, out=out_dir, progress=False, references=False,
                                        checkpoint_every=100_000))
    finally:
        training.CallbackList = original
    # after the test-split evaluation and its plots (matplotlib's import and figures): apart from training
    sampler.after_run_mib = round(rss_mib(), 1)
    return sampler


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("vecenv", "train"))
    p.add_argument("--steps", type=positive_int, default=1_000_000)
    p.add_argument("--n-envs", type=positive_int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--run-dir", default="runs/soak", help="train: the run directory (must not hold a run)")
    p.add_argument("--out", default=None, help="JSON file for the samples and summary")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    sampler = soak_vecenv(args.steps, args.n_envs, args.seed) if args.what == "vecenv" else soak_train(
        args.steps, args.seed, args.run_dir)
    result = {"what": args.what, "summary": sampler.summary(), "samples": sampler.samples}
    if hasattr(sampler, "after_run_mib"):
        result["summary"]["rss_after_evaluation_mib"] = sampler.after_run_mib
    print(result["summary"])
    if args.out:
        from prune_env.io import write_json

        write_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
