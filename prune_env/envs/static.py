"""``StaticPrune-v0``: choose each layer's permanent keep ratio (paper Sec. 3.3.2)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from prune_env.envs.reward import terminal_reward
from prune_env.envs.reward_state import RewardStateMixin, shared_binned_state
from prune_env.envs.runtime import EpisodeBudgets, pick_budget
from prune_env.envs.task import STATIC_TRADEOFF_RATE, PruningTask, TaskConfig, check_range
from prune_env.policies import as_policy
from prune_env.rewards import BinnedDual, BinnedLossNormalizer, DualVariable, LossNormalizer


def uniform_static_point(task: PruningTask, keep_ratio: float) -> tuple[float, float]:
    """Mean calibration loss (runtime keep 1) and stored-parameter ratio of a uniform static keep ratio
    (the slope that starts ``lambda``, :meth:`~prune_env.envs.task.PruningTask.calibrated_dual`)."""
    stored = task.stored_counts(np.full((1, task.num_layers), keep_ratio))
    return task.calibration_loss(1.0, keep_ratio), float(task.costs.params_ratio(stored)[0])


class StaticEpisodes:
    """A batch of static episodes in lockstep; each ends with one batched validation pass."""

    def __init__(self, task: PruningTask, runtime_policy: Any, normalizer: LossNormalizer, dual: DualVariable | None = None):
        self.task = task
        self.runtime_policy = as_policy(runtime_policy, task.num_layers, "runtime_policy")
        self.normalizer = normalizer
        self.dual = dual
        self.t = 0
        self.ratios: np.ndarray | None = None
        self.budgets = EpisodeBudgets(task, None, "params")

    def start(self, eval_indices: np.ndarray, budgets: np.ndarray | None = None) -> np.ndarray:
        """Begin one episode per row of validation indices ``(B, eval_batch)``; ``budgets``: each
        episode's budget value, drawn from the task's range (None: the task's one budget)."""
        self.eval_indices = np.asarray(eval_indices, dtype=np.int64)
        self.budgets = EpisodeBudgets(self.task, budgets, "params")
        self.ratios = np.ones((self.eval_indices.shape[0], self.task.num_layers))
        self.t = 0
        return self.task.static_observation(self.ratios, 0, self.budgets.costs)

    @property
    def done(self) -> bool:
        return self.ratios is None or self.t >= self.task.num_layers

    def advance(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, list[dict] | None]:
        """Set the current layer's static keep ratio in every episode.

        Returns ``(observations, rewards, terminated, infos)``; ``infos`` is None before the last
        layer, then one new dict of results per episode.
        """
        task, batch = self.task, self.eval_indices.shape[0]
        actions = np.asarray(actions, dtype=np.float64).reshape(batch, -1)[:, 0]
        self.ratios[:, self.t] = task.clip(self.budgets.applied(actions))
        self.t += 1
        observations = task.static_observation(self.ratios, self.t, self.budgets.costs)
        if self.t < task.num_layers:
            return observations, np.zeros(batch), False, None
        return observations, *self._finish()

    def _finish(self) -> tuple[np.ndarray, bool, list[dict]]:
        """Validation loss under the chosen static ratios and the runtime policy (Eq. 14-15)."""
        task = self.task
        batch, per_episode = self.eval_indices.shape
        images, labels = task.source.get(self.eval_indices.reshape(-1))
        ratios = np.repeat(self.ratios, per_episode, axis=0)
        with torch.no_grad():
            state = task.rollout(images, self.runtime_policy, ratios)
        losses = task.losses(state.logits, labels).cpu().numpy().reshape(batch, per_episode).mean(1)
        accuracy = (state.logits.argmax(1) == labels).float().cpu().numpy().reshape(batch, per_episode).mean(1)
        macs = task.costs.macs_ratio(state.kept).numpy().reshape(batch, per_episode).mean(1)
        params = np.asarray(task.costs.params_ratio(task.stored_counts(self.ratios)), dtype=np.float64).reshape(-1)
        budgets = self.budgets
        budget = budgets.of(task.params_budget)
        reward = terminal_reward(task.cfg, self.normalizer, self.dual, losses, params, budget, budgets.bins)  # Eq. 14-15
        budget_of = np.broadcast_to(np.asarray(budget, dtype=np.float64), (batch,))
        infos = [
            {
                "loss": float(losses[b]),
                "accuracy": float(accuracy[b]),
                "macs_ratio": float(macs[b]),
                "params_ratio": float(params[b]),
                "budget": float(budget_of[b]),
                "within_budget": bool(params[b] <= budget_of[b] + 1e-9),
                "keep_ratios": self.ratios[b].tolist(),
                "reward_acc": float(reward.accuracy[b]),
                "reward_budget": float(reward.budget[b]),
                "beta": reward.betas[b],
                "lambda": reward.lams[b],
                "indices": self.eval_indices[b].tolist(),
            }
            for b in range(batch)
        ]
        if budgets.values is not None:  # a budget range: the budget as drawn, in budget_kind units
            for info, value in zip(infos, budgets.values.tolist()):
                info["budget_value"] = value
        return reward.total, True, infos  # the sparse return at the last layer


class StaticPruneEnv(RewardStateMixin, gym.Env):
    """Static (permanent) channel pruning of a network, one prunable layer per step.

    ## Description
    The agent sets each layer's static keep ratio ``d_s``; at deployment the permanent set of
    ``floor((1 - d_s)(1 - R_r) C)`` channels of smallest static importance is removed for good
    (paper Sec. 3.4). The episode ends with the network evaluated on a batch of validation images
    under the chosen ratios (runtime ratios from a fixed runtime policy).

    ## Action Space
    ``Box(alpha, 1, (1,), float32)``: the layer's static keep ratio, clipped to ``[alpha, 1]``.

    ## Observation Space
    ``Box(-inf, inf, (7 + L + 2,), float32)``; ``L`` prunable layers, ``t`` the current one
    (the terminal observation has zeros in place of the layer's features and index):

    | index | meaning | range |
    |---|---|---|
    | 0 | output channels of layer ``t`` / the widest layer's | (0, 1] |
    | 1 | output side of layer ``t`` / the largest side | (0, 1] |
    | 2 | output area of layer ``t`` / the largest side squared | (0, 1] |
    | 3 | input channels of layer ``t`` / the widest layer's | (0, 1] |
    | 4 | stride of layer ``t`` / 2 | (0, 1] |
    | 5 | layer ``t``'s share of the dense network's MACs | (0, 1] |
    | 6 | layer ``t``'s share of the dense network's parameters | (0, 1] |
    | ``7 .. 7+L-1`` | one-hot index of layer ``t`` | {0, 1} |
    | ``7+L`` | stored-parameter ratio so far (layers ``t..L-1`` whole) | (0, 1] |
    | ``7+L+1`` | the episode's parameter budget ``P_bar`` | (0, 1] |

    ## Rewards
    Sparse (Eq. 14-15, signs corrected): at the last layer ``-L / beta`` with ``L`` the mean
    validation cross entropy of the episode's batch, plus ``R_bud`` of the stored-parameter ratio
    ``P`` against the budget ``P_bar``; 0 before. ``budget_mode``, ``penalty``, ``loss_scale`` and
    the ``dual_*`` keywords act as in ``RuntimePrune-v0`` with ``P`` for ``B`` (per input: Eq. 15,
    ``-(exp(alpha_budget (P - P_bar)) - 1)`` over budget; average: ``-lambda (P - P_bar) / P_bar``),
    assembled in :mod:`prune_env.envs.reward` as the runtime reward is.

    ## Starting State
    All layers whole; the episode's validation batch is drawn with the environment's RNG.
    With a budget range (``budget="0.3:0.7"`` or a list, as in ``RuntimePrune-v0``) each episode draws
    its parameter budget from it (``options={"budget": b}`` picks one; the reset info and the final
    info hold ``budget_value``), and ``beta`` and ``lambda`` are those of its budget bin.
    ``reset(seed=s)`` reproduces the batches and budgets; rewards also depend on ``beta`` and ``lambda``
    (:meth:`reward_state` / :meth:`set_reward_state` snapshot and restore them).

    ## Episode End
    Terminates after the ``L``-th layer. The final ``info`` holds ``loss``, ``accuracy``,
    ``macs_ratio``, ``params_ratio``, ``budget``, ``within_budget``, ``keep_ratios``,
    ``reward_acc``, ``reward_budget``, ``beta``, ``lambda`` and ``indices``.

    ## Arguments
    As ``RuntimePrune-v0`` (``budget`` gives the parameter budget here; ``alpha_budget`` is
    ``alpha_2``; ``observation`` is the runtime policy's observation mode), except:

    * ``tradeoff_rate`` defaults to 0.0 (pure static pruning);
    * ``runtime_policy``: the runtime keep ratios during evaluation: None (all 1), a number,
      ``L`` numbers, or a saved runtime agent / callable on ``RuntimePrune-v0`` observations;
    * ``eval_batch`` (128): validation images per episode.

    ## Version History
    * v0: the paper's environment; ``budget_mode``, ``penalty``, ``loss_scale`` and ``dual_*``
      were added with defaults that keep v0's rewards bit for bit; budget ranges (a number keeps v0's
      behaviour).
    """

    metadata = {"render_modes": []}

    def __init__(self, runtime_policy: Any = None, eval_batch: int = 128,
                 normalizer: LossNormalizer | BinnedLossNormalizer | None = None,
                 dual: DualVariable | BinnedDual | None = None, **kwargs: Any):
        super().__init__()
        kwargs.setdefault("tradeoff_rate", STATIC_TRADEOFF_RATE)
        self.task = PruningTask(TaskConfig(**kwargs))
        task = self.task
        self.eval_batch = int(check_range("eval_batch", eval_batch, 1, len(task.source)))
        if task.budget_range is None:
            self.normalizer = normalizer or task.calibrated_normalizer(1.0, task.static_budget_keep_ratio)
            self.dual = dual or task.calibrated_dual(task.params_budget, self.normalizer.beta, self._loss_and_params,
                                                     task.static_budget_keep_ratio)
        else:  # beta and lambda per budget bin, each calibrated at its bin's parameter budget
            self.normalizer, self.dual = shared_binned_state(normalizer, dual, task, lambda: task.binned_reward_state(
                lambda c: task.calibrated_normalizer(1.0, task.static_keep_ratio_of(c)),
                lambda c: float(task.costs_of(np.array([c]))[1][0]), task.static_keep_ratio_of,
                self._loss_and_params))
        self._budget_source: tuple[Any, np.random.Generator] | None = None
        self.episodes = StaticEpisodes(task, runtime_policy, self.normalizer, self.dual)
        self.num_layers = task.num_layers
        self.observation_space = spaces.Box(-np.inf, np.inf, (task.static_obs_dim,), np.float32)
        self.action_space = spaces.Box(np.float32(task.cfg.alpha), np.float32(1.0), (1,), np.float32)

    def _loss_and_params(self, keep_ratio: float) -> tuple[float, float]:
        """Mean calibration loss (runtime keep 1) and stored-parameter ratio of a uniform static keep ratio."""
        return uniform_static_point(self.task, keep_ratio)

    @property
    def budget_keep_ratio(self) -> float:
        """The static keep ratio that, in every layer, meets the parameter budget (an agent's natural first action)."""
        return self.task.static_budget_keep_ratio

    def set_runtime_policy(self, runtime_policy: Any) -> None:
        """Replace the fixed runtime policy used when evaluating static choices."""
        self.episodes.runtime_policy = as_policy(runtime_policy, self.task.num_layers, "runtime_policy")

    def sample_eval_indices(self, rng: np.random.Generator) -> np.ndarray:
        """A validation batch drawn without replacement."""
        return rng.choice(len(self.task.source), size=self.eval_batch, replace=False)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options and "indices" in options:
            indices = np.asarray(options["indices"], dtype=np.int64)
        else:
            indices = self.sample_eval_indices(self.np_random)
        budget = pick_budget(self, options)
        if budget is None:
            obs = self.episodes.start(indices[None])
            return obs[0], {"indices": indices.tolist()}
        obs = self.episodes.start(indices[None], np.array([budget]))
        return obs[0], {"indices": indices.tolist(), "budget_value": budget}

    def step(self, action):
        if self.episodes.done:
            raise RuntimeError("call reset() before step() (the episode is over or not started)")
        obs, rewards, terminated, infos = self.episodes.advance(self.task.single_action(action))
        return obs[0], float(rewards[0]), terminated, False, infos[0] if terminated else {}
