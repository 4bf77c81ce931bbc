"""Train the runtime and/or static agent on the batched environments, checkpoint, resume, then evaluate.

This is the engine behind ``train_agents.py``; it can be driven from Python as well::

    from agents.config import RunConfig
    from agents.training import run
    metrics = run(RunConfig(env_id="RuntimePrune-v0", out="runs/demo"))

The run's configuration is :mod:`agents.config`, its files :mod:`agents.saved`, its callbacks
:mod:`agents.callbacks` and its evaluation on the test split :mod:`agents.evaluate`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.vec_env import VecEnv

import prune_env
from agents.agent_zip import read_agent_zip, restore
from agents.callbacks import AtomicCheckpointCallback, PruningLogCallback, check_finite_agent
from agents.config import (
    MAIN_JOB_ENV_KWARGS,
    STATIC_ONLY,
    RunConfig,
    default_timesteps,
    on_policy,
    run_record,
)
from agents.evaluate import evaluate_any_budget, evaluate_run
from agents.joint import JointEpisodes, JointTrainer, joint_models_ok, off_policy_refusal, resolve_agent_update, rollout_batches
from agents.policies import LayerEncoderExtractor
from agents.registry import RUNTIME, STATIC, AlgoSpec, as_spec, env_kwargs_for, hyperparameters, resolve_schedules
from agents.run_files import RunFileError, read_run_record, read_state
from agents.saved import (
    CHECKPOINT_FILE,
    ENV_SPEC_FILE,
    MODEL_FILE,
    RUN_FILE,
    STATE_FILE,
    agent_policy,
    atomic_model_save,
    load_agent,
    load_reward_state,
    record_env,
    record_joint_envs,
    save_agent_checkpoint,
)
from agents.steps import StepsProgress, fit_rollout
from prune_env.checkpoint import CheckpointError
from prune_env.envs import VecDiscreteKeepRatio
from prune_env.envs.budgets import BudgetRange
from prune_env.envs.task import JOINT_TRADEOFF_RATE
from prune_env.envs.wrappers import DEFAULT_LEVELS
from prune_env.errors import UsageError
from prune_env.interrupt import deferred_interrupt
from prune_env.io import write_json
from prune_env.progress import bar as progress_bar


# --------------------------------------------------------------------------- building
def make_env(env_id: str, algo: str | AlgoSpec, n_envs: int, seed: int, env_kwargs: dict) -> VecEnv:
    """The batched, monitored training VecEnv for ``algo``, a name or its resolved spec (discrete
    algorithms get the level wrapper)."""
    spec = as_spec(algo)
    venv = prune_env.make_vec_env(env_id, n_envs, seed=seed, **env_kwargs_for(spec, env_id, env_kwargs))
    if spec.discrete:
        venv = VecDiscreteKeepRatio(venv, DEFAULT_LEVELS)
    return venv


def build_model(cfg: RunConfig, env_id: str, venv: VecEnv, tb_dir: Path | None) -> BaseAlgorithm:
    """A new model of ``cfg.algo`` on ``venv`` with the registry's hyper-parameters and the overrides."""
    spec = cfg.spec
    params = resolve_schedules(hyperparameters(cfg.spec, env_id, cfg.preset, cfg.hyperparams))
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
        save_agent_checkpoint(model, venv, out)
        print(f"\ninterrupted at {model.num_timesteps} steps; saved {out / CHECKPOINT_FILE}; continue with --resume",
              file=sys.stderr)
        raise
    check_finite_agent(model, out)
    save_agent_checkpoint(model, venv, out)


