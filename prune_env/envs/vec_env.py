"""A natively batched stable-baselines3 VecEnv: ``n_envs`` episodes in lockstep, one batched layer per step.

Every episode of an environment has the same length ``L``, so ``n_envs`` episodes can share
each layer computation. The VecEnv behaves exactly like ``DummyVecEnv`` over ``n_envs`` single
environments seeded ``seed + i``: the same images, observations, rewards and infos
(``terminal_observation``, ``TimeLimit.truncated``), with automatic resets.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from prune_env.envs.actions import as_keep_ratios
from prune_env.envs.budgets import budget_stream
from prune_env.envs.runtime import RuntimePruneEnv
from prune_env.envs.static import StaticPruneEnv
from prune_env.ids import RUNTIME, STATIC

ENV_CLASSES = {RUNTIME: RuntimePruneEnv, STATIC: StaticPruneEnv}
#: the episode results the monitor adds to ``info["episode"]``
MONITOR_KEYWORDS = ("macs_ratio", "params_ratio")
#: episodes whose image indices a sub-environment draws in one call
INDEX_BLOCK = 64


class IndexStreams:
    """The image indices of each sub-environment's next episodes, drawn from its own generator.

    Row ``i`` yields exactly the numbers ``int(rngs[i].integers(size))`` yields one episode at a
    time, as a single environment draws them, but fetched ``block`` at a time: NumPy's generators
    give the same numbers drawn one by one or as an array (``tests/test_envs.py`` checks it).
    """

    def __init__(self, rngs: list[np.random.Generator], size: int, block: int = INDEX_BLOCK):
        self.rngs, self.size, self.block = rngs, int(size), int(block)
        self._pending = np.zeros((len(rngs), self.block), dtype=np.int64)
        self._next = np.full(len(rngs), self.block)  # column of each row's next index; block = none left
        self._rows = np.arange(len(rngs))

    def reseed(self, i: int, rng: np.random.Generator) -> None:
        """Draw row ``i`` from ``rng`` from now on (its pending indices are dropped)."""
        self.rngs[i] = rng
        self._next[i] = self.block

    def draw(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The next index of every row, or of the given rows (an int array), in row order."""
        rows = self._rows if rows is None else rows
        for i in rows[self._next[rows] >= self.block].tolist():
            self._pending[i] = self.rngs[i].integers(self.size, size=self.block)
            self._next[i] = 0
        columns = self._next[rows]
        self._next[rows] = columns + 1
        return self._pending[rows, columns]


class SharedEpisodes:
    """What a batched vector env exposes of the one environment its lockstep episodes run in (``self.env``),
    and the budgets its sub-environments draw under a budget range."""

    env: RuntimePruneEnv | StaticPruneEnv
    _rngs: list[np.random.Generator]

    def _draw_budgets(self, options: list[dict | None]) -> np.ndarray | None:
        """Each sub-environment's budget value for its next episode, as single environment ``i`` draws
        it (``options[i]["budget"]`` where given, else from the budget stream of its generator); None
        for a one-budget environment."""
        budget_range = self.env.task.budget_range
        if budget_range is None:
            return None
        sources = getattr(self, "_budget_sources", None)
        if sources is None:  # sub-environment -> (its generator, the budget stream derived from it)
            sources = self._budget_sources = {}
        values = np.empty(len(self._rngs))
        for i, rng in enumerate(self._rngs):
            chosen = (options[i] or {}).get("budget")
            if chosen is not None:
                values[i] = budget_range.check(chosen, "options['budget']")
                continue
            if i not in sources or sources[i][0] is not rng:
                sources[i] = (rng, budget_stream(rng))
            values[i] = budget_range.sample(sources[i][1])
        return values

    @property
    def episodes(self):
        """The shared batch of episodes (replaced when the other agent's policy changes)."""
        return self.env.episodes

    @property
    def task(self):
        """The shared :class:`~prune_env.envs.task.PruningTask`."""
        return self.env.task


