"""The pruning environments as a benchmark for RL methods: ``python -m agents.benchmark``.

Algorithms x seeds x named environment configurations (*suites*), each at a fixed step budget::

    python -m agents.benchmark run --suite default --algos recurrent_ppo ppo --seeds 0 1 2 3 4   # main job's budget
    python -m agents.benchmark run --suite smoke --algos ppo dqn --seeds 0 1 --out /tmp/bench
    python -m agents.benchmark run --suite fashion-mnist --checkpoint fm/warm.pt
    python -m agents.benchmark run --suite default --backend ray --address auto    # runs as Ray tasks on a cluster
    python -m agents.benchmark validate benchmark_results/default/runs/ppo/seed0.json
    python -m agents.benchmark report --suite default                   # re-aggregate only
    python -m agents.benchmark list

Per ``(suite, method, seed)`` a run trains the agent for the suite's step budget on the natively
batched VecEnv (:func:`agents.training.make_env` / :func:`~agents.training.build_model`, with the
registry's hyper-parameters), scores its deterministic policy on the held-out test split
(:mod:`prune_env.benchmark.scoring`: top-1, the fixed-beta test objective, uniform at the run's own MACs,
the run's allocations shuffled across inputs), records one deterministic test episode
(:class:`prune_env.benchmark.replay.RecordEpisode`) and writes ``<out>/<suite>/runs/<method>/seed<k>.json``
with the versions, the seed, the exact command and its learning curves (against steps and
wall-clock seconds). Baselines (:mod:`prune_env.evaluation.baselines`) and references (the best static
allocation, the per-input label oracle; :mod:`prune_env.evaluation.references`) are scored the same way
without training. A rerun skips every run whose JSON exists (``--force`` reruns). Runs go to a
local process pool (``--workers``; spawn context, one thread each) or, with ``--backend ray``, to
Ray tasks (:mod:`agents.ray_backend`); either way the driver's result files are the same. Then,
per suite, the library aggregates them (:func:`prune_env.benchmark.leaderboard.write_report`):
``results.csv``, ``summary.csv`` / ``summary.json``, ``pairwise.csv`` (Welch tests, Holm-adjusted),
``leaderboard.md``, ``learning_curves.png`` / ``learning_curves.csv``.

This runner trains agents, so it lives on the agents' side (DESIGN.md: imports point down;
``prune_env`` never imports ``agents``); the library keeps what is about results (scoring,
intervals, significance, tables, plots, replay validation).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
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
from agents.arguments import check_env_kwargs, check_hyperparams
from agents.registry import env_kwargs_for
from agents.training import RunConfig, agent_policy, atomic_model_save, build_model, make_env, test_task
from prune_env.benchmark.leaderboard import (
    binned_curve,
    binned_curves,
    fixed_scale_return,
    reference_beta,
    result_path,
    validate_result,
    write_report,
)
from prune_env.benchmark.replay import RecordEpisode
from prune_env.benchmark.scoring import iso_mac_uniform, score_runtime, score_static
from prune_env.cli import add_threads_option, parse_key_values
from prune_env.envs import VecDiscreteKeepRatio
from prune_env.envs.task import STATIC_TRADEOFF_RATE, PruningTask, TaskConfig
from prune_env.envs.vec_env import BatchedPruneVecEnv
from prune_env.envs.wrappers import DEFAULT_LEVELS, PURL_LEVELS, AMCWrapper, VecAMCWrapper
from prune_env.evaluation.baselines import make_baseline
from prune_env.ids import ENV_IDS, RUNTIME, STATIC
from prune_env.io import file_sha256, versions, write_json
from prune_env.policies import as_policy

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
        "sac": "SAC", "td3": "TD3", "ddpg": "DDPG", "tqc": "TQC (sb3-contrib)",
        "ars": "ARS V2 (sb3-contrib ARS; linear policy on states normalised by running statistics)",
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


REFERENCE_DESCRIPTIONS = {
    "best_static": "best per-layer keep ratios, the same for every input, searched on the suite's training split "
                   "(coordinate exchange under the MAC budget): the best a non-adaptive agent can do",
    "oracle": "per-input oracle with the labels: one uniform level per input under the mean MAC budget "
              "(multiple-choice knapsack); top-1 of the accuracy knapsack, objective of the loss knapsack: an upper bound",
}


def is_baseline(name: str) -> bool:
    return name in BASELINE_DESCRIPTIONS


def is_reference(name: str) -> bool:
    return name in REFERENCE_DESCRIPTIONS


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
        references: references evaluated without training (:data:`REFERENCE_DESCRIPTIONS`).
        n_envs: episodes run together in the batched VecEnv.
        last_n: training episodes the final return averages over.
        static_env_kwargs: extra keywords for ``StaticPrune-v0``.
        hyperparams: per registry algorithm, overrides of the registry's ``fast`` preset (a
            callable ``algo -> dict`` or a dict).
        needs_checkpoint: the suite needs ``--checkpoint`` (skipped with a message without it).
        search_rounds: rounds of the best-static-allocation search.
    """

    name: str
    description: str
    env_kwargs: dict
    timesteps: int
    seeds: tuple[int, ...] = (0, 1, 2)
    algos: tuple[str, ...] = ()
    baselines: tuple[str, ...] = ("uniform", "l1_static", "bn_static", "static_uniform", "random")
    references: tuple[str, ...] = ()
    n_envs: int = 64
    last_n: int = 500
    static_env_kwargs: dict = field(default_factory=lambda: {"eval_batch": 64})
    hyperparams: Callable[[str], dict] | dict = field(default_factory=dict)
    needs_checkpoint: bool = False
    search_rounds: int = 40

    def overrides(self, algo: str) -> dict:
        hp = self.hyperparams(algo) if callable(self.hyperparams) else self.hyperparams.get(algo, {})
        return dict(hp)


