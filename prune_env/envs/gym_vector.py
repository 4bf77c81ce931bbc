"""Gymnasium's vector API over the lockstep episodes: ``gym.make_vec(id, num_envs, vectorization_mode="vector_entry_point")``.

Both environment ids register these classes as their ``vector_entry_point`` (as Gymnasium's
CartPole registers ``CartPoleVectorEnv``), so::

    envs = gym.make_vec("RuntimePrune-v0", num_envs=64, vectorization_mode="vector_entry_point", budget=0.5)

returns one :class:`gymnasium.vector.VectorEnv` that runs the ``num_envs`` episodes as one batch,
one batched layer computation per step, over the same :class:`~prune_env.envs.runtime.RuntimeEpisodes`
/ :class:`~prune_env.envs.static.StaticEpisodes` the single environments and the SB3
:class:`~prune_env.envs.vec_env.BatchedPruneVecEnv` run. It behaves as ``SyncVectorEnv`` over
``num_envs`` single environments (``vectorization_mode="sync"``) that share one reward normaliser
(``tests/test_gym_vector.py`` compares them step by step):

* ``reset(seed=s)`` seeds sub-environment ``i`` with ``s + i`` (a list gives one seed each), and
  sub-environment ``i`` then draws exactly the images (validation batches) single environment
  ``i`` would draw; ``options`` go to every sub-environment (``{"index": i}`` for all, as in
  ``SyncVectorEnv``);
* ``autoreset_mode`` (keyword, default :attr:`AutoresetMode.NEXT_STEP`, Gymnasium's default):

  - ``NEXT_STEP``: the step after the last layer returns the next episodes' first observations
    with reward 0, ``terminated = truncated = False`` and the reset ``info``; its actions are ignored;
  - ``SAME_STEP``: the last layer's step already returns the next episodes' first observations;
    the terminal ones are in ``info["final_obs"]`` and the episode results in ``info["final_info"]``;
  - ``DISABLED``: call ``reset()`` (or ``reset(options={"reset_mask": terminated})``) after the last layer;

* ``info`` is a dict of arrays, one entry per sub-environment, each key ``k`` with its mask
  ``info["_k"]`` (Gymnasium's convention), holding what the single environments' infos hold, with
  the dtypes ``SyncVectorEnv`` gives them (``int64``, ``float64``, ``bool``, object arrays for lists).

Every episode has ``L`` steps and all of them start together, so they also end together: every
sub-environment terminates at the same step, and a ``reset_mask`` must reset all of them.
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from prune_env.envs.actions import as_keep_ratios
from prune_env.envs.runtime import RuntimePruneEnv
from prune_env.envs.vec_env import ENV_CLASSES, IndexStreams, SharedEpisodes


def stack_infos(infos: Sequence[dict], num_envs: int) -> dict[str, Any]:
    """The per-environment info dicts as one dict of arrays with ``_key`` masks.

    Gives what ``VectorEnv._add_info`` builds from them one environment at a time, for the case
    where every environment reports (episodes end together): numbers become arrays of their Python
    type (``int`` -> int64, ``float`` -> float64, ``bool`` -> bool), NumPy arrays are stacked,
    nested dicts are stacked recursively, anything else (lists) goes into an object array.
    """
    out: dict[str, Any] = {}
    for key, first in infos[0].items():
        values = [info[key] for info in infos]
        if isinstance(first, dict):
            array: Any = stack_infos(values, num_envs)
        elif type(first) in (int, float, bool) or isinstance(first, np.number):
            array = np.array(values, dtype=type(first))
        elif isinstance(first, np.ndarray):
            array = np.stack(values).astype(first.dtype, copy=False)
        else:
            array = np.empty(num_envs, dtype=object)
            for i, value in enumerate(values):
                array[i] = value
        out[key], out[f"_{key}"] = array, np.ones(num_envs, dtype=bool)
    return out


class PruneVectorEnv(SharedEpisodes, gym.vector.VectorEnv):
    """``num_envs`` episodes of one pruning environment as one batch (see the module docstring).

    Args:
        num_envs: the number of sub-environments (episodes run together).
        autoreset_mode: :class:`gymnasium.vector.AutoresetMode` or its name (default ``"NextStep"``).
        **env_kwargs: the environment's keywords (see :class:`~prune_env.envs.runtime.RuntimePruneEnv`
            and :class:`~prune_env.envs.static.StaticPruneEnv`), shared by every sub-environment.

    Attributes:
        env: the one environment that holds the shared task, spaces, reward normaliser and the
            other agent's policy (``env.set_static_policy`` / ``env.set_runtime_policy`` change it
            for every sub-environment).
    """

    #: set by the subclass of each environment id
    env_id: str = ""

    def __init__(self, num_envs: int = 1, *, autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
                 **env_kwargs: Any):
        super().__init__()
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        try:
            self.autoreset_mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise ValueError(f"autoreset_mode must be one of {[m.value for m in AutoresetMode]}, "
                             f"got {autoreset_mode!r}") from None
        self.env = ENV_CLASSES[self.env_id](**env_kwargs)
        self.num_envs = int(num_envs)
        self.metadata = {**self.env.metadata, "autoreset_mode": self.autoreset_mode}
        self.single_observation_space = self.env.observation_space
        self.single_action_space = self.env.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._rngs = [seeding.np_random()[0] for _ in range(self.num_envs)]
        self._runtime = isinstance(self.env, RuntimePruneEnv)
        self._indices = IndexStreams(self._rngs, len(self.env.task.source)) if self._runtime else None
        self._needs_reset = True  # the episodes have ended (or never started)
        self._started = False

    # ------------------------------------------------------------------ Gymnasium's vector API
    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict | None = None):
        """Start ``num_envs`` new episodes; returns the first observations and the reset infos."""
        seeds = self._seeds(seed)
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is not None:
            self._check_reset_mask(mask)
        for i, single_seed in enumerate(seeds):
            if single_seed is not None:
                self._rngs[i] = seeding.np_random(single_seed)[0]
                if self._indices is not None:
                    self._indices.reseed(i, self._rngs[i])
        return self._start(options)

    def step(self, actions):
        """One layer of every episode (see ``autoreset_mode`` in the module docstring)."""
        actions = as_keep_ratios(actions, "actions")
        if actions.size != self.num_envs:
            raise ValueError(f"actions: the vector env runs num_envs={self.num_envs} episodes and takes one keep ratio each "
                             f"(shape ({self.num_envs}, 1) or ({self.num_envs},)), got {actions.size} (shape {actions.shape})")
        if not self._started:
            raise RuntimeError("call reset() before step()")
        n = self.num_envs
        if self._needs_reset:
            if self.autoreset_mode != AutoresetMode.NEXT_STEP:
                raise RuntimeError("the episodes have ended: call reset() before step() "
                                   f"(autoreset_mode={self.autoreset_mode.value})")
            obs, info = self._start({})
            return obs, np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), info
        obs, rewards, done, infos = self.episodes.advance(actions.reshape(n, 1))
        rewards = np.asarray(rewards, dtype=np.float64)
        terminated, truncated = np.full(n, bool(done)), np.zeros(n, dtype=bool)
        if not done:
            return obs, rewards, terminated, truncated, {}
        final_info = stack_infos(infos, n)
        if self.autoreset_mode != AutoresetMode.SAME_STEP:
            self._needs_reset = True
            return obs, rewards, terminated, truncated, final_info
        final_obs = np.empty(n, dtype=object)
        for i, row in enumerate(obs):
            final_obs[i] = row
        next_obs, reset_info = self._start({})
        mask = np.ones(n, dtype=bool)
        info = {"final_obs": final_obs, "_final_obs": mask, "final_info": final_info, "_final_info": mask.copy(), **reset_info}
        return next_obs, rewards, terminated, truncated, info

    def render(self):
        """The environments have no render modes."""
        return None

    def close_extras(self, **kwargs: Any) -> None:
        self.env.close()

    # ------------------------------------------------------------------ SyncVectorEnv's attribute access
    def get_attr(self, name: str) -> tuple:
        """The shared environment's attribute, once per sub-environment."""
        return tuple(getattr(self.env, name) for _ in range(self.num_envs))

    def set_attr(self, name: str, values: Any) -> None:
        """Set an attribute of the shared environment (one value: the sub-environments share it)."""
        setattr(self.env, name, values)

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple:
        """Call a method of the shared environment once; every sub-environment gets its result."""
        result = getattr(self.env, name)
        if callable(result):
            result = result(*args, **kwargs)
        return tuple(result for _ in range(self.num_envs))

    # ------------------------------------------------------------------ episodes
    def _seeds(self, seed) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            return [int(seed) + i for i in range(self.num_envs)]
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"seed: a list of seeds needs one per sub-environment (num_envs={self.num_envs}), got {len(seeds)}")
        return seeds

    def _check_reset_mask(self, mask: Any) -> None:
        if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != (self.num_envs,):
            raise TypeError(f"options['reset_mask'] must be a bool NumPy array of shape ({self.num_envs},), got {mask!r}")
        if not mask.all():
            raise ValueError("options['reset_mask']: the sub-environments run their episodes in lockstep and end together, "
                             f"so they reset together; the mask must be all True, got {mask.tolist()}")

    def _start(self, options: dict) -> tuple[np.ndarray, dict]:
        """Begin the next episode of every sub-environment (``options`` apply to all, as in ``SyncVectorEnv``)."""
        n = self.num_envs
        if self._runtime:
            if "index" in options:
                indices = np.full(n, self.env._pick_index(options), dtype=np.int64)
            else:
                indices = self._indices.draw()
            budgets = self._draw_budgets([options] * n)
            obs = self.episodes.start(indices, budgets)
            info = {"index": np.asarray(indices, dtype=np.int64), "_index": np.ones(n, dtype=bool)}
        else:
            if "indices" in options:
                rows = [np.asarray(options["indices"], dtype=np.int64)] * n
            else:
                rows = [self.env.sample_eval_indices(rng) for rng in self._rngs]
            budgets = self._draw_budgets([options] * n)
            obs = self.episodes.start(np.stack(rows), budgets)
            info = stack_infos([{"indices": row.tolist()} for row in rows], n)
        if budgets is not None:  # as the single environments' reset info
            info.update(budget_value=budgets.copy(), _budget_value=np.ones(n, dtype=bool))
        self._needs_reset, self._started = False, True
        return np.asarray(obs, dtype=np.float32), info


class RuntimePruneVectorEnv(PruneVectorEnv):
    """``RuntimePrune-v0``'s ``vector_entry_point``: ``num_envs`` images, one batched layer per step."""

    env_id = "RuntimePrune-v0"


class StaticPruneVectorEnv(PruneVectorEnv):
    """``StaticPrune-v0``'s ``vector_entry_point``: ``num_envs`` static episodes, validated as one batch."""

    env_id = "StaticPrune-v0"
