"""Learning curves of benchmark runs: against environment steps and against wall-clock seconds (PNG + CSV).

Each agent's result holds ``curves`` (:meth:`agents.benchmark.jobs.EpisodeLog.curves`): the training
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

Records of older versions hold only ``curve`` (the sparse training return against steps); a suite none
of whose records has ``curves`` is drawn by the same :func:`plot_curves` as one panel of that return
against steps (:data:`LEGACY_PANELS`). The interval is :func:`prune_env.benchmark.statistics.t_interval`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from prune_env.benchmark.statistics import t_interval
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
    (:func:`~prune_env.benchmark.statistics.t_interval`; NaN below :data:`MIN_SEEDS_BAND` finite values)."""
    curves = np.asarray(curves, dtype=np.float64)
    point = np.full(curves.shape[1], np.nan)
    lo, hi = point.copy(), point.copy()
    for j in range(curves.shape[1]):
        col = curves[:, j][np.isfinite(curves[:, j])]
        if col.size == 0:
            continue
        point[j], low, high = t_interval(col)
        if col.size >= MIN_SEEDS_BAND:
            lo[j], hi[j] = low, high
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


#: the panels of a figure: per metric (a row) its y label and the baselines' key for their horizontal line;
#: the axes (columns) the curves are drawn against
PANELS = {"objective": ("training episodes: objective -L / beta0", "train_objective"),
          "macs_ratio": ("training episodes: MAC ratio of dense", "train_macs_ratio")}
AXES = ("steps", "seconds")
#: records of older versions (``curve`` only): the sparse training return against steps
LEGACY_PANELS = {"return": ("training episodes: sparse return R_acc + R_bud", "final_return")}


def _agents(results: list[dict]) -> dict[str, list[dict]]:
    by_algo: dict[str, list[dict]] = {}
    for r in sorted(results, key=lambda r: (r["algo"], r["seed"])):
        if r.get("curves"):
            by_algo.setdefault(r["algo"], []).append(r)
    return by_algo


def _legacy_agents(results: list[dict]) -> dict[str, list[dict]]:
    """Records of older versions with their ``curve`` in the form of ``curves`` (one axis, one metric)."""
    by_algo: dict[str, list[dict]] = {}
    for r in sorted(results, key=lambda r: (r["algo"], r["seed"])):
        if r.get("curve"):
            curve = {"steps": {"x": r["curve"]["steps"], "return": r["curve"]["return"]}}
            by_algo.setdefault(r["algo"], []).append({**r, "curves": curve})
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
    """A 2 x 2 figure: objective and MAC ratio (rows) against steps and seconds (columns); records of older
    versions only (no ``curves``): one panel, their sparse return against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_algo = _agents(results)
    panels, axes_of = PANELS, AXES
    if not by_algo:
        by_algo, panels, axes_of = _legacy_agents(results), LEGACY_PANELS, AXES[:1]
    fig, axes = plt.subplots(len(panels), len(axes_of), figsize=(6.5 * len(axes_of), 4.25 * len(panels)), sharex="col",
                             squeeze=False)
    shown: dict[str, list[float]] = {metric: [] for metric in panels}
    finals: dict[str, list[float]] = {metric: [] for metric in panels}
    for algo, runs in by_algo.items():
        style = method_style(algo, list(by_algo))
        for row, metric in enumerate(panels):
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
            if "seconds" not in axes_of:
                continue
            for k, r in enumerate(runs):
                c = r["curves"]["seconds"]
                axes[row, 1].plot(c["x"], c[metric], color=style["color"], ls=style["ls"], lw=0.6 * style["lw"], alpha=0.8,
                                  label=algo if k == 0 else None)
    columns = range(len(axes_of))
    styles = [(0, (6, 2)), (0, (2, 2)), (0, (6, 2, 1, 2)), (0, (1, 1))]
    first_key = next(iter(panels.values()))[1]
    bases = sorted({r["algo"] for r in results if r["kind"] == "baseline" and r.get("constraint", "macs") == "macs"
                    and math.isfinite(r.get(first_key, math.nan))})
    for j, name in enumerate(bases):
        runs = [r for r in results if r["algo"] == name]
        for row, (_, key) in enumerate(panels.values()):
            for col in columns:
                axes[row, col].axhline(float(np.mean([r[key] for r in runs])), color="0.2", ls=styles[j % 4], lw=1.1,
                                       label=f"{name} (baseline)" if row == 0 and col == 0 else None)
    budgets = [r["test"]["budget"] for r in results if "test" in r]
    if budgets and "macs_ratio" in panels:
        for col in columns:
            axes[1, col].axhline(budgets[0], color="red", lw=1.0, alpha=0.6, label="MAC budget" if col == 0 else None)
    for row, metric in enumerate(panels):
        if shown[metric]:  # the means decide the range; early exploration is clipped, no method's end
            limits = y_range(shown[metric], finals[metric])
            for col in columns:
                axes[row, col].set_ylim(*limits)
        axes[row, 0].set_ylabel(panels[metric][0])
    axes[-1, 0].set_xlabel("environment steps (layer decisions)")
    axes[0, 0].set_title("against steps (mean over seeds, 95% t-interval from 3 seeds)", fontsize=9)
    if "seconds" in axes_of:
        axes[-1, 1].set_xlabel("wall-clock seconds of training (each seed its own line)")
        axes[0, 1].set_title("against wall-clock seconds", fontsize=9)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    h2, l2 = axes[-1, 0].get_legend_handles_labels()
    budget = [(h, lab) for h, lab in zip(h2, l2) if lab == "MAC budget"]
    handles, labels = handles + [h for h, _ in budget], labels + [lab for _, lab in budget]
    fig.legend(handles, labels, loc="lower center", ncol=min(6, max(1, len(labels))), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.02 + 0.025 * math.ceil(len(labels) / 6), 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
