"""Learning curves of benchmark runs: against environment steps and against wall-clock seconds (PNG + CSV).

Each agent's result holds ``curves`` (:meth:`agents.benchmark.EpisodeLog.curves`): the training
episodes' fixed-beta objective ``-L / beta0`` (the suite's ``beta0``, the same scale for every method
and for the leaderboard's test objective) and their mean MAC ratio, binned against steps and against
seconds since training began. Training episodes run the *stochastic* policy on the training split, so
the curves show learning, not the deterministic test scores of the leaderboard.

* against steps: per method the mean over seeds, shaded with the 95% Student-t interval of the mean
  from 3 seeds (clipped to the range of the plotted means);
* against seconds: every seed its own thin line (wall-clock time depends on the machine's load, so
  seeds do not share a time grid), the method's colour;
* baselines (runtime ones, the same policy in a fresh training environment) as horizontal lines on
  the objective panels; the budget as a horizontal line on the MAC panels;
* every method keeps one colour and dash pattern (:func:`method_style`) in every suite's figure, and no
  two methods share one; the paper's method, recurrent PPO, is drawn thickest.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from prune_env.io import write_csv

#: fewest seeds for a shaded interval
MIN_SEEDS_BAND = 3

#: the registered methods in a fixed order, so that a method has the same style in every suite's figure
#: (a method not listed takes the next free style after them, in name order)
METHOD_ORDER = ("recurrent_ppo", "ppo", "a2c", "trpo", "ars", "dqn", "qrdqn", "purl_dqn", "sac", "td3", "ddpg",
                "crossq", "tqc", "amc_ddpg")
#: tab10 without its red (the MAC budget's colour) and its grey (the baselines' colour)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
#: one dash pattern per round through :data:`PALETTE`
DASHES = ("-", (0, (5, 2)), (0, (1, 1.5)), (0, (6, 2, 1, 2)))
#: the paper's method, drawn thickest
HIGHLIGHT = "recurrent_ppo"


def method_style(algo: str, algos: list[str] | tuple[str, ...] = ()) -> dict:
    """Matplotlib line keywords (``color``, ``ls``, ``lw``) of ``algo``: the method at position ``k`` of
    :data:`METHOD_ORDER` followed by the other ``algos`` in name order takes colour ``k mod 8`` and dash
    pattern ``k div 8``, so no two of the first 32 methods look alike and a registered method looks the
    same whichever others a suite has."""
    extra = sorted(a for a in set(algos) | {algo} if a not in METHOD_ORDER)
    k = (METHOD_ORDER + tuple(extra)).index(algo)
    return {"color": PALETTE[k % len(PALETTE)], "ls": DASHES[(k // len(PALETTE)) % len(DASHES)],
            "lw": 2.4 if algo == HIGHLIGHT else 1.5}


def mean_band(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of ``curves`` ``(seeds, bins)``: the mean over finite values and its 95% Student-t interval
    (NaN below :data:`MIN_SEEDS_BAND` finite values)."""
    from scipy import stats

    curves = np.asarray(curves, dtype=np.float64)
    point = np.full(curves.shape[1], np.nan)
    lo, hi = point.copy(), point.copy()
    for j in range(curves.shape[1]):
        col = curves[:, j][np.isfinite(curves[:, j])]
        if col.size == 0:
            continue
        point[j] = col.mean()
        if col.size >= MIN_SEEDS_BAND:
            half = stats.t.ppf(0.975, col.size - 1) * col.std(ddof=1) / math.sqrt(col.size)
            lo[j], hi[j] = point[j] - half, point[j] + half
    return point, lo, hi


def y_range(points: list[float], finals: list[float], low_percentile: float = 2.0) -> tuple[float, float]:
    """The y limits of a curve panel: from the ``low_percentile``-th percentile of the plotted means
    ``points`` (early exploration and wide bands are clipped) to their maximum, widened to hold every
    method's last mean ``finals`` (a method that collapsed stays in view), with a 15% margin."""
    low, high = np.percentile(points, [low_percentile, 100])
    if finals:
        low, high = min(low, min(finals)), max(high, max(finals))
    pad = 0.15 * (high - low) + 1e-3
    return float(low - pad), float(high + pad)


def _agents(results: list[dict]) -> dict[str, list[dict]]:
    by_algo: dict[str, list[dict]] = {}
    for r in sorted(results, key=lambda r: (r["algo"], r["seed"])):
        if r.get("curves"):
            by_algo.setdefault(r["algo"], []).append(r)
    return by_algo


