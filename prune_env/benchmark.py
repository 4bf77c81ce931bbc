"""The pruning environments as a benchmark for RL methods: ``python -m prune_env.benchmark``.

Algorithms x seeds x named environment configurations (*suites*), each at a fixed step budget::

    python -m prune_env.benchmark run --suite default --workers 2          # the documented run
    python -m prune_env.benchmark run --suite smoke --algos ppo dqn --seeds 0 1 --out /tmp/bench
    python -m prune_env.benchmark run --suite fashion-mnist --checkpoint runs/fmnist/final.pt
    python -m prune_env.benchmark validate benchmark_results/default/runs/ppo/seed0.json
    python -m prune_env.benchmark report --suite default                   # re-aggregate only
    python -m prune_env.benchmark list

Per ``(suite, algorithm, seed)`` a run trains the agent for the suite's step budget on the
natively batched VecEnv (``agents.training.make_env`` / ``build_model``), evaluates its
deterministic policy on the held-out test split, records one deterministic test episode
(:class:`prune_env.replay.RecordEpisode`) and writes ``<out>/<suite>/runs/<algo>/seed<k>.json``
with the versions, the seed and the exact command. Baselines (:mod:`prune_env.baselines`) are
evaluated the same way without training. A rerun skips every run whose JSON exists
(``--force`` reruns). Runs are spread over ``--workers`` processes (spawn context, one thread
each). Then, per suite: ``results.csv`` (one row per run), ``summary.csv`` / ``summary.json``
(per algorithm: mean and 95% interval over seeds), ``leaderboard.md`` and
``learning_curves.png``.

Reported per run:

* ``final_return``: the mean *sparse* return ``R_acc + R_bud`` (the final step's ``reward_acc +
  reward_budget``) of the last ``last_n`` training episodes, so that dense-reward agents (PuRL)
  are on the same scale; ``final_train_return`` is the reward the agent was trained on. For
  baselines, the mean over ``last_n`` episodes of the policy in a fresh training environment.
  The accuracy term is ``-L / beta`` with ``beta`` a moving average of the agent's own loss, so
  the return measures the loss relative to the recent loss and the budget penalty: compare
  test accuracy at a met budget first.
* test split: top-1 accuracy, mean MAC ratio, stored-parameter ratio, fraction of inputs
  within the MAC budget, whether the parameter budget is met, and ``test_return``: the mean
  over test images of ``-L / beta_0 + R_bud`` with ``beta_0`` *fixed* for the suite (the mean
  calibration loss of the uniform keep-ratio network meeting the budget) and ``R_bud`` on the
  method's own budget (MACs per input for runtime methods, stored parameters for static ones):
  unlike ``final_return`` it compares policies on one scale;
* wall-clock seconds (training and evaluation).

Intervals are Student-t 95% intervals over seeds: ``mean ± t_{0.975, n-1} s / sqrt(n)`` (none
for one seed; zero width for deterministic baselines).

``prune_env`` never imports ``agents`` at module import time (DESIGN.md: imports point down).
This module *runs* agents, so it imports ``agents`` lazily inside the functions that train them
(:func:`run_agent`); importing ``prune_env.benchmark`` (and evaluating baselines, validating
records, aggregating results) needs nothing of ``agents``. It lives in ``prune_env`` so that
``python -m prune_env.benchmark`` works wherever the package is installed.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import json
import math
import multiprocessing as mp
import os
import platform
import shlex
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from prune_env.envs.task import STATIC_TRADEOFF_RATE

RUNTIME, STATIC = "RuntimePrune-v0", "StaticPrune-v0"
DEFAULT_OUT = "benchmark_results"
CURVE_BINS = 40


# --------------------------------------------------------------------------- algorithms
@dataclass(frozen=True)
class BenchAlgo:
    """How the benchmark trains one method.

    Attributes:
        name: the benchmark's name.
        algo: the ``agents.registry`` algorithm it builds (hyper-parameters from there).
        env_id: the environment it trains on.
        env_kwargs: environment keywords on top of the suite's (e.g. the dense reward).
        levels: keep-ratio levels of a discrete-action agent (None: continuous).
        amc: wrap the environment in :class:`prune_env.baselines.VecAMCWrapper` (AMC state, clamping).
        action_noise: std of Gaussian exploration noise for deterministic off-policy actors
            (in SB3's scaled action units), or None.
        description: one line, with the method it follows.
    """

    name: str
    algo: str
    env_id: str = RUNTIME
    env_kwargs: dict = field(default_factory=dict)
    levels: tuple[float, ...] | None = None
    amc: bool = False
    action_noise: float | None = None
    description: str = ""


def _bench_algos() -> dict[str, BenchAlgo]:
    from prune_env.baselines import PURL_LEVELS, RNP_LEVELS
    from prune_env.envs.wrappers import DEFAULT_LEVELS

    plain = {
        "recurrent_ppo": "the paper's agent: sb3-contrib RecurrentPPO (LSTM), layer encoders on raw GAP features, Eq. 13",
        "ppo": "PPO, MLP policy with Eq. 13", "a2c": "A2C, MLP policy with Eq. 13", "trpo": "TRPO (sb3-contrib)",
        "sac": "SAC", "td3": "TD3", "ddpg": "DDPG", "tqc": "TQC (sb3-contrib)", "ars": "ARS (sb3-contrib), linear policy",
        "crossq": "CrossQ (sb3-contrib)",
    }
    algos = {name: BenchAlgo(name, name, description=text) for name, text in plain.items()}
    # deterministic actors explore only through action noise, which the registry's defaults leave out
    # (SB3's default is none); the usual Gaussian noise of rl_zoo3's TD3 / DDPG settings, std 0.1:
    for name in ("td3", "ddpg"):
        algos[name] = BenchAlgo(name, name, action_noise=0.1, description=f"{plain[name]}, Gaussian action noise std 0.1")
    algos["dqn"] = BenchAlgo("dqn", "dqn", levels=tuple(DEFAULT_LEVELS), description="DQN on 4 keep-ratio levels, sparse reward")
    algos["qrdqn"] = BenchAlgo("qrdqn", "qrdqn", levels=tuple(DEFAULT_LEVELS),
                               description="QR-DQN on 4 keep-ratio levels, sparse reward (= the RNP-style agent)")
    algos["rnp"] = BenchAlgo("rnp", "qrdqn", levels=RNP_LEVELS,
                             description="RNP-style (Lin et al. 2017): k = 4 keep-ratio levels per layer, Q-learning (QR-DQN) on the runtime features, sparse reward")
    algos["purl_dqn"] = BenchAlgo("purl_dqn", "dqn", env_kwargs={"reward": "dense"}, levels=PURL_LEVELS,
                                  description="PuRL-style (Gupta et al. 2020): DQN, dense per-layer rewards, keep ratios 0.1..1.0 in steps of 0.1")
    algos["amc_ddpg"] = BenchAlgo("amc_ddpg", "ddpg", env_id=STATIC, amc=True, action_noise=0.3,
                                  description="AMC-style (He et al. 2018): DDPG on StaticPrune-v0, AMC layer-embedding state, action clamping to the budget")
    return algos


BASELINE_DESCRIPTIONS = {
    "uniform": "uniform runtime keep ratio meeting the MAC budget, learned u_r ranking (FBS-like)",
    "l1_static": "uniform static keep ratio meeting the parameter budget, filter L1 ranking (Li et al. 2017)",
    "bn_static": "uniform static keep ratio meeting the parameter budget, BN |gamma| ranking (Network Slimming)",
    "static_uniform": "uniform static keep ratio meeting the parameter budget, learned u_s ranking",
    "random": "random keep ratio per layer and input, expected MACs = budget",
}


def is_baseline(name: str) -> bool:
    return name in BASELINE_DESCRIPTIONS


# --------------------------------------------------------------------------- suites
#: tiny hyper-parameters so that every algorithm makes a few updates in a smoke run
_SMOKE_ON_POLICY = {"n_steps": 8, "batch_size": 32, "n_epochs": 2}
_SMOKE_OFF_POLICY = {"learning_starts": 16, "batch_size": 16, "buffer_size": 2_000, "gradient_steps": 1}


def smoke_hyperparams(algo: str) -> dict:
    """Tiny overrides for ``algo`` (a registry name) that keep a smoke run to seconds."""
    if algo in ("ppo", "recurrent_ppo", "trpo"):
        return {k: v for k, v in _SMOKE_ON_POLICY.items() if not (algo == "trpo" and k == "n_epochs")}
    if algo == "a2c":
        return {"n_steps": 4}
    if algo == "ars":
        return {"n_delta": 2, "n_top": 1}
    return dict(_SMOKE_OFF_POLICY)


@dataclass
class Suite:
    """A named environment configuration with its step budget and defaults.

    Attributes:
        name: the suite's name.
        description: what it is.
        env_kwargs: environment keywords shared by every run (``RuntimePrune-v0`` keywords; the
            ``StaticPrune-v0`` runs add ``static_env_kwargs``).
        timesteps: environment steps (layer decisions) per training run.
        seeds: default seeds.
        algos: default algorithms.
        baselines: baselines evaluated without training.
        n_envs: episodes run together in the batched VecEnv.
        last_n: training episodes the final return averages over.
        static_env_kwargs: extra keywords for ``StaticPrune-v0``.
        hyperparams: per registry algorithm, overrides of the registry's ``fast`` preset (a
            callable ``algo -> dict`` or a dict).
        needs_checkpoint: the suite needs ``--checkpoint`` (skipped with a message without it).
    """

    name: str
    description: str
    env_kwargs: dict
    timesteps: int
    seeds: tuple[int, ...] = (0, 1, 2)
    algos: tuple[str, ...] = ()
    baselines: tuple[str, ...] = ("uniform", "l1_static", "bn_static", "static_uniform", "random")
    n_envs: int = 64
    last_n: int = 500
    static_env_kwargs: dict = field(default_factory=lambda: {"eval_batch": 64})
    hyperparams: Callable[[str], dict] | dict = field(default_factory=dict)
    needs_checkpoint: bool = False

    def overrides(self, algo: str) -> dict:
        hp = self.hyperparams(algo) if callable(self.hyperparams) else self.hyperparams.get(algo, {})
        return dict(hp)


#: overrides of the registry's fast preset in the full-size suites: QR-DQN's default 200 quantiles
#: make its pairwise quantile loss (batch x 200 x 200) cost ~0.5 s per gradient step on one CPU
#: thread, about 25 minutes per 50k-step run; 25 quantiles (TQC's default) cost 64 times less.
FULL_SUITE_HYPERPARAMS = {"qrdqn": {"policy_kwargs.n_quantiles": 25}}

DEFAULT_ALGOS = ("recurrent_ppo", "ppo", "a2c", "sac", "td3", "ddpg", "tqc", "dqn", "qrdqn", "purl_dqn", "amc_ddpg")

#: every algorithm of a suite computes its rewards on the same split (the registry's defaults may
#: name another for the main job: recurrent PPO's runtime agent trains on the training split)
SAME_DATA = {"split": "val"}

SUITES: dict[str, Suite] = {
    "default": Suite("default", "digitnet on scikit-learn digits, the environments' defaults (keep-0.5 budgets, R_r = 1)",
                     env_kwargs=dict(SAME_DATA), timesteps=50_000, algos=DEFAULT_ALGOS, hyperparams=FULL_SUITE_HYPERPARAMS),
    "default-fixed-beta": Suite("default-fixed-beta", "as default, with the loss scale beta frozen at its calibrated value "
                                "(loss_lambda = 1): the return no longer follows the agent's own loss",
                                env_kwargs={"loss_lambda": 1.0, **SAME_DATA}, timesteps=50_000, algos=DEFAULT_ALGOS,
                                hyperparams=FULL_SUITE_HYPERPARAMS),
    "fashion-mnist": Suite("fashion-mnist", "M-CifarNet (width 0.25) on Fashion-MNIST from --checkpoint, keep-0.5 budgets",
                           env_kwargs={"model": "mcifarnet", "dataset": "fashion-mnist", **SAME_DATA}, timesteps=50_000,
                           algos=DEFAULT_ALGOS, n_envs=32, needs_checkpoint=True, hyperparams=FULL_SUITE_HYPERPARAMS),
    "smoke": Suite("smoke", "the default environment at tiny step budgets, for tests", env_kwargs=dict(SAME_DATA), timesteps=256,
                   seeds=(0, 1), algos=("ppo", "dqn"), baselines=("uniform", "random"), n_envs=8, last_n=16,
                   static_env_kwargs={"eval_batch": 16}, hyperparams=smoke_hyperparams),
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise ValueError(f"suite must be one of {sorted(SUITES)}, got {name!r}")
    return SUITES[name]


# --------------------------------------------------------------------------- jobs
@dataclass
class Job:
    """One ``(suite, algorithm, seed)`` run and the options it was asked with."""

    suite: str
    algo: str
    seed: int
    out: str
    timesteps: int
    n_envs: int
    last_n: int
    env_kwargs: dict
    static_env_kwargs: dict
    hyperparams: dict
    command: str

    @property
    def path(self) -> Path:
        return result_path(self.out, self.suite, self.algo, self.seed)


def result_path(out: str | os.PathLike, suite: str, algo: str, seed: int) -> Path:
    return Path(out) / suite / "runs" / algo / f"seed{seed}.json"


def versions() -> dict[str, str]:
    """Versions of what produced a result."""
    import gymnasium
    import sb3_contrib
    import stable_baselines3
    import torch

    import prune_env

    return {"prune_env": prune_env.__version__, "torch": torch.__version__, "stable_baselines3": stable_baselines3.__version__,
            "sb3_contrib": sb3_contrib.__version__, "gymnasium": gymnasium.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def _write_json(obj: Any, path: Path) -> Path:
    from prune_env.evaluation import write_json

    return write_json(obj, path)


# --------------------------------------------------------------------------- training-time logging
def _episode_logger():
    """An SB3 callback recording ``(timestep, sparse return, trained-on return)`` of every finished episode."""
    from stable_baselines3.common.callbacks import BaseCallback

    class EpisodeLog(BaseCallback):
        def __init__(self):
            super().__init__()
            self.steps: list[int] = []
            self.returns: list[float] = []
            self.train_returns: list[float] = []

        def _on_step(self) -> bool:
            for info, done in zip(self.locals.get("infos", []), self.locals.get("dones", [])):
                if done and "reward_acc" in info:
                    self.steps.append(int(self.num_timesteps))
                    self.returns.append(float(info["reward_acc"]) + float(info["reward_budget"]))
                    if "episode" in info:
                        self.train_returns.append(float(info["episode"]["r"]))
            return True

    return EpisodeLog()


def binned_curve(steps: Sequence[int], returns: Sequence[float], total: int, bins: int = CURVE_BINS) -> dict:
    """Mean return of the episodes ending in each of ``bins`` equal step intervals of ``[0, total]``
    (empty bins carry the previous value forward; NaN before the first episode)."""
    edges = np.linspace(0, max(int(total), 1), bins + 1)
    steps_a, ret_a = np.asarray(steps, dtype=np.float64), np.asarray(returns, dtype=np.float64)
    values, last = [], float("nan")
    for i in range(bins):
        inside = (steps_a > edges[i]) & (steps_a <= edges[i + 1]) if i else (steps_a >= edges[0]) & (steps_a <= edges[1])
        if inside.any():
            last = float(ret_a[inside].mean())
        values.append(last)
    return {"steps": [float(v) for v in edges[1:]], "return": values}


# --------------------------------------------------------------------------- recording test episodes
def record_runtime_episode(env_kwargs: dict, policy: Any, seed: int) -> dict:
    """One deterministic ``RuntimePrune-v0`` test episode of ``policy``, as an :class:`EpisodeRecord` dict."""
    import gymnasium as gym

    import prune_env  # noqa: F401  (registers the ids)
    from prune_env.policies import as_policy
    from prune_env.replay import RecordEpisode

    env = RecordEpisode(gym.make(RUNTIME, **env_kwargs), RUNTIME, env_kwargs)
    policy = as_policy(policy, env.unwrapped.num_layers)
    obs, _ = env.reset(seed=seed)
    policy.reset(1)
    done = False
    while not done:
        ratio = float(policy(np.asarray(obs, dtype=np.float32)[None])[0])
        obs, _, terminated, truncated, _ = env.step(np.array([ratio], dtype=np.float32))
        done = terminated or truncated
    env.close()
    return asdict(env.last_record)


def _policy_returns(env_kwargs: dict, policy: Any, n_episodes: int, n_envs: int, seed: int,
                    net_transform: Callable | None) -> list[float]:
    """Sparse returns of ``n_episodes`` (rounded up to whole batches) of a fixed policy in a fresh training env."""
    from prune_env.envs.vec_env import BatchedPruneVecEnv
    from prune_env.policies import as_policy

    venv = BatchedPruneVecEnv(RUNTIME, n_envs, env_kwargs)
    env = venv.env
    if net_transform is not None:  # beta stays calibrated on the trained network, as for every method
        net_transform(env.task.net)
    policy = as_policy(policy, env.num_layers)
    venv.seed(seed)
    obs = venv.reset()
    returns: list[float] = []
    while len(returns) < n_episodes:
        policy.reset(n_envs)
        for _ in range(env.num_layers):
            obs, _, dones, infos = venv.step(policy(obs)[:, None].astype(np.float32))
        returns.extend(float(i["reward_acc"]) + float(i["reward_budget"]) for i in infos)
    venv.close()
    return returns


# --------------------------------------------------------------------------- fixed-scale return
def reference_beta(task: Any) -> float:
    """``beta_0`` of a suite: the mean calibration (validation) loss of the network at the uniform
    keep ratio of the budget, no static pruning (what ``RuntimePrune-v0`` starts its moving average at).

    ``task`` must be the suite's runtime task: with ``R_r = 0`` the runtime ratio would be ignored.
    """
    return float(task.calibrated_normalizer(task.budget_keep_ratio, 1.0).beta)


def fixed_scale_return(task: Any, runtime_policy: Any, static_ratios: Any, beta0: float, constraint: str,
                       batch_size: int = 512) -> float:
    """Mean over ``task``'s split of ``-L / beta0 + R_bud``, ``R_bud`` on the MACs of each input
    (``constraint="macs"``) or on the stored parameters (``"params"``), with the task's ``alpha_budget``."""
    import torch

    from prune_env.policies import as_policy
    from prune_env.rewards import budget_penalty

    policy = as_policy(runtime_policy, task.num_layers)
    static = np.broadcast_to(np.asarray(static_ratios, dtype=np.float64), (task.num_layers,)).copy()
    params = float(task.costs.params_ratio(task.stored_counts(static[None])[0]))
    total, count = 0.0, 0
    with torch.no_grad():
        for begin in range(0, len(task.source), batch_size):
            images, labels = task.source.get(np.arange(begin, min(begin + batch_size, len(task.source))))
            state = task.rollout(images, policy, static)
            losses = task.losses(state.logits, labels).cpu().numpy().astype(np.float64)
            if constraint == "params":
                penalty = budget_penalty(np.full(len(losses), params), task.params_budget, task.cfg.alpha_budget)
            else:
                penalty = budget_penalty(task.costs.macs_ratio(state.kept).numpy(), task.macs_budget, task.cfg.alpha_budget)
            total += float((-losses / beta0 + penalty).sum())
            count += len(losses)
    return total / count


