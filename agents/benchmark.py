"""The pruning environments as a benchmark for RL methods: ``python -m agents.benchmark``.

Algorithms x seeds x named environment configurations (*suites*), each at a fixed step budget::

    python -m agents.benchmark run --suite default --workers 2          # the documented run
    python -m agents.benchmark run --suite smoke --algos ppo dqn --seeds 0 1 --out /tmp/bench
    python -m agents.benchmark run --suite fashion-mnist --checkpoint runs/fmnist/final.pt
    python -m agents.benchmark validate benchmark_results/default/runs/ppo/seed0.json
    python -m agents.benchmark report --suite default                   # re-aggregate only
    python -m agents.benchmark list

Per ``(suite, algorithm, seed)`` a run trains the agent for the suite's step budget on the
natively batched VecEnv (:func:`agents.training.make_env` / :func:`~agents.training.build_model`,
with the registry's hyper-parameters), evaluates its deterministic policy on the held-out test
split, records one deterministic test episode (:class:`prune_env.replay.RecordEpisode`) and
writes ``<out>/<suite>/runs/<algo>/seed<k>.json`` with the versions, the seed and the exact
command. Baselines (:mod:`prune_env.baselines`) are evaluated the same way without training. A
rerun skips every run whose JSON exists (``--force`` reruns). Runs are spread over ``--workers``
processes (spawn context, one thread each). Then, per suite, the library aggregates them
(:func:`prune_env.leaderboard.write_report`): ``results.csv``, ``summary.csv`` / ``summary.json``,
``leaderboard.md`` and ``learning_curves.png``; what is reported and how it is scored (the
fixed-scale test return, Student-t intervals over seeds) is described in :mod:`prune_env.leaderboard`.

This runner trains agents, so it lives on the agents' side (DESIGN.md: imports point down;
``prune_env`` never imports ``agents``); the library keeps what is about results (scoring,
intervals, tables, plots, replay validation).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import shlex
import sys
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

import prune_env
from agents.registry import env_kwargs_for
from agents.training import RunConfig, agent_policy, build_model, make_env, test_task
from prune_env.baselines import make_baseline
from prune_env.cli import add_threads_option
from prune_env.envs import VecDiscreteKeepRatio
from prune_env.envs.task import STATIC_TRADEOFF_RATE, PruningTask, TaskConfig
from prune_env.envs.vec_env import BatchedPruneVecEnv
from prune_env.envs.wrappers import DEFAULT_LEVELS, PURL_LEVELS, AMCWrapper, VecAMCWrapper
from prune_env.evaluation import evaluate_policies
from prune_env.ids import RUNTIME, STATIC
from prune_env.io import versions, write_json
from prune_env.leaderboard import binned_curve, fixed_scale_return, reference_beta, result_path, validate_result, write_report
from prune_env.policies import as_policy
from prune_env.replay import RecordEpisode

DEFAULT_OUT = "benchmark_results"


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
        amc: wrap the environment in :class:`prune_env.envs.wrappers.VecAMCWrapper` (AMC state, clamping).
        hyperparams: overrides of the registry's hyper-parameters that make the method (e.g. AMC's
            exploration noise ``action_noise_std``); the suite's overrides go on top.
        description: one line, with the method it follows.
    """

    name: str
    algo: str
    env_id: str = RUNTIME
    env_kwargs: dict = field(default_factory=dict)
    levels: tuple[float, ...] | None = None
    amc: bool = False
    hyperparams: dict = field(default_factory=dict)
    description: str = ""


