"""The accuracy-against-cost curve of one any-budget agent, beside the references, budget by budget.

An agent trained over a range of budgets (``budget="0.3:0.7"``, :mod:`prune_env.envs.budgets`) is a
deployment-time knob: the budget is part of its observation. This module evaluates it at a set of
budgets on the test split and puts beside it, at each budget,

* **uniform**: the largest uniform keep ratio meeting the budget (FBS-like);
* **best static**: the per-layer allocation of lowest loss under the budget, the same for every input,
  searched on the split the agent trained on (:func:`~prune_env.evaluation.references.search_static_allocation`);
* **agent, calibrated**: the agent with the additive offset on its actions that brings its mean MACs
  to the budget on that split (:func:`~prune_env.evaluation.references.calibrate_offset`);
* **per-budget agents** (optional): agents trained at one budget each, read from their run
  directories' ``metrics.json`` (their own test-split evaluation at their budget).

:func:`write_sweep` writes ``any_budget.json``, ``any_budget.csv`` (one row per budget and method)
and ``any_budget.png`` (top-1 against mean MACs).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from prune_env.envs.budgets import BudgetRange
from prune_env.envs.task import RUNTIME_TRADEOFF_RATE, PruningTask
from prune_env.evaluation.plots import pyplot, save_figure
from prune_env.evaluation.split import reference_metrics, rollout_split, summarize

#: budgets a sweep evaluates over a continuous range unless told: evenly spaced, both ends included
DEFAULT_POINTS = 5
#: what a run's sweep is written as
SWEEP_FILES = ("any_budget.json", "any_budget.csv", "any_budget.png")
#: the methods of a sweep, in the order of the table and the legend, with their labels
METHODS = (("agent", "any-budget agent"), ("agent_calibrated", "any-budget agent, calibrated"),
           ("per_budget", "per-budget agent"), ("per_budget_calibrated", "per-budget agent, calibrated"),
           ("best_static", "best static"), ("uniform", "uniform"))
#: the column headings of :func:`format_sweep`
SHORT = {"agent": "agent", "agent_calibrated": "agent, calibrated", "per_budget": "per-budget",
         "per_budget_calibrated": "per-budget, calibr.", "best_static": "best static", "uniform": "uniform"}
#: the relative overshoot of the mean MACs a budget tolerates in the summary ("within budget (+1%)")
TOLERANCE = 0.01


def sweep_budgets(budget_range: BudgetRange, points: int = DEFAULT_POINTS) -> list[float]:
    """The budgets a sweep evaluates: a set's values, or ``points`` evenly spaced over ``[low, high]``."""
    if budget_range.values is not None:
        return list(budget_range.values)
    if points < 1:
        raise ValueError(f"points must be >= 1, got {points}")
    if points == 1:
        return [budget_range.reference]
    return [round(float(v), 10) for v in np.linspace(budget_range.low, budget_range.high, points)]


def _row(metrics: dict, **extra: Any) -> dict:
    keys = ("accuracy", "loss", "macs_ratio", "params_ratio", "within_budget")
    return {**{k: float(metrics[k]) for k in keys if k in metrics}, **extra}