#: overrides of the registry's fast preset in the full-size suites: QR-DQN's default 200 quantiles
#: make its pairwise quantile loss (batch x 200 x 200) cost ~0.5 s per gradient step on one CPU
#: thread, about 25 minutes per 50k-step run; 25 quantiles (TQC's default) cost 64 times less.
#: CrossQ's sb3-contrib default critics are 2048 units wide with batch renormalisation: more than 16 minutes for
#: 20k steps on one loaded CPU thread; the suites give it the 64 x 64 networks of every other off-policy method.
FULL_SUITE_HYPERPARAMS = {"qrdqn": {"policy_kwargs.n_quantiles": 25}, "crossq": {"policy_kwargs.net_arch": [64, 64]}}

DEFAULT_ALGOS = ("recurrent_ppo", "ppo", "a2c", "sac", "td3", "ddpg", "tqc", "dqn", "qrdqn", "purl_dqn", "amc_ddpg")
#: the suites with headroom: every registered algorithm, the named methods (AMC, PuRL, RNP = qrdqn)
ALL_ALGOS = ("recurrent_ppo", "ppo", "a2c", "trpo", "ars", "sac", "td3", "ddpg", "tqc", "crossq", "dqn", "qrdqn",
             "purl_dqn", "amc_ddpg")
REFERENCES = ("best_static", "oracle")

#: every algorithm of a legacy suite computes its rewards on the same split (the registry's defaults may
#: name another for the main job: recurrent PPO's runtime agent trains on the training split)
SAME_DATA = {"split": "val"}
#: the suites with headroom train every algorithm on the training split, as the main job does (the
#: 144-image validation split of the embedded default is overfitted, docs/benchmarks.md section 1)
TRAIN_DATA = {"split": "train"}
#: steps of the suites with headroom: the main job's (recurrent PPO needs them at keep 0.3)
HEADROOM_STEPS = 300_000


def _headroom_suite(name: str, description: str, **env: Any) -> Suite:
    return Suite(name, description, env_kwargs={**TRAIN_DATA, **env}, timesteps=HEADROOM_STEPS, seeds=(0, 1, 2, 3, 4),
                 algos=ALL_ALGOS, references=REFERENCES, hyperparams=FULL_SUITE_HYPERPARAMS)


