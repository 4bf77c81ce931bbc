"""The budget as a deployment-time argument of an any-budget runtime agent.

An agent trained over a range of MAC budgets (``budget="0.3:0.7"``) reads the budget from the last
entry of its observation. At deployment the caller chooses it: :class:`BudgetedPolicy` holds the
agent at one budget (whatever budget its observations were built with), :func:`keep_ratios_at_budget`
gives the per-input runtime keep ratios it chooses for a batch, and :func:`run_at_budget` runs them
through a :class:`~prune_env.deploy.RuntimeExecutor`, which computes only the kept channels::

    executor = RuntimeExecutor(export_static(task.net, static_ratios))
    logits = run_at_budget(executor, task, agent_policy, images, budget=0.45)

An agent trained with relative actions (the default of a range, :meth:`PruningTask.action_shift`)
acts as an offset from the budget's uniform keep ratio: :class:`BudgetedPolicy` adds it back.

A budget outside the range the task (the agent's training environment) was built with is a
ValueError naming the range: the agent never saw it, and extrapolating in the budget is not what it
learned (a one-budget task accepts any budget; its agent ignores the entry it never saw change).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from prune_env.envs.task import PruningTask
from prune_env.policies import KeepRatioPolicy, as_policy


class BudgetedPolicy(KeepRatioPolicy):
    """An any-budget agent's policy held at one budget: the budget entry of every observation (the
    last) set to ``cost_budget`` (the MAC fraction for a runtime agent, the parameter fraction for a
    static one), its actions multiplied by ``scale`` and ``shift`` added (relative and scaled actions,
    :meth:`~prune_env.envs.task.PruningTask.action_transform`; 1 and 0 for absolute ones)."""

    def __init__(self, policy: Any, cost_budget: float, shift: float = 0.0, num_layers: int | None = None,
                 scale: float = 1.0):
        self.policy = as_policy(policy, num_layers)
        self.cost_budget = float(cost_budget)
        self.shift = float(shift)
        self.scale = float(scale)

    def reset(self, batch_size: int) -> None:
        super().reset(batch_size)
        self.policy.reset(batch_size)

    def act(self, observations: np.ndarray, t: int) -> np.ndarray:
        observations = np.array(observations, dtype=np.float32, copy=True)
        observations[:, -1] = self.cost_budget
        return self.policy(observations) * self.scale + self.shift

    def __repr__(self) -> str:
        return (f"BudgetedPolicy({self.policy!r}, cost_budget={self.cost_budget:.4f}, scale={self.scale:.4f}, "
                f"shift={self.shift:+.4f})")


def budgeted_policy(task: PruningTask, policy: Any, budget: float, resource: str = "macs") -> BudgetedPolicy:
    """``policy`` (an agent trained on ``task``'s environment) held at ``budget`` (in the task's
    ``budget_kind`` units: a sparsity or a cost fraction), checked against the task's range
    (:meth:`PruningTask.check_budget`). ``resource``: ``"macs"`` for a runtime agent, ``"params"``
    for a static one."""
    value = task.check_budget(budget)
    macs, params = task.costs_of(np.array([value]), params=resource == "params")
    transform = task.action_transform(np.array([value]), resource)
    scale, shift = (1.0, 0.0) if transform is None else (float(transform[0][0]), float(transform[1][0]))
    cost = params[0] if resource == "params" else macs[0]
    return BudgetedPolicy(policy, float(cost), shift, task.num_layers, scale=scale)


def keep_ratios_at_budget(task: PruningTask, policy: Any, images: Tensor, budget: float,
                          static_ratios: Any = 1.0) -> np.ndarray:
    """The ``(B, L)`` runtime keep ratios ``policy`` chooses for ``images`` at ``budget`` (clipped to
    ``[alpha, 1]``), from the gated network's observations, as in training and evaluation."""
    held = budgeted_policy(task, policy, budget)
    static = np.broadcast_to(np.asarray(static_ratios, dtype=np.float64), (task.num_layers,)).copy()
    with torch.no_grad(), task.at_budget(budget):  # the references' observations at this budget too
        state = task.rollout(images.to(task.device), held, static)
    rows = [np.broadcast_to(np.asarray(torch.as_tensor(r).cpu(), dtype=np.float64), (images.shape[0],))
            for r in state.runtime_ratios]
    return np.stack(rows, 1)


def run_at_budget(executor: Any, task: PruningTask, policy: Any, images: Tensor, budget: float,
                  static_ratios: Any = 1.0) -> Tensor:
    """Logits of ``images`` through ``executor`` (a :class:`~prune_env.deploy.RuntimeExecutor` of the
    task's network exported with ``static_ratios``) under the keep ratios ``policy`` picks at ``budget``."""
    ratios = keep_ratios_at_budget(task, policy, images, budget, static_ratios)
    return executor(images, torch.as_tensor(ratios))


__all__ = ["BudgetedPolicy", "budgeted_policy", "keep_ratios_at_budget", "run_at_budget"]
