"""The evaluation's figures, to PNG: keep ratios over inputs, adaptation to difficulty, the report's table.

* :func:`plot_keep_ratios`: each layer's kept fraction of channels over the inputs of a split;
* :func:`plot_adaptation`: each input's MAC ratio against its difficulty;
* :func:`plot_report`: a report of :func:`~prune_env.evaluation.report.build_report` as a picture;
* :func:`pyplot` and :func:`save_figure`: the matplotlib setup (no display needed) and the atomic
  PNG write, for these figures and any other.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from prune_env.evaluation.split import SplitResults
from prune_env.io import atomic_write


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` at 120 dpi to ``path`` (atomically, the format from its suffix, PNG without one)
    and close it; returns the path."""
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, dpi=120, format=path.suffix[1:] or "png"))
    fig.clf()
    pyplot().close(fig)
    return path


def plot_keep_ratios(keep: np.ndarray, path: str | os.PathLike, *, uniform: float | None = None, title: str = "") -> Path:
    """The distribution over inputs of each layer's kept fraction of channels (violins, mean marked) to PNG.

    ``keep`` is ``(N, L)`` (:attr:`SplitResults.keep`); a static allocation shows as flat violins.
    """
    plt = pyplot()
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
    return save_figure(fig, path)


def plot_adaptation(agent: SplitResults, difficulty: np.ndarray, budget: float, path: str | os.PathLike, *,
                    title: str = "", difficulty_label: str = "loss of the uniform network at the budget") -> Path:
    """Each input's MAC ratio under the agent against its difficulty, to PNG: whether the agent adapts.

    An agent that gives hard inputs more channels rises to the right; a static one is a flat line.
    Points are coloured by the agent's correctness; the line is the mean MAC ratio per difficulty decile.
    """
    plt = pyplot()
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
    return save_figure(fig, path)


def plot_report(report: dict, path: str | os.PathLike) -> Path:
    """The table as a picture: top-1 accuracy against the MAC ratio and against the stored-parameter ratio,
    one marker per row, the budgets as dashed lines, to PNG (atomically)."""
    plt = pyplot()
    t, rows = report["task"], report["rows"]
    markers = {"dense": ("s", "0.3"), "uniform": ("^", "tab:red"), "uniform_static": ("v", "tab:orange")}
    colors = ["tab:blue", "tab:green", "tab:purple", "tab:brown", "tab:cyan", "tab:olive", "tab:pink"]
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.9), sharey=True)
    for ax, key, budget, label, what in (
            (axes[0], "macs_ratio", t["macs_budget"], "MAC ratio of dense (mean over inputs)", "MAC budget"),
            (axes[1], "params_ratio", t["params_budget"], "stored-parameter ratio of dense", "parameter budget")):
        agents = iter(colors)
        for row in rows:
            marker, color = markers.get(row["name"]) or ("o", next(agents, "tab:blue"))
            ax.scatter(row[key], 100 * row["accuracy"], marker=marker, color=color, s=60, zorder=3,
                       label=f"{row['label']} ({100 * row['accuracy']:.2f}%)")
        ax.axvline(budget, color="0.4", ls="--", lw=1)
        ax.annotate(f" {what} {budget:.3f}", (budget, 1.0), xycoords=("data", "axes fraction"), va="top", ha="left",
                    fontsize=8, color="0.3")
        ax.set_xlim(0, 1.05)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("top-1 accuracy (%), test split")
    accs = [100 * r["accuracy"] for r in rows]
    span = max(accs) - min(accs)
    axes[0].set_ylim(min(accs) - max(0.5, 0.25 * span), max(accs) + max(0.5, 0.25 * span))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    run = report.get("run", {})
    where = f"{run['run_dir']}: " if run.get("run_dir") else ""
    fig.suptitle(f"{where}{t['network']} on {t['dataset']}, {t['split']} split ({t['num_images']} images), "
                 f"budget: sparsity {t['budget']:g}", fontsize=10)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return save_figure(fig, path)