def prepare_agent(cfg: RunConfig, env_id: str, out: Path, env_kwargs: dict) -> tuple[BaseAlgorithm, VecEnv, bool]:
    """Build (or, with ``--resume``, reload) one agent and its training env; writes nothing.

    The checkpoint is read as untrusted input (:mod:`agents.agent_zip`: never unpickled, the model
    rebuilt from ``cfg`` and given its weights, optimizer state and step count); a bad checkpoint
    or ``checkpoint_state.json`` is a :class:`agents.run_files.RunFileError` naming it. Keywords
    or hyper-parameters that do not build are a :class:`prune_env.errors.UsageError` naming
    ``--env-kwargs`` / ``--hyperparams``.
    """
    ckpt = out / CHECKPOINT_FILE
    resuming = cfg.resume and ckpt.is_file()
    saved = read_agent_zip(ckpt) if resuming else None  # checked before anything is built
    state = read_state(out / STATE_FILE) if resuming else None
    try:
        venv = make_env(env_id, cfg.spec, cfg.n_envs, cfg.seed, env_kwargs)
    except CheckpointError:
        raise
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--env-kwargs: {exc}") from None
    try:
        model = build_model(cfg, env_id, venv, out / "tb")
    except (ValueError, TypeError) as exc:
        venv.close()
        raise UsageError(f"--hyperparams: {exc}") from None
    if saved is None:
        if cfg.resume:
            print(f"--resume: no checkpoint at {ckpt}; starting afresh", file=sys.stderr)
        return model, venv, True
    restore(model, saved)
    try:
        load_reward_state(venv, state)
    except (ValueError, TypeError, KeyError) as exc:
        raise RunFileError(out / STATE_FILE, f"not this environment's reward state ({type(exc).__name__}: {exc})") from None
    model.num_timesteps = int(state["num_timesteps"])
    return model, venv, False


def _policy_kwargs_from(env_kwargs: dict, path: str | None, device: str, key: str) -> dict:
    if path is None:
        return env_kwargs
    model, meta = load_agent(path, device=device)
    return {**env_kwargs, key: agent_policy(model, meta)}


def check_resume(cfg: RunConfig, out: Path) -> None:
    """With ``cfg.resume``: the run in ``out`` (its ``run.json``, read as untrusted input) was started
    with the same algorithm and environment; a UsageError naming the option otherwise."""
    path = out / RUN_FILE
    if not (cfg.resume and path.is_file()):
        return
    started = read_run_record(path)
    env_id = "joint" if cfg.joint else cfg.env_id.split(":")[-1]
    for key, option, given in (("algo", "--algo", cfg.algo), ("env_id", "--env", env_id)):
        if started[key] != given:
            raise UsageError(f"--resume: {str(path)!r} records a run started with {option} {started[key]} "
                             f"(key {key!r}), not {given}")


@contextmanager
def failed_start_cleaned(out: Path, written: list[Path]):
    """A run that fails before its first checkpoint leaves ``out`` reusable: the files in ``written``
    (its ``run.json``, ``env_spec.json``) are removed again, so that the same command can run again.
    A Ctrl-C saves a checkpoint (:func:`learn`) and keeps them."""
    try:
        yield
    except Exception:
        if written and not (out / CHECKPOINT_FILE).exists():
            for path in written:
                path.unlink(missing_ok=True)
        raise


#: what :func:`start_supervised` writes into the run directory
SUPERVISED_START_FILE = "supervised_start.json"


def start_supervised(model: BaseAlgorithm, venv: VecEnv, out: Path, cfg: RunConfig) -> dict:
    """The runtime policy behaviour-cloned on the training split's oracle targets (:mod:`agents.supervised_start`);
    writes ``supervised_start.json``. A UsageError naming ``--supervised-start`` where it cannot apply."""
    from agents.supervised_start import supervised_start

    try:
        figures = supervised_start(model, venv.unwrapped.task, venv.unwrapped.env.static_ratios,
                                   objective=cfg.supervised_start, family=cfg.supervised_family,
                                   **({"levels": tuple(cfg.supervised_levels)} if cfg.supervised_levels else {}),
                                   search_rounds=cfg.search_rounds, seed=cfg.seed)
    except ValueError as exc:
        raise UsageError(f"--supervised-start: {exc}") from None
    write_json(figures, out / SUPERVISED_START_FILE)
    r = figures["correlation_with_targets"]
    print(f"supervised start: {figures['images']} {figures['split']} images, oracle targets ({figures['objective']}) "
          f"among {figures['family']} allocations, mean keep {figures['target_keep_mean']:.3f}; "
          f"the cloned policy's mean keep per input correlates "
          f"{'n/a' if r is None else f'{r:.2f}'} with them ({figures['seconds']:.0f} s)", file=sys.stderr)
    return figures


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
    check_resume(cfg, out)
    model, venv, fresh = prepare_agent(cfg, env_id, out, env_kwargs)  # nothing is written before this succeeds
    written = [out / RUN_FILE, out / ENV_SPEC_FILE]
    with failed_start_cleaned(out, written if fresh else []):
        write_json({**record, "status": "training"}, out / RUN_FILE)
        record_env(model, venv, out, record)  # env_spec.json beside the agent, model.trained_on
        if fresh and cfg.supervised_start is not None:
            start_supervised(model, venv, out, cfg)
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


