"""A saved agent's ``.zip`` read without unpickling anything: what :func:`agents.saved.load_agent` does by default.

stable-baselines3 saves an agent as a zip of ``data`` (JSON; every object that is not plain JSON,
such as the policy class, the spaces and the schedules, cloudpickled into a base64 string),
``policy.pth`` and the optimizers' ``*.pth`` (``torch.save`` of state dicts) and
``pytorch_variables.pth``. ``Algorithm.load`` unpickles the cloudpickled objects, which can run
any code a crafted file names. Here the agent is rebuilt instead:

* the algorithm and its policy from the registry (:data:`agents.registry.ALGORITHMS`) and the
  run's ``run.json`` (``algo``, ``env_id``, ``preset``, ``hyperparams``, ``seed``): only
  registered algorithms, never a ``module:Class`` named in a file;
* the observation and action spaces from the plain fields SB3 writes beside each pickled space in
  ``data`` (``dtype``, ``_shape``, ``low``, ``high``; ``n`` and ``start`` of a discrete space);
* the weights from the ``.pth`` entries with ``torch.load(weights_only=True)`` (tensors, numbers,
  strings and containers only), every tensor finite, loaded with ``strict`` key and shape checks;
* ``num_timesteps``, ``_n_updates`` and ``trained_on`` from ``data``'s plain JSON.

Any other content is refused with a :class:`agents.run_files.RunFileError` naming the file and
the entry. The cloudpickled strings are never decoded.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.registry import ALGORITHMS, AlgoSpec, hyperparameters, resolve_schedules
from agents.run_files import RunFileError, short
from prune_env.errors import NonFiniteError
from prune_env.ids import ENV_IDS

#: the largest entry read from a zip (a crafted file's decompressed size is refused above it)
MAX_ENTRY_BYTES = 1 << 30
#: the plain ``data`` fields restored on the rebuilt model
RESTORED_INTS = ("num_timesteps", "_n_updates")


@dataclass
class AgentZip:
    """What a saved agent's zip holds, read without unpickling: ``data``'s JSON and the tensors of each ``.pth``."""

    path: Path
    data: dict
    params: dict[str, Any]  # "policy", "policy.optimizer", ... -> state dict
    variables: dict[str, torch.Tensor]  # pytorch_variables.pth


def _entry(path: Path, archive: zipfile.ZipFile, name: str) -> bytes:
    info = archive.getinfo(name)
    if info.file_size > MAX_ENTRY_BYTES:
        raise RunFileError(path, f"entry {name!r} of {info.file_size} bytes is larger than a saved agent's")
    try:
        return archive.read(name)
    except Exception as exc:  # zlib.error, BadZipFile (CRC), EOFError, OSError: a damaged archive
        raise RunFileError(path, f"entry {name!r} is damaged ({type(exc).__name__}: {exc}); truncated or edited?") from None


def _tensors(path: Path, name: str, raw: bytes, device: str) -> Any:
    try:
        return torch.load(io.BytesIO(raw), map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise RunFileError(path, f"entry {name!r} is damaged ({exc})") from None
        found = next((line.strip() for line in str(exc).splitlines() if "GLOBAL" in line or "Unsupported" in line), "")
        raise RunFileError(path, f"entry {name!r} refused: it holds Python objects other than tensors, numbers and "
                                 f"strings ({found}), and unpickling them could run code from the file; "
                                 "load_agent(path, trusted=True) unpickles an agent you trust") from None
    except Exception as exc:  # torch reports damage as RuntimeError, EOFError, KeyError, ...
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise RunFileError(path, f"entry {name!r} is not a torch file ({type(exc).__name__}: {first})") from None


def check_finite(path: str | os.PathLike, entry: str, state: dict) -> None:
    """A :class:`~prune_env.errors.NonFiniteError` naming the file and the first tensor of ``state``
    holding NaN or inf."""
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise NonFiniteError(f"run file {str(path)!r}: entry {entry!r}: tensor {key!r} holds NaN or inf values; "
                                 "the agent's training diverged or the file was edited")


def read_agent_zip(path: str | os.PathLike, device: str = "cpu") -> AgentZip:
    """The contents of a saved agent's zip, or a :class:`RunFileError` naming the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise RunFileError(path, "no saved agent there" if not path.exists() else "not a file")
    if path.stat().st_size == 0:
        raise RunFileError(path, "empty (0 bytes); was its writing interrupted?")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise RunFileError(path, f"not a saved agent (a zip of stable-baselines3): {exc}; truncated or edited?") from None
    with archive:
        names = archive.namelist()
        for required in ("data", "policy.pth"):
            if required not in names:
                raise RunFileError(path, f"truncated, or not a saved agent: no {required!r} entry (it holds {names[:4]})")
        try:
            data = json.loads(_entry(path, archive, "data").decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise RunFileError(path, f"entry 'data' is not JSON ({type(exc).__name__})") from None
        if not isinstance(data, dict):
            raise RunFileError(path, f"entry 'data': expected a JSON object, got {short(data)}")
        params: dict[str, Any] = {}
        for name in names:
            if not name.endswith(".pth") or name == "pytorch_variables.pth":
                continue
            state = _tensors(path, name, _entry(path, archive, name), device)
            if not isinstance(state, dict):
                raise RunFileError(path, f"entry {name!r}: expected a state dict, got {short(state)}")
            if name == "policy.pth":
                if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
                    raise RunFileError(path, "entry 'policy.pth': expected a dict of named tensors")
                check_finite(path, name, state)
            params[name[: -len(".pth")]] = state
        variables: dict[str, Any] = {}
        if "pytorch_variables.pth" in names:
            variables = _tensors(path, "pytorch_variables.pth", _entry(path, archive, "pytorch_variables.pth"), device)
            if not isinstance(variables, dict) or not all(isinstance(v, torch.Tensor) for v in variables.values()):
                raise RunFileError(path, "entry 'pytorch_variables.pth': expected a dict of tensors")
    return AgentZip(path, data, params, variables)


# --------------------------------------------------------------------------- spaces from data's plain fields
def _numbers(text: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """The array NumPy printed as ``text`` (``"[-inf 0.1 1.]"``), or None when it cannot be read back."""
    if not isinstance(text, str) or "..." in text or len(text) > 1_000_000:
        return None
    tokens = re.sub(r"[\[\],]", " ", text).split()
    try:
        values = np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError:
        return None
    if values.size == 1 and int(np.prod(shape)) != 1:
        values = np.full(shape, values[0])
    return values.reshape(shape) if values.size == int(np.prod(shape)) else None


def _integer(value: Any) -> int | None:
    """An integer, or the decimal string of one; None for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit() and len(value) < 12:
        return int(value)
    return None


def space_of(path: Path, data: dict, key: str) -> gym.Space:
    """The Box or Discrete space SB3 described in ``data[key]``; a RunFileError for anything else."""
    entry = data.get(key)
    if not isinstance(entry, dict):
        raise RunFileError(path, f"entry 'data': {key!r} missing or not a described space")
    kind = entry.get(":type:", "")
    if kind == "<class 'gymnasium.spaces.discrete.Discrete'>":
        n, start = _integer(entry.get("n")), _integer(entry.get("start", 0))  # NumPy integers are written as strings
        if n is None or start is None or not 1 <= n <= 10_000:
            raise RunFileError(path, f"entry 'data': {key!r}: expected n an integer in [1, 10000], got "
                                     f"{short(entry.get('n'))}")
        return gym.spaces.Discrete(n, start=start)
    if kind != "<class 'gymnasium.spaces.box.Box'>":
        raise RunFileError(path, f"entry 'data': {key!r}: expected a Box or a Discrete space, got {short(kind)}")
    shape, dtype = entry.get("_shape"), entry.get("dtype")
    if not (isinstance(shape, list) and 1 <= len(shape) <= 4 and all(isinstance(n, int) and 1 <= n <= 100_000 for n in shape)):
        raise RunFileError(path, f"entry 'data': {key!r}: expected a shape of positive integers, got {short(shape)}")
    if dtype not in ("float32", "float64"):
        raise RunFileError(path, f"entry 'data': {key!r}: expected dtype float32 or float64, got {short(dtype)}")
    shape = tuple(shape)
    low, high = _numbers(entry.get("low"), shape), _numbers(entry.get("high"), shape)
    if key == "action_space" and (low is None or high is None or not np.all(np.isfinite(low)) or not np.all(low <= high)):
        raise RunFileError(path, f"entry 'data': {key!r}: bounds {short(entry.get('low'))} / {short(entry.get('high'))} "
                                 "are not finite numbers low <= high")
    low = np.full(shape, -np.inf) if low is None else low
    high = np.full(shape, np.inf) if high is None else high
    try:
        return gym.spaces.Box(low.astype(dtype), high.astype(dtype), shape=shape, dtype=dtype)
    except ValueError as exc:
        raise RunFileError(path, f"entry 'data': {key!r}: {exc}") from None


# --------------------------------------------------------------------------- the rebuilt agent
def _policy_kwargs(spec: AlgoSpec, params: dict, saved: AgentZip) -> None:
    """What :func:`agents.build.build_model` takes from the training env, taken from the saved weights
    instead (in place): the layer encoders' input widths."""
    from agents.policies import LayerEncoderExtractor

    policy_kwargs = params.setdefault("policy_kwargs", {})
    if policy_kwargs.get("features_extractor_class") is LayerEncoderExtractor:
        weights = saved.params.get("policy", {})
        widths = {int(m.group(1)): int(t.shape[1]) for k, t in weights.items()
                  if (m := re.fullmatch(r"(?:pi_)?features_extractor\.encoders\.(\d+)\.weight", k)) and t.dim() == 2}
        if not widths or sorted(widths) != list(range(len(widths))):
            raise RunFileError(saved.path, "entry 'policy.pth': no layer encoder weights (features_extractor.encoders.N)")
        policy_kwargs.setdefault("features_extractor_kwargs", {})["layer_in_channels"] = [widths[t] for t in sorted(widths)]
    if not policy_kwargs:
        params.pop("policy_kwargs")


def rebuild_agent(saved: AgentZip, record: dict, record_path: str | os.PathLike, device: str = "cpu") -> Any:
    """The agent in ``saved``, built anew from the registry entry and ``record`` (the run's ``run.json``,
    at ``record_path``) and given the saved weights; a RunFileError naming the file at fault otherwise.

    The environment's defaults come from ``record["env_id"]``; a record without one (written by hand
    beside a ``model.save``) takes ``trained_on``'s, else the environment whose defaults fit the weights.
    """
    algo = record["algo"]
    if algo not in ALGORITHMS:
        raise RunFileError(record_path, f"{algo!r} is not a registered algorithm ({sorted(ALGORITHMS)}); an agent "
                                        "of another class loads only with load_agent(path, trusted=True)", "algo")
    recorded = record.get("env_id") or (saved.data.get("trained_on") or {}).get("env_id")
    candidates = [recorded] if recorded in ENV_IDS else list(ENV_IDS)
    for env_id in candidates:
        try:
            return _rebuild(saved, record, record_path, env_id, device)
        except RunFileError:
            if env_id == candidates[-1]:
                raise
    raise AssertionError("unreachable")


def _rebuild(saved: AgentZip, record: dict, record_path: str | os.PathLike, env_id: str, device: str) -> Any:
    algo = record["algo"]
    spec = ALGORITHMS[algo]
    try:
        params = resolve_schedules(hyperparameters(spec, env_id, record.get("preset", "fast"), record.get("hyperparams")))
    except ValueError as exc:
        raise RunFileError(record_path, str(exc), "hyperparams") from None
    for key in ("relative_std", "action_noise_std"):  # exploration settings; the weights say the rest
        params.pop(key, None)
    _policy_kwargs(spec, params, saved)
    observation_space = space_of(saved.path, saved.data, "observation_space")
    action_space = space_of(saved.path, saved.data, "action_space")
    try:
        model = spec.cls(policy=spec.policy, env=None, device=device, seed=record.get("seed", 0), verbose=0,
                         _init_setup_model=False, **params)
        model.observation_space, model.action_space, model.n_envs = observation_space, action_space, 1
        if getattr(model, "target_entropy", None) == "auto":  # what SAC-like algorithms would take from the env
            model.target_entropy = float(-np.prod(action_space.shape).astype(np.float32))
        model._setup_model()
    except (TypeError, ValueError, KeyError, AssertionError, AttributeError) as exc:
        raise RunFileError(record_path, f"does not build a {algo} agent on the saved spaces "
                                        f"({type(exc).__name__}: {exc})", "hyperparams") from None
    restore(model, saved)
    return model


def restore(model: Any, saved: AgentZip) -> None:
    """Give ``model`` the weights, optimizer states, step count and ``trained_on`` of ``saved``; a
    RunFileError naming the zip when they do not fit it."""
    names, variable_names = model._get_torch_save_params()
    missing = [n for n in names if n not in saved.params]
    if missing:
        raise RunFileError(saved.path, f"not this algorithm's agent: no {', '.join(f'{n}.pth' for n in missing)} entry "
                                       f"(it holds {sorted(f'{n}.pth' for n in saved.params)})")
    try:
        model.set_parameters({n: saved.params[n] for n in names}, exact_match=True, device=model.device)
    except Exception as exc:  # RuntimeError (keys, shapes), ValueError, KeyError: weights of another agent or edited
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RunFileError(saved.path, f"its weights do not fit a {type(model).__name__} of the recorded settings: "
                                       f"{first[:300]}") from None
    for name in variable_names:
        if name in saved.variables:
            target = model
            for part in name.split("."):
                target = getattr(target, part)
            if not isinstance(target, torch.Tensor) or target.shape != saved.variables[name].shape:
                raise RunFileError(saved.path, f"entry 'pytorch_variables.pth': {name!r} does not fit the agent")
            target.data = saved.variables[name].data.to(target.device)
    for key in RESTORED_INTS:
        value = saved.data.get(key, 0)
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            raise RunFileError(saved.path, f"entry 'data': {key!r}: expected an integer >= 0, got {short(value)}")
        setattr(model, key, value)
    trained_on = saved.data.get("trained_on")
    if trained_on is not None:
        from agents.run_files import OBJECT

        if not OBJECT[0](trained_on) or ":serialized:" in trained_on:
            raise RunFileError(saved.path, f"entry 'data': 'trained_on': expected a JSON object, got {short(trained_on)}")
        model.trained_on = trained_on


__all__ = ["AgentZip", "check_finite", "read_agent_zip", "rebuild_agent", "restore", "space_of"]
