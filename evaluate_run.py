#!/usr/bin/env python
"""Evaluate a run directory on the test split and write the paper-style report into it.

    python evaluate_run.py runs/runtimeprune-recurrent_ppo-s0           # a train_agents.py run
    python evaluate_run.py runs/joint-recurrent_ppo-s0 --latency        # --joint: runtime/ + static/
    python evaluate_run.py runs/algorithm1-digits --latency             # finetune_cnn.py algorithm1 output
    python evaluate_run.py runs/any --budget 0.45                       # an any-budget agent at one budget
    python evaluate_run.py runs/any --budget 0.3 0.5 0.7 --per-budget-runs runs/b0.3 runs/b0.5 runs/b0.7

Rows: the dense network, the uniform keep ratio meeting the MAC budget (same static ratios),
the agents. Columns: top-1, change from dense, MAC speed-up, stored parameters (x dense and
absolute), the inputs within the budget (a StaticPrune-v0 run: whether the stored parameters
meet the parameter budget), and with --latency the CPU latency of the deployed model (static
export + runtime executor driven by the agents' ratios) with two speed-ups: against the eager
dense backbone (the deployment's gain) and against dense through the same executor (the
pruning's own gain), measured in this process. The table wraps to the terminal's width.
Writes report.txt, report.json, report.md and report.png (accuracy against MACs and stored
parameters) into --out (default: RUN_DIR; see agents/report.py).

An agent trained over a budget range (train_agents.py --env-kwargs budget=0.3:0.7) takes the
budget as an argument: --budget B [B ...] evaluates it at each budget on the test split, beside
uniform, the best static allocation and the calibrated agent (and the one-budget runs of
--per-budget-runs), and writes any_budget.json, any_budget.csv and any_budget.png into --out
(default: RUN_DIR/sweep; an earlier sweep there is kept unless --overwrite). A budget outside the
agent's training range is refused, naming the range; so is such an agent without --budget, and
--budget for an agent trained at one budget.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prune_env.cli import add_threads_option, fraction, non_negative_int, positive_int, set_threads


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="train_agents.py or finetune_cnn.py algorithm1 output")
    p.add_argument("--latency", action="store_true", help="measure CPU latency: dense backbone vs the deployed model")
    p.add_argument("--batch-size", type=positive_int, default=512, help="evaluation batch size (default %(default)s)")
    p.add_argument("--latency-batch", type=positive_int, default=1, help="images per timed call (default %(default)s)")
    p.add_argument("--repeats", type=positive_int, default=50, help="timed rounds (default %(default)s)")
    p.add_argument("--warmup", type=non_negative_int, default=5, help="untimed warm-up rounds (default %(default)s)")
    p.add_argument("--latency-inputs", type=positive_int, default=32,
                   help="distinct test inputs the timed calls cycle through (default %(default)s)")
    p.add_argument("--runtime-agent", type=Path, default=None, metavar="PATH",
                   help="runtime agent of a StaticPrune-v0 run (default: the one it trained with)")
    p.add_argument("--static-agent", type=Path, default=None, metavar="PATH",
                   help="static agent of a RuntimePrune-v0 run (default: the one it trained with)")
    add_threads_option(p)
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="directory for the report files (default: RUN_DIR)")
    p.add_argument("--no-write", action="store_true", help="print only; write no report files")
    p.add_argument("--no-references", action="store_true",
                   help="skip the headroom references of a runtime run (best static allocation, oracle, controls)")
    p.add_argument("--no-progress", action="store_true", help="do not report the steps on standard error")
    p.add_argument("--budget", type=fraction, nargs="+", default=None, metavar="B",
                   help="an any-budget agent: the budget(s) to evaluate it at, inside its training range "
                        "(budget_kind units, a sparsity by default)")
    p.add_argument("--per-budget-runs", type=Path, nargs="+", default=[], metavar="DIR",
                   help="with --budget: finished one-budget runs to put beside the curve")
    p.add_argument("--overwrite", action="store_true", help="with --budget: replace an earlier sweep in --out")
    p.add_argument("--no-calibrate", action="store_true",
                   help="with --budget: skip the agent calibrated to each budget (an offset search per budget)")
    return p


def sweep_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """``--budget``: the any-budget agent's curve (:func:`agents.evaluate.evaluate_any_budget_run`)."""
    from agents.evaluate import evaluate_any_budget_run
    from prune_env.evaluation.budget_sweep import SWEEP_FILES

    out = args.out or args.run_dir / "sweep"
    if not args.overwrite and (out / SWEEP_FILES[0]).exists():
        parser.error(f"--out {out} holds an earlier sweep ({SWEEP_FILES[0]}): choose another --out or pass --overwrite")
    try:
        return evaluate_any_budget_run(args.run_dir, budgets=args.budget, per_budget_runs=[str(r) for r in args.per_budget_runs],
                                       out=out, static_agent=args.static_agent, runtime_agent=args.runtime_agent,
                                       calibrate=not args.no_calibrate)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args.threads)
    from prune_env.checkpoint import CheckpointError
    from prune_env.errors import UsageError

    try:  # a run directory is user input: a file in it that cannot be used is a usage error naming it
        return evaluate(parser, args)
    except (UsageError, CheckpointError, FileNotFoundError) as err:
        parser.error(str(err))


def evaluate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """What ``main`` does once the arguments are read."""
    from agents.evaluate import trained_budget_range

    budget_range = trained_budget_range(args.run_dir)
    if args.budget is not None:
        if budget_range is None:
            parser.error(f"--budget applies to an agent trained over a budget range (train_agents.py --env-kwargs "
                         f"budget=0.3:0.7); {args.run_dir} holds one trained at one budget")
        return sweep_main(parser, args)
    if budget_range is not None:
        parser.error(f"{args.run_dir} holds an agent trained over the budgets {budget_range}: pass --budget B "
                     f"(one or more, inside that range) to evaluate it")
    if args.per_budget_runs:
        parser.error("--per-budget-runs applies with --budget")
    from agents.evaluate import evaluate_run_dir
    from prune_env.evaluation.latency import LatencyConfig

    latency = LatencyConfig(repeats=args.repeats, warmup=args.warmup, batch=args.latency_batch,
                            inputs=args.latency_inputs) if args.latency else None
    try:
        return evaluate_run_dir(args.run_dir, latency=latency, batch_size=args.batch_size,
                                runtime_agent=args.runtime_agent, static_agent=args.static_agent, write=not args.no_write,
                                out=args.out, progress=not args.no_progress, references=not args.no_references)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
