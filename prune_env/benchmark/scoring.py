"""How the RL benchmark scores one method on the held-out test split, on one fixed scale for every method.

Per run (:func:`score_runtime`, :func:`score_static`), on the test split of the suite's network:

* ``objective``: the *fixed-β test objective* ``-mean(L) / beta0``, the accuracy term of the
  environments' reward with the loss scale frozen at the suite's ``beta0``
  (:func:`prune_env.benchmark.leaderboard.reference_beta`: the calibration loss of the uniform network at
  the budget). It is the same number for every method, budget mode and algorithm; the budget is
  not in it but in the ranking: methods whose mean cost exceeds the budget x
  :data:`BUDGET_TOLERANCE` are ranked after those within it ("at equal budget");
* ``iso_mac``: uniform pruning at the run's own mean MACs (the largest uniform keep ratio that
  does not spend more; FBS-like): what the same compute buys without an agent;
* ``adaptation`` (runtime agents): the run's own per-input allocations shuffled across inputs
  (same allocations, same mean MACs, no input dependence; as :func:`prune_env.evaluation.references.adaptation_controls`)
  and the gain over them, the control that tells per-input adaptation from a better fixed allocation.

Headroom captured needs the suite's uniform and oracle rows and is computed when the leaderboard
is built (:mod:`prune_env.benchmark.leaderboard`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from prune_env.envs.task import RUNTIME_TRADEOFF_RATE, PruningTask
from prune_env.evaluation.references import iso_mac_uniform_ratio
from prune_env.evaluation.split import SplitResults, rollout_split, summarize

#: a method is within its budget when its mean cost is at most the budget times this
BUDGET_TOLERANCE = 1.01


def objective(losses: np.ndarray, beta0: float) -> float:
    """The fixed-β test objective ``-mean(L) / beta0``."""
    return float(-np.mean(losses) / beta0)


def iso_mac_uniform(test: PruningTask, macs_ratio: float, beta0: float) -> dict:
    """Uniform pure runtime pruning at ``macs_ratio`` (never more MACs): keep ratio, top-1, objective, MACs."""
    ones = np.ones(test.num_layers)
    with test.at_tradeoff_rate(RUNTIME_TRADEOFF_RATE):
        ratio = iso_mac_uniform_ratio(test, macs_ratio)
        res = rollout_split(test, ratio, ones)
    return {"keep_ratio": float(ratio), "accuracy": float(res.correct.mean()), "objective": objective(res.losses, beta0),
            "macs_ratio": float(res.macs.mean())}


def _scores(test: PruningTask, res: SplitResults, static_ratios: Any, beta0: float, within: str) -> dict:
    metrics = summarize(test, res, static_ratios, within=within)
    metrics["objective"] = objective(res.losses, beta0)
    metrics["beta0"] = float(beta0)
    return metrics


def score_runtime(test: PruningTask, policy: Any, static_ratios: Any, beta0: float, *, controls: bool = True,
                  seed: int = 0) -> dict:
    """A runtime method (MAC budget) on ``test``: ``{"test": metrics with "objective", "iso_mac": ...,
    "adaptation": ... or None}``; ``controls`` adds the shuffled control (agents, not fixed baselines)."""
    res = rollout_split(test, policy, static_ratios)
    metrics = _scores(test, res, static_ratios, beta0, "macs")
    out: dict[str, Any] = {"test": metrics, "iso_mac": iso_mac_uniform(test, metrics["macs_ratio"], beta0),
                           "adaptation": None}
    if controls:
        shuffled = rollout_split(test, None, static_ratios,
                                 per_input=res.actions[np.random.default_rng(seed).permutation(res.actions.shape[0])])
        out["adaptation"] = {
            "shuffled_accuracy": float(shuffled.correct.mean()), "shuffled_objective": objective(shuffled.losses, beta0),
            "shuffled_macs_ratio": float(shuffled.macs.mean()),
            "gain_accuracy": float(res.correct.mean() - shuffled.correct.mean()),
            "gain_objective": objective(res.losses, beta0) - objective(shuffled.losses, beta0),
            "keep_ratio_std_over_inputs": res.keep.std(0).tolist(),
        }
    return out


def score_static(test: PruningTask, runtime_policy: Any, static_ratios: Any, beta0: float) -> dict:
    """A static method (parameter budget) on ``test``: ``{"test": metrics with "objective", "iso_mac": ...,
    "adaptation": None}``."""
    res = rollout_split(test, runtime_policy, static_ratios)
    metrics = _scores(test, res, static_ratios, beta0, "params")
    return {"test": metrics, "iso_mac": iso_mac_uniform(test, metrics["macs_ratio"], beta0), "adaptation": None}

