"""The budget as a deployment-time argument of an any-budget runtime agent (issue 18).

An agent trained over a range of MAC budgets (``budget="0.3:0.7"``) reads the budget from the last
entry of its observation. At deployment the caller chooses it: :class:`BudgetedPolicy` holds the
agent at one budget (whatever budget its observations were built with), :func:`keep_ratios_at_budget`
gives the per-input runtime keep ratios it chooses for a batch, and :func:`run_at_budget` runs them
through a :class:`~prune_env.deploy.RuntimeExecutor`, which computes only the kept channels::

    executor = RuntimeExecutor(export_static(task.net, static_ratios))
    logits = run_at_budget(executor, task, agent_policy, images, budget=0.45)

An agent trained with relative actions (the default of a range, :meth:`PruningTask.action_shift`)
acts as an offset from the budget's uniform keep ratio: :func:`keep_ratios_at_budget` applies it (the
task held at the budget, :meth:`PruningTask.at_budget`); :class:`BudgetedPolicy` alone sets the
observation only.

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
    """A runtime policy with the budget entry of every observation (the last) set to ``macs_budget``."""

    def __init__(self, policy: Any, macs_budget: float, num_layers: int | None = None):
        self.policy = as_policy(policy, num_layers)
        self.macs_budget = float(macs_budget)

    def reset(self, batch_size: int) -> None:
        super().reset(batch_size)
        self.policy.reset(batch_size)

    def act(self, observations: np.ndarray, t: int) -> np.ndarray:
        observations = np.array(observations, dtype=np.float32, copy=True)
        observations[:, -1] = self.macs_budget
        return self.policy(observations)

    def __repr__(self) -> str:
        return f"BudgetedPolicy({self.policy!r}, macs_budget={self.macs_budget:.4f})"


def budgeted_policy(task: PruningTask, policy: Any, budget: float) -> BudgetedPolicy:
    """``policy`` held at ``budget`` (in the task's ``budget_kind`` units: a sparsity or a MAC fraction),
    checked against the task's range (:meth:`PruningTask.check_budget`)."""
    value = task.check_budget(budget)
    macs = float(task.costs_of(np.array([value]), params=False)[0][0])
    return BudgetedPolicy(policy, macs, task.num_layers)


def keep_ratios_at_budget(task: PruningTask, policy: Any, images: Tensor, budget: float,
                          static_ratios: Any = 1.0) -> np.ndarray:
    """The ``(B, L)`` runtime keep ratios ``policy`` chooses for ``images`` at ``budget`` (clipped to
    ``[alpha, 1]``), from the gated network's observations, as in training and evaluation."""
    held = budgeted_policy(task, policy, budget)
    static = np.broadcast_to(np.asarray(static_ratios, dtype=np.float64), (task.num_layers,)).copy()
    with torch.no_grad(), task.at_budget(budget):  # relative actions are shifted at this budget too
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