def evaluate_at_budget(test: PruningTask, budget: float, runtime_policy: Any, static_ratios: Any, *,
                       search: PruningTask | None = None, calibrate: bool = True, search_rounds: int = 40,
                       seed: int = 0) -> dict:
    """An any-budget runtime agent and the references at one ``budget`` (``budget_kind`` units) on
    ``test``'s split; ``search`` is the task on the split the static allocation is searched on and the
    offset calibrated on (neither without it). A budget outside ``test``'s range is a ValueError.

    Returns ``{"budget", "macs_budget", "rows": {method: {accuracy, loss, macs_ratio, within_budget, ...}}}``.
    """
    from prune_env.evaluation.at_budget import budgeted_policy
    from prune_env.evaluation.references import OffsetPolicy, calibrate_offset, search_static_allocation

    ones = np.ones(test.num_layers)
    runtime_policy = budgeted_policy(test, runtime_policy, budget)  # observes the budget, relative actions shifted
    searching = search.at_budget(budget) if search is not None else contextlib.nullcontext()
    with test.at_budget(budget), searching:
        rows = {"agent": _row(summarize(test, rollout_split(test, runtime_policy, static_ratios), static_ratios))}
        refs = reference_metrics(test)
        rows["uniform"] = _row(refs["uniform"], keep_ratio=refs["uniform"]["uniform_keep_ratio"])
        rows["dense"] = _row(refs["dense"])
        if search is not None:
            found = search_static_allocation(search, test.macs_budget, max_rounds=search_rounds, seed=seed)
            with test.at_tradeoff_rate(RUNTIME_TRADEOFF_RATE):
                static = summarize(test, rollout_split(test, found["ratios"], ones), ones)
            rows["best_static"] = _row(static, runtime_keep_ratios=found["ratios"])
            if calibrate:
                offset = calibrate_offset(search, runtime_policy, static_ratios, test.macs_budget, seed=seed)
                calibrated = rollout_split(test, OffsetPolicy(runtime_policy, offset, test.num_layers), static_ratios)
                rows["agent_calibrated"] = _row(summarize(test, calibrated, static_ratios), offset=offset)
        return {"budget": float(budget), "macs_budget": float(test.macs_budget), "rows": rows}


def evaluate_static_at_budget(test: PruningTask, budget: float, static_policy: Any, runtime_policy: Any = None) -> dict:
    """An any-budget *static* agent at one parameter ``budget``: its static keep ratios chosen under
    that budget, beside the largest uniform static keep ratio meeting it (same runtime partner and
    ``R_r``), judged on stored parameters (``within_budget``: whether they meet the budget)."""
    from prune_env.evaluation.at_budget import budgeted_policy

    runtime = 1.0 if runtime_policy is None else runtime_policy
    static_policy = budgeted_policy(test, static_policy, budget, "params")
    with test.at_budget(budget):
        ratios = test.static_ratios_of(static_policy)
        rows = {"agent": _row(summarize(test, rollout_split(test, runtime, ratios), ratios, within="params"),
                              static_keep_ratios=ratios.tolist())}
        uniform = np.full(test.num_layers, test.uniform_static_ratio())
        rows["uniform"] = _row(summarize(test, rollout_split(test, runtime, uniform), uniform, within="params"),
                               keep_ratio=float(uniform[0]))
        return {"budget": float(budget), "params_budget": float(test.params_budget), "rows": rows}


# --------------------------------------------------------------------------- per-budget agents
def read_per_budget_run(run_dir: str | os.PathLike) -> dict:
    """What a one-budget ``train_agents.py`` run recorded: its budget, test-split accuracy and MACs
    (calibrated too when recorded) and training time. A run without ``metrics.json`` (unfinished)
    or trained over a range is a ValueError naming it."""
    run_dir = Path(run_dir)
    paths = [run_dir / "metrics.json", run_dir / "run.json"]
    for path in paths:
        if not path.is_file():
            raise ValueError(f"per-budget run {str(run_dir)!r}: no {path.name} (not a finished train_agents.py run)")
    metrics, record = (json.loads(p.read_text()) for p in paths)
    budget = record.get("env_kwargs", {}).get("budget", 0.5)
    if BudgetRange.parse(budget) is not None:
        raise ValueError(f"per-budget run {str(run_dir)!r} was trained over a range of budgets ({budget!r}), not at one")
    out = {"run_dir": str(run_dir), "budget": float(budget), "seed": record.get("seed"),
           "train_seconds": metrics.get("train_seconds"), "timesteps": metrics.get("timesteps"),
           "row": _row(metrics)}
    if "calibrated_accuracy" in metrics:
        out["calibrated"] = {"accuracy": float(metrics["calibrated_accuracy"]),
                             "macs_ratio": float(metrics["calibrated_macs_ratio"])}
    return out


