"""Saved agents: what a run directory holds, how an agent is saved, loaded and run again.

A training run's directory holds ``model.zip`` (the agent, SB3's format), ``run.json`` (what was
run: :func:`agents.config.run_record`), ``env_spec.json`` (the environment it was trained on),
``metrics.json`` and, while it trains, ``checkpoint.zip`` + ``checkpoint_state.json`` (the agent
and the environments' reward state, written atomically; ``--resume`` continues from them).

A saved agent and the environment it was trained on are recovered in one call.

Every training run writes, beside its ``model.zip``, ``env_spec.json``: the Gymnasium
:class:`~gymnasium.envs.registration.EnvSpec` of the environment the agent was trained on, its
keyword arguments included (the registry's, e.g. the paper's agent's ``observation="raw"`` and
``split="train"``, the main job's budget and the user's ``--env-kwargs``), as
``EnvSpec.to_json`` writes it; discrete-action agents get the keep-ratio level wrapper as an
additional wrapper of the spec. So, with Gymnasium and SB3 alone::

    env = gym.make(EnvSpec.from_json(Path(run, "env_spec.json").read_text()))
    model = RecurrentPPO.load(Path(run, "model.zip"))

or, in one call, with the other agent the run was trained beside (``--static-agent``,
``--runtime-agent``, ``--joint``) put back in place::

    model, env = load_agent_and_env(run)

The model also carries ``model.trained_on`` (saved in its zip): the environment id, network,
dataset, checkpoint, observation mode and shape, and the other agent. An agent used on an
environment whose observations it cannot take (another network, dataset or observation mode)
fails with a message naming them (:func:`prune_env.policies.check_observation_shape`), not SB3's
bare shape error.

Everything a run directory holds is untrusted input. :func:`load_agent` (which every path of this
package uses: ``load_agent_and_env``, ``evaluate_run.py``, ``--static-agent`` / ``--runtime-agent``,
``--resume``, ``finetune_cnn.py finetune``, the benchmark) never unpickles: it rebuilds the agent from
the registry and ``run.json`` and reads the zip's weights with ``torch.load(weights_only=True)``
(:mod:`agents.agent_zip`); ``trusted=True`` uses the algorithm's own ``load`` instead, which
unpickles. ``env_spec.json`` may only name this package's registered environments
(:func:`read_env_spec`), and the JSON files are checked as they are read (:mod:`agents.run_files`).
The agent's policy class lives in the top-level ``agents`` package (e.g.
``agents.policies.RegularizedLstmPolicy``), which must be importable where an agent is loaded;
``pip install -e .`` of this repository installs it beside ``prune_env``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec, WrapperSpec
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

import prune_env  # noqa: F401  (registers the environment ids)
from agents.registry import RUNTIME, STATIC, get_spec
from agents.run_files import RunFileError, read_json, read_run_record
from prune_env.checkpoint import CheckpointError, atomic_write
from prune_env.envs.wrappers import DEFAULT_LEVELS
from prune_env.io import write_json, write_text
from prune_env.policies import SB3Policy

#: the files of a run directory: the agent, its last checkpoint, the checkpoint's reward state, the run's record
MODEL_FILE, CHECKPOINT_FILE, STATE_FILE, RUN_FILE = "model.zip", "checkpoint.zip", "checkpoint_state.json", "run.json"
#: the Gymnasium spec of the environment, beside the agent's ``model.zip``
ENV_SPEC_FILE = "env_spec.json"
#: the one wrapper an ``env_spec.json`` may name: the keep-ratio levels of discrete-action agents
LEVEL_WRAPPER = "prune_env.envs.wrappers:DiscreteKeepRatio"
#: the keyword through which each environment takes the other agent
PARTNER_KEYWORD = {RUNTIME: "static_policy", STATIC: "runtime_policy"}
#: what to install where a saved agent is loaded
IMPORT_HINT = ("a saved agent's policy class lives in the top-level `agents` package of prune-env (e.g. "
               "agents.policies.RegularizedLstmPolicy): install the repository (`pip install -e .`) or put its root on "
               "sys.path where the agent is loaded")


# --------------------------------------------------------------------------- writing (training runs)
def env_spec_of(env_id: str, env_kwargs: dict, levels: list | None = None) -> EnvSpec:
    """The registered spec of ``env_id`` with ``env_kwargs`` (and the discrete level wrapper for ``levels``).

    Keywords that JSON cannot hold (a callable other agent, a shared normaliser) are left out
    with a warning: the spec is meant to be written.
    """
    kwargs = {}
    for key, value in env_kwargs.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            warnings.warn(f"env_spec: keyword {key}={value!r} cannot be written as JSON; left out of the spec", stacklevel=2)
            continue
        kwargs[key] = value
    wrappers = ()
    if levels is not None:
        wrappers = (WrapperSpec("DiscreteKeepRatio", LEVEL_WRAPPER, {"levels": list(levels)}),)
    return dataclasses.replace(gym.spec(env_id.split(":")[-1]), kwargs=kwargs, additional_wrappers=wrappers)


def write_env_spec(out: str | os.PathLike, spec: EnvSpec) -> Path:
    """``spec`` as ``EnvSpec.to_json`` writes it, in ``out/env_spec.json``."""
    path = Path(out) / ENV_SPEC_FILE
    write_text(spec.to_json(), path)
    return path


def trained_on(venv: Any, env_id: str, partner: str | None) -> dict:
    """What ``model.trained_on`` records: the environment, network, dataset and the other agent."""
    task = venv.unwrapped.task
    return {
        "env_id": env_id, "network": task.net.config.get("name"), "dataset": task.dataset_name,
        "checkpoint": None if task.cfg.checkpoint is None else str(task.cfg.checkpoint),
        "observation": task.cfg.observation, "observation_shape": list(venv.observation_space.shape),
        "partner": None if partner is None else {"keyword": PARTNER_KEYWORD[env_id], "path": str(partner)},
    }


def record_env(model: Any, venv: Any, out: str | os.PathLike, record: dict) -> None:
    """Write ``out/env_spec.json`` for the agent a run trains in ``out`` and set ``model.trained_on``.

    ``record`` is the run's ``run.json`` record (``env_id``, ``env_kwargs``, ``levels`` and the other
    agent, ``static_agent`` / ``runtime_agent``). ``agents.training.run`` calls this once the
    model and its training env exist.
    """
    env_id = record["env_id"]
    partner = record.get("static_agent") if env_id == RUNTIME else record.get("runtime_agent")
    if partner is not None:
        partner = str(Path(partner).resolve())
    write_env_spec(out, env_spec_of(env_id, record["env_kwargs"], record.get("levels")))
    model.trained_on = trained_on(venv, env_id, partner)


def record_joint_envs(models: dict, venvs: dict, out: str | os.PathLike, env_kwargs: dict[str, dict],
                      levels: list | None = None) -> None:
    """:func:`record_env` for both agents of a joint run (``out/runtime``, ``out/static``), each the other's partner."""
    subs = {RUNTIME: "runtime", STATIC: "static"}
    for env_id, sub in subs.items():
        write_env_spec(Path(out) / sub, env_spec_of(env_id, env_kwargs[env_id], levels))
        models[env_id].trained_on = trained_on(venvs[env_id], env_id, f"../{subs[STATIC if env_id == RUNTIME else RUNTIME]}")


