"""Benchmark results: scores on one scale, intervals over seeds, significance, leaderboard tables.

The runner that produces the results trains agents, so it lives on the agents' side
(``python -m agents.benchmark``, :mod:`agents.benchmark.jobs`); this module is what the library knows of
its results and imports nothing of ``agents`` (imports point down, ``docs/design.md``). A suite's results
are laid out as ``<out>/<suite>/runs/<method>/seed<k>.json`` (:func:`result_path`), one JSON per
``(suite, method, seed)``, and aggregated per suite (:func:`write_report`) into ``results.csv``
(one row per run), ``summary.csv`` / ``summary.json`` (per method: mean and 95% interval over
seeds, tests against uniform), ``pairwise.csv`` (every pair of methods), ``leaderboard.md`` and
``learning_curves.png`` / ``learning_curves.csv`` (:mod:`prune_env.benchmark.curves`). Whether a
record's figures hold (its test episode replayed, its headline re-derived from its per-input actions)
is :mod:`prune_env.benchmark.validate`.

Reported per run (scored by :mod:`prune_env.benchmark.scoring` on the held-out test split):

* top-1 accuracy and the **fixed-β test objective** ``-mean(L) / beta0``, ``beta0`` fixed for the
  suite (:func:`reference_beta`); mean MAC ratio, stored-parameter ratio, the fraction of inputs
  within the MAC budget. A method is *within its budget* when its mean cost is at most the budget
  x 1.01 (:func:`within`); those over it are ranked after those within it;
* **uniform at the same MACs** and the difference to it; **headroom captured**
  ``(method - uniform) / (oracle - uniform)`` from the suite's ``uniform`` and ``oracle`` rows;
  the **adaptation gain** of runtime agents over their own allocations shuffled across inputs;
* ``test_return``: the environments' reward with ``beta0`` and the per-input budget penalty on the
  method's own constraint (:func:`fixed_scale_return`), kept for the legacy suites;
* ``final_return``: the mean sparse return of the last ``last_n`` training episodes (with a moving
  ``beta`` it follows the agent's own loss and does not rank methods);
* wall-clock seconds (training and evaluation).

Aggregation over seeds: the mean and its 95% Student-t interval, clipped to the metric's range
(:data:`RANGES`), from :data:`MIN_SEEDS` seeds; below that the per-seed values (a t-interval of 2
seeds is 12.7 standard errors wide). Whether a method differs from ``uniform`` is Welch's t-test
over seeds with Holm's correction over the methods of the suite (:mod:`prune_env.benchmark.statistics`),
marked ▲ / ▼ in the leaderboard; every pair is in ``pairwise.csv``. The interquartile mean with
its stratified-bootstrap interval (rliable; :func:`bootstrap_interval`) is kept in ``summary.json``
for top-1 and the objective.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from prune_env.benchmark.statistics import t_interval
from prune_env.io import write_csv, write_json, write_text

CURVE_BINS = 40
#: fewest seeds for which an interval is reported (below: the values)
MIN_SEEDS = 3
#: bootstrap resamples of the seeds
BOOTSTRAP_REPS = 2000
#: the range each metric lives in: intervals never leave it
RANGES = {"accuracy": (0.0, 1.0), "macs_ratio": (0.0, 1.0), "params_ratio": (0.0, 1.0), "within_budget": (0.0, 1.0),
          "params_within_budget": (0.0, 1.0), "wall_seconds": (0.0, math.inf), "iso_mac_accuracy": (0.0, 1.0)}
#: how the leaderboard is ranked and what its cells hold (printed under the table)
RANKING_RULE = (
    "Ranking: methods within their budget at equal cost first (runtime methods: mean test MAC ratio at most the MAC "
    "budget x 1.01; static methods: stored-parameter ratio at most the parameter budget x 1.01), then by the mean "
    "fixed-β test objective -L / β0 (by mean test top-1 where a row has no objective: results of older versions). "
    f"Cells: mean over seeds and, from {MIN_SEEDS} seeds, its 95% Student-t interval [low, high] (clipped to the "
    f"metric's range); below {MIN_SEEDS} seeds the per-seed values, no interval; '(all seeds)': the same value in every seed.")
#: what the marks of the leaderboard mean (printed under the table)
MARKS = (
    "Δ vs uniform (vs best static): difference of the means to the `uniform` (`best_static`) row; ▲ / ▼: significantly "
    "better / worse (Welch's t-test over seeds, Holm-adjusted over the methods of the suite, family-wise α = 0.05; p is "
    "the adjusted p-value); † the method is over its budget, so the difference is not at equal cost. "
    "Deterministic rows (baselines, references) repeat one value per seed, so against them Welch's test is a one-sample "
    "test of the other method's seeds. The tests measure training noise on this fixed test split, not the sampling of "
    "the test split. Uniform @ same MACs: the largest uniform keep ratio that spends no more than the method; "
    "headroom captured: (method - uniform) / (oracle - uniform) on top-1; adaptation gain: the method minus its own "
    "per-input allocations shuffled across inputs (runtime agents).")


def result_path(out: str | os.PathLike, suite: str, algo: str, seed: int) -> Path:
    return Path(out) / suite / "runs" / algo / f"seed{seed}.json"


def binned_curve(steps: Sequence[int], returns: Sequence[float], total: int, bins: int = CURVE_BINS) -> dict:
    """Mean return of the episodes ending in each of ``bins`` equal step intervals of ``[0, total]``
    (empty bins carry the previous value forward; NaN before the first episode)."""
    edges = np.linspace(0, total if isinstance(total, float) else max(int(total), 1), bins + 1)
    steps_a, ret_a = np.asarray(steps, dtype=np.float64), np.asarray(returns, dtype=np.float64)
    values, last = [], float("nan")
    for i in range(bins):
        inside = (steps_a > edges[i]) & (steps_a <= edges[i + 1]) if i else (steps_a >= edges[0]) & (steps_a <= edges[1])
        if inside.any():
            last = float(ret_a[inside].mean())
        values.append(last)
    return {"steps": [float(v) for v in edges[1:]], "return": values}


def binned_curves(x: Sequence[float], columns: dict[str, Sequence[float]], total: float, bins: int = CURVE_BINS) -> dict:
    """:func:`binned_curve` of several columns over one axis ``x`` (steps or seconds) on ``[0, total]``:
    ``{"x": bin ends, column: per-bin means, ...}`` (empty bins carry the previous value forward)."""
    out: dict[str, list[float]] = {}
    for name, values in columns.items():
        curve = binned_curve(x, values, total, bins) if total > 0 else {"steps": [], "return": []}
        out.setdefault("x", curve["steps"])
        out[name] = curve["return"]
    return out


# --------------------------------------------------------------------------- fixed-scale return
def reference_beta(task: Any) -> float:
    """``beta_0`` of a suite: the mean calibration (validation) loss of the network at the uniform
    keep ratio of the budget, no static pruning (what ``RuntimePrune-v0`` starts its moving average at).

    ``task`` must be the suite's runtime task: with ``R_r = 0`` the runtime ratio would be ignored.
    """
    return float(task.calibrated_normalizer(task.budget_keep_ratio, 1.0).beta)


def fixed_scale_return(task: Any, runtime_policy: Any, static_ratios: Any, beta0: float, constraint: str,
                       batch_size: int = 512) -> float:
    """Mean over ``task``'s split of ``-L / beta0 + R_bud``, ``R_bud`` on the MACs of each input
    (``constraint="macs"``) or on the stored parameters (``"params"``), with the task's ``alpha_budget``."""
    import torch

    from prune_env.policies import as_policy
    from prune_env.rewards import budget_penalty

    policy = as_policy(runtime_policy, task.num_layers)
    static = np.broadcast_to(np.asarray(static_ratios, dtype=np.float64), (task.num_layers,)).copy()
    params = float(task.costs.params_ratio(task.stored_counts(static[None])[0]))
    total, count = 0.0, 0
    with torch.no_grad():
        for begin in range(0, len(task.source), batch_size):
            images, labels = task.source.get(np.arange(begin, min(begin + batch_size, len(task.source))))
            state = task.rollout(images, policy, static)
            losses = task.losses(state.logits, labels).cpu().numpy().astype(np.float64)
            if constraint == "params":
                penalty = budget_penalty(np.full(len(losses), params), task.params_budget, task.cfg.alpha_budget)
            else:
                penalty = budget_penalty(task.costs.macs_ratio(state.kept).numpy(), task.macs_budget, task.cfg.alpha_budget)
            total += float((-losses / beta0 + penalty).sum())
            count += len(losses)
    return total / count


