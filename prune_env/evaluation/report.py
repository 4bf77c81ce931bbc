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
process, interleaved, median of repeats:

* ``dense``: the plain backbone (gating off, eager PyTorch): what one deploys without pruning;
* every other row: the deployed model, :func:`~prune_env.deploy.export_static` with the row's
  static keep ratios (permanent sets removed) run by :class:`~prune_env.deploy.RuntimeExecutor`
  with the runtime keep ratios the row's policy chose for each input (computed beforehand by a
  rollout on the masked network, so the agent's own decision time is *not* included);
* ``dense_executor``: the unpruned network through the executor at keep 1 (BN folded).

Two speed-ups follow: ``latency_speedup`` against eager dense (what deploying this row gains
over the plain backbone: the pruning *and* the executor's own gains) and
``latency_speedup_executor`` against dense through the same executor (what the pruning alone
gains). On the embedded default the executor alone is about 1.9x faster than eager dense, so a
pruned row can show "1.85x" against eager dense while being no faster than unpruned through
the executor; the second column tells them apart.

Before timing, the executor's logits and kept-channel counts are checked against the masked
network's for every timed input (``max_abs_diff``, ``kept_match``).

This module never imports ``agents``: loading a run directory (SB3 agents) is
:mod:`agents.report`'s job; here policies are anything :func:`~prune_env.policies.as_policy`
accepts.
"""

from __future__ import annotations

import copy
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from prune_env.envs.task import PruningTask
from prune_env.evaluation.split import evaluate_policies, reference_metrics, write_json
from prune_env.io import write_text

REPORT_JSON, REPORT_MD, REPORT_TXT, REPORT_PNG = "report.json", "report.md", "report.txt", "report.png"
#: the keys every row of a report carries
ROW_KEYS = (
    "name", "label", "accuracy", "delta_pp", "macs_ratio", "speedup", "params_ratio", "stored_params",
    "overhead_params", "params_ratio_with_overhead", "within_budget", "latency_ms", "latency_speedup",
    "latency_speedup_executor", "latency_cpu_ms",
)


@dataclass
class LatencyConfig:
    """How latency is measured: ``batch`` images per call, ``inputs`` distinct test inputs cycled
    through, ``warmup`` + ``repeats`` rounds (all configurations called once per round)."""

    repeats: int = 50
    warmup: int = 5
    batch: int = 1
    inputs: int = 32

    def validate(self) -> None:
        for name in ("repeats", "batch", "inputs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"latency {name} must be >= 1, got {getattr(self, name)!r}")
        if int(self.warmup) < 0:
            raise ValueError(f"latency warmup must be >= 0, got {self.warmup!r}")


@dataclass
class PolicyPair:
    """A row to evaluate: a runtime policy (anything ``as_policy`` accepts) and ``(L,)`` static keep ratios."""

    label: str
    runtime_policy: Any
    static_ratios: Any


# --------------------------------------------------------------------------- latency
def runtime_ratios(task: PruningTask, runtime_policy: Any, static_ratios: Any, images: torch.Tensor):
    """``(N, L)`` runtime keep ratios the policy picks for ``images`` (clipped, as applied), and the
    masked network's final :class:`~prune_env.nets.gated.StepState` (logits, kept counts)."""
    with torch.no_grad():
        state = task.rollout(images, runtime_policy, np.asarray(static_ratios, dtype=np.float64))
    n = images.shape[0]
    cols = [torch.as_tensor(r, dtype=torch.float64).reshape(-1).expand(n) for r in state.runtime_ratios]
    return torch.stack(cols, 1).cpu().numpy(), state


def time_interleaved(fns: Mapping[str, Callable[[int], object]], rounds: int, warmup: int) -> dict[str, dict]:
    """Median wall-clock and thread-CPU milliseconds per call; ``fns[k](i)`` is call ``i``, round-robin."""
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    with torch.inference_mode():
        for i in range(warmup + rounds):
            for name, fn in fns.items():
                start, start_cpu = time.perf_counter(), time.thread_time()
                fn(i)
                elapsed, elapsed_cpu = time.perf_counter() - start, time.thread_time() - start_cpu
                if i >= warmup:
                    wall[name].append(1e3 * elapsed)
                    cpu[name].append(1e3 * elapsed_cpu)
    return {k: {"median_ms": statistics.median(wall[k]), "cpu_median_ms": statistics.median(cpu[k]),
                "min_ms": min(wall[k]), "samples": len(wall[k])} for k in fns}


def measure_latency(task: PruningTask, pairs: Mapping[str, tuple[Any, Any]], cfg: LatencyConfig | None = None) -> dict:
    """CPU latency of the dense backbone and of each deployed policy pair (see the module docstring).

    ``pairs`` maps a row name to ``(runtime_policy, static_ratios)``. Returns ``{"configs": {name:
    {median_ms, cpu_median_ms, min_ms, samples, max_abs_diff, kept_match}}, "settings": ...}``
    with the configs ``dense`` (plain backbone), ``dense_executor`` and one per pair.
    """
    from prune_env.deploy import RuntimeExecutor, export_static

    cfg = cfg or LatencyConfig()
    cfg.validate()
    n = min(int(cfg.inputs), len(task.source))
    batch = int(cfg.batch)
    images, _ = task.source.get(np.arange(n))
    # batches of ``batch`` consecutive inputs, cycling through the ``n`` images
    starts = list(range(0, n, batch))
    chunks = [np.arange(s, s + batch) % n for s in starts]

    plain = copy.deepcopy(task.net).eval().configure(gating=False)
    fns: dict[str, Callable[[int], object]] = {}
    configs: dict[str, dict] = {}

    def chunk(i: int) -> torch.Tensor:
        return images[torch.as_tensor(chunks[i % len(chunks)])]

    fns["dense"] = lambda i: plain(chunk(i))
    configs["dense"] = {"what": "plain backbone, gating off (eager PyTorch)"}
    dense_exec = RuntimeExecutor(export_static(task.net, 1.0))
    fns["dense_executor"] = lambda i: dense_exec(chunk(i), 1.0)
    configs["dense_executor"] = {"what": "export_static(d_s = 1) + RuntimeExecutor at d_r = 1"}
    for name, (policy, static) in pairs.items():
        static = np.asarray(static, dtype=np.float64).reshape(-1)
        ratios, state = runtime_ratios(task, policy, static, images)
        executor = RuntimeExecutor(export_static(task.net, static.tolist()))
        got_logits, got_kept = [], []
        with torch.inference_mode():
            for s in range(0, n, batch):
                idx = torch.arange(s, min(s + batch, n))
                logits, kept = executor.run(images[idx], torch.as_tensor(ratios[idx.numpy()]))
                got_logits.append(logits)
                got_kept.append(kept)
        diff = float((torch.cat(got_logits) - state.logits).abs().max())
        kept_match = bool(torch.equal(torch.cat(got_kept), state.kept.cpu()))
        per_chunk = [torch.as_tensor(ratios[c]) for c in chunks]
        fns[name] = (lambda ex, pc: (lambda i: ex(chunk(i), pc[i % len(pc)])))(executor, per_chunk)
        configs[name] = {
            "what": "export_static(d_s) + RuntimeExecutor with the policy's per-input d_r",
            "max_abs_diff": diff, "kept_match": kept_match,
            "deployed_backbone_params": int(executor.model.backbone_param_count()),
            "deployed_overhead_params": int(executor.model.overhead_param_count()),
            "stored_channels": list(executor.model.stored_channels),
        }
    timings = time_interleaved(fns, int(cfg.repeats), int(cfg.warmup))
    for name, t in timings.items():
        configs[name].update(t)
    return {
        "configs": configs,
        "settings": {**asdict(cfg), "inputs": n, "threads": torch.get_num_threads(), "torch": torch.__version__,
                     "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                     "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
                     "note": "median of interleaved repeats after warm-up; agent decision time excluded"},
    }


# --------------------------------------------------------------------------- the report
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


# --------------------------------------------------------------------------- formatting
def _cells(row: dict, has_latency: bool) -> list[str]:
    cells = [
        row["label"], f"{100 * row['accuracy']:.2f}", "0.00" if row["name"] == "dense" else f"{row['delta_pp']:+.2f}",
        f"{row['macs_ratio']:.3f}", f"{row['speedup']:.2f}x", f"{row['params_ratio']:.3f}x",
        _human(row["stored_params"]), f"{row['params_ratio_with_overhead']:.3f}x", f"{100 * row['within_budget']:.1f}%",
    ]
    if has_latency:
        cells += [f"{row['latency_ms']:.3f}", f"{row['latency_speedup']:.2f}x", f"{row['latency_speedup_executor']:.2f}x"]
    return cells


def _human(count: float) -> str:
    if count >= 1e6:
        return f"{count / 1e6:.3f} M"
    if count >= 1e3:
        return f"{count / 1e3:.2f} k"
    return f"{count:.0f}"


HEADERS = ["policy", "top-1 %", "Δ pp", "MACs", "MAC speed-up", "params (x dense)", "params", "+ predictors",
           "in budget"]
LATENCY_HEADERS = ["latency ms (b{batch})", "speed-up vs eager dense", "speed-up vs dense executor"]
#: the same headers in short words, for a table that must fit a terminal (they wrap at the spaces)
COMPACT_HEADERS = ["policy", "top-1 %", "Δ pp", "MACs", "MAC speed-up", "params x dense", "params", "+ pred. x dense",
                   "in budget"]
COMPACT_LATENCY_HEADERS = ["latency ms (b{batch})", "speed-up vs eager dense", "speed-up vs dense executor"]


def _headers(report: dict, compact: bool = False) -> list[str]:
    headers = list(COMPACT_HEADERS if compact else HEADERS)
    if report["task"].get("within_budget_of") == "params":
        headers[-1] = "in params budget"
    lat = report.get("latency")
    if lat is None:
        return headers
    latency = COMPACT_LATENCY_HEADERS if compact else LATENCY_HEADERS
    return headers + [latency[0].format(batch=lat["settings"]["batch"]), *latency[1:]]


def _preamble(report: dict) -> list[str]:
    t, run = report["task"], report.get("run", {})
    lines = []
    if run.get("run_dir"):
        lines.append(f"run: {run['run_dir']} ({run.get('kind', '?')}{', ' + run['algo'] if run.get('algo') else ''})")
    lines.append(f"network: {t['network']} on {t['dataset']}, {t['split']} split ({t['num_images']} images), "
                 f"checkpoint {t['checkpoint'] or 'shipped default'}")
    lines.append(f"budget: sparsity {t['budget']:g} -> MACs {t['macs_budget']:.3f}, params {t['params_budget']:.3f} "
                 f"of dense; R_r = {t['tradeoff_rate']:g}; dense {t['dense_macs'] / 1e6:.3f} M MACs, "
                 f"{_human(t['dense_params'])} params")
    statics = {r["name"]: report["metrics"][r["name"]]["static_keep_ratios"] for r in report["rows"]
               if r["name"] not in ("dense", "uniform")}
    for name, s in statics.items():
        lines.append(f"{name}: static keep ratios d_s = [{', '.join(f'{v:.3f}' for v in s)}], "
                     f"runtime keep mean = [{', '.join(f'{v:.3f}' for v in report['metrics'][name]['keep_ratio_mean'])}]")
    return lines


def _notes(report: dict) -> list[str]:
    lines = ["params: stored backbone parameters after removing the permanent sets (Sec. 3.4); "
             "+ predictors: with the importance predictors and u_s of the stored channels."]
    lat = report.get("latency")
    if lat is not None:
        s, c = lat["settings"], lat["configs"]
        lines.append(
            f"latency: CPU wall clock at batch {s['batch']}, median of {s['repeats']} interleaved rounds after {s['warmup']} "
            f"warm-up over {s['inputs']} test inputs, {s['threads']} thread(s), load average "
            f"{', '.join(f'{v:.1f}' for v in s['load_average']) if s.get('load_average') else 'n/a'}; dense = plain backbone "
            f"(eager), other rows = export_static + RuntimeExecutor with the policy's per-input ratios "
            f"(agent decision time excluded). Dense through the executor (keep 1, BN folded): "
            f"{c['dense_executor']['median_ms']:.3f} ms; speed-up vs eager dense = the deployment's gain (pruning and "
            f"executor), vs dense executor = the pruning's own gain. Thread CPU time (steadier on a shared machine), ms: "
            + ", ".join(f"{k} {v['cpu_median_ms']:.3f}" for k, v in c.items()) + ".")
        checks = [f"{k}: max |diff| {v['max_abs_diff']:.2e}, kept {'match' if v['kept_match'] else 'DIFFER'}"
                  for k, v in c.items() if "max_abs_diff" in v]
        lines.append("executor vs masked network: " + "; ".join(checks))
    rec = report.get("run", {}).get("recorded")
    if rec:
        lines.append(f"recorded at training time (metrics.json): top-1 {100 * rec['accuracy']:.2f}%, "
                     f"MACs {rec['macs_ratio']:.3f}, params {rec['params_ratio']:.3f}"
                     + (" (reproduced)" if report["run"].get("reproduces_recorded") else " (differs from this evaluation)"))
    return lines


#: width of the plain-text report written to ``report.txt`` (and of the printed one where the width is unknown)
TEXT_WIDTH = 100


def terminal_width() -> int:
    """The terminal's width in columns (``COLUMNS`` first), :data:`TEXT_WIDTH` where there is none."""
    import shutil

    return int(shutil.get_terminal_size((TEXT_WIDTH, 24)).columns)


def format_table(report: dict, width: int | None = None) -> str:
    """The report's table as plain text no wider than ``width`` (default: the terminal's).

    Numbers never break; headers wrap at their spaces and long policy labels onto more lines
    (rich's table layout), and where the columns still do not fit, the latency columns go to a
    second table below the first, each with the policy column.
    """
    import io

    from rich import box
    from rich.console import Console
    from rich.table import Table

    has_latency = report.get("latency") is not None
    headers = _headers(report, compact=True)
    body = [_cells(row, has_latency) for row in report["rows"]]
    width = int(width or terminal_width())
    need = [max(max(len(w) for w in h.split()), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]
    label = max(len(b[0]) for b in body)

    def render(columns: list[int]) -> str:
        numbers = sum(need[i] for i in columns[1:]) + 2 * (len(columns) - 1)  # a space of padding, one of rule
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 0, 0, 1))
        table.add_column(headers[0], justify="left", overflow="fold", width=min(label, max(12, width - numbers - 1)))
        for i in columns[1:]:
            table.add_column(headers[i], justify="right", overflow="fold", width=need[i])
        for b in body:
            table.add_row(*(b[i] for i in columns))
        console = Console(file=io.StringIO(), width=width, no_color=True, highlight=False, emoji=False, markup=False,
                          color_system=None, legacy_windows=False)
        console.print(table)
        return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines())

    everything = list(range(len(headers)))
    if not has_latency or sum(need[1:]) + 2 * (len(need) - 1) + 12 <= width:
        return render(everything)
    split = len(HEADERS)
    return render(everything[:split]) + "\n\n" + render([0, *everything[split:]])


