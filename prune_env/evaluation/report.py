"""Paper-style evaluation reports: accuracy, MAC speed-up, stored parameters and measured CPU latency.

:func:`build_report` evaluates one or more policy pairs (a runtime policy and static keep ratios)
on a :class:`~prune_env.envs.task.PruningTask` (normally the test split) beside the references of
:func:`~prune_env.evaluation.split.reference_metrics`, and returns a JSON-ready dict whose ``rows`` are
the rows of the paper's tables (Tables 1-3):

* ``dense``: the gated network at keep ratio 1 (nothing pruned);
* ``uniform``: the largest uniform runtime keep ratio meeting the MAC budget, with the agents'
  static keep ratios (FBS-like reference);
* one row per policy pair given (the trained agents).

Columns: top-1 accuracy, its change from dense in percentage points, MAC ratio and speed-up
(``1 / MAC ratio``), stored backbone parameters (fraction of dense and absolute, after removing
the permanent sets, paper Sec. 3.4) and, apart, the importance-predictor overhead. With
``latency=LatencyConfig(...)`` each row also gets a CPU wall-clock latency measured in the same
process, interleaved, median of repeats (:mod:`~prune_env.evaluation.latency`): ``dense`` times the
plain backbone, every other row its deployed model (export and executor).

Two speed-ups follow: ``latency_speedup`` against eager dense (what deploying this row gains
over the plain backbone: the pruning *and* the executor's own gains) and
``latency_speedup_executor`` against dense through the same executor (what the pruning alone
gains). On the embedded default the executor alone is about 1.9x faster than eager dense, so a
pruned row can show "1.85x" against eager dense while being no faster than unpruned through
the executor; the second column tells them apart.

:func:`write_report` writes the report as JSON, markdown and text (:mod:`~prune_env.evaluation.tables`)
and as a picture (:func:`~prune_env.evaluation.plots.plot_report`).

This module never imports ``agents``: loading a run directory (SB3 agents) is
:mod:`agents.evaluate`'s job; here policies are anything :func:`~prune_env.policies.as_policy`
accepts.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from prune_env.envs.task import PruningTask
from prune_env.evaluation.latency import LatencyConfig, measure_latency
from prune_env.evaluation.plots import plot_report
from prune_env.evaluation.split import evaluate_policies, reference_metrics
from prune_env.evaluation.tables import format_markdown, format_text
from prune_env.io import write_json, write_text

REPORT_JSON, REPORT_MD, REPORT_TXT, REPORT_PNG = "report.json", "report.md", "report.txt", "report.png"
#: the keys every row of a report carries
ROW_KEYS = (
    "name", "label", "accuracy", "delta_pp", "macs_ratio", "speedup", "params_ratio", "stored_params",
    "overhead_params", "params_ratio_with_overhead", "within_budget", "latency_ms", "latency_speedup",
    "latency_speedup_executor", "latency_cpu_ms",
)


@dataclass
class PolicyPair:
    """A row to evaluate: a runtime policy (anything ``as_policy`` accepts) and ``(L,)`` static keep ratios."""

    label: str
    runtime_policy: Any
    static_ratios: Any


def _row(name: str, label: str, m: dict, dense: dict, overhead: float, dense_params: float) -> dict:
    stored = float(m["stored_params"])
    return {
        "name": name, "label": label,
        "accuracy": float(m["accuracy"]),
        "delta_pp": 100.0 * (float(m["accuracy"]) - float(dense["accuracy"])),
        "macs_ratio": float(m["macs_ratio"]),
        "speedup": 1.0 / float(m["macs_ratio"]),
        "params_ratio": float(m["params_ratio"]),
        "stored_params": stored,
        "overhead_params": float(overhead),
        "params_ratio_with_overhead": (stored + float(overhead)) / dense_params,
        "within_budget": float(m["within_budget"]),
        "latency_ms": None, "latency_speedup": None, "latency_speedup_executor": None, "latency_cpu_ms": None,
    }


def build_report(task: PruningTask, pairs: Mapping[str, PolicyPair], *, batch_size: int = 512,
                 latency: LatencyConfig | None = None, info: dict | None = None, within: str = "macs",
                 progress: Callable[[str], Any] | None = None) -> dict:
    """Evaluate the policy pairs and the references on ``task``; returns the report dict.

    ``pairs`` maps a row name (e.g. ``"agents"``) to a :class:`PolicyPair`; the uniform reference
    is FBS-like pure runtime pruning with nothing removed for good. ``info`` (run directory, agents, ...) is stored
    under ``"run"``. With ``latency`` the rows get measured CPU latencies (module docstring).
    ``within="params"`` judges the rows' "in budget" on the parameter budget (a static agent's
    constraint) instead of the MAC budget. ``progress(step)`` is called as each step starts.
    A ``task`` over a budget range is refused: hold it at one budget first (``task.at_budget(b)``).
    """
    if task.budget_range is not None:
        raise ValueError(f"budget={task.cfg.budget!r}: the report evaluates one budget; hold an any-budget task at one "
                         f"with task.at_budget(b) (evaluate_run.py RUN --budget B sweeps an any-budget agent)")
    say = progress or (lambda _step: None)
    say("references: dense and uniform")
    if not pairs:
        raise ValueError("build_report needs at least one policy pair")
    refs = reference_metrics(task, batch_size=batch_size)
    metrics: dict[str, dict] = {"dense": refs["dense"], "uniform": refs["uniform"]}
    statics: dict[str, np.ndarray] = {"dense": np.ones(task.num_layers), "uniform": np.ones(task.num_layers)}
    for name, pair in pairs.items():
        if name in metrics:
            raise ValueError(f"row name {name!r} is reserved")
        static = np.asarray(pair.static_ratios, dtype=np.float64).reshape(-1)
        say(f"evaluating {name}")
        metrics[name] = evaluate_policies(task, pair.runtime_policy, static, batch_size=batch_size)
        statics[name] = static
    dense_params = float(task.costs.dense_params)
    uniform_ratio = float(refs["uniform"]["uniform_keep_ratio"])
    labels = {"dense": "dense baseline", "uniform": f"uniform keep {uniform_ratio:.3f}",
              **{name: pair.label for name, pair in pairs.items()}}
    if within == "params":  # a static agent's own baseline: the uniform d_s meeting the parameter budget, same partner
        static_ratio = float(task.uniform_static_ratio())
        first = next(iter(pairs.values()))
        say("reference: uniform d_s at the parameter budget")
        statics["uniform_static"] = np.full(task.num_layers, static_ratio)
        metrics["uniform_static"] = evaluate_policies(task, first.runtime_policy, statics["uniform_static"],
                                                      batch_size=batch_size)
        labels["uniform_static"] = f"uniform d_s {static_ratio:.3f}"
    if within == "params":  # every row on the parameter budget: 1 or 0 for the whole split
        for m in metrics.values():
            m.update(within_budget=float(m["params_ratio"] <= float(task.params_budget) + 1e-9), within_budget_of="params")
    rows = []
    for name, m in metrics.items():
        overhead = 0.0 if name == "dense" else task.costs.overhead_params(task.stored_counts(statics[name][None])[0])
        rows.append(_row(name, labels[name], m, metrics["dense"], overhead, dense_params))
    report: dict[str, Any] = {
        "format": "prune_env.evaluation.report", "version": 1,
        "run": dict(info or {}),
        "task": {
            "dataset": task.dataset_name, "network": task.net.config.get("name"), "split": task.cfg.split,
            "checkpoint": task.cfg.checkpoint, "num_images": int(metrics["dense"]["num_images"]),
            "budget": float(task.cfg.budget), "budget_kind": task.cfg.budget_kind,
            "macs_budget": float(task.macs_budget), "params_budget": float(task.params_budget),
            "tradeoff_rate": float(task.cfg.tradeoff_rate), "alpha": float(task.cfg.alpha),
            "dense_macs": float(task.costs.dense_macs), "dense_params": dense_params,
            "uniform_keep_ratio": uniform_ratio, "within_budget_of": within,
        },
        "rows": rows,
        "metrics": metrics,
        "latency": None,
    }
    if latency is not None:
        pair_args = {"uniform": (uniform_ratio, statics["uniform"]),
                     **({"uniform_static": (next(iter(pairs.values())).runtime_policy, statics["uniform_static"])}
                        if "uniform_static" in metrics else {}),
                     **{name: (pair.runtime_policy, statics[name]) for name, pair in pairs.items()}}
        say(f"timing latency ({latency.repeats} rounds of {len(pair_args) + 2} configurations)")
        lat = measure_latency(task, pair_args, latency)
        report["latency"] = lat
        dense_ms = lat["configs"]["dense"]["median_ms"]
        executor_ms = lat["configs"]["dense_executor"]["median_ms"]
        for row in rows:
            ms = lat["configs"][row["name"]]["median_ms"]
            row["latency_ms"] = ms
            row["latency_cpu_ms"] = lat["configs"][row["name"]]["cpu_median_ms"]
            row["latency_speedup"] = dense_ms / ms if ms > 0 else math.inf  # the deployment's gain
            row["latency_speedup_executor"] = executor_ms / ms if ms > 0 else math.inf  # the pruning's gain
    return report


# --------------------------------------------------------------------------- writing
def _plain(obj: Any) -> Any:
    """JSON-ready copy: numpy scalars and arrays to Python, non-finite floats to None."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_report(report: dict, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, ``report.txt`` and ``report.png`` into ``out_dir`` (atomically);
    returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_json(_plain(report), out / REPORT_JSON)}
    for key, name, text in (("md", REPORT_MD, format_markdown(report)), ("txt", REPORT_TXT, format_text(report))):
        paths[key] = write_text(text, out / name)
    paths["png"] = plot_report(report, out / REPORT_PNG)
    return paths