# --------------------------------------------------------------------------- aggregation
def iqm(values: Any, axis: int | None = None) -> Any:
    """Interquartile mean: the mean of the middle 50% (:func:`scipy.stats.trim_mean` at 25%; the plain
    mean for fewer than 4 values)."""
    from scipy import stats

    return stats.trim_mean(np.asarray(values, dtype=np.float64), 0.25, axis=axis)


def bootstrap_interval(values: Sequence[float], *, bounds: tuple[float, float] = (-math.inf, math.inf),
                       confidence: float = 0.95, reps: int = BOOTSTRAP_REPS, seed: int = 0) -> tuple[float, float, float]:
    """``(IQM, low, high)``: the percentile interval of the IQM over ``reps`` bootstrap resamples of the
    values (seeds resampled with replacement); NaN bounds below :data:`MIN_SEEDS` values; all three
    clipped to ``bounds``."""
    a = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if a.size == 0:
        return float("nan"), float("nan"), float("nan")
    low_bound, high_bound = bounds
    point = float(np.clip(iqm(a), low_bound, high_bound))
    if a.size < MIN_SEEDS:
        return point, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = iqm(a[rng.integers(0, a.size, size=(reps, a.size))], axis=1)
    lo, hi = np.percentile(stats, [50 * (1 - confidence), 50 * (1 + confidence)])
    return point, float(np.clip(min(lo, point), low_bound, high_bound)), float(np.clip(max(hi, point), low_bound, high_bound))