def _bench_algos() -> dict[str, BenchAlgo]:
    plain = {
        "recurrent_ppo": "the paper's agent: sb3-contrib RecurrentPPO (LSTM), layer encoders on raw GAP features, Eq. 13",
        "ppo": "PPO, MLP policy with Eq. 13", "a2c": "A2C, MLP policy with Eq. 13", "trpo": "TRPO (sb3-contrib)",
        "sac": "SAC", "td3": "TD3", "ddpg": "DDPG", "tqc": "TQC (sb3-contrib)", "ars": "ARS (sb3-contrib), linear policy",
        "crossq": "CrossQ (sb3-contrib)",
    }
    algos = {name: BenchAlgo(name, name, description=text) for name, text in plain.items()}
    # deterministic actors explore only through action noise: the registry's TD3 / DDPG settings add
    # rl_zoo3's usual Gaussian noise, std 0.1 (``action_noise_std``, applied once, by build_model)
    for name in ("td3", "ddpg"):
        algos[name] = BenchAlgo(name, name, description=f"{plain[name]}, Gaussian action noise std 0.1")
    algos["dqn"] = BenchAlgo("dqn", "dqn", levels=tuple(DEFAULT_LEVELS), description="DQN on 4 keep-ratio levels, sparse reward")
    algos["qrdqn"] = BenchAlgo("qrdqn", "qrdqn", levels=tuple(DEFAULT_LEVELS),
                               description="QR-DQN on 4 keep-ratio levels, sparse reward (= the RNP-style agent)")
    algos["rnp"] = BenchAlgo("rnp", "qrdqn", levels=tuple(DEFAULT_LEVELS),
                             description="RNP-style (Lin et al. 2017): k = 4 keep-ratio levels per layer, Q-learning (QR-DQN) "
                                         "on the runtime features, sparse reward")
    algos["purl_dqn"] = BenchAlgo("purl_dqn", "dqn", env_kwargs={"reward": "dense"}, levels=PURL_LEVELS,
                                  description="PuRL-style (Gupta et al. 2020): DQN, dense per-layer rewards, "
                                              "keep ratios 0.1..1.0 in steps of 0.1")
    algos["amc_ddpg"] = BenchAlgo("amc_ddpg", "ddpg", env_id=STATIC, amc=True, hyperparams={"action_noise_std": 0.3},
                                  description="AMC-style (He et al. 2018): DDPG on StaticPrune-v0, AMC layer-embedding state, "
                                              "action clamping to the budget")
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


# --------------------------------------------------------------------------- training-time logging
class EpisodeLog(BaseCallback):
    """An SB3 callback recording ``(timestep, sparse return, trained-on return)`` of every finished episode."""

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


# --------------------------------------------------------------------------- recording test episodes
def record_runtime_episode(env_kwargs: dict, policy: Any, seed: int) -> dict:
    """One deterministic ``RuntimePrune-v0`` test episode of ``policy``, as an :class:`EpisodeRecord` dict."""
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


# --------------------------------------------------------------------------- one run
def _task_kwargs(env_kwargs: dict) -> dict:
    names = {f.name for f in fields(TaskConfig)}
    return {k: v for k, v in env_kwargs.items() if k in names}