SUITES: dict[str, Suite] = {
    "default": _headroom_suite("default", "digitnet on scikit-learn digits at the main job's budget: keep 0.3 "
                               "(0.1005 of dense MACs) held on average over the inputs", budget=0.3, budget_mode="average"),
    "default-per-input": _headroom_suite("default-per-input", "as default with the paper's per-input budget (Eq. 10, "
                                         "moving beta)", budget=0.3, budget_mode="per_input"),
    "sparsity05": _headroom_suite("sparsity05", "digitnet on digits at the paper's sparsity 0.5 (0.2533 of dense MACs), "
                                  "average budget", budget=0.5, budget_mode="average"),
    "sparsity05-per-input": _headroom_suite("sparsity05-per-input", "digitnet on digits at sparsity 0.5, the paper's "
                                            "per-input budget", budget=0.5, budget_mode="per_input"),
    "fashion-mnist": Suite("fashion-mnist", "M-CifarNet (width from the checkpoint, 0.25 intended) on Fashion-MNIST from "
                           "--checkpoint, keep 0.4 (0.177 of dense MACs) on average over the inputs",
                           env_kwargs={"model": "mcifarnet", "dataset": "fashion-mnist", **TRAIN_DATA, "budget": 0.4,
                                       "budget_mode": "average"},
                           timesteps=HEADROOM_STEPS, seeds=(0, 1, 2, 3, 4), algos=ALL_ALGOS, references=REFERENCES,
                           needs_checkpoint=True, hyperparams=FULL_SUITE_HYPERPARAMS, search_rounds=8),
    "legacy": Suite("legacy", "digitnet on digits, the environments' defaults (keep-0.5 budgets per input, R_r = 1), "
                    "rewards on the validation split (the former default suite)",
                    env_kwargs=dict(SAME_DATA), timesteps=50_000, algos=DEFAULT_ALGOS, hyperparams=FULL_SUITE_HYPERPARAMS),
    "legacy-fixed-beta": Suite("legacy-fixed-beta", "as legacy, with the loss scale beta frozen at its calibrated value "
                               "(loss_lambda = 1): the return no longer follows the agent's own loss",
                               env_kwargs={"loss_lambda": 1.0, **SAME_DATA}, timesteps=50_000, algos=DEFAULT_ALGOS,
                               hyperparams=FULL_SUITE_HYPERPARAMS),
    "smoke": Suite("smoke", "the default suite's environment at tiny step budgets, for tests",
                   env_kwargs={**TRAIN_DATA, "budget": 0.3, "budget_mode": "average"}, timesteps=256,
                   seeds=(0, 1), algos=("ppo", "dqn"), baselines=("uniform", "random"), references=REFERENCES, n_envs=8,
                   last_n=16, static_env_kwargs={"eval_batch": 16}, hyperparams=smoke_hyperparams, search_rounds=1),
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise ValueError(f"suite must be one of {sorted(SUITES)}, got {name!r}")
    return SUITES[name]


# --------------------------------------------------------------------------- jobs
@dataclass
class Job:
    """One ``(suite, method, seed)`` run and the options it was asked with."""

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
    search_rounds: int = 40
    #: torch device of the agent's networks (the environments follow ``env_kwargs``)
    device: str = "cpu"

    @property
    def path(self) -> Path:
        return result_path(self.out, self.suite, self.algo, self.seed)


# --------------------------------------------------------------------------- training-time logging
class EpisodeLog(BaseCallback):
    """An SB3 callback recording, for every finished episode, the timestep, the wall-clock seconds since
    training began, the sparse return, the trained-on return, the loss and the MAC ratio."""

    def __init__(self):
        super().__init__()
        self.start = time.time()
        self.steps: list[int] = []
        self.seconds: list[float] = []
        self.returns: list[float] = []
        self.train_returns: list[float] = []
        self.losses: list[float] = []
        self.macs: list[float] = []

    def _on_training_start(self) -> None:
        self.start = time.time()

    def _on_step(self) -> bool:
        now = time.time() - self.start
        for info, done in zip(self.locals.get("infos", []), self.locals.get("dones", [])):
            if done and "reward_acc" in info:
                self.steps.append(int(self.num_timesteps))
                self.seconds.append(now)
                self.returns.append(float(info["reward_acc"]) + float(info["reward_budget"]))
                self.losses.append(float(info.get("loss", float("nan"))))
                self.macs.append(float(info.get("macs_ratio", float("nan"))))
                if "episode" in info:
                    self.train_returns.append(float(info["episode"]["r"]))
        return True

    def curves(self, total_steps: int, beta0: float) -> dict:
        """The training episodes' fixed-beta objective ``-L / beta0`` and MAC ratio, binned against steps
        (``[0, total_steps]``) and against wall-clock seconds (``[0, the last episode's time]``)."""
        columns = {"objective": [-loss / beta0 for loss in self.losses], "macs_ratio": self.macs}
        return {"steps": binned_curves(self.steps, columns, total_steps),
                "seconds": binned_curves(self.seconds, columns, max(self.seconds, default=1.0))}


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
                    net_transform: Callable | None) -> tuple[list[float], list[float], list[float]]:
    """Sparse returns, losses and MAC ratios of ``n_episodes`` (rounded up to whole batches) of a fixed
    policy in a fresh training env."""
    venv = BatchedPruneVecEnv(RUNTIME, n_envs, env_kwargs)
    env = venv.env
    if net_transform is not None:  # beta stays calibrated on the trained network, as for every method
        net_transform(env.task.net)
    policy = as_policy(policy, env.num_layers)
    venv.seed(seed)
    obs = venv.reset()
    returns: list[float] = []
    losses: list[float] = []
    macs: list[float] = []
    while len(returns) < n_episodes:
        policy.reset(n_envs)
        for _ in range(env.num_layers):
            obs, _, dones, infos = venv.step(policy(obs)[:, None].astype(np.float32))
        returns.extend(float(i["reward_acc"]) + float(i["reward_budget"]) for i in infos)
        losses.extend(float(i["loss"]) for i in infos)
        macs.extend(float(i["macs_ratio"]) for i in infos)
    venv.close()
    return returns, losses, macs


