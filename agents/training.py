"""Train the runtime and/or static agent on the batched environments, checkpoint, resume, evaluate.

This is the engine behind ``train_agents.py``; it can be driven from Python as well::

    from agents.training import RunConfig, run
    metrics = run(RunConfig(env_id="RuntimePrune-v0", out="runs/demo"))
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv

import prune_env
from agents.joint import JointEpisodes, JointTrainer, joint_models_ok, off_policy_refusal, resolve_agent_update, rollout_batches
from agents.policies import LayerEncoderExtractor
from agents.registry import RUNTIME, STATIC, env_kwargs_for, get_spec, hyperparameters, resolve_schedules
from agents.saved import record_env, record_joint_envs
from agents.steps import StepsProgress, fit_rollout
from prune_env.checkpoint import atomic_write
from prune_env.envs import VecDiscreteKeepRatio
from prune_env.envs.budgets import BudgetRange
from prune_env.envs.task import JOINT_TRADEOFF_RATE, STATIC_TRADEOFF_RATE, PruningTask, TaskConfig
from prune_env.envs.wrappers import DEFAULT_LEVELS
from prune_env.evaluation.references import headroom_report
from prune_env.evaluation.split import (
    format_table,
    plot_adaptation,
    plot_keep_ratios,
    reference_metrics,
    rollout_split,
    summarize,
    write_json,
)
from prune_env.interrupt import deferred_interrupt
from prune_env.io import versions
from prune_env.policies import SB3Policy
from prune_env.progress import bar as progress_bar

#: the main job's runtime environment, under the user's ``--env-kwargs``: a budget with headroom
#: (on the embedded default, uniform keep 0.3 scores 90.8% against dense 98.9%, while at the paper's
#: 0.5 uniform is 3 images from dense) held on *average* over inputs, so that compute can move from
#: easy inputs to hard ones. ``budget=0.5 budget_mode=per_input`` is the paper's setting.
MAIN_JOB_ENV_KWARGS = {RUNTIME: {"budget": 0.3, "budget_mode": "average"}}
#: keywords only StaticPrune-v0 takes (dropped for the runtime env in joint runs)
STATIC_ONLY = ("eval_batch",)
MODEL_FILE, CHECKPOINT_FILE, STATE_FILE, RUN_FILE = "model.zip", "checkpoint.zip", "checkpoint_state.json", "run.json"


@dataclass
class RunConfig:
    """Everything a training run needs (the command line's options)."""

    env_id: str = RUNTIME
    algo: str = "recurrent_ppo"
    timesteps: int | None = None
    seed: int = 0
    n_envs: int = 64
    env_kwargs: dict = field(default_factory=dict)
    hyperparams: dict = field(default_factory=dict)
    preset: str = "fast"
    out: str = "runs/agent"
    device: str = "auto"
    resume: bool = False
    static_agent: str | None = None
    runtime_agent: str | None = None
    joint: bool = False
    #: ``joint``: how the two agents learn, ``"joint"`` (one reward batch updates both, Algorithm 1's
    #: lines 12-15 as the paper runs them) or ``"alternating"`` (four rounds, each agent's ``learn()``
    #: against the other's frozen policy); None: :func:`joint_agent_update`'s default
    agent_update: str | None = None
    #: ``joint`` with the joint update: static episodes per joint batch, the ``n_envs`` images split
    #: among them (None: :func:`joint_plan`'s choice)
    joint_groups: int | None = None
    progress: bool = True
    checkpoint_every: int = 20_000
    command: str = ""
    #: score a runtime agent beside every headroom reference (static search, oracle, controls)
    references: bool = True
    #: rounds of the best-static-allocation search (each tries every ordered pair of layers)
    search_rounds: int = 40
    #: an any-budget agent (``budget`` a range): the budgets its evaluation sweeps (None: evenly spaced)
    sweep_budgets: list[float] | None = None
    #: ... how many evenly spaced ones (both ends of the range included)
    sweep_points: int = 5
    #: ... and the one-budget runs (directories) put beside it on the curve
    per_budget_runs: list[str] = field(default_factory=list)
    #: ... with the agent calibrated to each budget too (an offset search per budget on the training split)
    sweep_calibrate: bool = True


# --------------------------------------------------------------------------- callbacks
class PruningLogCallback(BaseCallback):
    """Logs the episode results the environments report (reward parts, MAC / parameter ratios,
    accuracy, per-layer keep ratios) to the SB3 logger (TensorBoard) at every rollout end."""

    KEYS = ("reward_acc", "reward_budget", "macs_ratio", "params_ratio", "correct", "accuracy", "within_budget", "lambda")

    def __init__(self, prefix: str = "prune"):
        super().__init__()
        self.prefix = prefix
        self._values: dict[str, list[float]] = {}
        self._keep: list[list[float]] = []
        self._relative: list[float] = []  # each episode's cost / its budget

    def _on_step(self) -> bool:
        for info, done in zip(self.locals.get("infos", []), self.locals.get("dones", [])):
            if not done:
                continue
            for key in self.KEYS:
                if key in info:
                    self._values.setdefault(key, []).append(float(info[key]))
            if "keep_ratios" in info:
                self._keep.append(info["keep_ratios"])
            cost = "params_ratio" if self.prefix.startswith("Static") else "macs_ratio"
            if "budget" in info and cost in info:  # a budget range: each episode against its own budget
                self._relative.append(float(info[cost]) / float(info["budget"]))
        return True

    def _on_rollout_end(self) -> None:
        for key, values in self._values.items():
            self.logger.record(f"{self.prefix}/{key}", float(np.mean(values)))
        if self._relative:  # the budget's relative violation (what lambda acts on)
            self.logger.record(f"{self.prefix}/violation", float(np.mean(self._relative)) - 1.0)
        self._relative = []
        if self._keep:
            for t, v in enumerate(np.mean(self._keep, axis=0)):
                self.logger.record(f"{self.prefix}/keep_layer{t}", float(v))
        self._values, self._keep = {}, []


class AtomicCheckpointCallback(BaseCallback):
    """Saves the model (and the environment's reward scale) atomically every ``every`` steps."""

    def __init__(self, out: Path, venv: VecEnv, every: int):
        super().__init__()
        self.out, self.venv, self.every = out, venv, max(1, int(every))
        self._last = 0

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last >= self.every:
            self._last = self.num_timesteps
            save_checkpoint(self.model, self.venv, self.out)
        return True


# --------------------------------------------------------------------------- saving / loading
def atomic_model_save(model: BaseAlgorithm, path: Path) -> Path:
    """``model.save`` through :func:`prune_env.checkpoint.atomic_write`: a kill or a full disk never corrupts ``path``."""
    return atomic_write(path, model.save)


def reward_state(venv: VecEnv) -> dict:
    """The environment's shared reward state: ``beta`` (Eq. 9) and, under an average budget, ``lambda``."""
    return venv.unwrapped.env.reward_state()


def load_reward_state(venv: VecEnv, state: dict) -> None:
    """Restore what :func:`reward_state` saved."""
    venv.unwrapped.env.set_reward_state(state)


def save_checkpoint(model: BaseAlgorithm, venv: VecEnv, out: Path) -> None:
    atomic_model_save(model, out / CHECKPOINT_FILE)
    write_json({"num_timesteps": model.num_timesteps, **reward_state(venv)}, out / STATE_FILE)


def load_agent(path: str | os.PathLike, device: str = "cpu") -> tuple[BaseAlgorithm, dict]:
    """Load a saved agent: a run directory (``model.zip`` + ``run.json``) or a ``.zip`` beside its ``run.json``."""
    path = Path(path)
    zip_path = path / MODEL_FILE if path.is_dir() else path
    if not zip_path.is_file():
        raise FileNotFoundError(f"agent: no saved model at {str(zip_path)!r}")
    meta_path = zip_path.parent / RUN_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    algo = meta.get("algo")
    if algo is None:
        raise ValueError(f"agent: {str(meta_path)!r} missing; cannot tell which algorithm saved {str(zip_path)!r}")
    model = get_spec(algo).cls.load(zip_path, device=device)
    return model, meta


def agent_policy(model: BaseAlgorithm, meta: dict | None = None) -> SB3Policy:
    """The deterministic keep-ratio policy of a trained model (discrete ones mapped to their levels)."""
    levels = (meta or {}).get("levels")
    if levels is None and get_spec((meta or {}).get("algo", "ppo")).discrete:
        levels = list(DEFAULT_LEVELS)
    return SB3Policy(model, levels=levels)


# --------------------------------------------------------------------------- building
def make_env(env_id: str, algo: str, n_envs: int, seed: int, env_kwargs: dict) -> VecEnv:
    """The batched, monitored training VecEnv for ``algo`` (discrete algorithms get the level wrapper)."""
    spec = get_spec(algo)
    venv = prune_env.make_vec_env(env_id, n_envs, seed=seed, **env_kwargs_for(algo, env_id, env_kwargs))
    if spec.discrete:
        venv = VecDiscreteKeepRatio(venv, DEFAULT_LEVELS)
    return venv


def build_model(cfg: RunConfig, env_id: str, venv: VecEnv, tb_dir: Path | None) -> BaseAlgorithm:
    """A new model of ``cfg.algo`` on ``venv`` with the registry's hyper-parameters and the overrides."""
    spec = get_spec(cfg.algo)
    params = resolve_schedules(hyperparameters(cfg.algo, env_id, cfg.preset, cfg.hyperparams))
    fit_rollout(params, spec.cls, default_timesteps(cfg, env_id), venv.num_envs)  # --timesteps honoured (agents/steps.py)
    policy_kwargs = params.setdefault("policy_kwargs", {})
    if policy_kwargs.get("features_extractor_class") is LayerEncoderExtractor:
        policy_kwargs.setdefault("features_extractor_kwargs", {})["layer_in_channels"] = venv.get_attr("layer_in_channels")[0]
    relative_std = params.pop("relative_std", None)  # the initial std as a fraction of the budget's keep ratio
    if relative_std is not None:
        policy_kwargs.setdefault("log_std_init", math.log(float(relative_std) * venv.unwrapped.env.budget_keep_ratio))
    if spec.regularized:
        policy_kwargs.setdefault("initial_action", venv.unwrapped.env.budget_keep_ratio)
    if not policy_kwargs:
        params.pop("policy_kwargs")
    noise_std = params.pop("action_noise_std", None)  # deterministic off-policy actors explore with Gaussian noise
    if noise_std:
        from stable_baselines3.common.noise import NormalActionNoise

        dim = int(np.prod(venv.action_space.shape))
        params["action_noise"] = NormalActionNoise(np.zeros(dim), np.full(dim, float(noise_std)))
    return spec.cls(spec.policy, venv, seed=cfg.seed, device=cfg.device, verbose=0,
                    tensorboard_log=None if tb_dir is None else str(tb_dir), **params)


def default_timesteps(cfg: RunConfig, env_id: str) -> int:
    return cfg.timesteps if cfg.timesteps is not None else get_spec(cfg.algo).timesteps[env_id]


# --------------------------------------------------------------------------- training
def learn(model: BaseAlgorithm, venv: VecEnv, out: Path, total: int, cfg: RunConfig, *, reset: bool, prefix: str) -> None:
    """``model.learn`` up to ``total`` steps with logging and checkpoints; Ctrl-C saves first."""
    remaining = total - (0 if reset else model.num_timesteps)
    if remaining <= 0:
        return
    callbacks = CallbackList([PruningLogCallback(prefix), AtomicCheckpointCallback(out, venv, cfg.checkpoint_every),
                              *([StepsProgress(total, prefix)] if cfg.progress else [])])
    try:
        model.learn(remaining, callback=callbacks, progress_bar=False, reset_num_timesteps=reset, tb_log_name=prefix)
    except KeyboardInterrupt:
        save_checkpoint(model, venv, out)
        print(f"\ninterrupted at {model.num_timesteps} steps; saved {out / CHECKPOINT_FILE}; continue with --resume",
              file=sys.stderr)
        raise
    save_checkpoint(model, venv, out)


def prepare_agent(cfg: RunConfig, env_id: str, out: Path, env_kwargs: dict) -> tuple[BaseAlgorithm, VecEnv, bool]:
    """Build (or, with ``--resume``, reload) one agent and its training env."""
    venv = make_env(env_id, cfg.algo, cfg.n_envs, cfg.seed, env_kwargs)
    ckpt = out / CHECKPOINT_FILE
    if cfg.resume and ckpt.is_file():
        model = get_spec(cfg.algo).cls.load(ckpt, env=venv, device=cfg.device)
        state = json.loads((out / STATE_FILE).read_text())
        load_reward_state(venv, state)
        model.tensorboard_log = str(out / "tb")  # learn(reset_num_timesteps=False) continues the run's tb/<prefix>_N
        return model, venv, False
    if cfg.resume:
        print(f"--resume: no checkpoint at {ckpt}; starting afresh", file=sys.stderr)
    return build_model(cfg, env_id, venv, out / "tb"), venv, True


def json_budget(env_kwargs: dict) -> dict:
    """``env_kwargs`` with a budget range in the form JSON keeps (``"low:high"`` or a list; a tuple
    would come back from ``run.json`` / ``env_spec.json`` as a list, a set of values)."""
    if "budget" not in env_kwargs:
        return env_kwargs
    budget_range = BudgetRange.parse(env_kwargs["budget"])
    return env_kwargs if budget_range is None else {**env_kwargs, "budget": budget_range.to_json()}


def run_record(cfg: RunConfig, env_id: str, env_kwargs: dict) -> dict:
    spec = get_spec(cfg.algo)
    return {
        "env_id": env_id, "algo": cfg.algo, "seed": cfg.seed, "n_envs": cfg.n_envs, "preset": cfg.preset,
        "env_kwargs": json_budget(env_kwargs_for(cfg.algo, env_id, env_kwargs)), "hyperparams": cfg.hyperparams,
        "levels": list(DEFAULT_LEVELS) if spec.discrete else None, "command": cfg.command,
        "static_agent": cfg.static_agent, "runtime_agent": cfg.runtime_agent,
        **({"agent_update": cfg.agent_update} if cfg.joint else {}),
        "versions": versions(),
    }


def _policy_kwargs_from(env_kwargs: dict, path: str | None, device: str, key: str) -> dict:
    if path is None:
        return env_kwargs
    model, meta = load_agent(path, device=device)
    return {**env_kwargs, key: agent_policy(model, meta)}


def run(cfg: RunConfig) -> dict:
    """Train as configured, evaluate on the test split, write everything under ``cfg.out``; returns the metrics."""
    if cfg.joint:  # checked before anything is written
        cfg = replace(cfg, agent_update=joint_agent_update(cfg))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    start = time.time()
    if cfg.joint:
        return _run_joint(cfg, out, start)
    env_id = cfg.env_id.split(":")[-1]
    env_kwargs = user_kwargs = {**MAIN_JOB_ENV_KWARGS.get(env_id, {}), **cfg.env_kwargs}
    if env_id == RUNTIME:
        env_kwargs = _policy_kwargs_from(env_kwargs, cfg.static_agent, cfg.device, "static_policy")
    else:
        env_kwargs = _policy_kwargs_from(env_kwargs, cfg.runtime_agent, cfg.device, "runtime_policy")
    record = run_record(cfg, env_id, user_kwargs)
    write_json({**record, "status": "training"}, out / RUN_FILE)
    model, venv, fresh = prepare_agent(cfg, env_id, out, env_kwargs)
    record_env(model, venv, out, record)  # env_spec.json beside the agent, model.trained_on
    learn(model, venv, out, default_timesteps(cfg, env_id), cfg, reset=fresh, prefix=env_id.split("-")[0])
    atomic_model_save(model, out / MODEL_FILE)
    train_seconds = time.time() - start
    write_json({**record, "status": "trained", "train_seconds": train_seconds, "timesteps": model.num_timesteps}, out / RUN_FILE)
    policy = agent_policy(model, record)
    task = venv.unwrapped.task
    if task.budget_range is not None:  # one agent for every budget: the curve over the range
        static_env = env_id == STATIC
        metrics = evaluate_any_budget(
            cfg, task, runtime_policy=venv.unwrapped.env.episodes.runtime_policy if static_env else policy,
            static_ratios=None if static_env else venv.unwrapped.env.static_ratios,
            static_policy=policy if static_env else None, out=out)
    elif env_id == RUNTIME:
        metrics = evaluate_run(cfg, task, runtime_policy=policy, static_ratios=venv.unwrapped.env.static_ratios, out=out)
    else:
        runtime = venv.unwrapped.env.episodes.runtime_policy
        metrics = evaluate_run(cfg, task, runtime_policy=runtime, static_ratios=task.static_ratios_of(policy), out=out)
    metrics.update(train_seconds=train_seconds, timesteps=int(model.num_timesteps))
    write_json(metrics, out / "metrics.json")
    venv.close()
    return metrics


# --------------------------------------------------------------------------- both agents (--joint)
#: the fewest images a static episode of a joint batch is scored on when :func:`joint_plan` chooses
#: the groups (Algorithm 1's digits preset: 64 images a batch, 8 static episodes of 8 images)
MIN_GROUP_IMAGES = 8


def on_policy(algo: str) -> bool:
    """Whether ``algo``'s class is an SB3 on-policy algorithm (what the joint update can train)."""
    cls = get_spec(algo).cls
    return isinstance(cls, type) and issubclass(cls, OnPolicyAlgorithm)


#: the agent update of ``train_agents.py --joint`` when none is asked for. Without the CNN phase the
#: joint update spent 0.252-0.265 of dense MACs against the 0.253 per-input budget and scored 0.3-0.6
#: points below the alternation (0.233-0.245 MACs) over 3 seeds of the embedded default
#: (docs/algorithm1.md); in Algorithm 1, with the CNN phase, the joint update is the default.
JOINT_RUN_DEFAULT_UPDATE = "alternating"


def joint_agent_update(cfg: RunConfig, option: str = "agent_update") -> str:
    """``cfg.agent_update`` checked, or its default for a ``--joint`` run (:data:`JOINT_RUN_DEFAULT_UPDATE`);
    ``"joint"`` trains on-policy algorithms (recurrent_ppo, ppo, a2c, trpo) at one budget: asking for it
    with an off-policy one or a budget range is a ValueError naming ``option`` and the alternation
    (the rules of ``agents.algorithm1.Algorithm1Config``, :func:`agents.joint.resolve_agent_update`)."""
    budget = cfg.env_kwargs.get("budget", 0.5)
    ranged = BudgetRange.parse(budget) is not None
    return resolve_agent_update(cfg.agent_update, budget_range=budget if ranged else None,
                                on_policy=on_policy(cfg.algo), algo=cfg.algo, option=option,
                                default=JOINT_RUN_DEFAULT_UPDATE)


def started_agent_update(out: str | os.PathLike) -> str | None:
    """The agent update a ``--joint`` run in ``out`` was started with (its ``run.json``; runs recorded
    before the joint update: ``"alternating"``), or None when there is no checkpoint to resume."""
    out = Path(out)
    if not (out / RUN_FILE).is_file() or not any((out / sub / CHECKPOINT_FILE).is_file() for sub in ("runtime", "static")):
        return None
    return json.loads((out / RUN_FILE).read_text()).get("agent_update", "alternating")


@dataclass(frozen=True)
class JointPlan:
    """How :func:`_run_joint` runs the joint update (:func:`joint_plan`)."""

    groups: int  # static episodes per joint batch
    images: int  # images per static episode
    num_layers: int
    batches_per_update: int  # joint batches per update of both agents
    batches: int  # joint batches in all

    @property
    def runtime_steps(self) -> int:
        return self.batches * self.groups * self.images * self.num_layers

    @property
    def static_steps(self) -> int:
        return self.batches * self.groups * self.num_layers


def joint_plan(cfg: RunConfig, runtime_model: BaseAlgorithm, num_layers: int) -> JointPlan:
    """The joint batches of a ``--joint`` run with the joint update.

    * A joint batch forwards the runtime environment's ``n_envs`` images once (one runtime episode
      each, as one step of its VecEnv), split into ``groups`` static episodes of ``n_envs // groups``
      images: the static agent sets each group's ``d_s``, the runtime agent each image's ``d_r``,
      and both agents' rewards come from the same losses (:mod:`agents.joint`).
    * Groups (``cfg.joint_groups``, or chosen here): the fewest dividing ``n_envs`` with which the
      static agent gets at least its ``default_timesteps(cfg, STATIC)`` steps while the runtime
      agent gets its own, but never fewer than :data:`MIN_GROUP_IMAGES` images a static episode
      (a static reward from one or two images' loss would be mostly noise). The static agent gets
      ``groups / n_envs`` of the runtime agent's steps. On the embedded default (64 images, 4
      layers): recurrent PPO (300,000 runtime / 8,000 static steps by default) gets 2 groups of 32
      images, 9,408 static steps (2,352 static episodes of 32 images, on the runtime agent's
      training split) where the alternation gives 8,192 (2,048 episodes of ``eval_batch`` = 128
      validation images, each forwarded again); PPO, A2C and TRPO (100,000 / 8,000) get 8 groups
      of 8 images, 12,544 static steps against 8,192. ``--timesteps T`` sets the runtime agent's
      steps; the static agent then gets ``groups / n_envs`` of them (T / 8 with 64 images), not T.
    * Updates: every ``batches_per_update`` joint batches, as many as hold the runtime agent's own
      rollout (``n_steps x n_envs`` steps), so the runtime agent's PPO updates are the
      alternation's, in size and number (the static agent is updated as often, on ``groups x
      n_steps`` steps each time: 147 updates of 64 steps for recurrent PPO against 8 of 1,024).
    * Batches: whole updates until the runtime agent has its ``default_timesteps(cfg, RUNTIME)``
      steps, so it ends where the alternation's ends (301,056 steps for recurrent PPO, 100,352 for
      PPO on the defaults).
    """
    n = int(cfg.n_envs)
    if cfg.joint_groups is not None:
        groups = int(cfg.joint_groups)
        if not 1 <= groups <= n:
            raise ValueError(f"joint_groups must be in [1, n_envs={n}] (static episodes sharing a joint batch of "
                             f"n_envs images), got {groups}")
    else:
        runtime, static = default_timesteps(cfg, RUNTIME), default_timesteps(cfg, STATIC)
        choices = [g for g in range(1, n + 1) if n % g == 0 and n // g >= min(MIN_GROUP_IMAGES, n)]
        groups = next((g for g in choices if g * runtime >= static * n), choices[-1])
    images = n // groups
    per_update = rollout_batches(runtime_model, groups * images, num_layers)
    steps_per_update = per_update * groups * images * num_layers
    updates = max(1, math.ceil(default_timesteps(cfg, RUNTIME) / steps_per_update))
    return JointPlan(groups, images, num_layers, per_update, updates * per_update)


def build_joint_trainer(models: dict, venvs: dict, *, algo: str, groups: int, images: int, batches_per_update: int,
                        seed: int) -> JointTrainer:
    """The joint update's trainer over the runtime environment's task (``groups`` static episodes of
    ``images`` images a batch). The reward states (``beta``, ``lambda``) are the two environments' own
    objects, so they are checkpointed and restored as in alternation; each agent logs through its
    :class:`PruningLogCallback`. An off-policy ``algo`` is a ValueError naming the alternation."""
    if not joint_models_ok(*models.values()):
        raise ValueError(off_policy_refusal(algo))
    runtime_env, static_env = venvs[RUNTIME].unwrapped.env, venvs[STATIC].unwrapped.env
    episodes = JointEpisodes(runtime_env.task, groups, images,
                             runtime_normalizer=runtime_env.normalizer, runtime_dual=runtime_env.dual,
                             static_normalizer=static_env.normalizer, static_dual=static_env.dual)
    callbacks = {"runtime": PruningLogCallback(RUNTIME.split("-")[0]), "static": PruningLogCallback(STATIC.split("-")[0])}
    return JointTrainer(models[RUNTIME], models[STATIC], episodes, seed=seed, callbacks=callbacks,
                        batches_per_update=batches_per_update)


def learn_jointly(joint: JointTrainer, models: dict, venvs: dict, out: Path, batches: int,
                  after_update: Any = None) -> None:
    """Lines 12-15 with the joint update for ``batches`` batches (``after_update()`` after each update);
    both agents saved after, and on Ctrl-C (held until the step in progress ends: the rollout being
    collected is not trained on, the models count only finished updates)."""
    if batches <= 0:
        return
    subs = {RUNTIME: "runtime", STATIC: "static"}
    joint.setup(batches, {"runtime": RUNTIME.split("-")[0], "static": STATIC.split("-")[0]})
    try:
        with deferred_interrupt():
            joint.learn(batches, after_update)
    except KeyboardInterrupt:
        for env_id, sub in subs.items():
            save_checkpoint(models[env_id], venvs[env_id], out / sub)
        print(f"\ninterrupted at {models[RUNTIME].num_timesteps} runtime / {models[STATIC].num_timesteps} static steps; "
              f"saved {out / 'runtime' / CHECKPOINT_FILE} and {out / 'static' / CHECKPOINT_FILE}; continue with --resume",
              file=sys.stderr)
        raise
    for env_id, sub in subs.items():
        save_checkpoint(models[env_id], venvs[env_id], out / sub)


def joint_env_kwargs(algo: str, env_kwargs: dict) -> dict[str, dict]:
    """Keywords of the runtime and the static env when both agents train together.

    The static env runs the runtime agent to evaluate its choices, so it must build the runtime
    observations the way the runtime agent sees them.
    """
    runtime, static = env_kwargs_for(algo, RUNTIME, env_kwargs), env_kwargs_for(algo, STATIC, env_kwargs)
    if "observation" in runtime:
        static["observation"] = runtime["observation"]
    return {RUNTIME: {k: v for k, v in runtime.items() if k not in STATIC_ONLY}, STATIC: static}


def _run_joint(cfg: RunConfig, out: Path, start: float) -> dict:
    """Algorithm 1, lines 12-15: the runtime and the static agent, each on its own reward, trained
    either jointly (``cfg.agent_update="joint"``: both act in the same episodes and one reward batch
    updates both, :func:`joint_plan`) or in alternation (four rounds, each agent's ``learn()``
    against the other's frozen policy)."""
    started = started_agent_update(out) if cfg.resume else None
    if started is not None and started != cfg.agent_update:
        raise ValueError(f"resume: {str(out)!r} was started with agent_update={started!r}, not {cfg.agent_update!r}")
    env_kwargs = {"tradeoff_rate": JOINT_TRADEOFF_RATE, **cfg.env_kwargs}
    record = run_record(cfg, "joint", env_kwargs)
    write_json({**record, "status": "training"}, out / RUN_FILE)
    models, venvs = {}, {}
    for env_id, sub in ((RUNTIME, "runtime"), (STATIC, "static")):
        (out / sub).mkdir(exist_ok=True)
        write_json(run_record(cfg, env_id, env_kwargs), out / sub / RUN_FILE)
        models[env_id], venvs[env_id], fresh = prepare_agent(cfg, env_id, out / sub,
                                                             joint_env_kwargs(cfg.algo, env_kwargs)[env_id])
    record_joint_envs(models, venvs, out, joint_env_kwargs(cfg.algo, env_kwargs), record["levels"])  # env_spec.json, trained_on
    runtime_env, static_env = venvs[RUNTIME].unwrapped.env, venvs[STATIC].unwrapped.env
    static_env.set_runtime_policy(agent_policy(models[RUNTIME], record))
    if "static_policy" not in cfg.env_kwargs:  # until the static agent acts: the budget's uniform static ratio
        runtime_env.set_static_policy(runtime_env.task.static_budget_keep_ratio)
    extra: dict[str, Any] = {}
    if cfg.agent_update == "joint":
        extra["joint_plan"] = _train_jointly(cfg, models, venvs, out)
        runtime_env.set_static_policy(agent_policy(models[STATIC], record))  # evaluated with the trained static agent
    else:
        rounds = 4
        totals = {RUNTIME: default_timesteps(cfg, RUNTIME), STATIC: default_timesteps(cfg, STATIC)}
        for r in range(1, rounds + 1):
            for env_id, sub in ((RUNTIME, "runtime"), (STATIC, "static")):
                target = totals[env_id] * r // rounds
                learn(models[env_id], venvs[env_id], out / sub, target, cfg, reset=False, prefix=env_id.split("-")[0])
            runtime_env.set_static_policy(agent_policy(models[STATIC], record))
    for env_id, sub in ((RUNTIME, "runtime"), (STATIC, "static")):
        atomic_model_save(models[env_id], out / sub / MODEL_FILE)
    train_seconds = time.time() - start
    steps = {"runtime_timesteps": int(models[RUNTIME].num_timesteps), "static_timesteps": int(models[STATIC].num_timesteps)}
    metrics = evaluate_run(cfg, runtime_env.task, runtime_policy=agent_policy(models[RUNTIME], record),
                           static_ratios=runtime_env.static_ratios, out=out)
    metrics.update(train_seconds=train_seconds, agent_update=cfg.agent_update, **steps)
    write_json(metrics, out / "metrics.json")
    write_json({**record, "status": "trained", "train_seconds": train_seconds, **steps, **extra}, out / RUN_FILE)
    for venv in venvs.values():
        venv.close()
    return metrics


def _train_jointly(cfg: RunConfig, models: dict, venvs: dict, out: Path) -> dict:
    """The joint update of a ``--joint`` run (:func:`joint_plan`), continued where a checkpoint left it;
    checkpoints of both agents every ``cfg.checkpoint_every`` runtime steps; returns the plan."""
    runtime = models[RUNTIME]
    layers = venvs[RUNTIME].unwrapped.env.task.num_layers
    plan = joint_plan(cfg, runtime, layers)
    split = len(venvs[RUNTIME].unwrapped.env.task.source)
    if plan.images > split:
        raise ValueError(f"n_envs={cfg.n_envs} with joint_groups={plan.groups}: a static episode of the joint update "
                         f"draws {plan.images} distinct images, the runtime agent's split has {split}; lower --n-envs "
                         f"or raise --joint-groups")
    joint = build_joint_trainer(models, venvs, algo=cfg.algo, groups=plan.groups, images=plan.images,
                                batches_per_update=plan.batches_per_update, seed=cfg.seed)
    per_batch = joint.steps_per_batch["runtime"]
    left = plan.batches - int(runtime.num_timesteps) // per_batch  # a resumed run trains the batches it had left
    bar = progress_bar(plan.runtime_steps, f"joint update ({plan.groups} static episodes of {plan.images} images a batch), "
                       "runtime agent", "steps", initial=int(runtime.num_timesteps), disable=not cfg.progress)
    saved = {"at": int(runtime.num_timesteps)}

    def after_update() -> None:
        bar.update(int(runtime.num_timesteps) - int(bar.n))
        bar.set_postfix(static=f"{int(models[STATIC].num_timesteps):,}")
        if runtime.num_timesteps - saved["at"] >= cfg.checkpoint_every:
            saved["at"] = int(runtime.num_timesteps)
            for env_id, sub in ((RUNTIME, "runtime"), (STATIC, "static")):
                save_checkpoint(models[env_id], venvs[env_id], out / sub)

    try:
        learn_jointly(joint, models, venvs, out, left, after_update)
    finally:
        bar.close()
    return {**asdict(plan), "runtime_steps": plan.runtime_steps, "static_steps": plan.static_steps}


# --------------------------------------------------------------------------- evaluation
def evaluate_any_budget(cfg: RunConfig, task: PruningTask, *, runtime_policy: Any, static_ratios: Any, out: Path,
                        static_policy: Any = None, progress: Any = None, test: PruningTask | None = None) -> dict:
    """An any-budget agent's curve on the test split (:mod:`prune_env.evaluation.budget_sweep`): at each of
    ``cfg.sweep_budgets`` (default ``cfg.sweep_points`` evenly spaced over the range), the agent
    beside uniform, the best static allocation and the calibrated agent (a runtime agent; a static one:
    beside the uniform static keep ratio), and the one-budget runs of ``cfg.per_budget_runs``.
    Writes ``any_budget.{json,csv,png}`` into ``out``, prints the table; returns the metrics.
    ``test``: the task on the test split (default: built from ``task``'s configuration, or ``task``
    itself when it is on the test split; give it when ``task``'s network is not its checkpoint's, as
    in Algorithm 1).
    """
    from prune_env.evaluation import budget_sweep

    test = test if test is not None else task if task.cfg.split == "test" else test_task(task)
    budgets = cfg.sweep_budgets or budget_sweep.sweep_budgets(task.budget_range, cfg.sweep_points)
    if static_policy is not None:
        budgets = [test.check_budget(b) for b in budgets]
        points = [budget_sweep.evaluate_static_at_budget(test, b, static_policy, runtime_policy) for b in budgets]
        result = {"budget_range": str(test.budget_range), "budget_kind": test.cfg.budget_kind, "split": "test",
                  "points": points, "per_budget_runs": [], "summary": {}}
    else:
        search = task if task.cfg.split != "test" else None
        result = budget_sweep.sweep(test, budgets, runtime_policy, static_ratios, search=search,
                                    calibrate=cfg.sweep_calibrate, search_rounds=cfg.search_rounds, seed=cfg.seed,
                                    per_budget_runs=cfg.per_budget_runs, progress=progress)
    title = f"{cfg.algo} on {cfg.env_id}, budgets {test.budget_range} (test split)"
    files = budget_sweep.write_sweep(result, out, title=title)
    print()
    print(f"One agent for budgets {test.budget_range} ({test.cfg.budget_kind}), test split:")
    print(budget_sweep.format_sweep(result))
    print(f"results in {out}/ ({', '.join(Path(f).name for f in files.values())})")
    return {"any_budget": True, "budget_range": result["budget_range"], "budget_kind": result["budget_kind"],
            "sweep": [{"budget": p["budget"], **{m: r for m, r in p["rows"].items()}} for p in result["points"]],
            "summary": result["summary"]}


def trained_budget_range(run_dir: str | os.PathLike) -> BudgetRange | None:
    """The budget range a ``train_agents.py`` run trained its agent over (``run.json``; an Algorithm 1 or
    joint run: its runtime agent's, ``runtime/run.json``), None for one budget."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        path = Path(run_dir) / "runtime" / RUN_FILE
    if not path.is_file():
        return None
    return BudgetRange.parse(json.loads(path.read_text()).get("env_kwargs", {}).get("budget", 0.5))


def evaluate_any_budget_run(run_dir: str | os.PathLike, *, budgets: list[float] | None = None,
                            per_budget_runs: list[str] = (), out: str | os.PathLike | None = None,
                            static_agent: str | os.PathLike | None = None,
                            runtime_agent: str | os.PathLike | None = None, calibrate: bool = True) -> dict:
    """The curve of a saved any-budget agent (a ``train_agents.py`` run over a budget range) at
    ``budgets`` (default: five evenly spaced over its range) on the test split, as its training run
    writes it (:func:`evaluate_any_budget`), into ``out`` (default ``run_dir``). A budget outside the
    range, or a run trained at one budget, is a ValueError naming the range.

    The other agent: ``static_agent`` / ``runtime_agent`` where given, else the one the run recorded.
    ``calibrate=False`` skips the calibrated agent (an offset search per budget).
    """
    from dataclasses import fields

    run_dir = Path(run_dir)
    meta = json.loads((run_dir / RUN_FILE).read_text()) if (run_dir / RUN_FILE).is_file() else {}
    budget_range = trained_budget_range(run_dir)
    if budget_range is None:
        raise ValueError(f"{str(run_dir)!r} holds an agent trained at one budget "
                         f"({meta.get('env_kwargs', {}).get('budget', 0.5)!r}), not over a range: evaluate it without --budget")
    budgets = [budget_range.check(b) for b in budgets] if budgets else None
    if not (run_dir / RUN_FILE).is_file():  # finetune_cnn.py algorithm1 (or --joint): both agents and the CNN
        if static_agent is not None or runtime_agent is not None:
            raise ValueError("an Algorithm 1 run holds both agents; --runtime-agent / --static-agent apply to single-agent runs")
        from agents.report import evaluate_any_budget_pair

        rt_meta = json.loads((run_dir / "runtime" / RUN_FILE).read_text())
        cfg = RunConfig(env_id=RUNTIME, algo=rt_meta["algo"], seed=int(rt_meta.get("seed", 0)), out=str(out or run_dir),
                        sweep_budgets=budgets, per_budget_runs=list(per_budget_runs),
                        sweep_calibrate=calibrate)
        return evaluate_any_budget_pair(run_dir, cfg)
    env_id = meta["env_id"]
    model, meta = load_agent(run_dir if (run_dir / MODEL_FILE).is_file() else run_dir / CHECKPOINT_FILE)
    policy = agent_policy(model, meta)
    env_kwargs = env_kwargs_for(meta["algo"], env_id, meta.get("env_kwargs", {}))
    names = {f.name for f in fields(TaskConfig)}
    config = {k: v for k, v in env_kwargs.items() if k in names}
    if env_id == STATIC:
        config.setdefault("tradeoff_rate", STATIC_TRADEOFF_RATE)
    config.update(device="cpu", split="val" if config.get("split") == "test" else config.get("split", "val"))
    task = PruningTask(TaskConfig(**config))
    cfg = RunConfig(env_id=env_id, algo=meta["algo"], seed=int(meta.get("seed", 0)), out=str(out or run_dir),
                    sweep_budgets=budgets, per_budget_runs=list(per_budget_runs), sweep_calibrate=calibrate)
    partner = static_agent or meta.get("static_agent") if env_id == RUNTIME else runtime_agent or meta.get("runtime_agent")
    other = None
    if partner is not None:
        other_model, other_meta = load_agent(partner)
        other = agent_policy(other_model, other_meta)
    if env_id == STATIC:
        return evaluate_any_budget(cfg, task, runtime_policy=other, static_ratios=None, static_policy=policy,
                                   out=Path(cfg.out))
    static = np.ones(task.num_layers) if other is None else task.static_ratios_of(other)
    return evaluate_any_budget(cfg, task, runtime_policy=policy, static_ratios=static, out=Path(cfg.out))


def static_references(test: PruningTask, runtime_policy: Any) -> dict[str, dict]:
    """What a static agent is compared with: the dense network and the largest uniform static keep ratio
    meeting the parameter budget (with the agent's runtime partner, at the task's ``R_r``), both judged
    on the parameter budget (``within_budget``)."""
    ones = np.ones(test.num_layers)
    ratio = test.uniform_static_ratio()
    uniform = np.full(test.num_layers, ratio)
    refs = {"dense": summarize(test, rollout_split(test, 1.0, ones), ones, within="params"),
            "uniform": summarize(test, rollout_split(test, runtime_policy, uniform), uniform, within="params")}
    refs["uniform"].update(uniform_keep_ratio=ratio, uniform_static_ratio=ratio)
    return refs


def test_task(task: PruningTask) -> PruningTask:
    """The same task on the held-out test split (the agents never saw it)."""
    cfg = TaskConfig(**{**asdict(task.cfg), "split": "test"})
    return PruningTask(cfg)


#: the rows of the evaluation table of a runtime agent, in order, with their labels
TABLE_ROWS = (
    ("agent", "agent"), ("agent_calibrated", "agent, calibrated"), ("uniform", "uniform @ budget"),
    ("uniform_iso_mac", "uniform @ agent MACs"), ("best_static", "best static"), ("shuffled", "agent shuffled"),
    ("layer_mean", "agent layer mean"), ("oracle_accuracy", "oracle (labels)"), ("dense", "dense"),
)


def evaluate_run(cfg: RunConfig, task: PruningTask, *, runtime_policy: Any, static_ratios: Any, out: Path) -> dict:
    """Deterministic evaluation on the test split: table, ``metrics.json``, ``references.json``, pictures.

    A runtime agent is scored beside every reference of :func:`prune_env.evaluation.references.headroom_report`
    (the static allocation searched and the offset calibrated on the split it trained on).
    """
    test = task if task.cfg.split == "test" else test_task(task)
    agent = rollout_split(test, runtime_policy, static_ratios)
    runtime_run = cfg.env_id.split(":")[-1] != STATIC or cfg.joint
    # a static agent is held to the parameter budget ("in budget"), a runtime one to the MAC budget
    metrics = summarize(test, agent, static_ratios, within="macs" if runtime_run else "params")
    if runtime_run and cfg.references:
        search = task if task.cfg.split != "test" else None
        report = headroom_report(test, agent, static_ratios, search=search, policy=runtime_policy, calibrate=True,
                                 search_rounds=cfg.search_rounds, seed=cfg.seed)
        rows = report["rows"]
        metrics.update(report["summary"])
        if "agent_calibrated" in rows:
            calibrated = rows["agent_calibrated"]
            metrics.update(calibrated_accuracy=calibrated["accuracy"], calibrated_macs_ratio=calibrated["macs_ratio"],
                           calibration_offset=calibrated["offset"])
        references = {**{k: v for k, v in report.items() if k != "rows"}, **{k: v for k, v in rows.items() if k != "agent"}}
    elif runtime_run:
        references = reference_metrics(test)
        rows = {"agent": metrics, **references}
    else:  # static: against the uniform d_s meeting the parameter budget, same runtime partner and R_r
        references = static_references(test, runtime_policy)
        rows = {"agent": metrics, **references}
    metrics["dense_accuracy"] = rows["dense"]["accuracy"]
    metrics["uniform_accuracy"] = rows["uniform"]["accuracy"]
    metrics["uniform_keep_ratio"] = rows["uniform"]["uniform_keep_ratio"]
    write_json(references, out / "references.json")
    title = f"{cfg.algo} on {cfg.env_id if not cfg.joint else 'joint'} (test split)"
    if runtime_run:
        plot_keep_ratios(agent.keep, out / "keep_ratios.png", uniform=rows["uniform"]["uniform_keep_ratio"], title=title)
    else:  # what the static agent chose: d_s per layer, beside the uniform d_s at the parameter budget
        plot_keep_ratios(np.asarray(static_ratios, dtype=np.float64).reshape(1, -1), out / "keep_ratios.png",
                         uniform=rows["uniform"]["uniform_keep_ratio"], title=f"static keep ratios d_s: {title}")
    if runtime_run:
        difficulty = rollout_split(test, rows["uniform"]["uniform_keep_ratio"], np.ones(test.num_layers)).losses
        plot_adaptation(agent, difficulty, test.macs_budget, out / "adaptation.png", title=title)
    print()
    print(f"Test split ({metrics['num_images']} images), MAC budget {metrics['budget']:.3f} of dense, "
          f"parameter budget {metrics['params_budget']:.3f}:")
    print(format_table({label: rows[key] for key, label in TABLE_ROWS if key in rows}))
    if not runtime_run:
        print(f"in budget: stored parameters within the parameter budget; uniform @ budget: d_s = "
              f"{rows['uniform']['uniform_keep_ratio']:.3f} in every layer, the largest meeting it "
              f"(R_r = {test.tradeoff_rate:g})")
    print("per-layer keep ratio (mean ± std over inputs): " + ", ".join(
        f"{m:.2f}±{s:.2f}" for m, s in zip(metrics["keep_ratio_mean"], metrics["keep_ratio_std"])))
    if "adaptation_gain_shuffled" in metrics:
        captured = metrics["headroom_captured_accuracy"]
        print(f"adaptation gain: {100 * metrics['adaptation_gain_shuffled']:+.2f} points over its shuffled allocations, "
              f"{100 * metrics['adaptation_gain_layer_mean']:+.2f} over its layer means; headroom captured (accuracy): "
              + ("n/a" if captured is None else f"{100 * captured:.0f}%"))
    written = ["metrics.json", "references.json", "keep_ratios.png", "adaptation.png", MODEL_FILE,
               f"runtime/{MODEL_FILE}", f"static/{MODEL_FILE}", "history.csv", "history.png"]
    print(f"results in {out}/ ({', '.join(['metrics.json'] + [f for f in written[1:] if (out / f).exists()])})")
    return metrics
