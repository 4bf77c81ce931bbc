#!/usr/bin/env python
"""Evaluate a run directory on the test split and write the paper-style report into it.

    python evaluate_run.py runs/runtimeprune-recurrent_ppo-s0           # a train_agents.py run
    python evaluate_run.py runs/joint-recurrent_ppo-s0 --latency        # --joint: runtime/ + static/
    python evaluate_run.py runs/algorithm1-digits --latency             # finetune_cnn.py algorithm1 output

Rows: the dense network, the uniform keep ratio meeting the MAC budget (same static ratios),
the agents. Columns: top-1, change from dense, MAC speed-up, stored parameters (x dense and
absolute), and with --latency the CPU latency of the dense backbone vs the deployed model
(static export + runtime executor driven by the agents' ratios), measured in this process.
Writes report.txt, report.json and report.md into RUN_DIR (see agents/report.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prune_env.cli import non_negative_int, positive_int


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
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")
    p.add_argument("--no-write", action="store_true", help="print only; write no report files")
    return p


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from agents.report import evaluate_run_dir
    from prune_env.report import LatencyConfig

    latency = LatencyConfig(repeats=args.repeats, warmup=args.warmup, batch=args.latency_batch,
                            inputs=args.latency_inputs) if args.latency else None
    try:
        return evaluate_run_dir(args.run_dir, latency=latency, batch_size=args.batch_size,
                                runtime_agent=args.runtime_agent, static_agent=args.static_agent, write=not args.no_write)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