# --------------------------------------------------------------------------- one run
def _task_kwargs(env_kwargs: dict) -> dict:
    names = {f.name for f in fields(TaskConfig)}
    return {k: v for k, v in env_kwargs.items() if k in names}


def suite_test_task(env_kwargs: dict) -> PruningTask:
    """The suite's runtime task on the test split (what ``beta0`` and the references are computed on)."""
    return PruningTask(TaskConfig(**{**_task_kwargs(env_kwargs), "split": "test"}))


def _scored(scores: dict, metrics_extra: dict | None = None) -> dict:
    test = _test_summary({**scores["test"], **(metrics_extra or {})})
    return {"test": test, "objective": scores["test"]["objective"], "beta0": scores["test"]["beta0"],
            "iso_mac": scores["iso_mac"], "adaptation": scores["adaptation"]}


def run_baseline(job: Job) -> dict:
    """Score a baseline on the test split, its return in the training env and one recorded episode."""
    start = time.time()
    test = suite_test_task(job.env_kwargs)
    beta0 = reference_beta(test)
    baseline = make_baseline(job.algo, test, seed=job.seed)
    metrics = baseline.evaluate()
    constraint = baseline.constraint
    if hasattr(baseline.runtime_policy, "reseed"):
        baseline.runtime_policy.reseed(job.seed)
    test_return = fixed_scale_return(baseline.task, baseline.runtime_policy, baseline.static_ratios, beta0, constraint)
    if hasattr(baseline.runtime_policy, "reseed"):
        baseline.runtime_policy.reseed(job.seed)
    score = score_static if constraint == "params" else score_runtime
    kwargs = {} if constraint == "params" else {"controls": False}
    scores = score(baseline.task, baseline.runtime_policy, baseline.static_ratios, beta0, **kwargs)
    # uniform at the same MACs on the suite's own network (L1 / BN baselines score a re-ranked copy of it)
    scores["iso_mac"] = iso_mac_uniform(test, scores["test"]["macs_ratio"], beta0)
    if baseline.env_kwargs is not None:
        train_kwargs = {**job.env_kwargs, **baseline.env_kwargs}
    else:
        train_kwargs = {**job.env_kwargs, "tradeoff_rate": STATIC_TRADEOFF_RATE,
                        "static_policy": [float(r) for r in baseline.static_ratios]}
    if hasattr(baseline.runtime_policy, "reseed"):
        baseline.runtime_policy.reseed(job.seed + 1)
    returns, losses, macs = _policy_returns(train_kwargs, baseline.runtime_policy, job.last_n, min(job.n_envs, job.last_n),
                                            job.seed, baseline.net_transform)
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
        "constraint": constraint, "test_return": test_return, **_scored(scores, _extra(metrics)),
        "final_return": final, "final_train_return": final, "final_episodes": len(returns),
        "train_objective": float(-np.mean(losses) / beta0), "train_macs_ratio": float(np.mean(macs)),
        "train_seconds": 0.0, "wall_seconds": time.time() - start,
        "curve": None, "curves": None, "episode_record": record, "episode_record_note": note,
    }