class BatchedPruneVecEnv(SharedEpisodes, VecEnv):
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
        self._indices = IndexStreams(self._rngs, len(self.env.task.source)) if isinstance(self.env, RuntimePruneEnv) else None
        self._actions: np.ndarray | None = None

    # ------------------------------------------------------------------ episodes
    def _start(self) -> np.ndarray:
        """Begin the next episode of every sub-environment; returns the first observations."""
        if self._indices is not None:
            indices = self._runtime_indices()
            return self.episodes.start(indices, self._draw_budgets(self._options))
        rows = []
        for i in range(self.num_envs):
            options = self._options[i] or {}
            rows.append(np.asarray(options["indices"]) if "indices" in options else self.env.sample_eval_indices(self._rngs[i]))
        return self.episodes.start(np.stack(rows), self._draw_budgets(self._options))

    def _runtime_indices(self) -> np.ndarray:
        """Each sub-environment's image: ``options["index"]`` where given, else its next draw."""
        if not any(self._options):
            return self._indices.draw()
        chosen = np.array(["index" in (options or {}) for options in self._options])
        indices = np.empty(self.num_envs, dtype=np.int64)
        indices[chosen] = [self.env._pick_index(self._options[i]) for i in np.flatnonzero(chosen).tolist()]
        indices[~chosen] = self._indices.draw(np.flatnonzero(~chosen))
        return indices

    def reset(self) -> np.ndarray:
        for i, seed in enumerate(self._seeds):
            if seed is not None:
                self._rngs[i] = seeding.np_random(seed)[0]
                if self._indices is not None:
                    self._indices.reseed(i, self._rngs[i])
        obs = self._start()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        """Take one keep ratio per episode (shape ``(n_envs,)`` or ``(n_envs, 1)``); checked here, before any step."""
        actions = as_keep_ratios(actions, "actions")
        if actions.size != self.num_envs:
            raise ValueError(f"actions: the VecEnv runs n_envs={self.num_envs} episodes and takes one keep ratio each "
                             f"(shape ({self.num_envs},) or ({self.num_envs}, 1)), got {actions.size} (shape {actions.shape})")
        self._actions = actions

    def step_wait(self):
        """Step every episode; after the last layer, report and start the next ones (as ``DummyVecEnv``)."""
        obs, rewards, done, infos = self.episodes.advance(self._actions)
        rewards = rewards.astype(np.float32)
        if not done:  # episodes terminate, they are never cut short
            infos = [{"TimeLimit.truncated": False} for _ in range(self.num_envs)]
            return obs, rewards, np.zeros(self.num_envs, dtype=bool), infos
        for info, last in zip(infos, obs):
            info["TimeLimit.truncated"] = False
            info["terminal_observation"] = last
        return self._start(), rewards, np.ones(self.num_envs, dtype=bool), infos

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

class EpisodeMonitor(VecMonitor):
    """``VecMonitor`` with a vectorised step: the same ``info["episode"] = {"r", "l", "t", *info_keywords}``
    (and monitor file rows), with no per-environment Python work in the steps where no episode ends.

    ``r`` and ``l`` are NumPy float32 / int32 scalars as in ``VecMonitor``; ``t`` (seconds since the
    monitor started, rounded to microseconds) is read once per step for all environments ending then.
    With ``copy_infos=False`` the ``episode`` entry goes into the wrapped VecEnv's own info dicts
    instead of copies: right for a VecEnv that returns new dicts every step and keeps no reference
    to them, as :class:`BatchedPruneVecEnv` does.
    """

    def __init__(self, venv: VecEnv, filename: str | None = None, info_keywords: tuple[str, ...] = (), *,
                 copy_infos: bool = True):
        super().__init__(venv, filename, info_keywords)
        self.copy_infos = copy_infos

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        self.episode_returns += rewards
        self.episode_lengths += 1
        if not dones.any():
            return obs, rewards, dones, infos
        return obs, rewards, dones, self._record(np.flatnonzero(dones), infos)

    def _record(self, ended: np.ndarray, infos: Sequence[dict]) -> list[dict]:
        """The infos (ended ones copied unless ``copy_infos`` is False) with each ended episode's
        ``episode`` entry; resets the ended episodes' tallies."""
        infos = list(infos)
        copy = self.copy_infos
        elapsed = round(time.time() - self.t_start, 6)
        for i, ret, length in zip(ended.tolist(), self.episode_returns[ended], self.episode_lengths[ended]):
            info = infos[i] = infos[i].copy() if copy else infos[i]
            episode = {"r": ret, "l": length, "t": elapsed}
            for key in self.info_keywords:
                episode[key] = info[key]
            info["episode"] = episode
            if self.results_writer:
                self.results_writer.write_row(episode)
        self.episode_count += len(ended)
        self.episode_returns[ended] = 0
        self.episode_lengths[ended] = 0
        return infos


def make_vec_env(env_id: str, n_envs: int = 1, *, seed: int | None = None, monitor: bool = True, **env_kwargs: Any) -> VecEnv:
    """The fast path SB3 trains on: a :class:`BatchedPruneVecEnv` wrapped in :class:`EpisodeMonitor`.

    ``seed`` seeds sub-environment ``i`` with ``seed + i``, as SB3's ``make_vec_env`` does.
    """
    venv: VecEnv = BatchedPruneVecEnv(env_id, n_envs, env_kwargs)
    if seed is not None:
        venv.seed(seed)
    if monitor:
        venv = EpisodeMonitor(venv, info_keywords=MONITOR_KEYWORDS, copy_infos=False)  # its infos are new each step
    return venv