def attach_per_budget(points: list[dict], runs: Sequence[dict]) -> None:
    """Put each per-budget run (:func:`read_per_budget_run`) beside the sweep point of its budget
    (rows ``per_budget`` and ``per_budget_calibrated``; several seeds of one budget: their mean,
    with ``seeds``)."""
    for point in points:
        mine = [r for r in runs if abs(r["budget"] - point["budget"]) < 1e-9]
        if not mine:
            continue
        rows = point["rows"]
        rows["per_budget"] = _mean_row([r["row"] for r in mine], seeds=len(mine),
                                       run_dirs=[r["run_dir"] for r in mine])
        calibrated = [r["calibrated"] for r in mine if "calibrated" in r]
        if calibrated:
            rows["per_budget_calibrated"] = _mean_row(calibrated, seeds=len(calibrated))


def _mean_row(rows: list[dict], **extra: Any) -> dict:
    keys = set.intersection(*(set(r) for r in rows))
    return {**{k: float(np.mean([r[k] for r in rows])) for k in sorted(keys)}, **extra}


# --------------------------------------------------------------------------- the whole sweep
def summarize_sweep(points: list[dict], tolerance: float = TOLERANCE) -> dict:
    """Per method: whether its mean MACs stay within ``(1 + tolerance)`` of the budget at every point,
    and the any-budget agent's top-1 against the others' at each (in points of percent)."""
    out: dict[str, Any] = {"tolerance": tolerance}
    for method, _ in METHODS:
        have = [p for p in points if method in p["rows"]]
        if not have:
            continue
        over = [p["rows"][method]["macs_ratio"] / p["macs_budget"] - 1.0 for p in have if "macs_budget" in p]
        out[method] = {"within_budget_everywhere": bool(over) and max(over) <= tolerance,
                       "worst_overshoot": max(over) if over else None,
                       "mean_accuracy": float(np.mean([p["rows"][method]["accuracy"] for p in have]))}
    for agent in ("agent", "agent_calibrated"):
        for other in ("per_budget", "per_budget_calibrated", "uniform", "best_static"):
            gaps = [100 * (p["rows"][agent]["accuracy"] - p["rows"][other]["accuracy"])
                    for p in points if agent in p["rows"] and other in p["rows"]]
            if gaps:
                out[f"{agent}_minus_{other}_points"] = {"min": float(min(gaps)), "mean": float(np.mean(gaps)),
                                                        "per_budget": gaps}
    return out


def sweep(test: PruningTask, budgets: Sequence[float], runtime_policy: Any, static_ratios: Any, *,
          search: PruningTask | None = None, calibrate: bool = True, search_rounds: int = 40, seed: int = 0,
          per_budget_runs: Sequence[str | os.PathLike] = (), progress: Any = None) -> dict:
    """:func:`evaluate_at_budget` at every budget, the per-budget runs attached, and the summary.

    Every budget is checked against ``test``'s range before anything runs.
    """
    budgets = [test.check_budget(b) for b in budgets]
    runs = [read_per_budget_run(r) for r in per_budget_runs]
    points = []
    for b in budgets:
        if progress is not None:
            progress(f"budget {b:g}")
        points.append(evaluate_at_budget(test, b, runtime_policy, static_ratios, search=search, calibrate=calibrate,
                                         search_rounds=search_rounds, seed=seed))
    attach_per_budget(points, runs)
    return {"budget_range": None if test.budget_range is None else str(test.budget_range),
            "budget_kind": test.cfg.budget_kind, "split": test.cfg.split, "points": points,
            "per_budget_runs": runs, "summary": summarize_sweep(points)}


