"""A discrete-action view of the environments: ``k`` keep-ratio levels, as in RNP (Lin et al. 2017).

With it, DQN, QR-DQN and other discrete-action algorithms run on the pruning environments.
"""

from __future__ import annotations

from typing import Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

DEFAULT_LEVELS = (0.25, 0.5, 0.75, 1.0)


def _check_levels(levels: Sequence[float]) -> np.ndarray:
    arr = np.asarray(levels, dtype=np.float64).reshape(-1)
    if arr.size < 2 or not np.all((arr > 0) & (arr <= 1)):
        raise ValueError(f"levels must be at least 2 keep ratios in (0, 1], got {list(levels)}")
    return arr


class DiscreteKeepRatio(gym.ActionWrapper):
    """Action ``i`` in ``Discrete(k)`` applies keep ratio ``levels[i]``."""

    def __init__(self, env: gym.Env, levels: Sequence[float] = DEFAULT_LEVELS):
        super().__init__(env)
        self.levels = _check_levels(levels)
        self.action_space = spaces.Discrete(len(self.levels))

    def action(self, action) -> np.ndarray:
        return np.array([self.levels[int(action)]], dtype=np.float32)


class VecDiscreteKeepRatio(VecEnvWrapper):
    """:class:`DiscreteKeepRatio` for a (batched) VecEnv."""

    def __init__(self, venv: VecEnv, levels: Sequence[float] = DEFAULT_LEVELS):
        self.levels = _check_levels(levels)
        super().__init__(venv, action_space=spaces.Discrete(len(self.levels)))

    def step_async(self, actions: np.ndarray) -> None:
        self.venv.step_async(self.levels[np.asarray(actions).reshape(-1).astype(int)][:, None])

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        return self.venv.step_wait()
