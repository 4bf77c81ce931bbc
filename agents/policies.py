"""The paper's agents as stable-baselines3 policies (Sec. 3.3; rebuttal for the sizes).

* :class:`LayerEncoderExtractor`: the runtime agent's layer-dependent encoder, one
  ``Linear(C_in_t, 128)`` per prunable layer applied to ``GAP(F_in)`` (the ``observation="raw"``
  mode of ``RuntimePrune-v0``), trained by the RL loss.
* :class:`ShapeEncoderExtractor`: the static agent's FC encoder on the layer-shape observation.
* :class:`RegularizedLstmPolicy` / :class:`RegularizedMlpPolicy`: Gaussian policies over the
  relaxed keep ratio whose training loss carries the action regulariser of Eq. 13,
  ``L_a = 0.5 * ||a - clip(a, alpha, 1)||^2``, applied to the policy mean.

How Eq. 13 enters the loss: on-policy SB3 algorithms evaluate a minibatch with
``policy.evaluate_actions``, then call ``optimizer.zero_grad()``, ``loss.backward()`` and
``optimizer.step()``. The policy records ``L_a`` of the minibatch it just evaluated and, when the
optimiser's gradients are zeroed, back-propagates ``coef * L_a`` into them; ``loss.backward()``
then adds the algorithm's own gradient. The step thus descends ``loss + coef * L_a``, with the
algorithm's gradient clipping applied to the sum, and without touching the algorithm's code.
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import torch
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


class LayerEncoderExtractor(BaseFeaturesExtractor):
    """Layer-dependent encoders ``Linear(C_in_t, features)`` on the raw pooled input of layer ``t``.

    Expects ``RuntimePrune-v0`` observations in ``observation="raw"`` mode:
    ``[GAP(F_in) zero-padded to max C_in | one-hot layer index (L) | MAC ratio so far | budget]``,
    or ``"raw+confidence"``, with the three confidence entries of the layer's probe before the
    progress entries. The output is the encoding of the current layer's features, followed by every
    entry after the one-hot index (the confidence, if any, and the progress: the agent knows the budget).

    Args:
        layer_in_channels: ``C_in`` of every prunable layer (the env's ``layer_in_channels``).
        features_dim: encoder width (128 in the paper).
    """

    def __init__(self, observation_space: gym.spaces.Box, layer_in_channels: Sequence[int], features_dim: int = 128):
        self.layer_in_channels = [int(c) for c in layer_in_channels]
        self.width = max(self.layer_in_channels)
        self.num_layers = len(self.layer_in_channels)
        expected = self.width + self.num_layers + 2
        if observation_space.shape not in ((expected,), (expected + 3,)):
            raise ValueError(
                f"LayerEncoderExtractor needs RuntimePrune-v0 observations in 'raw' mode of size {expected} "
                f"('raw+confidence': {expected + 3}), got shape {observation_space.shape}; pass env_kwargs observation='raw'"
            )
        super().__init__(observation_space, features_dim + int(observation_space.shape[0]) - self.width - self.num_layers)
        self.encoders = nn.ModuleList(nn.Linear(c, features_dim) for c in self.layer_in_channels)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        pooled = observations[:, : self.width]
        onehot = observations[:, self.width : self.width + self.num_layers]
        progress = observations[:, self.width + self.num_layers :]
        encoded = sum(onehot[:, t : t + 1] * enc(pooled[:, :c])
                      for t, (enc, c) in enumerate(zip(self.encoders, self.layer_in_channels)))
        return torch.cat([encoded, progress], dim=1)


class ShapeEncoderExtractor(BaseFeaturesExtractor):
    """The static agent's encoder: one FC layer (with ReLU) on the layer-shape observation."""

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 128):
        super().__init__(observation_space, features_dim)
        self.net = nn.Sequential(nn.Linear(int(observation_space.shape[0]), features_dim), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.net(observations)


def action_regularizer(mean_actions: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Eq. 13: ``0.5 * ||a - clip(a, low, high)||^2`` per sample, averaged over the batch."""
    outside = mean_actions - mean_actions.clamp(low, high)
    return 0.5 * outside.pow(2).sum(dim=-1).mean()


class _ActionRegularizerMixin:
    """Adds Eq. 13 to the loss of on-policy algorithms (see the module docstring).

    Extra keywords: ``action_reg_coef`` (1.0), ``action_low`` (the action space's low, i.e.
    ``alpha``), ``action_high`` (1.0), ``initial_action`` (None: the initial policy mean).
    """

    def __init__(self, *args: Any, action_reg_coef: float = 1.0, action_low: float | None = None,
                 action_high: float = 1.0, initial_action: float | None = None, **kwargs: Any):
        self._reg_args = (action_reg_coef, action_low, action_high, initial_action)
        super().__init__(*args, **kwargs)

    def _build(self, lr_schedule) -> None:
        self._setup_regularizer(*self._reg_args)
        super()._build(lr_schedule)
        self._finish_build()

    def _setup_regularizer(self, coef: float, low: float | None, high: float, initial_action: float | None) -> None:
        if coef < 0:
            raise ValueError(f"action_reg_coef must be >= 0, got {coef}")
        self.action_reg_coef = float(coef)
        space_low = float(self.action_space.low.reshape(-1)[0]) if isinstance(self.action_space, gym.spaces.Box) else 0.0
        self.action_low = space_low if low is None else float(low)
        self.action_high = float(high)
        self.initial_action = initial_action
        self._pending_penalty: torch.Tensor | None = None
        self.last_action_penalty = 0.0

    def _finish_build(self) -> None:
        if self.initial_action is not None:
            with torch.no_grad():
                self.action_net.weight.mul_(0.01)
                self.action_net.bias.fill_(float(self.initial_action))

    def _hook_optimizer(self) -> None:
        """Make the optimizer's ``zero_grad`` add the gradient of ``coef * L_a`` (once per optimizer:
        recurrent policies replace the optimizer after ``_build``)."""
        optimizer = self.optimizer
        if getattr(optimizer, "_adds_action_regularizer", False):
            return
        original_zero_grad = optimizer.zero_grad

        def zero_grad(*args, **kwargs):
            original_zero_grad(*args, **kwargs)
            penalty, self._pending_penalty = self._pending_penalty, None
            if penalty is not None and penalty.requires_grad and self.action_reg_coef > 0:
                (self.action_reg_coef * penalty).backward(retain_graph=True)

        optimizer.zero_grad = zero_grad
        optimizer._adds_action_regularizer = True

    def _record_penalty(self) -> None:
        dist = getattr(self.action_dist, "distribution", None)
        if dist is None or not torch.is_grad_enabled():
            return
        self._hook_optimizer()
        penalty = action_regularizer(dist.mean, self.action_low, self.action_high)
        self._pending_penalty = penalty
        self.last_action_penalty = float(penalty.detach())


class RegularizedLstmPolicy(_ActionRegularizerMixin, RecurrentActorCriticPolicy):
    """sb3-contrib's LSTM actor-critic with the Eq. 13 term in its loss (keywords: see the mixin).

    One more keyword, ``critic_trains_lstm`` (False): with ``shared_lstm=True``, sb3-contrib feeds
    the critic a *detached* copy of the actor's LSTM output, so the value loss never trains the
    shared LSTM or the encoders below it. ``critic_trains_lstm=True`` shares them for real, as
    the paper's agent shares its RNN between actor and critic: the value loss's gradient flows
    into the LSTM and the features extractor too.
    """

    def __init__(self, *args: Any, critic_trains_lstm: bool = False, **kwargs: Any):
        self.critic_trains_lstm = bool(critic_trains_lstm)
        super().__init__(*args, **kwargs)
        if self.critic_trains_lstm and not self.shared_lstm:
            raise ValueError("critic_trains_lstm=True needs shared_lstm=True (one LSTM for actor and critic)")

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "critic_trains_lstm": self.critic_trains_lstm}

    def evaluate_actions(self, obs, actions, lstm_states, episode_starts):
        if not self.critic_trains_lstm:
            out = super().evaluate_actions(obs, actions, lstm_states, episode_starts)
            self._record_penalty()
            return out
        features = self.extract_features(obs)  # shared extractor (required by shared_lstm)
        latent, _ = self._process_sequence(features, lstm_states.pi, episode_starts, self.lstm_actor)
        latent_pi = self.mlp_extractor.forward_actor(latent)
        latent_vf = self.mlp_extractor.forward_critic(latent)  # not detached: the value loss trains the LSTM
        distribution = self._get_action_dist_from_latent(latent_pi)
        values = self.value_net(latent_vf)
        self._record_penalty()
        return values, distribution.log_prob(actions), distribution.entropy()


class RegularizedMlpPolicy(_ActionRegularizerMixin, ActorCriticPolicy):
    """SB3's MLP actor-critic with the Eq. 13 term in its loss (keywords: see the mixin)."""

    def evaluate_actions(self, obs, actions, action_masks=None):
        out = super().evaluate_actions(obs, actions)
        self._record_penalty()
        return out