# --------------------------------------------------------------------------- one run
def _task_kwargs(env_kwargs: dict) -> dict:
    from prune_env.envs.task import TaskConfig

    names = {f.name for f in fields(TaskConfig)}
    return {k: v for k, v in env_kwargs.items() if k in names}


def run_baseline(job: Job) -> dict:
    """Evaluate a baseline on the test split, its return in the training env and one recorded episode."""
    from prune_env.baselines import make_baseline
    from prune_env.envs.task import PruningTask, TaskConfig

    start = time.time()
    test = PruningTask(TaskConfig(**{**_task_kwargs(job.env_kwargs), "split": "test"}))
    baseline = make_baseline(job.algo, test, seed=job.seed)
    metrics = baseline.evaluate()
    constraint = baseline.constraint
    if hasattr(baseline.runtime_policy, "reseed"):
        baseline.runtime_policy.reseed(job.seed)
    test_return = fixed_scale_return(baseline.task, baseline.runtime_policy, baseline.static_ratios, reference_beta(test), constraint)
    if baseline.env_kwargs is not None:
        train_kwargs = {**job.env_kwargs, **baseline.env_kwargs}
    else:
        train_kwargs = {**job.env_kwargs, "tradeoff_rate": STATIC_TRADEOFF_RATE, "static_policy": [float(r) for r in baseline.static_ratios]}
    if hasattr(baseline.runtime_policy, "reseed"):
        baseline.runtime_policy.reseed(job.seed + 1)
    returns = _policy_returns(train_kwargs, baseline.runtime_policy, job.last_n, min(job.n_envs, job.last_n), job.seed,
                              baseline.net_transform)
    record, note = None, ""
    if baseline.env_kwargs is not None:
        if hasattr(baseline.runtime_policy, "reseed"):
            baseline.runtime_policy.reseed(job.seed + 2)
        record = record_runtime_episode({**job.env_kwargs, **baseline.env_kwargs, "split": "test"}, baseline.runtime_policy, job.seed)
    else:
        note = "not replayable with gym.make: the baseline re-ranks channels by changing the network (rerank_static)"
    final = float(np.mean(returns))
    return {
        "kind": "baseline", "env_id": RUNTIME, "description": baseline.description, "timesteps": 0,
        "constraint": constraint, "test_return": test_return,
        "final_return": final, "final_train_return": final, "final_episodes": len(returns),
        "test": _test_summary(metrics), "train_seconds": 0.0, "wall_seconds": time.time() - start,
        "curve": None, "episode_record": record, "episode_record_note": note,
    }


