"""Evaluate a pair of pruning policies on a whole split, and the reference policies beside them.

The figures are the paper's (Tables 1-3): top-1 accuracy and its change from the dense network,
MAC speed-up, stored parameters; plus what a budget-constrained deployment needs to know: the
fraction of inputs within the MAC budget and the per-layer keep ratios (mean and spread).
They are printed by :func:`~prune_env.evaluation.tables.format_reference_table` and plotted by
:mod:`~prune_env.evaluation.plots`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from prune_env.envs.task import RUNTIME_TRADEOFF_RATE, PruningTask
from prune_env.policies import KeepRatioPolicy, as_policy


@dataclass
class SplitResults:
    """Per-input results of a pair of policies on a whole split (rows in the split's order).

    Attributes:
        correct: ``(N,)`` bool, top-1 correct.
        losses: ``(N,)`` cross entropy.
        macs: ``(N,)`` backbone MAC ratio of dense.
        keep: ``(N, L)`` kept fraction of channels per layer.
        actions: ``(N, L)`` the runtime keep ratios applied (clipped to ``[alpha, 1]``).
        confidence: ``(N,)`` the network's maximum softmax probability (what a confidence cascade
            decides on; None where not recorded).
        labels: ``(N,)`` the true classes (None where not recorded).
    """

    correct: np.ndarray
    losses: np.ndarray
    macs: np.ndarray
    keep: np.ndarray
    actions: np.ndarray
    confidence: np.ndarray | None = None
    labels: np.ndarray | None = None


class PerInputPolicy(KeepRatioPolicy):
    """Given keep ratios per input and layer, ``(N, L)``: row ``i`` for the ``i``-th input of the batch."""

    def __init__(self, ratios: np.ndarray):
        self.ratios = np.asarray(ratios, dtype=np.float64)

    def act(self, observations, t):
        if observations.shape[0] != self.ratios.shape[0]:
            raise ValueError(f"PerInputPolicy holds {self.ratios.shape[0]} rows, got a batch of {observations.shape[0]}")
        return self.ratios[:, t]


def rollout_split(task: PruningTask, runtime_policy: Any, static_ratios: Any, *, per_input: np.ndarray | None = None,
                  batch_size: int = 512, indices: np.ndarray | None = None) -> SplitResults:
    """Run every image of ``task``'s split (or those at ``indices``, in their order); the runtime keep
    ratios come from ``runtime_policy`` (anything :func:`~prune_env.policies.as_policy` accepts) or,
    given, from ``per_input`` ``(N, L)``, one row per image run."""
    static = np.broadcast_to(np.asarray(static_ratios, dtype=np.float64), (task.num_layers,)).copy()
    policy = None if per_input is not None else as_policy(runtime_policy, task.num_layers)
    order = np.arange(len(task.source)) if indices is None else np.asarray(indices, dtype=np.int64)
    correct, losses, macs, keep, actions, confidence, label_rows = [], [], [], [], [], [], []
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            rows = np.arange(start, min(start + batch_size, len(order)))
            idx = order[rows]
            images, labels = task.source.get(idx)
            state = task.rollout(images, policy if per_input is None else PerInputPolicy(per_input[rows]), static)
            correct.append((state.logits.argmax(1) == labels).cpu().numpy())
            confidence.append(state.logits.float().softmax(1).amax(1).cpu().numpy())
            label_rows.append(labels.cpu().numpy())
            losses.append(task.losses(state.logits, labels).cpu().numpy())
            macs.append(task.costs.macs_ratio(state.kept).numpy())
            keep.append((state.kept.cpu().double() / task.channels.double()).numpy())
            actions.append(np.stack([np.broadcast_to(np.asarray(torch.as_tensor(r).cpu(), dtype=np.float64), (len(idx),))
                                     for r in state.runtime_ratios], 1))
    return SplitResults(*(np.concatenate(v) for v in (correct, losses, macs, keep, actions, confidence, label_rows)))


def summarize(task: PruningTask, results: SplitResults, static_ratios: Any, *, within: str = "macs") -> dict:
    """The metrics dict of :func:`evaluate_policies` from per-input results.

    ``within_budget`` is the fraction of inputs within the MAC budget (``within="macs"``, what a
    runtime agent is held to) or, ``within="params"``, whether the stored parameters meet the
    parameter budget (1 or 0, the same for every input: what a static agent is held to);
    ``within_budget_of`` names which.
    """
    if within not in ("macs", "params"):
        raise ValueError(f"within must be 'macs' or 'params', got {within!r}")
    static = np.broadcast_to(np.asarray(static_ratios, dtype=np.float64), (task.num_layers,)).copy()
    stored = task.stored_counts(static[None])[0]
    probes = getattr(task, "probes", None)  # the confidence probes of observation="...+confidence"
    overhead = (float(task.costs.overhead_macs(torch.tensor(task.net.channels)[None])[0])
                + (probes.macs if probes is not None else 0)) / task.costs.dense_macs
    mean_macs = float(results.macs.mean())
    params_ratio = float(task.costs.params_ratio(stored))
    if within == "params":
        in_budget = float(params_ratio <= task.params_budget + 1e-9)
    else:
        in_budget = float(np.mean(results.macs <= task.macs_budget + 1e-9))
    return {
        "accuracy": float(results.correct.mean()),
        "loss": float(results.losses.mean()),
        "macs_ratio": mean_macs,
        "speedup": 1.0 / mean_macs,
        "params_ratio": params_ratio,
        "stored_params": float(task.costs.params(stored)),
        "budget": task.macs_budget,
        "params_budget": task.params_budget,
        "within_budget": in_budget,
        "within_budget_of": within,
        "keep_ratio_mean": results.keep.mean(0).tolist(),
        "keep_ratio_std": results.keep.std(0).tolist(),
        "static_keep_ratios": static.tolist(),
        "overhead_macs_ratio_max": overhead,
        "num_images": int(len(results.correct)),
    }


def evaluate_policies(task: PruningTask, runtime_policy: Any, static_ratios: Any, *, batch_size: int = 512) -> dict:
    """Run every image of ``task``'s split under the policies; returns the metrics dict.

    ``runtime_policy`` is anything :func:`~prune_env.policies.as_policy` accepts (deterministic
    SB3 models included); ``static_ratios`` is ``(L,)``.
    """
    return summarize(task, rollout_split(task, runtime_policy, static_ratios, batch_size=batch_size), static_ratios)


def uniform_keep_ratio(task: PruningTask, budget: float | None = None) -> float:
    """The largest uniform keep ratio whose MAC ratio meets ``budget`` (see :meth:`PruningTask.uniform_keep_ratio`)."""
    return task.uniform_keep_ratio(budget)


def reference_metrics(task: PruningTask, *, batch_size: int = 512) -> dict[str, dict]:
    """The references beside an agent, on the same network and budget.

    * ``dense``: nothing pruned;
    * ``uniform``: FBS-like pure runtime pruning, the largest uniform keep ratio whose MACs meet
      the budget in every layer, ``R_r = 1`` and no static pruning.
    """
    uniform = uniform_keep_ratio(task)
    ones = np.ones(task.num_layers)
    with task.at_tradeoff_rate(RUNTIME_TRADEOFF_RATE):
        out = {
            "dense": evaluate_policies(task, 1.0, ones, batch_size=batch_size),
            "uniform": evaluate_policies(task, uniform, ones, batch_size=batch_size),
        }
    out["uniform"]["uniform_keep_ratio"] = uniform
    return out
