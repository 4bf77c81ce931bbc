"""Evaluate a pair of pruning policies on a whole split, and the reference policies beside them.

The figures are the paper's (Tables 1-3): top-1 accuracy and its change from the dense network,
MAC speed-up, stored parameters; plus what a budget-constrained deployment needs to know: the
fraction of inputs within the MAC budget and the per-layer keep ratios (mean and spread).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prune_env.envs.task import RUNTIME_TRADEOFF_RATE, PruningTask
from prune_env.policies import as_policy


def evaluate_policies(task: PruningTask, runtime_policy: Any, static_ratios: Any, *, batch_size: int = 512) -> dict:
    """Run every image of ``task``'s split under the policies; returns the metrics dict.

    ``runtime_policy`` is anything :func:`~prune_env.policies.as_policy` accepts (deterministic
    SB3 models included); ``static_ratios`` is ``(L,)``.
    """
    policy = as_policy(runtime_policy, task.num_layers)
    static = np.broadcast_to(np.asarray(static_ratios, dtype=np.float64), (task.num_layers,)).copy()
    correct, losses, macs, keep = [], [], [], []
    with torch.no_grad():
        for start in range(0, len(task.source), batch_size):
            idx = np.arange(start, min(start + batch_size, len(task.source)))
            images, labels = task.source.get(idx)
            state = task.rollout(images, policy, static)
            correct.append((state.logits.argmax(1) == labels).cpu().numpy())
            losses.append(task.losses(state.logits, labels).cpu().numpy())
            macs.append(task.costs.macs_ratio(state.kept).numpy())
            keep.append((state.kept.cpu().double() / task.channels.double()).numpy())
    correct, losses, macs, keep = (np.concatenate(v) for v in (correct, losses, macs, keep))
    stored = task.stored_counts(static[None])[0]
    overhead = float(task.costs.overhead_macs(torch.tensor(task.net.channels)[None])[0]) / task.costs.dense_macs
    mean_macs = float(macs.mean())
    return {
        "accuracy": float(correct.mean()),
        "loss": float(losses.mean()),
        "macs_ratio": mean_macs,
        "speedup": 1.0 / mean_macs,
        "params_ratio": float(task.costs.params_ratio(stored)),
        "stored_params": float(task.costs.params(stored)),
        "budget": task.macs_budget,
        "params_budget": task.params_budget,
        "within_budget": float(np.mean(macs <= task.macs_budget + 1e-9)),
        "keep_ratio_mean": keep.mean(0).tolist(),
        "keep_ratio_std": keep.std(0).tolist(),
        "static_keep_ratios": static.tolist(),
        "overhead_macs_ratio_max": overhead,
        "num_images": int(len(correct)),
    }


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
    header = f"{'policy':<16} {'top-1':>7} {'MACs':>7} {'speed-up':>9} {'params':>7} {'in budget':>10}"
    lines = [header, "-" * len(header)]
    for name, m in rows.items():
        lines.append(
            f"{name:<16} {100 * m['accuracy']:>6.2f}% {m['macs_ratio']:>7.3f} {m['speedup']:>8.2f}x "
            f"{m['params_ratio']:>7.3f} {100 * m['within_budget']:>9.1f}%"
        )
    return "\n".join(lines)


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write JSON atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


def plot_keep_ratios(metrics: dict, path: str | os.PathLike, *, uniform: float | None = None, title: str = "") -> Path:
    """Bar chart of the per-layer keep ratio (mean, with one standard deviation) to PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean = np.asarray(metrics["keep_ratio_mean"])
    std = np.asarray(metrics["keep_ratio_std"])
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(mean) + 2), 3.2))
    ax.bar(np.arange(len(mean)), mean, yerr=std, capsize=3, color="tab:blue", label="agent (mean ± std over inputs)")
    if uniform is not None:
        ax.axhline(uniform, color="tab:red", ls="--", label=f"uniform reference ({uniform:.2f})")
    ax.set_xlabel("prunable layer")
    ax.set_ylabel("kept fraction of channels")
    ax.set_ylim(0, 1.05)
    ax.set_xticks(np.arange(len(mean)))
    ax.set_title(title or "per-layer keep ratios")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