def load_results(out: str | os.PathLike, suite: str) -> list[dict]:
    """Every finished run of ``suite`` under ``out``."""
    root = Path(out) / suite / "runs"
    results = []
    for path in sorted(root.glob("*/seed*.json")):
        data = json.loads(path.read_text())
        if data.get("status") == "done":
            data["_path"] = str(path)
            results.append(data)
    return results


def _get(r: dict, *keys: str) -> float:
    """``r[k1][k2]...`` as a float, NaN where a key is missing (results of older versions)."""
    value: Any = r
    for k in keys:
        if not isinstance(value, dict) or value.get(k) is None:
            return float("nan")
        value = value[k]
    return float(value)


METRICS = (
    ("accuracy", lambda r: r["test"]["accuracy"]),
    ("objective", lambda r: _get(r, "objective")),
    ("macs_ratio", lambda r: r["test"]["macs_ratio"]),
    ("params_ratio", lambda r: r["test"]["params_ratio"]),
    ("within_budget", lambda r: r["test"]["within_budget"]),
    ("params_within_budget", lambda r: r["test"]["params_within_budget"]),
    ("iso_mac_accuracy", lambda r: _get(r, "iso_mac", "accuracy")),
    ("gain_iso_mac", lambda r: r["test"]["accuracy"] - _get(r, "iso_mac", "accuracy")),
    ("gain_iso_mac_objective", lambda r: _get(r, "objective") - _get(r, "iso_mac", "objective")),
    ("adaptation_gain", lambda r: _get(r, "adaptation", "gain_accuracy")),
    ("adaptation_gain_objective", lambda r: _get(r, "adaptation", "gain_objective")),
    ("final_return", lambda r: r["final_return"]),
    ("test_return", lambda r: r.get("test_return", float("nan"))),
    ("wall_seconds", lambda r: r["wall_seconds"]),
    ("beta0", lambda r: _get(r, "beta0")),
)
#: the metrics the leaderboard tests against uniform (higher is better for both)
TESTED = ("accuracy", "objective")
#: the method every other is compared with
REFERENCE_METHOD = "uniform"
#: the rows every method is tested against (Holm over the methods, per row and metric): uniform, and the best
#: static allocation (what an adaptive method must beat to show adaptation pays)
COMPARED_TO = (REFERENCE_METHOD, "best_static")
#: the per-input oracle row (the top of the headroom)
ORACLE_METHOD = "oracle"