# --------------------------------------------------------------------------- output
def format_sweep(result: dict) -> str:
    """A text table: one line per budget, top-1 (mean MACs) of every method."""
    methods = [(m, SHORT[m]) for m, _ in METHODS if any(m in p["rows"] for p in result["points"])]
    static = "params_budget" in result["points"][0]
    cost = "params_ratio" if static else "macs_ratio"
    head = f"{'budget':>7} {'par. bud.' if static else 'MAC bud.':>8} " + " ".join(f"{label:>20}" for _, label in methods)
    lines = [head, "-" * len(head)]
    for p in result["points"]:
        cells = []
        for m, _ in methods:
            r = p["rows"].get(m)
            cells.append(f"{'':>20}" if r is None else f"{100 * r['accuracy']:>10.2f}% ({r[cost]:.3f})")
        lines.append(f"{p['budget']:>7.3f} {p.get('macs_budget', p.get('params_budget', float('nan'))):>8.3f} "
                     + " ".join(cells))
    lines.append("cells: top-1 on the test split (" + ("stored parameters" if static else "mean MAC ratio") + " of dense)")
    return "\n".join(lines)


def sweep_csv(result: dict) -> str:
    """One row per budget and method: budget, cost budget, method, top-1, mean MACs, params, within budget."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["budget", "cost_budget", "method", "accuracy", "loss", "macs_ratio", "params_ratio",
                     "within_budget"])
    for p in result["points"]:
        cost = p.get("macs_budget", p.get("params_budget"))
        for method, row in p["rows"].items():
            writer.writerow([p["budget"], cost, method, *(row.get(k, "") for k in
                                                          ("accuracy", "loss", "macs_ratio", "params_ratio",
                                                           "within_budget"))])
    return buffer.getvalue()


def plot_sweep(result: dict, path: str | os.PathLike, *, title: str = "") -> Path:
    """Top-1 against mean MACs (or stored parameters for a static sweep), one line per method, with
    each budget as a vertical tick; to PNG."""
    plt = pyplot()
    static = "params_budget" in result["points"][0]
    x_key = "params_ratio" if static else "macs_ratio"
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = {"agent": ("tab:blue", "o", "-"), "agent_calibrated": ("tab:cyan", "D", "-"),
              "per_budget": ("tab:green", "s", "--"), "per_budget_calibrated": ("tab:olive", "^", "--"),
              "best_static": ("tab:purple", "v", ":"), "uniform": ("tab:red", "x", ":")}
    for method, label in METHODS:
        pts = [p["rows"][method] for p in result["points"] if method in p["rows"]]
        if not pts:
            continue
        color, marker, line = styles[method]
        ax.plot([r[x_key] for r in pts], [100 * r["accuracy"] for r in pts], color=color, marker=marker, ls=line,
                label=label, ms=5)
    for p in result["points"]:
        ax.axvline(p.get("params_budget" if static else "macs_budget"), color="0.85", lw=0.8, zorder=0)
    ax.set_xlabel(("stored parameters" if static else "mean MACs") + " (fraction of dense; grey: the budgets)")
    ax.set_ylabel("top-1 on the test split (%)")
    ax.set_title(title or "one agent for every budget", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def write_sweep(result: dict, out: str | os.PathLike, *, title: str = "") -> dict[str, Path]:
    """``any_budget.json``, ``any_budget.csv`` and ``any_budget.png`` in ``out`` (atomic writes)."""
    from prune_env import io as pio

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": pio.write_json(result, out / SWEEP_FILES[0]), "csv": pio.write_text(sweep_csv(result), out / SWEEP_FILES[1])}
    files["png"] = plot_sweep(result, out / SWEEP_FILES[2], title=title)
    return files


__all__ = ["DEFAULT_POINTS", "METHODS", "SWEEP_FILES", "attach_per_budget", "evaluate_at_budget",
           "evaluate_static_at_budget", "format_sweep", "plot_sweep", "read_per_budget_run", "summarize_sweep",
           "sweep", "sweep_budgets", "sweep_csv", "write_sweep"]