def format_text(report: dict, width: int | None = TEXT_WIDTH) -> str:
    """The report as plain text no wider than ``width`` (None: the terminal's): a preamble, the table and
    the notes (wrapped)."""
    import textwrap

    width = int(width or terminal_width())

    def wrap(lines: list[str]) -> list[str]:
        return [w for line in lines for w in (textwrap.wrap(line, width, subsequent_indent="  ") or [""])]

    return "\n".join([*wrap(_preamble(report)), "", format_table(report, width), "", *wrap(_notes(report))]) + "\n"


def format_markdown(report: dict) -> str:
    """The report as markdown: a preamble list, the table and notes."""
    headers = _headers(report)
    has_latency = report.get("latency") is not None
    aligns = ["---"] + ["---:"] * (len(headers) - 1)
    out = ["# Evaluation report", ""]
    out += [f"- {line}" for line in _preamble(report)]
    out += ["", "| " + " | ".join(headers) + " |", "| " + " | ".join(aligns) + " |"]
    out += ["| " + " | ".join(_cells(r, has_latency)) + " |" for r in report["rows"]]
    out += [""] + [f"{line}" + "\n" for line in _notes(report)]
    return "\n".join(out).rstrip() + "\n"


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


def plot_report(report: dict, path: str | os.PathLike) -> Path:
    """The table as a picture: top-1 accuracy against the MAC ratio and against the stored-parameter ratio,
    one marker per row, the budgets as dashed lines, to PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from prune_env.io import atomic_write

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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return path


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
