"""The reward of both environments, assembled in one place: ``R = R_acc + R_bud`` at the last layer.

``RuntimePrune-v0`` (paper Eq. 7-11), ``StaticPrune-v0`` (Eq. 14-15), the joint environment and
the joint agent update all reward a finished episode with :func:`terminal_reward`::

    betas, lams = reward_scales(normalizer, dual, bins, n)     # beta, lambda of the past batches
    r_acc = accuracy_term(normalizer, losses, bins)            # -L / beta              (Eq. 7-8, 14)
    r_bud = budget_term(cfg, costs, budget, dual, bins)        # the budget term        (Eq. 10, 15)
    observe_episodes(normalizer, dual, losses, costs, budget, bins)  # Eq. 9, the dual step: after
    reward = r_acc + r_bud                                     # the sparse return      (Eq. 11)

``L`` is the episode's cross entropy (the runtime agent's image, or the mean over the static
agent's validation batch); the cost ``B`` and its budget ``B_bar`` are fractions of the dense
network's MACs (runtime) or stored parameters (static, ``P`` and ``P_bar``).

Signs (corrected from the paper as printed, ``docs/design.md``): ``R_acc = -L / beta`` with ``beta``
a moving average of the *positive* loss, so more loss is less reward; ``R_bud`` is minus the
exponential overshoot, so going over budget is less reward. The terms themselves are in
:mod:`prune_env.rewards`; this module chooses among them by the environment's keywords
(:class:`~prune_env.envs.task.TaskConfig`):

* ``budget_mode="per_input"`` (the paper): ``R_bud = -(exp(alpha_budget (B - B_bar)) - 1)`` over
  budget, else 0, with ``penalty="absolute"``; ``penalty="relative"`` puts ``(B - B_bar) / B_bar``
  in the exponent (:func:`~prune_env.rewards.budget_penalty`,
  :func:`~prune_env.rewards.relative_budget_penalty`);
* ``budget_mode="average"``: ``R_bud = -lambda (B - B_bar) / B_bar``, ``lambda`` a dual variable
  held to the mean cost (:class:`~prune_env.rewards.DualVariable`; per budget bin,
  :class:`~prune_env.rewards.BinnedDual`);
* ``loss_scale="moving"``: ``beta`` follows Eq. 9 with weight ``loss_lambda``; ``"fixed"``: frozen at
  its calibrated ``beta0`` (:func:`normalizer_lambda`); unset, fixed under the average budget
  (:func:`resolved_loss_scale`);
* ``reward="sparse"`` (the paper, Eq. 11): the return at the last layer, 0 before; ``"dense"`` (in
  the spirit of PuRL): each step pays the change of the return of the network pruned so far and
  dense after, :func:`step_reward` (the steps telescope to the sparse return minus the dense network's).

A reward uses the ``beta`` and ``lambda`` of the batches finished before its episode; its episode's
loss and cost update them only after (:func:`observe_episodes`). So a batch of episodes in lockstep
and the same number of single environments give the same rewards, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from prune_env.rewards import (
    BinnedDual,
    BinnedLossNormalizer,
    DualVariable,
    LossNormalizer,
    budget_penalty,
    relative_budget_penalty,
)

#: the return at the last layer only (Eq. 11), or its change at every layer (PuRL-style shaping)
REWARD_MODES = ("sparse", "dense")
#: how the budget enters the reward: Eq. 10 / 15 on each episode, or a bound on the mean cost
BUDGET_MODES = ("per_input", "average")
#: the overshoot Eq. 10 / 15 penalise: ``B - B_bar`` (the paper) or ``(B - B_bar) / B_bar``
PENALTIES = ("absolute", "relative")
#: ``beta`` of ``R_acc = -L / beta``: the moving average of Eq. 9, or frozen at its calibrated ``beta0``
LOSS_SCALES = ("moving", "fixed")

#: ``beta``: one for a budget, or one per budget bin; ``lambda`` likewise
Normalizer = Union[LossNormalizer, BinnedLossNormalizer]
Dual = Union[DualVariable, BinnedDual]


# --------------------------------------------------------------------------- the reward state's modes
def resolved_loss_scale(cfg: Any) -> str:
    """``cfg.loss_scale``, or unset ``"fixed"`` under ``budget_mode="average"`` (a moving ``beta`` follows
    the agent's own loss, so a collapse to ``alpha`` would be free) and ``"moving"`` otherwise."""
    if cfg.loss_scale is not None:
        return cfg.loss_scale
    return "fixed" if cfg.budget_mode == "average" else "moving"


def normalizer_lambda(cfg: Any) -> float:
    """The moving weight of ``beta`` (Eq. 9): ``cfg.loss_lambda``, or 1 (frozen) for a fixed loss scale."""
    return 1.0 if resolved_loss_scale(cfg) == "fixed" else cfg.loss_lambda


def make_normalizer(cfg: Any, beta0: float) -> LossNormalizer:
    """``beta`` of one budget, started at its calibrated ``beta0``."""
    return LossNormalizer(beta0, lam=normalizer_lambda(cfg), batch_size=cfg.loss_batch)


def dual_batch(cfg: Any) -> int:
    """Finished episodes per step of ``lambda``: ``dual_batch``, else ``loss_batch``."""
    return cfg.dual_batch or cfg.loss_batch


def make_dual(cfg: Any, budget: float, init: float) -> DualVariable | None:
    """``lambda`` of one budget under ``budget_mode="average"`` (None per input), started at ``init``."""
    if cfg.budget_mode != "average":
        return None
    return DualVariable(budget, init=init, lr=cfg.dual_lr, kp=cfg.dual_kp, lam_max=cfg.dual_max,
                        batch_size=dual_batch(cfg))


def make_binned_dual(cfg: Any, inits: list[float], centers: Any) -> BinnedDual | None:
    """``lambda`` per budget bin under ``budget_mode="average"`` (None per input)."""
    if cfg.budget_mode != "average":
        return None
    return BinnedDual(inits, centers, lr=cfg.dual_lr, kp=cfg.dual_kp, lam_max=cfg.dual_max, batch_size=dual_batch(cfg))


# --------------------------------------------------------------------------- the two terms
def accuracy_term(normalizer: Normalizer, losses: np.ndarray, bins: np.ndarray | None = None) -> np.ndarray:
    """``R_acc = -L / beta`` (Eq. 7-8, 14), with each episode's bin's ``beta`` under a budget range."""
    return normalizer.reward(losses) if bins is None else normalizer.reward(losses, bins)


def budget_term(cfg: Any, costs: np.ndarray, budget: float | np.ndarray, dual: Dual | None,
                bins: np.ndarray | None = None) -> np.ndarray:
    """``R_bud`` of finished episodes: Eq. 10 / 15 (absolute or relative overshoot) per input, or the
    average budget's ``-lambda (B - B_bar) / B_bar`` with the dual variable's ``lambda``.

    ``budget`` is one budget or each episode's; ``bins``, with a :class:`~prune_env.rewards.BinnedDual`,
    each episode's budget bin (whose ``lambda`` it gets)."""
    if cfg.budget_mode == "average":
        return dual.reward(costs) if bins is None else dual.reward(costs, budget, bins)
    if cfg.penalty == "relative":
        return relative_budget_penalty(costs, budget, cfg.alpha_budget)
    return budget_penalty(costs, budget, cfg.alpha_budget)


def reward_scales(normalizer: Normalizer, dual: Dual | None, bins: np.ndarray | None,
                  batch: int) -> tuple[list[float], list[float]]:
    """Each episode's ``beta`` and ``lambda`` (0 without a dual variable), as Python floats."""
    if bins is None:
        return [normalizer.beta] * batch, [dual.lam if dual is not None else 0.0] * batch
    lams = dual.lam_of(bins).tolist() if dual is not None else [0.0] * batch
    return normalizer.beta_of(bins).tolist(), lams


def observe_episodes(normalizer: Normalizer, dual: Dual | None, losses: np.ndarray, costs: np.ndarray,
                     budget: float | np.ndarray, bins: np.ndarray | None = None) -> None:
    """Feed finished episodes to ``beta`` (Eq. 9) and ``lambda``, after their rewards were computed."""
    if bins is None:
        normalizer.observe(losses)
        if dual is not None:
            dual.observe(costs)
        return
    normalizer.observe(losses, bins)
    if dual is not None:
        dual.observe(costs, budget, bins)


# --------------------------------------------------------------------------- the reward
@dataclass
class TerminalReward:
    """The reward of a batch of finished episodes and its parts (each ``(B,)``), with the scales used."""

    total: np.ndarray  # R_acc + R_bud: the sparse return (Eq. 11)
    accuracy: np.ndarray  # R_acc
    budget: np.ndarray  # R_bud
    betas: list[float]
    lams: list[float]


def episode_return(cfg: Any, normalizer: Normalizer, dual: Dual | None, losses: np.ndarray, costs: np.ndarray,
                   budget: float | np.ndarray, bins: np.ndarray | None = None) -> np.ndarray:
    """``R_acc + R_bud`` of the episodes as they stand, with nothing updated (the dense reward's lookahead)."""
    return accuracy_term(normalizer, losses, bins) + budget_term(cfg, costs, budget, dual, bins)


def terminal_reward(cfg: Any, normalizer: Normalizer, dual: Dual | None, losses: np.ndarray, costs: np.ndarray,
                    budget: float | np.ndarray, bins: np.ndarray | None = None) -> TerminalReward:
    """The reward of finished episodes (module docstring), then ``beta`` and ``lambda`` updated by them.

    ``losses``: each episode's cross entropy; ``costs``: its MAC or stored-parameter ratio;
    ``budget``: the cost budget, one or each episode's; ``bins``: each episode's budget bin under a
    budget range (None for one budget).
    """
    betas, lams = reward_scales(normalizer, dual, bins, len(losses))
    r_acc = accuracy_term(normalizer, losses, bins)  # Eq. 7-8 (static: Eq. 14)
    r_bud = budget_term(cfg, costs, budget, dual, bins)  # Eq. 10 (static: Eq. 15), or the average budget's term
    observe_episodes(normalizer, dual, losses, costs, budget, bins)  # after the rewards: they use past batches only
    return TerminalReward(r_acc + r_bud, r_acc, r_bud, betas, lams)


def step_reward(cfg: Any, current: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """What a step pays, ``current`` being the return after it (at the last layer, the terminal reward's
    total): the change since ``previous`` for ``reward="dense"``; the return itself (sparse, Eq. 11)."""
    return current - previous if cfg.reward == "dense" else current
