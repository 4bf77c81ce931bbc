"""The environments: ``RuntimePrune-v0`` and ``StaticPrune-v0``, single and natively batched.

The single environments import Gymnasium and torch only: ``gym.make("RuntimePrune-v0")`` does not
load stable-baselines3. The SB3 side (the batched :class:`BatchedPruneVecEnv`, the VecEnv wrappers)
is imported on first use of its name.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from prune_env.envs.runtime import RuntimePruneEnv
from prune_env.envs.static import StaticPruneEnv

# name -> the module that defines it, imported when the name is first asked for
_LAZY = {
    "BatchedPruneVecEnv": "prune_env.envs.vec_env",
    "EpisodeMonitor": "prune_env.envs.vec_env",
    "make_vec_env": "prune_env.envs.vec_env",
    "DiscreteKeepRatio": "prune_env.envs.wrappers",
    "VecDiscreteKeepRatio": "prune_env.envs.wrappers",
    "AMCWrapper": "prune_env.envs.wrappers",
    "VecAMCWrapper": "prune_env.envs.wrappers",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'prune_env.envs' has no attribute {name!r}")


__all__ = ["RuntimePruneEnv", "StaticPruneEnv", *_LAZY]
