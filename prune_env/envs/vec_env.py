"""A natively batched stable-baselines3 VecEnv: ``n_envs`` episodes in lockstep, one batched layer per step.

Every episode of an environment has the same length ``L``, so ``n_envs`` episodes can share
each layer computation. The VecEnv behaves exactly like ``DummyVecEnv`` over ``n_envs`` single
environments seeded ``seed + i``: the same images, observations, rewards and infos
(``terminal_observation``, ``TimeLimit.truncated``), with automatic resets.
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from prune_env.envs.runtime import RuntimePruneEnv
from prune_env.envs.static import StaticPruneEnv

ENV_CLASSES = {"RuntimePrune-v0": RuntimePruneEnv, "StaticPrune-v0": StaticPruneEnv}


class BatchedPruneVecEnv(VecEnv):
    """``n_envs`` episodes of ``RuntimePrune-v0`` or ``StaticPrune-v0`` computed as one batch.

    Args:
        env_id: ``"RuntimePrune-v0"`` or ``"StaticPrune-v0"`` (a ``prune_env:`` prefix is allowed).
        n_envs: number of episodes run together.
        env_kwargs: the environment keywords (see the environment classes).
    """

    def __init__(self, env_id: str, n_envs: int, env_kwargs: dict | None = None):
        env_id = env_id.split(":")[-1]
        if env_id not in ENV_CLASSES:
            raise ValueError(f"env_id must be one of {sorted(ENV_CLASSES)}, got {env_id!r}")
        if int(n_envs) < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        self.env_id = env_id
        self.env = ENV_CLASSES[env_id](**(env_kwargs or {}))  # holds the shared task, spaces and normaliser
        super().__init__(int(n_envs), self.env.observation_space, self.env.action_space)
        self._rngs: list[np.random.Generator] = [seeding.np_random()[0] for _ in range(self.num_envs)]
        self._actions: np.ndarray | None = None

    # ------------------------------------------------------------------ episodes
    def _start(self) -> np.ndarray:
        env = self.env
        if isinstance(env, RuntimePruneEnv):
            size = len(env.task.source)
            starts = [env._pick_index(self._options[i]) if self._options[i] else int(self._rngs[i].integers(size)) for i in range(self.num_envs)]
            return self.episodes.start(np.asarray(starts))
        rows = []
        for i in range(self.num_envs):
            options = self._options[i] or {}
            rows.append(np.asarray(options["indices"]) if "indices" in options else env.sample_eval_indices(self._rngs[i]))
        return self.episodes.start(np.stack(rows))

    def reset(self) -> np.ndarray:
        for i, seed in enumerate(self._seeds):
            if seed is not None:
                self._rngs[i] = seeding.np_random(seed)[0]
        obs = self._start()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        obs, rewards, done, infos = self.episodes.advance(self._actions)
        dones = np.full(self.num_envs, done)
        for i, info in enumerate(infos):
            info["TimeLimit.truncated"] = False  # episodes terminate, they are never cut short
            if done:
                info["terminal_observation"] = obs[i]
        if done:
            obs = self._start()
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.env.close()

    # ------------------------------------------------------------------ VecEnv plumbing
    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self.env, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        """Call a method of the shared environment once; every index gets its result."""
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    @property
    def episodes(self):
        """The shared batch of episodes (replaced when the other agent's policy changes)."""
        return self.env.episodes

    @property
    def task(self):
        """The shared :class:`~prune_env.envs.task.PruningTask`."""
        return self.env.task


def make_vec_env(env_id: str, n_envs: int = 1, *, seed: int | None = None, monitor: bool = True, **env_kwargs: Any) -> VecEnv:
    """The fast path SB3 trains on: a :class:`BatchedPruneVecEnv` wrapped in ``VecMonitor``.

    ``seed`` seeds sub-environment ``i`` with ``seed + i``, as SB3's ``make_vec_env`` does.
    """
    venv: VecEnv = BatchedPruneVecEnv(env_id, n_envs, env_kwargs)
    if seed is not None:
        venv.seed(seed)
    if monitor:
        venv = VecMonitor(venv, info_keywords=("macs_ratio", "params_ratio"))
    return venv