def _interval(values: list[float], bounds: tuple[float, float]) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean and its 95% Student-t interval clipped to ``bounds``; NaN bounds
    below :data:`MIN_SEEDS` values."""
    finite = [v for v in values if math.isfinite(v)]
    mean, lo, hi = t_interval(finite)
    if len(finite) < MIN_SEEDS:
        lo = hi = float("nan")
    low_bound, high_bound = bounds
    return mean, float(np.clip(lo, low_bound, high_bound)) if math.isfinite(lo) else lo, \
        float(np.clip(hi, low_bound, high_bound)) if math.isfinite(hi) else hi


def _add_headroom(by_algo: dict[str, list[dict]]) -> None:
    """Per run, in place: ``headroom``, the share of the gap from uniform to the oracle it closes, on top-1
    (``headroom_accuracy``) and on the objective (``headroom_objective``), from the suite's uniform and
    oracle rows (means over their seeds); NaN without them or without a gap."""
    from prune_env.evaluation.references import headroom_captured

    if REFERENCE_METHOD not in by_algo or ORACLE_METHOD not in by_algo:
        return
    base, top = by_algo[REFERENCE_METHOD], by_algo[ORACLE_METHOD]
    for key, get in (("accuracy", lambda r: r["test"]["accuracy"]), ("objective", lambda r: _get(r, "objective"))):
        u, o = float(np.mean([get(r) for r in base])), float(np.mean([get(r) for r in top]))
        for runs in by_algo.values():
            for r in runs:
                value = headroom_captured(get(r), u, o) if math.isfinite(get(r)) and math.isfinite(o) else None
                r.setdefault("headroom", {})[key] = float("nan") if value is None else value


def within(row: dict) -> bool:
    """Whether a summary row meets its budget at equal cost: mean MACs (runtime methods) or stored
    parameters (static methods) at most the budget x :data:`prune_env.benchmark.scoring.BUDGET_TOLERANCE`."""
    from prune_env.benchmark.scoring import BUDGET_TOLERANCE

    if row["constraint"] == "params":
        return bool(row["params_ratio"] <= row["params_budget"] * BUDGET_TOLERANCE + 1e-12)
    return bool(row["macs_ratio"] <= row["budget"] * BUDGET_TOLERANCE + 1e-12)


def summarize(results: list[dict]) -> list[dict]:
    """Per method: number of seeds, and for every metric its mean, the bounds of its 95% Student-t interval
    (NaN below :data:`MIN_SEEDS` seeds; clipped to :data:`RANGES`), its IQM with the stratified-bootstrap
    interval (``<metric>_iqm``, ``_iqm_low``, ``_iqm_high``) and the per-seed values (``<metric>_values``,
    by seed); headroom captured; Welch tests against :data:`REFERENCE_METHOD` with Holm's correction
    (``vs_uniform``: metric -> :class:`prune_env.benchmark.statistics.Comparison` as a dict); ranked by
    :data:`RANKING_RULE`.
    """
    from prune_env.benchmark.statistics import compare_to

    by_algo: dict[str, list[dict]] = {}
    for r in results:
        by_algo.setdefault(r["algo"], []).append(r)
    _add_headroom(by_algo)
    metrics = METRICS + (("headroom_accuracy", lambda r: _get(r, "headroom", "accuracy")),
                         ("headroom_objective", lambda r: _get(r, "headroom", "objective")))
    rows = []
    for algo, runs in by_algo.items():
        first = runs[0]
        row = {"algo": algo, "kind": first["kind"], "env_id": first["env_id"], "timesteps": first["timesteps"],
               "seeds": sorted(r["seed"] for r in runs), "n": len(runs), "description": first.get("description", ""),
               "budget": first["test"]["budget"], "params_budget": first["test"]["params_budget"],
               "num_images": first["test"].get("num_images")}
        by_seed = sorted(runs, key=lambda r: r["seed"])
        for name, get in metrics:
            values = [float(get(r)) for r in by_seed]
            bounds = RANGES.get(name, (-math.inf, math.inf))
            row[name], row[f"{name}_low"], row[f"{name}_high"] = _interval(values, bounds)
            row[f"{name}_values"] = values
            if name in TESTED:
                row[f"{name}_iqm"], row[f"{name}_iqm_low"], row[f"{name}_iqm_high"] = bootstrap_interval(values, bounds=bounds)
        row["constraint"] = first.get("constraint", "macs")
        row["budget_met"] = within(row)
        row["seeds_within_budget"] = sum(within({**row, "macs_ratio": r["test"]["macs_ratio"],
                                                 "params_ratio": r["test"]["params_ratio"]}) for r in by_seed)
        rows.append(row)
    for reference in COMPARED_TO:
        for metric in TESTED:
            samples = {row["algo"]: row[f"{metric}_values"] for row in rows}
            found = compare_to(samples, reference, metric, deterministic=_deterministic(rows))
            for row in rows:
                if row["algo"] in found:
                    row.setdefault(f"vs_{reference}", {})[metric] = found[row["algo"]].as_dict()
    rank_by = "objective" if rows and all(math.isfinite(r["objective"]) for r in rows) else "accuracy"
    rows.sort(key=lambda r: (not r["budget_met"], -(r[rank_by] if math.isfinite(r[rank_by]) else -math.inf)))
    return rows


def _deterministic(rows: list[dict]) -> set[str]:
    """Rows evaluated without training (baselines, references): their repeated values are exact; agents' seeds
    that happen to agree are not (a test with no variance over seeds is undefined, shown ``p n/a``)."""
    return {r["algo"] for r in rows if r["kind"] != "agent"}


def pairwise_table(rows: list[dict]) -> list[dict]:
    """Welch tests of every pair of methods on each tested metric, Holm-adjusted over the pairs of a metric."""
    from prune_env.benchmark.statistics import pairwise

    out = []
    for metric in TESTED:
        samples = {row["algo"]: row[f"{metric}_values"] for row in rows}
        out.extend(c.as_dict() for c in pairwise(samples, metric, deterministic=_deterministic(rows)))
    return out


def _num(value: float, digits: int, sign: bool = False) -> str:
    """``value`` to ``digits`` decimals, never ``-0``."""
    rounded = round(value, digits) + 0.0
    return f"{rounded:+.{digits}f}" if sign else f"{rounded:.{digits}f}"


def _pm(row: dict, key: str, scale: float = 1.0, digits: int = 3, sign: bool = False) -> str:
    """``mean [low, high]`` from :data:`MIN_SEEDS` seeds, else the per-seed values (``a / b``)."""
    point, lo, hi = row[key], row[f"{key}_low"], row[f"{key}_high"]
    if not math.isfinite(point):
        return "n/a"
    if math.isfinite(lo) and math.isfinite(hi):
        if hi - lo <= 1e-12 * max(1.0, abs(point)):
            return f"{_num(scale * point, digits, sign)} (all seeds)"
        return f"{_num(scale * point, digits, sign)} [{_num(scale * lo, digits, sign)}, {_num(scale * hi, digits, sign)}]"
    values = [v for v in row.get(f"{key}_values", []) if math.isfinite(v)]
    if len(values) > 1:
        return " / ".join(_num(scale * v, digits, sign) for v in values)
    return _num(scale * point, digits, sign)


def _vs(row: dict, metric: str, scale: float, digits: int, reference: str = REFERENCE_METHOD) -> str:
    """``+3.61 ▲ p=0.002``: the difference of the means to ``reference``, its mark and Holm-adjusted p."""
    from prune_env.benchmark.statistics import Comparison, mark

    found = row.get(f"vs_{reference}", {}).get(metric)
    if not found or not math.isfinite(found["diff"]):
        return "–" if row["algo"] == reference else "n/a"
    c = Comparison(**found)
    p = "p n/a" if not math.isfinite(c.p_holm) else ("p<0.001" if c.p_holm < 0.001 else f"p={c.p_holm:.3f}")
    flag = mark(c) + ("†" if mark(c) and not row["budget_met"] else "")
    return f"{_num(scale * c.diff, digits, True)} {flag} {p}".replace("  ", " ")


def _budget_cell(r: dict) -> str:
    met = "yes" if r["budget_met"] else "**no**"
    params = f", params {r['params_ratio']:.3f}" if r["constraint"] == "params" else ""
    return f"{met} ({r['seeds_within_budget']}/{r['n']}{params})"


def leaderboard_markdown(rows: list[dict], suite: str = "", description: str = "", command: str | Sequence[str] = "") -> str:
    """The leaderboard as a markdown table (mean over seeds with its 95% t-interval, or the values below
    :data:`MIN_SEEDS` seeds; the difference to uniform with its significance mark), under a line naming
    the suite and its description (when ``suite`` is given) and the commands that ran it, over the
    notes and the ranking rule (:data:`RANKING_RULE`)."""
    lines = []
    if suite:
        lines.append(f"Suite `{suite}`: {description}.")
    if rows:
        static = [r for r in rows if r["constraint"] == "params"]
        params = f", parameter budget {static[0]['params_budget']:.4f} (static methods, R_r = 0)" if static else ""
        images = rows[0].get("num_images")
        image = f" ({images} images: one image is {100 / images:.2f} points of top-1)" if images else ""
        lines.append(f"MAC budget {rows[0]['budget']:.4f} of dense{params}; test split{image}.")
    for c in ([command] if isinstance(command, str) else command):
        if c:
            lines.append(f"Command: `{c}`")
    betas = sorted({round(b, 9) for r in rows for b in r.get("beta0_values", []) if math.isfinite(b)})
    if len(betas) > 1:
        lines.append(f"**Warning: the rows were scored with {len(betas)} different β0 ({', '.join(f'{b:.4f}' for b in betas)}): "
                     "not one network or split; rerun the rows of the odd one out.**")
    lines.append("")
    lines.append("| # | method | kind | steps | seeds | test top-1 (%) | Δ top-1 vs uniform | objective (fixed β) | "
                 "Δ objective vs uniform | MAC ratio | within budget (seeds) | uniform @ same MACs: top-1 (%) | "
                 "Δ top-1 vs it | headroom captured (%) | adaptation gain vs shuffled (points) | "
                 "inputs within MAC budget (%) | Δ top-1 vs best static | wall s |")
    lines.append("|" + " --- |" * 18)
    for i, r in enumerate(rows, 1):
        lines.append(
            f"| {i} | `{r['algo']}` | {r['kind']} | {r['timesteps']} | {r['n']} | "
            f"{_pm(r, 'accuracy', 100, 2)} | {_vs(r, 'accuracy', 100, 2)} | {_pm(r, 'objective')} | "
            f"{_vs(r, 'objective', 1, 3)} | {_pm(r, 'macs_ratio')} | {_budget_cell(r)} | "
            f"{_pm(r, 'iso_mac_accuracy', 100, 2)} | {_pm(r, 'gain_iso_mac', 100, 2, True)} | "
            f"{_pm(r, 'headroom_accuracy', 100, 0)} | {_pm(r, 'adaptation_gain', 100, 2, True)} | "
            f"{_pm(r, 'within_budget', 100, 1)} | {_vs(r, 'accuracy', 100, 2, 'best_static')} | "
            f"{_pm(r, 'wall_seconds', 1, 0)} |"
        )
    lines += ["", MARKS, "", RANKING_RULE]
    return "\n".join(lines) + "\n"


def write_results_csv(results: list[dict], path: Path) -> Path:
    """One row per run, sorted by method and seed (atomically)."""
    cols = ["suite", "algo", "kind", "env_id", "seed", "timesteps", "accuracy", "objective", "macs_ratio", "params_ratio",
            "within_budget", "params_within_budget", "iso_mac_accuracy", "iso_mac_objective", "iso_mac_keep_ratio",
            "shuffled_accuracy", "shuffled_objective", "headroom_accuracy", "headroom_objective", "test_return",
            "final_return", "final_train_return", "train_seconds", "wall_seconds", "budget", "params_budget"]
    table = [cols]
    for r in sorted(results, key=lambda r: (r["algo"], r["seed"])):
        t = r["test"]
        table.append([r["suite"], r["algo"], r["kind"], r["env_id"], r["seed"], r["timesteps"], t["accuracy"],
                      _get(r, "objective"), t["macs_ratio"], t["params_ratio"], t["within_budget"], t["params_within_budget"],
                      _get(r, "iso_mac", "accuracy"), _get(r, "iso_mac", "objective"), _get(r, "iso_mac", "keep_ratio"),
                      _get(r, "adaptation", "shuffled_accuracy"), _get(r, "adaptation", "shuffled_objective"),
                      _get(r, "headroom", "accuracy"), _get(r, "headroom", "objective"), r.get("test_return", float("nan")),
                      r["final_return"], r["final_train_return"], r["train_seconds"], r["wall_seconds"], t["budget"],
                      t["params_budget"]])
    return write_csv(table, path)


def write_summary_csv(rows: list[dict], path: Path) -> Path:
    """The rows of :func:`summarize` (without the seed list, per-seed values, tests and description), atomically."""
    cols = [k for k in rows[0] if k not in ("seeds", "description") and not k.startswith("vs_")
            and not k.endswith("_values")] if rows else []
    flat = [{k: r.get(k) for k in cols} for r in rows]
    return write_csv(flat, path, fieldnames=cols)


#: how ``summary.json`` names its intervals
INTERVAL = (f"mean over seeds, 95% Student-t interval from {MIN_SEEDS} seeds; <metric>_iqm: IQM with its 95% "
            "stratified-bootstrap percentile interval")


def run_commands(results: Sequence[dict]) -> list[str]:
    """The commands that produced ``results``, most runs first (a partial rerun adds its own)."""
    return [c for c, _ in Counter(r.get("command", "") for r in results).most_common() if c]


def suite_leaderboard(out: str | os.PathLike, suite: str, description: str = "") -> str:
    """The leaderboard markdown of the finished runs of ``suite`` under ``out``, as ``write_report`` writes it."""
    results = load_results(out, suite)
    if not results:
        raise FileNotFoundError(f"no finished runs of suite {suite!r} under {out}")
    return leaderboard_markdown(summarize(results), suite, description, run_commands(results))


def write_report(out: str | os.PathLike, suite: str, *, description: str = "", command: str = "",
                 figure: str | None = None) -> dict[str, Path]:
    """Aggregate the finished runs of ``suite`` under ``out`` into CSV, JSON, markdown and PNG (each
    written atomically); ``description`` heads the leaderboard; returns the paths."""
    from prune_env.benchmark.curves import plot_curves, write_curves_csv

    results = load_results(out, suite)
    if not results:
        raise FileNotFoundError(f"no finished runs of suite {suite!r} under {out}")
    root = Path(out) / suite
    commands = run_commands(results) or [command]
    rows = summarize(results)
    pairs = pairwise_table(rows)
    paths = {
        "results_csv": write_results_csv(results, root / "results.csv"),
        "summary_csv": write_summary_csv(rows, root / "summary.csv"),
        "pairwise_csv": write_csv(pairs, root / "pairwise.csv", fieldnames=list(pairs[0]) if pairs else ["a"]),
        "summary_json": write_json({"suite": suite, "commands": commands, "interval": INTERVAL, "ranking": RANKING_RULE,
                                    "marks": MARKS, "rows": rows, "pairwise": pairs}, root / "summary.json"),
    }
    paths["curves_png"] = plot_curves(results, root / "learning_curves.png", title=f"suite {suite}: learning curves")
    if any(r.get("curves") for r in results):
        paths["curves_csv"] = write_curves_csv(results, root / "learning_curves.csv")
    paths["leaderboard_md"] = write_text(leaderboard_markdown(rows, suite, description, commands), root / "leaderboard.md")
    if figure:
        import shutil

        Path(figure).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(paths["curves_png"], figure)
        paths["figure"] = Path(figure)
    return paths
