"""Evaluate a pair of pruning policies on a whole split, and the reference policies beside them.

The figures are the paper's (Tables 1-3): top-1 accuracy and its change from the dense network,
MAC speed-up, stored parameters; plus what a budget-constrained deployment needs to know: the
fraction of inputs within the MAC budget and the per-layer keep ratios (mean and spread).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
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
    """

    correct: np.ndarray
    losses: np.ndarray
    macs: np.ndarray
    keep: np.ndarray
    actions: np.ndarray


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
    correct, losses, macs, keep, actions = [], [], [], [], []
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            rows = np.arange(start, min(start + batch_size, len(order)))
            idx = order[rows]
            images, labels = task.source.get(idx)
            state = task.rollout(images, policy if per_input is None else PerInputPolicy(per_input[rows]), static)
            correct.append((state.logits.argmax(1) == labels).cpu().numpy())
            losses.append(task.losses(state.logits, labels).cpu().numpy())
            macs.append(task.costs.macs_ratio(state.kept).numpy())
            keep.append((state.kept.cpu().double() / task.channels.double()).numpy())
            actions.append(np.stack([np.broadcast_to(np.asarray(torch.as_tensor(r).cpu(), dtype=np.float64), (len(idx),))
                                     for r in state.runtime_ratios], 1))
    return SplitResults(*(np.concatenate(v) for v in (correct, losses, macs, keep, actions)))


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
    overhead = float(task.costs.overhead_macs(torch.tensor(task.net.channels)[None])[0]) / task.costs.dense_macs
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


def format_table(rows: dict[str, dict]) -> str:
    """A readable text table of several metric dicts (one row each)."""
    width = max(16, *(len(name) for name in rows))
    header = f"{'policy':<{width}} {'top-1':>7} {'MACs':>7} {'speed-up':>9} {'params':>7} {'in budget':>10}"
    lines = [header, "-" * len(header)]
    for name, m in rows.items():
        lines.append(
            f"{name:<{width}} {100 * m['accuracy']:>6.2f}% {m['macs_ratio']:>7.3f} {m['speedup']:>8.2f}x "
            f"{m['params_ratio']:>7.3f} {100 * m['within_budget']:>9.1f}%"
        )
    return "\n".join(lines)


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write JSON atomically (:func:`prune_env.io.write_json`: indented, keys sorted)."""
    from prune_env import io

    return io.write_json(obj, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    fig.clf()
    _pyplot().close(fig)
    return path


def plot_keep_ratios(keep: np.ndarray, path: str | os.PathLike, *, uniform: float | None = None, title: str = "") -> Path:
    """The distribution over inputs of each layer's kept fraction of channels (violins, mean marked) to PNG.

    ``keep`` is ``(N, L)`` (:attr:`SplitResults.keep`); a static allocation shows as flat violins.
    """
    plt = _pyplot()
    keep = np.asarray(keep, dtype=np.float64)
    layers = np.arange(keep.shape[1])
    fig, ax = plt.subplots(figsize=(max(4.5, 0.7 * len(layers) + 2.5), 3.4))
    spread = keep.std(0) > 1e-9
    if spread.any():
        parts = ax.violinplot([keep[:, t] for t in layers[spread]], positions=layers[spread], widths=0.8,
                              showextrema=True, showmeans=False)
        for body in parts["bodies"]:
            body.set_facecolor("tab:blue")
            body.set_alpha(0.35)
    ax.scatter(layers, keep.mean(0), color="tab:blue", marker="D", s=28, zorder=3, label="agent, mean over inputs")
    if uniform is not None:
        ax.axhline(uniform, color="tab:red", ls="--", label=f"uniform keep ratio at the budget ({uniform:.2f})")
    ax.set_xlabel("prunable layer")
    ax.set_ylabel("kept fraction of channels")
    ax.set_ylim(0, 1.05)
    ax.set_xticks(layers)
    ax.set_title(title or "per-layer keep ratios over inputs", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def plot_adaptation(agent: SplitResults, difficulty: np.ndarray, budget: float, path: str | os.PathLike, *,
                    title: str = "", difficulty_label: str = "loss of the uniform network at the budget") -> Path:
    """Each input's MAC ratio under the agent against its difficulty, to PNG: whether the agent adapts.

    An agent that gives hard inputs more channels rises to the right; a static one is a flat line.
    Points are coloured by the agent's correctness; the line is the mean MAC ratio per difficulty decile.
    """
    plt = _pyplot()
    difficulty = np.asarray(difficulty, dtype=np.float64)
    x = np.log10(np.maximum(difficulty, 1e-6))
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    right = agent.correct.astype(bool)
    ax.scatter(x[right], agent.macs[right], s=9, alpha=0.5, color="tab:blue", label="agent right")
    ax.scatter(x[~right], agent.macs[~right], s=18, alpha=0.9, color="tab:orange", marker="x", label="agent wrong")
    edges = np.quantile(x, np.linspace(0, 1, 11))
    bins = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, 9)
    centres = [x[bins == b].mean() for b in range(10) if np.any(bins == b)]
    means = [agent.macs[bins == b].mean() for b in range(10) if np.any(bins == b)]
    ax.plot(centres, means, color="black", lw=1.5, marker="o", ms=3, label="mean per difficulty decile")
    ax.axhline(budget, color="tab:red", ls="--", label=f"MAC budget ({budget:.3f})")
    ax.set_xlabel(f"difficulty: log10 {difficulty_label}")
    ax.set_ylabel("MAC ratio of dense (per input)")
    ax.set_title(title or "per-input compute against difficulty", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _save(fig, path)