def _extra(metrics: dict) -> dict:
    """What a baseline's own evaluation knows beyond the common metrics (its keep ratios, bounds)."""
    keys = ("uniform_keep_ratio", "uniform_static_ratio", "random_bounds", "expected_macs_ratio")
    return {k: metrics[k] for k in keys if k in metrics}


def run_reference(job: Job) -> dict:
    """Score a reference (:data:`REFERENCE_DESCRIPTIONS`) on the test split."""
    from prune_env.evaluation.references import level_results, oracle_choice, search_static_allocation

    start = time.time()
    test = suite_test_task(job.env_kwargs)
    beta0 = reference_beta(test)
    ones = np.ones(test.num_layers)
    out: dict[str, Any] = {"kind": "reference", "env_id": RUNTIME, "description": REFERENCE_DESCRIPTIONS[job.algo],
                           "timesteps": 0, "constraint": "macs", "curve": None, "curves": None}
    if job.algo == "best_static":
        search = PruningTask(TaskConfig(**_task_kwargs(job.env_kwargs)))
        found = search_static_allocation(search, test.macs_budget, max_rounds=job.search_rounds, seed=job.seed)
        scores = score_runtime(test, found["ratios"], ones, beta0, controls=False)
        out.update(_scored(scores), static_search={**found, "split": search.cfg.split},
                   test_return=fixed_scale_return(test, found["ratios"], ones, beta0, "macs"),
                   episode_record=record_runtime_episode({**job.env_kwargs, "split": "test"}, found["ratios"], job.seed),
                   episode_record_note="")
    else:
        per_level = level_results(test)
        by_accuracy = oracle_choice(per_level, test.macs_budget, "accuracy")
        by_loss = oracle_choice(per_level, test.macs_budget, "loss")
        rows = np.arange(len(by_accuracy["choice"]))
        macs = per_level["macs"][rows, by_accuracy["choice"]]
        test_metrics = {"accuracy": by_accuracy["accuracy"], "loss": by_loss["loss"], "macs_ratio": by_accuracy["macs_ratio"],
                        "speedup": 1.0 / by_accuracy["macs_ratio"], "params_ratio": 1.0, "budget": test.macs_budget,
                        "params_budget": test.params_budget, "within_budget": float(np.mean(macs <= test.macs_budget + 1e-9)),
                        "num_images": int(len(rows)), "loss_oracle_macs_ratio": by_loss["macs_ratio"]}
        out.update(test=_test_summary(test_metrics), objective=float(-by_loss["loss"] / beta0), beta0=beta0, iso_mac=None,
                   adaptation=None, test_return=float("nan"), episode_record=None,
                   episode_record_note="not replayable with gym.make: the oracle chooses each input's level with its label")
    out.update(final_return=float("nan"), final_train_return=float("nan"), final_episodes=0, train_seconds=0.0,
               wall_seconds=time.time() - start)
    return out


def _test_summary(metrics: dict) -> dict:
    keys = ("accuracy", "loss", "macs_ratio", "speedup", "params_ratio", "within_budget", "budget", "params_budget",
            "keep_ratio_mean", "keep_ratio_std", "static_keep_ratios", "num_images", "uniform_keep_ratio",
            "uniform_static_ratio", "random_bounds", "expected_macs_ratio", "objective", "loss_oracle_macs_ratio")
    out = {k: metrics[k] for k in keys if k in metrics}
    out["params_within_budget"] = float(metrics["params_ratio"] <= metrics["params_budget"] + 1e-9)
    return out