#: the agent update of ``train_agents.py --joint`` when none is asked for. Without the CNN phase the
#: joint update spent 0.252-0.265 of dense MACs against the 0.253 per-input budget and scored 0.3-0.6
#: points below the alternation (0.233-0.245 MACs) over 3 seeds of the embedded default
#: (docs/results/algorithm1.md); in Algorithm 1, with the CNN phase, the joint update is the default.
JOINT_RUN_DEFAULT_UPDATE = "alternating"


def joint_agent_update(cfg: RunConfig, option: str = "agent_update") -> str:
    """``cfg.agent_update`` checked, or its default for a ``--joint`` run (:data:`JOINT_RUN_DEFAULT_UPDATE`);
    ``"joint"`` trains on-policy algorithms (recurrent_ppo, ppo, a2c, trpo) at one budget: asking for it
    with an off-policy one or a budget range is a ValueError naming ``option`` and the alternation
    (the rules of ``agents.algorithm1.Algorithm1Config``, :func:`agents.joint.resolve_agent_update`)."""
    budget = cfg.env_kwargs.get("budget", 0.5)
    ranged = BudgetRange.parse(budget) is not None
    return resolve_agent_update(cfg.agent_update, budget_range=budget if ranged else None,
                                on_policy=on_policy(cfg.spec), algo=cfg.algo, option=option,
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
            save_agent_checkpoint(models[env_id], venvs[env_id], out / sub)
        print(f"\ninterrupted at {models[RUNTIME].num_timesteps} runtime / {models[STATIC].num_timesteps} static steps; "
              f"saved {out / 'runtime' / CHECKPOINT_FILE} and {out / 'static' / CHECKPOINT_FILE}; continue with --resume",
              file=sys.stderr)
        raise
    for env_id, sub in subs.items():
        save_agent_checkpoint(models[env_id], venvs[env_id], out / sub)


def joint_env_kwargs(algo: str | AlgoSpec, env_kwargs: dict) -> dict[str, dict]:
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
    check_resume(cfg, out)
    models, venvs = {}, {}
    for env_id, sub in ((RUNTIME, "runtime"), (STATIC, "static")):  # nothing is written before both are built
        models[env_id], venvs[env_id], fresh = prepare_agent(cfg, env_id, out / sub,
                                                             joint_env_kwargs(cfg.spec, env_kwargs)[env_id])
    write_json({**record, "status": "training"}, out / RUN_FILE)
    for env_id, sub in ((RUNTIME, "runtime"), (STATIC, "static")):
        write_json(run_record(cfg, env_id, env_kwargs), out / sub / RUN_FILE)
    record_joint_envs(models, venvs, out, joint_env_kwargs(cfg.spec, env_kwargs), record["levels"])  # env_spec.json, trained_on
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
                save_agent_checkpoint(models[env_id], venvs[env_id], out / sub)

    try:
        learn_jointly(joint, models, venvs, out, left, after_update)
    finally:
        bar.close()
    return {**asdict(plan), "runtime_steps": plan.runtime_steps, "static_steps": plan.static_steps}