def write_curves_csv(results: list[dict], path: Path) -> Path:
    """One row per (method, seed, axis, bin): ``x`` (steps or seconds), the objective and the MAC ratio."""
    table = [["algo", "seed", "axis", "x", "objective", "macs_ratio"]]
    for algo, runs in _agents(results).items():
        for r in runs:
            for axis in ("steps", "seconds"):
                c = r["curves"][axis]
                for x, obj, macs in zip(c["x"], c["objective"], c["macs_ratio"]):
                    table.append([algo, r["seed"], axis, x, obj, macs])
    return write_csv(table, path)


def plot_curves(results: list[dict], path: Path, title: str = "") -> Path:
    """A 2 x 2 figure: objective and MAC ratio (rows) against steps and seconds (columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_algo = _agents(results)
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5), sharex="col")
    shown: dict[str, list[float]] = {"objective": [], "macs_ratio": []}
    finals: dict[str, list[float]] = {"objective": [], "macs_ratio": []}
    for algo, runs in by_algo.items():
        style = method_style(algo, list(by_algo))
        for row, metric in enumerate(("objective", "macs_ratio")):
            ax = axes[row, 0]
            x = np.asarray(runs[0]["curves"]["steps"]["x"])
            curves = np.asarray([r["curves"]["steps"][metric] for r in runs if len(r["curves"]["steps"][metric]) == len(x)],
                                dtype=np.float64)
            point, lo, hi = mean_band(curves)
            ax.plot(x, point, **style, label=f"{algo} (n={len(curves)})", zorder=3 if algo == HIGHLIGHT else 2)
            ok = np.isfinite(lo) & np.isfinite(hi)
            if ok.any():
                ax.fill_between(x[ok], lo[ok], hi[ok], color=style["color"], alpha=0.12, linewidth=0)
            finite = point[np.isfinite(point)]
            shown[metric].extend(finite.tolist())
            finals[metric].extend(finite[-1:].tolist())
            for k, r in enumerate(runs):
                c = r["curves"]["seconds"]
                axes[row, 1].plot(c["x"], c[metric], color=style["color"], ls=style["ls"], lw=0.6 * style["lw"], alpha=0.8,
                                  label=algo if k == 0 else None)
    bases = sorted({r["algo"] for r in results if r["kind"] == "baseline" and r.get("constraint", "macs") == "macs"
                    and math.isfinite(r.get("train_objective", math.nan))})
    styles = [(0, (6, 2)), (0, (2, 2)), (0, (6, 2, 1, 2)), (0, (1, 1))]
    for j, name in enumerate(bases):
        runs = [r for r in results if r["algo"] == name]
        for col in (0, 1):
            axes[0, col].axhline(float(np.mean([r["train_objective"] for r in runs])), color="0.2", ls=styles[j % 4], lw=1.1,
                                 label=f"{name} (baseline)" if col == 0 else None)
            axes[1, col].axhline(float(np.mean([r["train_macs_ratio"] for r in runs])), color="0.2", ls=styles[j % 4], lw=1.1)
    budgets = [r["test"]["budget"] for r in results if "test" in r]
    for col in (0, 1):
        if budgets:
            axes[1, col].axhline(budgets[0], color="red", lw=1.0, alpha=0.6, label="MAC budget" if col == 0 else None)
    for metric, row in (("objective", 0), ("macs_ratio", 1)):
        if shown[metric]:  # the means decide the range; early exploration is clipped, no method's end
            limits = y_range(shown[metric], finals[metric])
            for col in (0, 1):
                axes[row, col].set_ylim(*limits)
    axes[0, 0].set_ylabel("training episodes: objective -L / beta0")
    axes[1, 0].set_ylabel("training episodes: MAC ratio of dense")
    axes[1, 0].set_xlabel("environment steps (layer decisions)")
    axes[1, 1].set_xlabel("wall-clock seconds of training (each seed its own line)")
    axes[0, 0].set_title("against steps (mean over seeds, 95% t-interval from 3 seeds)", fontsize=9)
    axes[0, 1].set_title("against wall-clock seconds", fontsize=9)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    h2, l2 = axes[1, 0].get_legend_handles_labels()
    budget = [(h, lab) for h, lab in zip(h2, l2) if lab == "MAC budget"]
    handles, labels = handles + [h for h, _ in budget], labels + [lab for _, lab in budget]
    fig.legend(handles, labels, loc="lower center", ncol=min(6, max(1, len(labels))), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.02 + 0.025 * math.ceil(len(labels) / 6), 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