def _test_summary(metrics: dict) -> dict:
    keys = ("accuracy", "loss", "macs_ratio", "speedup", "params_ratio", "within_budget", "budget", "params_budget",
            "keep_ratio_mean", "keep_ratio_std", "static_keep_ratios", "num_images", "uniform_keep_ratio",
            "uniform_static_ratio", "random_bounds", "expected_macs_ratio")
    out = {k: metrics[k] for k in keys if k in metrics}
    out["params_within_budget"] = float(metrics["params_ratio"] <= metrics["params_budget"] + 1e-9)
    return out


def run_agent(job: Job) -> dict:
    """Train one agent for ``job.timesteps`` steps, evaluate it on the test split, record a test episode.

    Imports ``agents`` here, not at module level (see the module docstring).
    """
    import gymnasium as gym
    import torch
    from stable_baselines3.common.noise import NormalActionNoise

    import prune_env
    from agents.training import RunConfig, agent_policy, build_model, make_env, test_task
    from prune_env.baselines import AMCWrapper, VecAMCWrapper
    from prune_env.envs import VecDiscreteKeepRatio
    from prune_env.envs.task import PruningTask, TaskConfig
    from prune_env.evaluation import evaluate_policies
    from prune_env.replay import RecordEpisode

    spec = _bench_algos()[job.algo]
    start = time.time()
    torch.manual_seed(job.seed)
    base_kwargs = {**job.env_kwargs, **(job.static_env_kwargs if spec.env_id == STATIC else {}), **spec.env_kwargs}
    if spec.levels is None and not spec.amc:
        venv = make_env(spec.env_id, spec.algo, job.n_envs, job.seed, base_kwargs)  # registry env keywords merged there
        from agents.registry import env_kwargs_for

        env_kwargs = env_kwargs_for(spec.algo, spec.env_id, base_kwargs)
    else:
        env_kwargs = dict(base_kwargs)
        venv = prune_env.make_vec_env(spec.env_id, job.n_envs, seed=job.seed, **env_kwargs)
        if spec.levels is not None:
            venv = VecDiscreteKeepRatio(venv, spec.levels)
        if spec.amc:
            venv = VecAMCWrapper(venv, clamp=True)
    cfg = RunConfig(env_id=spec.env_id, algo=spec.algo, seed=job.seed, n_envs=job.n_envs, hyperparams=dict(job.hyperparams),
                    device="cpu", progress=False, command=job.command)
    model = build_model(cfg, spec.env_id, venv, None)
    if spec.action_noise is not None:
        n_act = int(np.prod(venv.action_space.shape))
        model.action_noise = NormalActionNoise(np.zeros(n_act), spec.action_noise * np.ones(n_act))
    log = _episode_logger()
    model.learn(job.timesteps, callback=log, progress_bar=False)
    train_seconds = time.time() - start
    meta = {"algo": spec.algo, "levels": list(spec.levels) if spec.levels is not None else None}
    policy = agent_policy(model, meta)
    task = venv.get_attr("task")[0]
    test = test_task(task)
    test_kwargs = {**env_kwargs, "split": "test"}
    if spec.env_id == RUNTIME:
        static = venv.get_attr("static_ratios")[0]
        metrics = evaluate_policies(test, policy, static)
        test_return = fixed_scale_return(test, policy, static, reference_beta(test), "macs")
        record = record_runtime_episode(test_kwargs, policy, job.seed)
    else:
        recorder = RecordEpisode(gym.make(STATIC, **test_kwargs), STATIC, test_kwargs)
        env = AMCWrapper(recorder, clamp=True) if spec.amc else recorder
        obs, _ = env.reset(seed=job.seed)
        done, state = False, None
        for t in range(task.num_layers):
            action, state = model.predict(obs[None], state=state, episode_start=np.array([t == 0]), deterministic=True)
            obs, _, terminated, truncated, info = env.step(np.asarray(action).reshape(-1))
        static = np.asarray(info["keep_ratios"], dtype=np.float64)
        metrics = evaluate_policies(test, 1.0, static)
        runtime_test = PruningTask(TaskConfig(**{**_task_kwargs(job.env_kwargs), "split": "test"}))
        test_return = fixed_scale_return(test, 1.0, static, reference_beta(runtime_test), "params")
        record = asdict(recorder.last_record)
        env.close()
    venv.close()
    last = log.returns[-job.last_n:]
    last_train = log.train_returns[-job.last_n:]
    return {
        "kind": "agent", "env_id": spec.env_id, "description": spec.description, "registry_algo": spec.algo,
        "constraint": "macs" if spec.env_id == RUNTIME else "params", "test_return": test_return,
        "timesteps": int(model.num_timesteps), "levels": meta["levels"], "env_kwargs": env_kwargs,
        "final_return": float(np.mean(last)) if last else float("nan"),
        "final_train_return": float(np.mean(last_train)) if last_train else float("nan"),
        "final_episodes": len(last), "episodes": len(log.returns),
        "test": _test_summary(metrics), "train_seconds": train_seconds, "wall_seconds": time.time() - start,
        "curve": binned_curve(log.steps, log.returns, job.timesteps), "episode_record": record, "episode_record_note": "",
    }


