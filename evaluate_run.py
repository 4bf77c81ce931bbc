#!/usr/bin/env python
"""Evaluate a run directory on the test split and write the paper-style report into it.

    python evaluate_run.py runs/runtimeprune-recurrent_ppo-s0           # a train_agents.py run
    python evaluate_run.py runs/joint-recurrent_ppo-s0 --latency        # --joint: runtime/ + static/
    python evaluate_run.py runs/algorithm1-digits --latency             # finetune_cnn.py algorithm1 output

Rows: the dense network, the uniform keep ratio meeting the MAC budget (same static ratios),
the agents. Columns: top-1, change from dense, MAC speed-up, stored parameters (x dense and
absolute), the inputs within the budget (a StaticPrune-v0 run: whether the stored parameters
meet the parameter budget), and with --latency the CPU latency of the deployed model (static
export + runtime executor driven by the agents' ratios) with two speed-ups: against the eager
dense backbone (the deployment's gain) and against dense through the same executor (the
pruning's own gain), measured in this process. The table wraps to the terminal's width.
Writes report.txt, report.json, report.md and report.png (accuracy against MACs and stored
parameters) into --out (default: RUN_DIR; see agents/report.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prune_env.cli import add_threads_option, non_negative_int, positive_int, set_threads


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
    return p


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args.threads)
    from agents.report import evaluate_run_dir
    from prune_env.report import LatencyConfig

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
