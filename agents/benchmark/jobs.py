"""One benchmark job, ``(algorithm, seed, suite)``: what it runs and the record it writes.

A :class:`Job` is a method (a trained agent, a baseline or a reference, :mod:`agents.benchmark.suites`)
at one seed in one suite, with the options the run was asked with. :func:`compute_result` runs it and
returns its record; :func:`run_job` writes it atomically to ``<out>/<suite>/runs/<method>/seed<k>.json``
(:func:`prune_env.benchmark.leaderboard.result_path`), copying a deterministic row from another seed
where one is finished (:func:`deterministic_copy`). Either backend runs jobs (:mod:`agents.benchmark.pool`,
:mod:`agents.benchmark.ray_backend`) and reports an :data:`Outcome` per job.

An agent's job trains it for the suite's step budget on the natively batched VecEnv
(:func:`agents.training.make_env` / :func:`~agents.training.build_model`, with the registry's
hyper-parameters), scores its deterministic policy on the held-out test split
(:mod:`prune_env.benchmark.scoring`: top-1, the fixed-beta test objective, uniform at the run's own MACs,
the run's allocations shuffled across inputs) and records one deterministic test episode
(:class:`prune_env.benchmark.replay.RecordEpisode`). Baselines (:mod:`prune_env.evaluation.baselines`) and
references (the best static allocation, the per-input label oracle; :mod:`prune_env.evaluation.references`)
are scored the same way without training.

The record holds the versions, the seed, the exact command, the scores, the learning curves (against
steps and wall-clock seconds), the recorded episode (``episode_record``) and ``per_input``: the keep
ratios every test input was run at, with what else re-derives the headline figures
(:func:`prune_env.benchmark.scoring.per_input_record`). ``python -m agents.benchmark validate`` replays the
episode and re-derives the headline from them (:mod:`prune_env.benchmark.validate`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

import prune_env
from agents.benchmark.suites import (
    BASELINE_DESCRIPTIONS,
    REFERENCE_DESCRIPTIONS,
    Suite,
    bench_algos,
    is_baseline,
    is_reference,
)
from agents.config import RunConfig
from agents.evaluate import test_task
from agents.registry import env_kwargs_for
from agents.saved import agent_policy, atomic_model_save
from agents.training import build_model, make_env
from prune_env.benchmark.leaderboard import binned_curve, binned_curves, fixed_scale_return, reference_beta, result_path
from prune_env.benchmark.replay import RecordEpisode
from prune_env.benchmark.scoring import (
    iso_mac_uniform,
    per_input_record,
    score_runtime,
    score_static,
    suite_test_task,
    task_kwargs,
)
from prune_env.envs import VecDiscreteKeepRatio
from prune_env.envs.task import RUNTIME_TRADEOFF_RATE, STATIC_TRADEOFF_RATE, PruningTask, TaskConfig
from prune_env.envs.vec_env import BatchedPruneVecEnv
from prune_env.envs.wrappers import AMCWrapper, VecAMCWrapper
from prune_env.evaluation.baselines import make_baseline
from prune_env.ids import RUNTIME, STATIC
from prune_env.io import file_sha256, versions, write_json
from prune_env.policies import as_policy


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
def _scored(scores: dict, metrics_extra: dict | None = None) -> dict:
    """The record's scores: the test summary, the objective, ``beta0``, the controls and what re-derives them
    (``per_input``: :func:`prune_env.benchmark.scoring.per_input_record`)."""
    test = _test_summary({**scores["test"], **(metrics_extra or {})})
    return {"test": test, "objective": scores["test"]["objective"], "beta0": scores["test"]["beta0"],
            "iso_mac": scores["iso_mac"], "adaptation": scores["adaptation"], "per_input": scores["per_input"]}


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
    if baseline.net_transform is not None:  # scored on a re-ranked copy of the network: the re-derivation re-ranks
        scores["per_input"]["rerank"] = job.algo
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
    from prune_env.evaluation.references import ORACLE_LEVELS, level_results, oracle_choice, search_static_allocation

    start = time.time()
    test = suite_test_task(job.env_kwargs)
    beta0 = reference_beta(test)
    ones = np.ones(test.num_layers)
    out: dict[str, Any] = {"kind": "reference", "env_id": RUNTIME, "description": REFERENCE_DESCRIPTIONS[job.algo],
                           "timesteps": 0, "constraint": "macs", "curve": None, "curves": None}
    if job.algo == "best_static":
        search = PruningTask(TaskConfig(**task_kwargs(job.env_kwargs)))
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
        levels = np.asarray(ORACLE_LEVELS, dtype=np.float64)  # each input's uniform level, in every layer
        per_input = {name: np.repeat(levels[np.asarray(found["choice"])][:, None], test.num_layers, 1)
                     for name, found in (("accuracy", by_accuracy), ("loss", by_loss))}
        with test.at_tradeoff_rate(RUNTIME_TRADEOFF_RATE):  # as level_results ran them
            out["per_input"] = per_input_record(test, per_input["accuracy"], ones, objective_actions=per_input["loss"])
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
    spec = bench_algos()[job.algo]
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


def build_jobs(suite: Suite, algos: Sequence[str], seeds: Sequence[int], out: str, *, timesteps: int, n_envs: int,
               last_n: int, env_kwargs: dict, command: str, device: str = "cpu",
               hyperparams: dict | None = None) -> list[Job]:
    """The jobs of ``algos`` (methods, baselines, references) x ``seeds``; ``hyperparams`` go on top of every
    agent's (the method's, then the suite's)."""
    known = bench_algos()
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


#: what a backend reports per job: ``(method, seed, error or None, seconds)``
Outcome = tuple[str, int, "str | None", float]


def outcome_line(outcome: Outcome) -> str:
    """The line a backend logs for a finished job (with the traceback of a failed one)."""
    algo, seed, error, seconds = outcome
    if error:
        return f"  FAILED {algo} seed {seed} after {seconds:.1f}s:\n{error}"
    return f"  done   {algo} seed {seed} in {seconds:.1f}s"


def prepare_worker(threads: int = 1) -> None:
    """In a process that runs jobs (a pool worker, a Ray worker, the driver itself): ``threads`` torch threads,
    the libraries' warnings silenced."""
    import warnings

    from prune_env.cli import set_threads

    set_threads(threads)
    warnings.filterwarnings("ignore")