def run_job(job: Job) -> dict:
    """Run one job and write its result JSON (atomically); returns the result."""
    result = run_baseline(job) if is_baseline(job.algo) else run_agent(job)
    result.update(suite=job.suite, algo=job.algo, seed=job.seed, n_envs=job.n_envs, last_n=job.last_n,
                  suite_env_kwargs=job.env_kwargs, hyperparams=job.hyperparams, command=job.command,
                  versions=versions(), status="done", finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    _write_json(result, job.path)
    return result


def _worker_init() -> None:
    import warnings

    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")


def _run_job_safely(job: Job) -> tuple[str, int, str | None, float]:
    """For the process pool: run a job, report ``(algo, seed, error or None, seconds)``."""
    start = time.time()
    try:
        run_job(job)
        return job.algo, job.seed, None, time.time() - start
    except Exception:  # noqa: BLE001  (one failed run must not stop the others)
        return job.algo, job.seed, traceback.format_exc(), time.time() - start


# --------------------------------------------------------------------------- aggregation
def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the Student-t interval of the mean (NaN bounds for fewer than 2 values)."""
    a = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if a.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(a.mean())
    if a.size < 2:
        return mean, float("nan"), float("nan")
    from scipy import stats

    half = float(stats.t.ppf(0.5 + confidence / 2, a.size - 1) * a.std(ddof=1) / math.sqrt(a.size))
    return mean, mean - half, mean + half


def load_results(out: str | os.PathLike, suite: str) -> list[dict]:
    """Every finished run of ``suite`` under ``out``."""
    root = Path(out) / suite / "runs"
    results = []
    for path in sorted(root.glob("*/seed*.json")):
        data = json.loads(path.read_text())
        if data.get("status") == "done":
            data["_path"] = str(path)
            results.append(data)
    return results


METRICS = (
    ("accuracy", lambda r: r["test"]["accuracy"]),
    ("macs_ratio", lambda r: r["test"]["macs_ratio"]),
    ("params_ratio", lambda r: r["test"]["params_ratio"]),
    ("within_budget", lambda r: r["test"]["within_budget"]),
    ("params_within_budget", lambda r: r["test"]["params_within_budget"]),
    ("final_return", lambda r: r["final_return"]),
    ("test_return", lambda r: r.get("test_return", float("nan"))),
    ("wall_seconds", lambda r: r["wall_seconds"]),
)


def summarize(results: list[dict]) -> list[dict]:
    """Per algorithm: number of seeds and ``(mean, low, high)`` of every metric; ranked.

    Ranking: methods that meet their budget on average first (runtime methods: mean MAC ratio
    within the MAC budget; static ones: stored-parameter ratio within the parameter budget),
    each group by test accuracy.
    """
    by_algo: dict[str, list[dict]] = {}
    for r in results:
        by_algo.setdefault(r["algo"], []).append(r)
    rows = []
    for algo, runs in by_algo.items():
        first = runs[0]
        row = {"algo": algo, "kind": first["kind"], "env_id": first["env_id"], "timesteps": first["timesteps"],
               "seeds": sorted(r["seed"] for r in runs), "n": len(runs), "description": first.get("description", ""),
               "budget": first["test"]["budget"], "params_budget": first["test"]["params_budget"]}
        for name, get in METRICS:
            mean, lo, hi = t_interval([get(r) for r in runs])
            row[name] = mean
            row[f"{name}_low"], row[f"{name}_high"] = lo, hi
        row["constraint"] = first.get("constraint", "macs")
        if row["constraint"] == "params":
            row["budget_met"] = bool(row["params_ratio"] <= row["params_budget"] + 1e-9)
        else:
            row["budget_met"] = bool(row["macs_ratio"] <= row["budget"] + 1e-9)
        rows.append(row)
    rows.sort(key=lambda r: (not r["budget_met"], -(r["accuracy"] if math.isfinite(r["accuracy"]) else -1)))
    return rows


def _pm(row: dict, key: str, scale: float = 1.0, digits: int = 3) -> str:
    mean, lo, hi = row[key], row[f"{key}_low"], row[f"{key}_high"]
    if not math.isfinite(mean):
        return "n/a"
    text = f"{scale * mean:.{digits}f}"
    if math.isfinite(lo) and math.isfinite(hi):
        text += f" ± {scale * (hi - lo) / 2:.{digits}f}"
    return text


def leaderboard_markdown(rows: list[dict], suite: Suite | None = None, command: str | Sequence[str] = "") -> str:
    """The leaderboard as a markdown table (mean ± half-width of the 95% t-interval over seeds)."""
    lines = []
    if suite is not None:
        lines.append(f"Suite `{suite.name}`: {suite.description}.")
    if rows:
        static = [r for r in rows if r["constraint"] == "params"]
        params = f", parameter budget {static[0]['params_budget']:.4f} (static methods, R_r = 0)" if static else ""
        lines.append(f"MAC budget {rows[0]['budget']:.4f} of dense{params}; "
                     "mean ± half-width of the 95% Student-t interval over seeds; test split.")
    for c in ([command] if isinstance(command, str) else command):
        if c:
            lines.append(f"Command: `{c}`")
    lines.append("")
    lines.append("| # | method | kind | env | steps | seeds | test top-1 (%) | MAC ratio | params ratio | "
                 "inputs within MAC budget (%) | budget met | test return (fixed β) | final return | wall s |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for i, r in enumerate(rows, 1):
        lines.append(
            f"| {i} | `{r['algo']}` | {r['kind']} | {r['env_id'].split('-')[0]} | {r['timesteps']} | {r['n']} | "
            f"{_pm(r, 'accuracy', 100, 2)} | {_pm(r, 'macs_ratio')} | {_pm(r, 'params_ratio')} | "
            f"{_pm(r, 'within_budget', 100, 1)} | {('yes' if r['budget_met'] else 'no') + (' (params)' if r['constraint'] == 'params' else '')} | "
            f"{_pm(r, 'test_return')} | {_pm(r, 'final_return')} | "
            f"{_pm(r, 'wall_seconds', 1, 1)} |"
        )
    return "\n".join(lines) + "\n"


def write_results_csv(results: list[dict], path: Path) -> Path:
    cols = ["suite", "algo", "kind", "env_id", "seed", "timesteps", "accuracy", "macs_ratio", "params_ratio", "within_budget",
            "params_within_budget", "test_return", "final_return", "final_train_return", "train_seconds", "wall_seconds", "budget", "params_budget"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in sorted(results, key=lambda r: (r["algo"], r["seed"])):
            t = r["test"]
            w.writerow([r["suite"], r["algo"], r["kind"], r["env_id"], r["seed"], r["timesteps"], t["accuracy"], t["macs_ratio"],
                        t["params_ratio"], t["within_budget"], t["params_within_budget"], r.get("test_return", float("nan")),
                        r["final_return"], r["final_train_return"],
                        r["train_seconds"], r["wall_seconds"], t["budget"], t["params_budget"]])
    return path


def write_summary_csv(rows: list[dict], path: Path) -> Path:
    cols = [k for k in rows[0] if k not in ("seeds", "description")] if rows else []
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return path


def plot_learning_curves(results: list[dict], path: Path, title: str = "") -> Path:
    """Sparse episode return vs environment steps, mean over seeds with the shaded 95% t-interval;
    baselines as dashed lines at their return. One panel per environment trained on."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agents = [r for r in results if r.get("curve")]
    envs = sorted({r["env_id"] for r in agents}) or [RUNTIME]
    widths = [1.0 if env_id == RUNTIME else 0.6 for env_id in envs]
    fig, axes = plt.subplots(1, len(envs), figsize=(6.0 * sum(widths) + 2.6, 4.4), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    cmap = plt.get_cmap("tab20")
    for ax, env_id in zip(axes[0], envs):
        algos = sorted({r["algo"] for r in agents if r["env_id"] == env_id})
        shown: list[float] = []
        for i, algo in enumerate(algos):
            runs = [r for r in agents if r["algo"] == algo and r["env_id"] == env_id]
            steps = np.asarray(runs[0]["curve"]["steps"])
            curves = np.asarray([r["curve"]["return"] for r in runs if len(r["curve"]["return"]) == len(steps)], dtype=np.float64)
            stats = [t_interval(curves[:, j]) for j in range(curves.shape[1])]
            mean = np.array([s[0] for s in stats])
            lo = np.array([s[1] for s in stats])
            hi = np.array([s[2] for s in stats])
            color = cmap((2 * i) % 20 if i < 10 else (2 * i + 1) % 20)
            ax.plot(steps, mean, color=color, lw=1.4, label=f"{algo} (n={len(curves)})")
            ok = np.isfinite(lo) & np.isfinite(hi)
            if ok.any():
                ax.fill_between(steps[ok], lo[ok], hi[ok], color=color, alpha=0.12, linewidth=0)
            shown.extend(mean[np.isfinite(mean)].tolist())
        if env_id == RUNTIME:
            bases = sorted({r["algo"] for r in results if r["kind"] == "baseline"})
            for j, name in enumerate(bases):
                value = float(np.mean([r["final_return"] for r in results if r["algo"] == name]))
                ax.axhline(value, color="0.35", ls=(0, (1 + 2 * j, 2)), lw=1, label=f"{name} (baseline)")
                shown.append(value)
        if shown:  # the means decide the range; wide intervals of 3 seeds are clipped, not the curves
            low, high = min(shown), max(shown)
            ax.set_ylim(low - 0.6 * abs(low) - 0.1, high + 0.6 * abs(high) + 0.1)
        ax.set_yscale("symlog", linthresh=1.0)  # budget penalties are exponential: keep -1 and -100 readable
        ax.set_xlabel("environment steps (layer decisions)")
        ax.set_ylabel("episode return R_acc + R_bud (symlog)")
        ax.set_title(f"{title} {env_id}".strip(), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(out: str | os.PathLike, suite_name: str, *, command: str = "", figure: str | None = None) -> dict[str, Path]:
    """Aggregate the finished runs of a suite into CSV, JSON, markdown and PNG; returns the paths."""
    suite = get_suite(suite_name)
    results = load_results(out, suite_name)
    if not results:
        raise FileNotFoundError(f"no finished runs of suite {suite_name!r} under {out}")
    root = Path(out) / suite_name
    from collections import Counter

    # the commands that produced the runs, most runs first (a partial rerun adds its own)
    commands = [c for c, _ in Counter(r.get("command", "") for r in results).most_common() if c] or [command]
    rows = summarize(results)
    paths = {
        "results_csv": write_results_csv(results, root / "results.csv"),
        "summary_csv": write_summary_csv(rows, root / "summary.csv"),
        "summary_json": _write_json({"suite": suite_name, "commands": commands, "interval": "95% Student-t over seeds",
                                     "rows": rows}, root / "summary.json"),
        "curves_png": plot_learning_curves(results, root / "learning_curves.png", title=f"suite {suite_name}:"),
    }
    md = leaderboard_markdown(rows, suite, commands)
    paths["leaderboard_md"] = root / "leaderboard.md"
    paths["leaderboard_md"].write_text(md)
    if figure:
        import shutil

        Path(figure).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(paths["curves_png"], figure)
        paths["figure"] = Path(figure)
    return paths


# --------------------------------------------------------------------------- validation
def validate_result(path: str | os.PathLike, rtol: float = 1e-5) -> tuple[bool, str]:
    """Replay the episode record of a result JSON (:func:`prune_env.replay.validate`); ``(ok, message)``."""
    from prune_env.replay import EpisodeRecord, validate

    data = json.loads(Path(path).read_text())
    record = data.get("episode_record")
    if not record:
        return False, f"{path}: no episode record ({data.get('episode_record_note') or 'none stored'})"
    result = validate(EpisodeRecord(**record), rtol=rtol)
    label = f"{data.get('suite')}/{data.get('algo')}/seed{data.get('seed')}"
    if result.ok:
        return True, f"{label}: the recorded test episode replays exactly (reward {result.replayed_reward:.6f})"
    return False, f"{label}: replay differs: {result.mismatches}"


# --------------------------------------------------------------------------- command line
def build_jobs(suite: Suite, algos: Sequence[str], seeds: Sequence[int], out: str, *, timesteps: int, n_envs: int,
               last_n: int, env_kwargs: dict, command: str) -> list[Job]:
    known = _bench_algos()
    jobs = []
    for algo in algos:
        if not is_baseline(algo) and algo not in known:
            raise ValueError(f"unknown algorithm {algo!r}: one of {sorted(known)} or a baseline {sorted(BASELINE_DESCRIPTIONS)}")
        hp = {} if is_baseline(algo) else suite.overrides(known[algo].algo)
        for seed in seeds:
            jobs.append(Job(suite.name, algo, int(seed), out, timesteps, n_envs, last_n, dict(env_kwargs),
                            dict(suite.static_env_kwargs), hp, command))
    return jobs


def run_jobs(jobs: list[Job], workers: int, *, log: Callable[[str], None] = print) -> list[tuple[str, int, str | None, float]]:
    """Run the jobs (in ``workers`` spawned processes when ``workers > 1``); returns per-job outcomes."""
    outcomes = []
    if workers <= 1:
        _worker_init()
        for job in jobs:
            outcome = _run_job_safely(job)
            outcomes.append(outcome)
            log(_outcome_line(outcome))
        return outcomes
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init) as pool:
        futures = [pool.submit(_run_job_safely, job) for job in jobs]
        for future in cf.as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            log(_outcome_line(outcome))
    return outcomes


def _outcome_line(outcome: tuple[str, int, str | None, float]) -> str:
    algo, seed, error, seconds = outcome
    if error:
        return f"  FAILED {algo} seed {seed} after {seconds:.1f}s:\n{error}"
    return f"  done   {algo} seed {seed} in {seconds:.1f}s"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m prune_env.benchmark", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run a suite (skipping finished runs), then write the report")
    run.add_argument("--suite", default="default", help=f"one of {sorted(SUITES)} (default: %(default)s)")
    run.add_argument("--algos", nargs="+", default=None, help="algorithms and baselines (default: the suite's)")
    run.add_argument("--baselines", nargs="*", default=None, help="baselines (default: the suite's; none with an empty list)")
    run.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default: the suite's)")
    run.add_argument("--timesteps", type=int, default=None, help="steps per training run (default: the suite's)")
    run.add_argument("--n-envs", type=int, default=None, help="episodes run together (default: the suite's)")
    run.add_argument("--last-n", type=int, default=None, help="episodes the final return averages (default: the suite's)")
    run.add_argument("--workers", type=int, default=1, help="processes (default: 1, in-process)")
    run.add_argument("--out", default=DEFAULT_OUT, help="results directory (default: %(default)s)")
    run.add_argument("--checkpoint", default=None, help="network checkpoint (needed by the fashion-mnist suite)")
    run.add_argument("--data-root", default=None, help="dataset root (fashion-mnist)")
    run.add_argument("--force", action="store_true", help="rerun finished runs")
    run.add_argument("--figure", default=None, help="also copy the learning-curve PNG here")
    rep = sub.add_parser("report", help="aggregate finished runs into CSV / JSON / markdown / PNG")
    rep.add_argument("--suite", default="default")
    rep.add_argument("--out", default=DEFAULT_OUT)
    rep.add_argument("--figure", default=None)
    val = sub.add_parser("validate", help="replay the recorded test episode of result JSON files")
    val.add_argument("results", nargs="+", metavar="RESULT.json")
    val.add_argument("--rtol", type=float, default=1e-5)
    sub.add_parser("list", help="list suites, algorithms and baselines")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["run", *argv]
    args = build_parser().parse_args(argv)
    command = shlex.join(["python", "-m", "prune_env.benchmark", *argv])
    if args.command == "list":
        for s in SUITES.values():
            print(f"suite {s.name}: {s.description}; {s.timesteps} steps, seeds {list(s.seeds)}, algos {list(s.algos)}")
        for a in _bench_algos().values():
            print(f"algo {a.name}: {a.description} [{a.env_id}]")
        for name, text in BASELINE_DESCRIPTIONS.items():
            print(f"baseline {name}: {text}")
        return 0
    if args.command == "validate":
        ok_all = True
        for path in args.results:
            ok, message = validate_result(path, args.rtol)
            print(("OK   " if ok else "FAIL ") + message)
            ok_all &= ok
        return 0 if ok_all else 1
    if args.command == "report":
        paths = write_report(args.out, args.suite, figure=args.figure)
        print(Path(paths["leaderboard_md"]).read_text())
        return 0
    suite = get_suite(args.suite)
    env_kwargs = dict(suite.env_kwargs)
    if suite.needs_checkpoint:
        if not args.checkpoint:
            print(f"suite {suite.name!r} skipped: it needs a trained network, pass --checkpoint PATH "
                  f"(e.g. from finetune_cnn.py on {suite.env_kwargs.get('dataset')})", file=sys.stderr)
            return 0
        env_kwargs["checkpoint"] = args.checkpoint
    elif args.checkpoint:
        env_kwargs["checkpoint"] = args.checkpoint
    if args.data_root:
        env_kwargs["data_root"] = args.data_root
    baselines = list(suite.baselines if args.baselines is None else args.baselines)
    algos = list(suite.algos if args.algos is None else args.algos)
    names = algos + [b for b in baselines if b not in algos]
    seeds = list(suite.seeds if args.seeds is None else args.seeds)
    jobs = build_jobs(suite, names, seeds, args.out, timesteps=args.timesteps or suite.timesteps, n_envs=args.n_envs or suite.n_envs,
                      last_n=args.last_n or suite.last_n, env_kwargs=env_kwargs, command=command)
    todo = [j for j in jobs if args.force or not j.path.is_file()]
    print(f"suite {suite.name}: {len(jobs)} runs ({len(names)} methods x {len(seeds)} seeds), "
          f"{len(jobs) - len(todo)} already finished (skipped), {len(todo)} to run on {args.workers} worker(s)")
    start = time.time()
    outcomes = run_jobs(todo, args.workers)
    failed = [o for o in outcomes if o[2]]
    print(f"ran {len(outcomes)} runs in {time.time() - start:.1f}s ({len(failed)} failed)")
    paths = write_report(args.out, suite.name, command=command, figure=args.figure)
    print(Path(paths["leaderboard_md"]).read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