def run_baseline(job: Job) -> dict:
    """Evaluate a baseline on the test split, its return in the training env and one recorded episode."""
    start = time.time()
    test = PruningTask(TaskConfig(**{**_task_kwargs(job.env_kwargs), "split": "test"}))
    baseline = make_baseline(job.algo, test, seed=job.seed)
    metrics = baseline.evaluate()
    constraint = baseline.constraint
    if hasattr(baseline.runtime_policy, "reseed"):
        baseline.runtime_policy.reseed(job.seed)
    test_return = fixed_scale_return(baseline.task, baseline.runtime_policy, baseline.static_ratios, reference_beta(test),
                                     constraint)
    if baseline.env_kwargs is not None:
        train_kwargs = {**job.env_kwargs, **baseline.env_kwargs}
    else:
        train_kwargs = {**job.env_kwargs, "tradeoff_rate": STATIC_TRADEOFF_RATE,
                        "static_policy": [float(r) for r in baseline.static_ratios]}
    if hasattr(baseline.runtime_policy, "reseed"):
        baseline.runtime_policy.reseed(job.seed + 1)
    returns = _policy_returns(train_kwargs, baseline.runtime_policy, job.last_n, min(job.n_envs, job.last_n), job.seed,
                              baseline.net_transform)
    record, note = None, ""
    if baseline.env_kwargs is not None:
        if hasattr(baseline.runtime_policy, "reseed"):
            baseline.runtime_policy.reseed(job.seed + 2)
        record = record_runtime_episode({**job.env_kwargs, **baseline.env_kwargs, "split": "test"}, baseline.runtime_policy,
                                        job.seed)
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

    The model is built as :func:`agents.training.build_model` builds it (the registry's
    hyper-parameters, exploration noise included, under the job's overrides).
    """
    spec = _bench_algos()[job.algo]
    start = time.time()
    torch.manual_seed(job.seed)
    base_kwargs = {**job.env_kwargs, **(job.static_env_kwargs if spec.env_id == STATIC else {}), **spec.env_kwargs}
    if spec.levels is None and not spec.amc:
        venv = make_env(spec.env_id, spec.algo, job.n_envs, job.seed, base_kwargs)  # registry env keywords merged there
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
    log = EpisodeLog()
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
        state = None
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
    write_json(result, job.path)
    return result


def _worker_init(threads: int = 1) -> None:
    from prune_env.cli import set_threads

    set_threads(threads)
    warnings.filterwarnings("ignore")


def _run_job_safely(job: Job) -> tuple[str, int, str | None, float]:
    """For the process pool: run a job, report ``(algo, seed, error or None, seconds)``."""
    start = time.time()
    try:
        run_job(job)
        return job.algo, job.seed, None, time.time() - start
    except Exception:  # noqa: BLE001  (one failed run must not stop the others)
        return job.algo, job.seed, traceback.format_exc(), time.time() - start


# --------------------------------------------------------------------------- command line
def build_jobs(suite: Suite, algos: Sequence[str], seeds: Sequence[int], out: str, *, timesteps: int, n_envs: int,
               last_n: int, env_kwargs: dict, command: str) -> list[Job]:
    known = _bench_algos()
    jobs = []
    for algo in algos:
        if not is_baseline(algo) and algo not in known:
            raise ValueError(f"unknown algorithm {algo!r}: one of {sorted(known)} or a baseline {sorted(BASELINE_DESCRIPTIONS)}")
        hp = {} if is_baseline(algo) else {**known[algo].hyperparams, **suite.overrides(known[algo].algo)}
        for seed in seeds:
            jobs.append(Job(suite.name, algo, int(seed), out, timesteps, n_envs, last_n, dict(env_kwargs),
                            dict(suite.static_env_kwargs), hp, command))
    return jobs


def run_jobs(jobs: list[Job], workers: int, *, log: Callable[[str], None] = print,
             threads: int = 1) -> list[tuple[str, int, str | None, float]]:
    """Run the jobs (in ``workers`` spawned processes when ``workers > 1``, ``threads`` torch threads each);
    returns per-job outcomes."""
    outcomes = []
    if workers <= 1:
        _worker_init(threads)
        for job in jobs:
            outcome = _run_job_safely(job)
            outcomes.append(outcome)
            log(_outcome_line(outcome))
        return outcomes
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                initargs=(threads,)) as pool:
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
    p = argparse.ArgumentParser(prog="python -m agents.benchmark", description=__doc__.split("\n\n")[0],
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
    add_threads_option(run)
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
    command = shlex.join(["python", "-m", "agents.benchmark", *argv])
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
        paths = write_report(args.out, args.suite, description=get_suite(args.suite).description, figure=args.figure)
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
    jobs = build_jobs(suite, names, seeds, args.out, timesteps=args.timesteps or suite.timesteps,
                      n_envs=args.n_envs or suite.n_envs, last_n=args.last_n or suite.last_n, env_kwargs=env_kwargs,
                      command=command)
    todo = [j for j in jobs if args.force or not j.path.is_file()]
    print(f"suite {suite.name}: {len(jobs)} runs ({len(names)} methods x {len(seeds)} seeds), "
          f"{len(jobs) - len(todo)} already finished (skipped), {len(todo)} to run on {args.workers} worker(s)")
    start = time.time()
    outcomes = run_jobs(todo, args.workers, threads=args.threads)
    failed = [o for o in outcomes if o[2]]
    print(f"ran {len(outcomes)} runs in {time.time() - start:.1f}s ({len(failed)} failed)")
    paths = write_report(args.out, suite.name, description=suite.description, command=command, figure=args.figure)
    print(Path(paths["leaderboard_md"]).read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
