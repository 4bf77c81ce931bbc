"""ARS (sb3-contrib) on a batched VecEnv: every environment's episode scores the candidate.

sb3-contrib's :class:`~sb3_contrib.ARS` scores each candidate with
:func:`stable_baselines3.common.evaluation.evaluate_policy` over ``n_eval_episodes`` (default 1)
and, from its per-environment callback, adds ``n_envs`` to ``num_timesteps`` and calls the
training callback without the step's locals. On the 64 environments of a batched pruning VecEnv
that means:

* with ``n_eval_episodes=1`` a candidate is scored on one episode (one input) while all 64 are
  stepped and counted: 63 of 64 episodes are thrown away, and the return that ranks candidates is
  one image's;
* with ``n_eval_episodes=64`` every step is counted 64 times, so the run stops after 1/64 of the
  steps asked for;
* either way a callback never sees an episode's ``info`` (no learning curve, no final return).

:class:`BatchedARS` scores each candidate on ``n_eval_episodes`` episodes, by default one per
environment (``env.num_envs``: every stepped episode counts), adds one timestep per counted
environment step, and hands the callback that step's ``info`` and ``done``, as an on-policy
rollout does. Everything else is sb3-contrib's ARS (Mania et al. 2018).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sb3_contrib
from stable_baselines3.common.callbacks import BaseCallback


class BatchedARS(sb3_contrib.ARS):
    """sb3-contrib's ARS with candidates scored on one episode per environment of the VecEnv.

    Args:
        policy: as :class:`sb3_contrib.ARS`.
        env: as :class:`sb3_contrib.ARS`.
        n_eval_episodes: episodes that score each candidate (default: the VecEnv's ``num_envs``;
            1 without an environment).
        **kwargs: :class:`sb3_contrib.ARS`'s other keywords.
    """

    def __init__(self, policy: Any, env: Any, n_eval_episodes: int | None = None, **kwargs: Any) -> None:
        if n_eval_episodes is None:
            n_eval_episodes = int(getattr(env, "num_envs", 1)) if env is not None and not isinstance(env, str) else 1
        if int(n_eval_episodes) < 1:
            raise ValueError(f"n_eval_episodes must be at least 1, got {n_eval_episodes}")
        super().__init__(policy, env, n_eval_episodes=int(n_eval_episodes), **kwargs)

    def _trigger_callback(self, _locals: dict[str, Any], _globals: dict[str, Any], callback: BaseCallback,
                          n_envs: int) -> None:
        """One counted environment step of :func:`evaluate_policy`: one timestep, and the callback sees
        that environment's ``info``, ``done`` and ``reward``."""
        self.num_timesteps += 1
        callback.update_locals({"infos": [_locals["info"]], "dones": np.array([bool(_locals["done"])]),
                                "rewards": np.array([float(_locals["reward"])])})
        callback.on_step()