def run_agent(job: Job) -> dict:
    """Train one agent for ``job.timesteps`` steps, score it on the test split, record a test episode.

    The model is built as :func:`agents.training.build_model` builds it (the registry's
    hyper-parameters, exploration noise included, under the job's overrides).
    """
    spec = _bench_algos()[job.algo]
    start = time.time()
    torch.manual_seed(job.seed)
    beta0 = reference_beta(suite_test_task(job.env_kwargs))
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
                    device=job.device, progress=False, command=job.command)
    model = build_model(cfg, spec.env_id, venv, None)
    log = EpisodeLog()
    model.learn(job.timesteps, callback=log, progress_bar=False)
    train_seconds = time.time() - start
    model_path = atomic_model_save(model, job.path.with_suffix(".zip"))  # beside the result: to score it again
    meta = {"algo": spec.algo, "levels": list(spec.levels) if spec.levels is not None else None}
    policy = agent_policy(model, meta)
    task = venv.get_attr("task")[0]
    test = test_task(task)
    test_kwargs = {**env_kwargs, "split": "test"}
    if spec.env_id == RUNTIME:
        static = venv.get_attr("static_ratios")[0]
        scores = score_runtime(test, policy, static, beta0, seed=job.seed)
        test_return = fixed_scale_return(test, policy, static, beta0, "macs")
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
        scores = score_static(test, 1.0, static, beta0)
        test_return = fixed_scale_return(test, 1.0, static, beta0, "params")
        record = asdict(recorder.last_record)
        env.close()
    venv.close()
    last = log.returns[-job.last_n:]
    last_train = log.train_returns[-job.last_n:]
    return {
        "kind": "agent", "env_id": spec.env_id, "description": spec.description, "registry_algo": spec.algo,
        "constraint": "macs" if spec.env_id == RUNTIME else "params", "test_return": test_return, **_scored(scores),
        "timesteps": int(model.num_timesteps), "levels": meta["levels"], "env_kwargs": env_kwargs,
        "final_return": float(np.mean(last)) if last else float("nan"),
        "final_train_return": float(np.mean(last_train)) if last_train else float("nan"),
        "final_episodes": len(last), "episodes": len(log.returns),
        "train_seconds": train_seconds, "wall_seconds": time.time() - start,
        "curve": binned_curve(log.steps, log.returns, job.timesteps), "curves": log.curves(job.timesteps, beta0),
        "episode_record": record, "episode_record_note": "", "model": model_path.name,
    }


