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

With :class:`NormalizedLinearPolicy` (the registry's ``"ars"``) it is ARS V2 (Mania et al. 2018,
Algorithm 2): the linear policy acts on states normalised by the mean and standard deviation of every
state the training episodes visited, updated after each iteration. The environments' observations
differ in scale by 20x between layers (pooled features of different widths), so with a fixed
``delta_std`` the plain linear policy (V1) perturbs some layers' keep ratios across their whole
range and others hardly at all. The statistics are buffers of the policy, so a saved model carries
them and ``predict`` on raw observations (the benchmark's test scoring, ``validate``) applies them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sb3_contrib
import torch as th
from gymnasium import spaces
from sb3_contrib.ars.policies import ARSPolicy
from stable_baselines3.common.callbacks import BaseCallback


class NormalizedLinearPolicy(ARSPolicy):
    """ARS V2's policy: ``a = W (s - mu) / sigma + b``, squashed by ``tanh`` into the action space.

    ``mu`` and ``sigma`` (buffers ``obs_mean``, ``obs_var``, ``obs_count``) are the running mean and
    standard deviation of the states given to :meth:`update_normalization`; before any, the identity
    (Mania et al.'s ``mu_0 = 0``, ``Sigma_0 = I``). A component whose variance is below ``1e-8`` (e.g. zero
    padding) is centred but not scaled.

    Args:
        observation_space: the environment's observation space.
        action_space: the environment's action space.
        with_bias: learn the additive bias ``b`` (default True: with centred states, the keep ratio of the
            average state).
        squash_output: ``tanh`` the output and rescale it to the action space (default True: the zero
            policy is the middle of the range, not its clipped lower end).
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, with_bias: bool = True,
                 squash_output: bool = True) -> None:
        super().__init__(observation_space, action_space, net_arch=[], with_bias=with_bias, squash_output=squash_output)
        self.with_bias, self.squash = with_bias, squash_output
        self.register_buffer("obs_mean", th.zeros(self.features_dim))
        self.register_buffer("obs_var", th.ones(self.features_dim))
        self.register_buffer("obs_count", th.zeros((), dtype=th.float64))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return dict(super()._get_constructor_parameters(), with_bias=self.with_bias, squash_output=self.squash)

    @th.no_grad()
    def update_normalization(self, states: np.ndarray) -> None:
        """Merge the states ``(n, features)`` into the running mean and variance (Chan et al.'s parallel
        update: the result is the mean and variance of every state given so far)."""
        batch = th.as_tensor(np.asarray(states, dtype=np.float64).reshape(-1, self.features_dim))
        if batch.shape[0] == 0:
            return
        n_a, n_b = float(self.obs_count), float(batch.shape[0])
        mean_b, var_b = batch.mean(0), batch.var(0, unbiased=False)
        if n_a == 0:
            mean, var = mean_b, var_b
        else:
            mean_a, var_a = self.obs_mean.double(), self.obs_var.double()
            delta, total = mean_b - mean_a, n_a + n_b
            mean = mean_a + delta * n_b / total
            var = (var_a * n_a + var_b * n_b + delta.square() * n_a * n_b / total) / total
        self.obs_mean.copy_(mean.float())
        self.obs_var.copy_(var.float())
        self.obs_count.fill_(n_a + n_b)

    def normalize(self, features: th.Tensor) -> th.Tensor:
        """``(s - mu) / sigma``, with ``sigma = 1`` where the variance is below ``1e-8``."""
        std = th.where(self.obs_var > 1e-8, self.obs_var.sqrt(), th.ones_like(self.obs_var))
        return (features - self.obs_mean) / std

    def forward(self, obs: Any) -> th.Tensor:
        features = self.normalize(self.extract_features(obs, self.features_extractor))
        if isinstance(self.action_space, spaces.Box):
            return self.action_net(features)
        return th.argmax(self.action_net(features), dim=1)


class BatchedARS(sb3_contrib.ARS):
    """sb3-contrib's ARS with candidates scored on one episode per environment of the VecEnv (and, with
    :class:`NormalizedLinearPolicy`, ARS V2's state normalisation, updated after every iteration).

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
        self._visited: list[np.ndarray] = []
        super().__init__(policy, env, n_eval_episodes=int(n_eval_episodes), **kwargs)

    policy_aliases = {**sb3_contrib.ARS.policy_aliases, "NormalizedLinearPolicy": NormalizedLinearPolicy}

    def _do_one_update(self, callback: BaseCallback, async_eval: Any) -> None:
        """One ARS iteration; then the states its candidates visited update the normalisation (V2): the
        candidates of one iteration all act under the statistics of the iterations before."""
        if async_eval is not None and isinstance(self.policy, NormalizedLinearPolicy):
            raise NotImplementedError("NormalizedLinearPolicy updates its statistics from the synchronous evaluation's "
                                      "states: learn without async_eval, or use sb3-contrib's LinearPolicy with VecNormalize")
        self._visited = []
        super()._do_one_update(callback, async_eval)
        if isinstance(self.policy, NormalizedLinearPolicy) and self._visited:
            self.policy.update_normalization(np.stack(self._visited))
        self._visited = []

    def _trigger_callback(self, _locals: dict[str, Any], _globals: dict[str, Any], callback: BaseCallback,
                          n_envs: int) -> None:
        """One counted environment step of :func:`evaluate_policy`: one timestep, and the callback sees
        that environment's ``info``, ``done`` and ``reward``."""
        self.num_timesteps += 1
        if isinstance(self.policy, NormalizedLinearPolicy):  # the states of this iteration, for its update
            self._visited.append(np.asarray(_locals["observations"][_locals["i"]], dtype=np.float32).reshape(-1))
        callback.update_locals({"infos": [_locals["info"]], "dones": np.array([bool(_locals["done"])]),
                                "rewards": np.array([float(_locals["reward"])])})
        callback.on_step()
