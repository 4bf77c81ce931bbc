"""Tables as text: the evaluation report's (plain text and markdown) and the quick reference table.

* :func:`format_report_table`, :func:`format_text`, :func:`format_markdown`: a report of
  :func:`~prune_env.evaluation.report.build_report` (the paper's Tables 1-3, with latency where measured);
* :func:`format_reference_table`: metric dicts of :func:`~prune_env.evaluation.split.evaluate_policies`
  (the agents beside :func:`~prune_env.evaluation.split.reference_metrics`), one short line each.
"""

from __future__ import annotations


# --------------------------------------------------------------------------- the report
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


def format_report_table(report: dict, width: int | None = None) -> str:
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

    return "\n".join([*wrap(_preamble(report)), "", format_report_table(report, width), "", *wrap(_notes(report))]) + "\n"


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


# --------------------------------------------------------------------------- the reference table
def format_reference_table(rows: dict[str, dict]) -> str:
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