def compute_result(job: Job) -> dict:
    """Run one job and return its result (nothing written): what a local worker or a Ray task computes."""
    if is_reference(job.algo):
        result = run_reference(job)
    elif is_baseline(job.algo):
        result = run_baseline(job)
    else:
        result = run_agent(job)
    checkpoint = job.env_kwargs.get("checkpoint")
    if checkpoint and Path(checkpoint).is_file():  # which network was scored: a rewritten checkpoint shows here
        result["checkpoint_sha256"] = file_sha256(checkpoint)
    result.update(suite=job.suite, algo=job.algo, seed=job.seed, n_envs=job.n_envs, last_n=job.last_n,
                  suite_env_kwargs=job.env_kwargs, hyperparams=job.hyperparams, command=job.command,
                  versions=versions(), status="done", finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    return result


#: rows whose test scores do not depend on the seed (a fixed policy on a fixed network and split): the
#: local runner scores them once per suite and writes the other seeds' files as copies (``copied_from_seed``;
#: their training-environment returns are the first seed's). ``random`` and ``best_static`` (a seeded subset
#: of a training split over 2,048 images) depend on the seed and always run.
DETERMINISTIC = ("uniform", "static_uniform", "l1_static", "bn_static", "oracle")


def deterministic_copy(job: Job) -> dict | None:
    """The result of ``job`` copied from another seed's finished run of the same deterministic row with the
    same environment keywords, or None."""
    if job.algo not in DETERMINISTIC:
        return None
    for path in sorted(job.path.parent.glob("seed*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if data.get("status") == "done" and data.get("seed") != job.seed and data.get("suite_env_kwargs") == job.env_kwargs:
            return {**data, "seed": job.seed, "copied_from_seed": data.get("copied_from_seed", data["seed"]),
                    "command": job.command, "wall_seconds": 0.0, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    return None


def run_job(job: Job) -> dict:
    """Run one job (or copy a deterministic row's other seed) and write its result JSON atomically; returns it."""
    result = deterministic_copy(job) or compute_result(job)
    write_json(result, job.path)
    return result


def _worker_init(threads: int = 1) -> None:
    from prune_env.cli import set_threads

    set_threads(threads)
    warnings.filterwarnings("ignore")


#: what a backend reports per job: ``(method, seed, error or None, seconds)``
Outcome = tuple[str, int, "str | None", float]


def _run_job_safely(job: Job) -> Outcome:
    """For the process pool: run a job, report ``(algo, seed, error or None, seconds)``."""
    start = time.time()
    try:
        run_job(job)
        return job.algo, job.seed, None, time.time() - start
    except Exception:  # noqa: BLE001  (one failed run must not stop the others)
        return job.algo, job.seed, traceback.format_exc(), time.time() - start


def build_jobs(suite: Suite, algos: Sequence[str], seeds: Sequence[int], out: str, *, timesteps: int, n_envs: int,
               last_n: int, env_kwargs: dict, command: str, device: str = "cpu",
               hyperparams: dict | None = None) -> list[Job]:
    """The jobs of ``algos`` (methods, baselines, references) x ``seeds``; ``hyperparams`` go on top of every
    agent's (the method's, then the suite's)."""
    known = _bench_algos()
    for algo in algos:
        if not (is_baseline(algo) or is_reference(algo) or algo in known):
            raise ValueError(f"unknown method {algo!r}: one of {sorted(known)}, a baseline {sorted(BASELINE_DESCRIPTIONS)} "
                             f"or a reference {sorted(REFERENCE_DESCRIPTIONS)}")
    fixed = [a for a in algos if is_baseline(a) or is_reference(a)]
    trained = [a for a in algos if a not in fixed]

    def job(algo: str, seed: int) -> Job:
        hp = {} if algo in fixed else {**known[algo].hyperparams, **suite.overrides(known[algo].algo), **(hyperparams or {})}
        return Job(suite.name, algo, int(seed), out, timesteps, n_envs, last_n, dict(env_kwargs),
                   dict(suite.static_env_kwargs), hp, command, suite.search_rounds, device)

    # the cheap untrained rows first, then seed by seed (an interrupted suite has every method at its first seeds)
    return [job(a, s) for a in fixed for s in seeds] + [job(a, s) for s in seeds for a in trained]


def run_jobs(jobs: list[Job], workers: int, *, log: Callable[[str], None] = print, threads: int = 1) -> list[Outcome]:
    """Run the jobs (in ``workers`` spawned processes when ``workers > 1``, ``threads`` torch threads each);
    returns per-job outcomes."""
    outcomes = []
    if workers <= 1:
        _worker_init(threads)
        for job in jobs:
            outcome = _run_job_safely(job)
            outcomes.append(outcome)
            log(outcome_line(outcome))
        return outcomes
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                initargs=(threads,)) as pool:
        futures = [pool.submit(_run_job_safely, job) for job in jobs]
        for future in cf.as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            log(outcome_line(outcome))
    return outcomes


def outcome_line(outcome: Outcome) -> str:
    algo, seed, error, seconds = outcome
    if error:
        return f"  FAILED {algo} seed {seed} after {seconds:.1f}s:\n{error}"
    return f"  done   {algo} seed {seed} in {seconds:.1f}s"


# --------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m agents.benchmark", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run a suite (skipping finished runs), then write the report")
    run.add_argument("--suite", default="default", help=f"one of {sorted(SUITES)} (default: %(default)s)")
    run.add_argument("--algos", nargs="*", default=None,
                     help="algorithms, baselines, references (default: the suite's; none with an empty list)")
    run.add_argument("--baselines", nargs="*", default=None, help="baselines (default: the suite's; none with an empty list)")
    run.add_argument("--references", nargs="*", default=None,
                     help=f"references {sorted(REFERENCE_DESCRIPTIONS)} (default: the suite's; none with an empty list)")
    run.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default: the suite's)")
    run.add_argument("--timesteps", type=int, default=None, help="steps per training run (default: the suite's)")
    run.add_argument("--n-envs", type=int, default=None, help="episodes run together (default: the suite's)")
    run.add_argument("--last-n", type=int, default=None, help="episodes the final return averages (default: the suite's)")
    run.add_argument("--env-kwargs", nargs="*", default=None, metavar="KEY=VALUE",
                     help="environment keywords on top of the suite's (e.g. data_root=data/); the suite's name stays, "
                          "so give such runs their own --out")
    run.add_argument("--hyperparams", nargs="*", default=None, metavar="KEY=VALUE",
                     help="hyper-parameters on top of every agent's (e.g. learning_rate=3e-4)")
    run.add_argument("--workers", type=int, default=1, help="local processes (default: 1, in-process)")
    run.add_argument("--backend", choices=("local", "ray"), default="local",
                     help="local: a process pool of --workers; ray: one Ray task per run (pip install -e '.[ray]')")
    run.add_argument("--address", default=None,
                     help="Ray cluster to join (e.g. auto after `ray start --head`; default: a local Ray instance)")
    run.add_argument("--cpus-per-run", type=float, default=None,
                     help="Ray: CPUs each run reserves (default: --threads)")
    run.add_argument("--gpus-per-run", type=float, default=0.0,
                     help="Ray: GPUs each run reserves; above 0 the agents' networks go to cuda (default: 0)")
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
    sub.add_parser("list", help="list suites, algorithms, baselines and references")
    return p


def _list() -> None:
    for s in SUITES.values():
        print(f"suite {s.name}: {s.description}; {s.timesteps} steps, seeds {list(s.seeds)}, algos {list(s.algos)}, "
              f"baselines {list(s.baselines)}, references {list(s.references)}")
    for a in _bench_algos().values():
        print(f"algo {a.name}: {a.description} [{a.env_id}]")
    for name, text in BASELINE_DESCRIPTIONS.items():
        print(f"baseline {name}: {text}")
    for name, text in REFERENCE_DESCRIPTIONS.items():
        print(f"reference {name}: {text}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["run", *argv]
    args = build_parser().parse_args(argv)
    command = shlex.join(["python", "-m", "agents.benchmark", *argv])
    if args.command == "list":
        _list()
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
    try:  # a typo is a usage error before anything is written
        extra_env = parse_key_values(args.env_kwargs, "--env-kwargs")
        check_env_kwargs(ENV_IDS, extra_env)
        extra_hp = parse_key_values(args.hyperparams, "--hyperparams")
        for name in {a.algo for n, a in _bench_algos().items() if n in (args.algos or suite.algos)}:
            check_hyperparams(name, extra_hp)
    except argparse.ArgumentTypeError as exc:
        build_parser().error(str(exc))
    env_kwargs.update(extra_env)
    baselines = list(suite.baselines if args.baselines is None else args.baselines)
    references = list(suite.references if args.references is None else args.references)
    algos = list(suite.algos if args.algos is None else args.algos)
    names = algos + [b for b in baselines + references if b not in algos]
    seeds = list(suite.seeds if args.seeds is None else args.seeds)
    device = "cuda" if args.backend == "ray" and args.gpus_per_run > 0 else "cpu"
    jobs = build_jobs(suite, names, seeds, args.out, timesteps=args.timesteps or suite.timesteps,
                      n_envs=args.n_envs or suite.n_envs, last_n=args.last_n or suite.last_n, env_kwargs=env_kwargs,
                      command=command, device=device, hyperparams=extra_hp)
    todo = [j for j in jobs if args.force or not j.path.is_file()]
    where = (f"Ray ({args.address or 'a local instance'})" if args.backend == "ray" else f"{args.workers} worker(s)")
    print(f"suite {suite.name}: {len(jobs)} runs ({len(names)} methods x {len(seeds)} seeds), "
          f"{len(jobs) - len(todo)} already finished (skipped), {len(todo)} to run on {where}")
    start = time.time()
    if args.backend == "ray":
        from agents.ray_backend import run_jobs_ray

        outcomes = run_jobs_ray(todo, address=args.address, cpus_per_run=args.cpus_per_run or float(max(args.threads, 1)),
                                gpus_per_run=args.gpus_per_run, threads=max(args.threads, 1))
    else:
        outcomes = run_jobs(todo, args.workers, threads=args.threads)
    failed = [o for o in outcomes if o[2]]
    print(f"ran {len(outcomes)} runs in {time.time() - start:.1f}s ({len(failed)} failed)")
    paths = write_report(args.out, suite.name, description=suite.description, command=command, figure=args.figure)
    print(Path(paths["leaderboard_md"]).read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
