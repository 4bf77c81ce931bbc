#!/usr/bin/env python
"""SIGKILL a training run at random moments, resume it, and measure what was lost.

Each trial starts ``train_agents.py`` (PPO, small rollouts, a checkpoint every ``--every`` steps),
kills it with SIGKILL a random time after it has written its first checkpoints, checks that the
checkpoint on disk loads, then resumes with ``--resume`` and checks that training continued from
it (the optimizer's update count carries over) instead of starting afresh. What was lost is the
progress at the kill not covered by the checkpoint: at least ``logged - saved`` steps, where
``logged`` is the step of the last rollout the run logged to TensorBoard before it died.

    python benchmarks/kill_resume.py --trials 5            # a table: saved, logged, lost, interval

Each trial takes about 15 s on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N_ENVS, N_STEPS = 8, 16  # a rollout: 128 steps


def _logged_timesteps(tb: Path) -> int:
    """The largest step of the TensorBoard scalars the run wrote (SB3 logs them at its step count; 0 if none)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    best = 0
    for run in tb.glob("*"):
        acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            best = max([best, *(int(e.step) for e in acc.Scalars(tag))])
    return best


def _command(out: Path, timesteps: int, every: int, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "train_agents.py"), "--env", "RuntimePrune-v0", "--algo", "ppo",
            "--timesteps", str(timesteps), "--n-envs", str(N_ENVS), "--checkpoint-every", str(every),
            "--hyperparams", f"n_steps={N_STEPS}", "batch_size=64", "n_epochs=1", "--no-progress", "--threads", "1",
            "--seed", "0", "--out", str(out), *extra]


def kill_and_resume(out: Path, *, every: int = 256, kill_after: int = 768, delay: float = 0.0, extra: int = 256,
                    timeout: float = 120.0) -> dict:
    """One trial in ``out``: train, SIGKILL once ``kill_after`` steps are checkpointed plus ``delay`` seconds,
    resume ``extra`` steps beyond the checkpoint. Returns what was saved, logged, lost and resumed."""
    from stable_baselines3 import PPO

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    state = out / "checkpoint_state.json"
    child = subprocess.Popen(_command(out, 10**6, every), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    seen, start = 0, time.monotonic()
    try:
        while seen < kill_after:
            if child.poll() is not None:
                raise RuntimeError(f"training exited early ({child.returncode}): {child.stderr.read()[-2000:]}")
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"no checkpoint of {kill_after} steps within {timeout} s")
            try:
                seen = json.loads(state.read_text())["num_timesteps"]
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                pass
            time.sleep(0.05)
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=60)
        child.stderr.close()
    saved_model = PPO.load(out / "checkpoint.zip", device="cpu")  # loadable after the kill
    saved = int(saved_model.num_timesteps)
    logged = _logged_timesteps(out / "tb")
    target = saved + extra
    done = subprocess.run(_command(out, target, every, "--resume"), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"resume failed ({done.returncode}): {done.stderr[-2000:]}")
    final = PPO.load(out / "model.zip", device="cpu")
    rollouts_after = -(-(target - saved) // (N_ENVS * N_STEPS))
    return {
        "checkpoint_every": every, "seen_before_kill": seen, "saved": saved, "logged": logged,
        "lost_at_least": max(0, logged - saved), "saved_state_steps": json.loads(state.read_text())["num_timesteps"],
        "final": int(final.num_timesteps), "updates_saved": int(saved_model._n_updates),
        "updates_final": int(final._n_updates),
        "continued": int(final._n_updates) == int(saved_model._n_updates) + rollouts_after,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--every", type=int, default=256, help="steps between checkpoints")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill delays")
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    rows = []
    for _ in range(args.trials):
        with tempfile.TemporaryDirectory() as tmp:
            row = kill_and_resume(Path(tmp) / "run", every=args.every, delay=rng.uniform(0.0, 1.5))
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| trial | checkpoint every | saved | logged at kill | lost (at least) | resumed from the checkpoint |")
    print("|---|---|---|---|---|---|")
    for i, r in enumerate(rows):
        print(f"| {i} | {r['checkpoint_every']} | {r['saved']} | {r['logged']} | {r['lost_at_least']} | {r['continued']} |")
    return rows


if __name__ == "__main__":
    main()
