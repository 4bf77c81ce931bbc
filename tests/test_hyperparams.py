"""The RL Zoo files (hyperparams/*.yml) hold agents/registry.py's settings, except the differences they declare."""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium as gym
import pytest
import yaml

from agents.config import RunConfig
from agents.registry import ENV_IDS, get_spec, hyperparameters

ROOT = Path(__file__).resolve().parents[1]
#: the zoo's algorithm names -> the registry's
ZOO_ALGOS = {"a2c": "a2c", "ddpg": "ddpg", "dqn": "dqn", "ppo": "ppo", "ppo_lstm": "recurrent_ppo", "qrdqn": "qrdqn",
             "sac": "sac", "td3": "td3", "tqc": "tqc"}
DIFFERENCE = re.compile(r"^\s+# registry difference: (\S+) -- \S")


def declared_differences(path: Path) -> dict[str, set[str]]:
    """Per env id, the keys its section declares with ``# registry difference: KEY -- why``."""
    found: dict[str, set[str]] = {}
    env = None
    for line in path.read_text().splitlines():
        top = re.match(r"^([A-Za-z][\w-]*):", line)
        if top:
            env = top.group(1)
        match = DIFFERENCE.match(line)
        if match:
            assert env is not None, f"{path.name}: a difference line before any env section"
            found.setdefault(env, set()).add(match.group(1))
    return found


def flat(settings: dict) -> dict:
    """``policy_kwargs`` and ``env_kwargs`` entries as dotted keys, beside the top-level ones."""
    out = {}
    for key, value in settings.items():
        if key in ("policy_kwargs", "env_kwargs"):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def registry_view(algo: str, env_id: str) -> dict:
    """What the registry's driver trains ``algo`` on ``env_id`` with, in the zoo's keys."""
    spec = get_spec(algo)
    params = hyperparameters(algo, env_id)
    policy = spec.policy if isinstance(spec.policy, str) else f"{spec.policy.__module__}.{spec.policy.__qualname__}"
    noise = params.pop("action_noise_std", None)
    if noise:
        params.update(noise_type="normal", noise_std=noise)
    params.update(policy=policy, n_timesteps=spec.timesteps[env_id], n_envs=RunConfig().n_envs,
                  env_kwargs=dict(spec.env_kwargs.get(env_id, {})))
    return flat(params)


def zoo_view(section: dict) -> dict:
    section = dict(section)
    section.pop("env_wrapper", None)
    kwargs = section.get("policy_kwargs", {})
    section["policy_kwargs"] = eval(kwargs, {"dict": dict}) if isinstance(kwargs, str) else dict(kwargs)  # as rl_zoo3
    section["env_kwargs"] = dict(section.get("env_kwargs") or {})
    return flat(section)


FILES = sorted(ROOT.glob("hyperparams/*.yml"))


def test_every_zoo_file_is_checked():
    assert {f.stem for f in FILES} == set(ZOO_ALGOS)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_zoo_file_agrees_with_the_registry_but_for_its_declared_differences(path):
    algo = ZOO_ALGOS[path.stem]
    config = yaml.safe_load(path.read_text())
    declared = declared_differences(path)
    assert set(config) == set(ENV_IDS) and set(declared) <= set(ENV_IDS)
    for env_id in ENV_IDS:
        zoo, registry = zoo_view(config[env_id]), registry_view(algo, env_id)
        differing = {k for k in zoo.keys() | registry.keys() if zoo.get(k, "<absent>") != registry.get(k, "<absent>")}
        assert differing == declared.get(env_id, set()), (
            f"{path.name} [{env_id}]: differs from agents/registry.py in {sorted(differing)}; declared "
            f"{sorted(declared.get(env_id, set()))}: " + "; ".join(
                f"{k}: yml {zoo.get(k, '<absent>')!r} vs registry {registry.get(k, '<absent>')!r}" for k in sorted(differing)))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_zoo_file_names_importable_classes_and_the_discrete_wrapper_where_needed(path):
    from rl_zoo3.utils import get_class_by_name

    config = yaml.safe_load(path.read_text())
    discrete = get_spec(ZOO_ALGOS[path.stem]).discrete
    for section in config.values():
        if "." in section["policy"]:
            get_class_by_name(section["policy"])
        assert ("env_wrapper" in section) == discrete
        if discrete:
            assert issubclass(get_class_by_name(section["env_wrapper"]), gym.Wrapper)