# --------------------------------------------------------------------------- saving and loading agents
def atomic_model_save(model: BaseAlgorithm, path: Path) -> Path:
    """``model.save`` through :func:`prune_env.checkpoint.atomic_write`: a kill or a full disk never corrupts ``path``."""
    return atomic_write(path, model.save)


def reward_state(venv: VecEnv) -> dict:
    """The environment's shared reward state: ``beta`` (Eq. 9) and, under an average budget, ``lambda``."""
    return venv.unwrapped.env.reward_state()


def load_reward_state(venv: VecEnv, state: dict) -> None:
    """Restore what :func:`reward_state` saved."""
    venv.unwrapped.env.set_reward_state(state)


def save_agent_checkpoint(model: BaseAlgorithm, venv: VecEnv, out: Path) -> None:
    """``out/checkpoint.zip`` and ``out/checkpoint_state.json`` (steps, reward state), each written atomically."""
    atomic_model_save(model, out / CHECKPOINT_FILE)
    write_json({"num_timesteps": model.num_timesteps, **reward_state(venv)}, out / STATE_FILE)


def agent_files(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(zip, run.json)`` of a saved agent: a run directory's ``model.zip``, or a ``.zip`` beside its ``run.json``."""
    path = Path(path)
    zip_path = path / MODEL_FILE if path.is_dir() else path
    return zip_path, zip_path.parent / RUN_FILE


def load_agent(path: str | os.PathLike, device: str = "cpu", *, trusted: bool = False) -> tuple[BaseAlgorithm, dict]:
    """Load a saved agent: a run directory (``model.zip`` + ``run.json``) or a ``.zip`` beside its ``run.json``.

    By default nothing in the files is unpickled (:mod:`agents.agent_zip`): the agent is rebuilt from
    the registry and ``run.json`` and given the zip's weights, read with ``torch.load(weights_only=True)``;
    a crafted file is refused, as are damaged ones and weights holding NaN or inf, with a
    :class:`agents.run_files.RunFileError` naming the file. ``trusted=True`` loads with the
    algorithm's own ``load`` (stable-baselines3's, which unpickles the objects in the zip's ``data``
    and can run code from it): only for files you wrote or whose source you trust, and the only way
    to load an agent of an unregistered (``module:Class``) algorithm.

    Returns:
        ``(model, meta)``: the agent and its validated ``run.json``.
    """
    from stable_baselines3.common.utils import get_device

    from agents.agent_zip import read_agent_zip, rebuild_agent

    device = str(get_device(device))  # "auto": CUDA when available
    zip_path, meta_path = agent_files(path)
    if not zip_path.is_file():
        raise RunFileError(zip_path, "no saved agent there" + (" (the directory holds no model.zip)" if Path(path).is_dir()
                                                                 else ""))
    if not meta_path.is_file():
        raise RunFileError(meta_path, f"missing: it says which algorithm saved {str(zip_path)!r}")
    meta = read_run_record(meta_path)
    if meta.get("env_id") == "joint":
        raise RunFileError(meta_path, "a joint run's record: load its runtime/ or static/ agent", "env_id")
    if trusted:
        try:
            return get_spec(meta["algo"]).cls.load(zip_path, device=device), meta
        except (ImportError, AttributeError):
            raise
        except Exception as exc:  # SB3 reports a damaged zip as AssertionError, KeyError, BadZipFile, ...
            raise RunFileError(zip_path, f"not a loadable agent ({type(exc).__name__}: {exc})") from None
    return rebuild_agent(read_agent_zip(zip_path, device), meta, meta_path, device), meta


def agent_policy(model: BaseAlgorithm, meta: dict | None = None) -> SB3Policy:
    """The deterministic keep-ratio policy of a trained model (discrete ones mapped to their levels)."""
    levels = (meta or {}).get("levels")
    if levels is None and get_spec((meta or {}).get("algo", "ppo")).discrete:
        levels = list(DEFAULT_LEVELS)
    return SB3Policy(model, levels=levels)


# --------------------------------------------------------------------------- reading
def read_env_spec(run_dir: str | os.PathLike) -> EnvSpec:
    """The spec in ``run_dir/env_spec.json``; for runs saved before it existed, rebuilt from ``run.json``.

    The file is untrusted input: its ``id`` must be one of this package's environments, its
    ``entry_point`` (and ``vector_entry_point``) the registered one, its ``kwargs`` the
    environment's keywords, its wrappers at most the keep-ratio level wrapper; the spec returned is
    built from the registry (:func:`env_spec_of`), never from the file's entry points. Anything
    else is a :class:`agents.run_files.RunFileError` naming the file and the field.
    """
    run_dir = Path(run_dir)
    path = run_dir / ENV_SPEC_FILE
    if path.is_file():
        return checked_env_spec(path, read_json(path))
    meta_path = run_dir / RUN_FILE
    if not meta_path.is_file():
        raise RunFileError(path, f"missing, and so is {str(meta_path)!r}: not a training run's directory")
    meta = read_run_record(meta_path)
    if meta.get("env_id") not in PARTNER_KEYWORD:
        raise RunFileError(meta_path, "expected the record of a RuntimePrune-v0 or StaticPrune-v0 run (a joint run: load "
                                      "its runtime/ or static/ agent)", "env_id")
    return env_spec_of(meta["env_id"], checked_env_kwargs(meta_path, meta["env_id"], meta.get("env_kwargs", {}), "env_kwargs"),
                       meta.get("levels"))


#: keywords whose strings name code to import elsewhere ("module:function"): a run file may only name registered ones
NAMED_KEYWORDS = ("model", "dataset")


def checked_env_kwargs(path: Path, env_id: str, kwargs: Any, field: str = "kwargs") -> dict:
    """``kwargs`` read from ``path`` when every key is a keyword of ``env_id`` with a JSON value and
    no ``model`` / ``dataset`` names an importable ``module:function``; a RunFileError otherwise."""
    from agents.run_files import OBJECT, short
    from prune_env.cli import env_keywords

    if not OBJECT[0](kwargs):
        raise RunFileError(path, f"expected a JSON object of keywords, got {short(kwargs)}", field)
    accepted = env_keywords(env_id)
    for key, value in kwargs.items():
        if key not in accepted:
            raise RunFileError(path, f"{key!r} is not a keyword of {env_id} (accepted: {', '.join(accepted)})", field)
        if key in NAMED_KEYWORDS and value is not None and (not isinstance(value, str) or ":" in value):
            raise RunFileError(path, f"{key}={short(value)}: a run file names a registered {key} only "
                                     "(a 'module:function' is never imported from it)", field)
    return dict(kwargs)


def checked_env_spec(path: Path, data: dict) -> EnvSpec:
    """The spec ``env_spec.json`` at ``path`` describes, rebuilt from the registry (see :func:`read_env_spec`)."""
    from agents.run_files import ENV_ID, check_fields, short

    check_fields(path, data, {"id": (ENV_ID, True)})
    registered = gym.spec(data["id"])
    for field in ("entry_point", "vector_entry_point"):
        expected = getattr(registered, field)
        if field in data and data[field] != expected:
            raise RunFileError(path, f"{short(data[field])} is not the entry point registered for {data['id']} "
                                     f"({expected!r}); a run file never names code to run", field)
    kwargs = checked_env_kwargs(path, data["id"], data.get("kwargs", {}))
    wrappers = data.get("additional_wrappers", [])
    levels = None
    if not isinstance(wrappers, list) or len(wrappers) > 1:
        raise RunFileError(path, f"expected at most the keep-ratio level wrapper, got {short(wrappers)}", "additional_wrappers")
    for wrapper in wrappers:
        if not (isinstance(wrapper, dict) and wrapper.get("name") == "DiscreteKeepRatio"
                and wrapper.get("entry_point") == LEVEL_WRAPPER and isinstance(wrapper.get("kwargs"), dict)):
            raise RunFileError(path, f"expected the keep-ratio level wrapper ({LEVEL_WRAPPER}), got {short(wrapper)}",
                               "additional_wrappers")
        levels = wrapper["kwargs"].get("levels")
        from agents.run_files import LEVELS

        if levels is None or not LEVELS[0](levels):
            raise RunFileError(path, f"levels: expected {LEVELS[1]}, got {short(levels)}", "additional_wrappers")
    return env_spec_of(data["id"], kwargs, levels)


def _partner_path(run_dir: Path, path: str) -> Path:
    """The other agent's directory: relative to the run (joint runs) or as recorded."""
    candidate = (run_dir / path).resolve()
    return candidate if candidate.exists() else Path(path)


def budget_override(spec: EnvSpec, budget: float) -> float:
    """``budget`` when the agent of ``spec`` was trained over a range holding it; a ValueError naming the
    range otherwise (outside it, or an agent trained at one budget, whose observations never moved)."""
    from prune_env.envs.budgets import BudgetRange

    trained = spec.kwargs.get("budget", 0.5)
    budget_range = BudgetRange.parse(trained)
    if budget_range is None:
        raise ValueError(f"budget={budget!r}: this agent was trained at one budget ({trained!r}), not over a range; "
                         f"only an any-budget agent (e.g. --env-kwargs budget=0.3:0.7) takes the budget as an argument")
    return budget_range.check(budget)


def load_agent_and_env(run_dir: str | os.PathLike, device: str = "cpu", *, partner: bool = True,
                       budget: float | None = None, trusted: bool = False, **env_kwargs: Any):
    """The saved agent of a training run and ``gym.make`` of the environment it was trained on.

    Args:
        run_dir: a ``train_agents.py`` output directory (``model.zip``, ``run.json``,
            ``env_spec.json``), or a joint run's ``runtime`` / ``static`` subdirectory, or a
            ``.zip`` in such a directory (e.g. ``checkpoint.zip``).
        device: torch device of the agent.
        partner: put the other agent the run was trained beside back in place (loaded with this
            function's rules); False leaves the environment's default (no other agent).
        budget: for an agent trained over a budget range, the one budget the environment holds it to
            (:class:`~prune_env.envs.budgets.AtBudget`; inside the range, else a ValueError naming it:
            :func:`budget_override`).
        trusted: load the agents with their algorithm's own ``load``, which unpickles (see :func:`load_agent`).
        **env_kwargs: keywords that override the recorded ones (e.g. ``split="test"``).

    Returns:
        ``(model, env)``: the SB3 model (``model.trained_on`` says where it was trained) and a
        single environment whose observations and actions are the ones it was trained on.
    """
    path = Path(run_dir)
    folder = path if path.is_dir() else path.parent
    try:
        model, meta = load_agent(path, device=device, trusted=trusted)
    except (ImportError, AttributeError) as exc:
        raise ImportError(f"agent {str(path)!r} could not be loaded ({exc}); {IMPORT_HINT}") from exc
    spec = read_env_spec(folder)
    source = folder / ENV_SPEC_FILE if (folder / ENV_SPEC_FILE).is_file() else folder / RUN_FILE
    if budget is not None:
        budget = budget_override(spec, budget)
    record = getattr(model, "trained_on", None) or {}
    other = record.get("partner")
    if partner and other and PARTNER_KEYWORD[spec.id] not in env_kwargs:
        zip_path = agent_files(path)[0]
        if not (isinstance(other, dict) and isinstance(other.get("path"), str)):
            raise RunFileError(zip_path, f"trained_on.partner: expected {{'keyword', 'path'}}, got {other!r:.80}")
        other_model, other_meta = load_agent(_partner_path(folder, other["path"]), device=device, trusted=trusted)
        env_kwargs[PARTNER_KEYWORD[spec.id]] = agent_policy(other_model, other_meta)
    try:
        env = gym.make(spec, **env_kwargs)
    except CheckpointError:
        raise
    except (ValueError, TypeError) as exc:  # a keyword the environment refuses: the file's (or the caller's)
        raise RunFileError(source, f"its keywords{' with ' + ', '.join(env_kwargs) if env_kwargs else ''} do not make "
                                   f"{spec.id}: {exc}", "kwargs" if source.name == ENV_SPEC_FILE else "env_kwargs") from None
    if budget is not None:  # the range the agent was trained over, every episode at this budget
        from prune_env.envs.budgets import AtBudget

        env = AtBudget(env, budget)
    if env.observation_space.shape != model.observation_space.shape:
        from prune_env.policies import describe_trained_on

        raise RunFileError(agent_files(path)[0], f"trained on {describe_trained_on(record or None)} with observations of "
                                                 f"shape {model.observation_space.shape}, but the recorded environment "
                                                 f"({str(source)!r}) gives {env.observation_space.shape}")
    return model, env
