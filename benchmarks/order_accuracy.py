"""Accuracy cost of the slicing channel order and of keep-count rounding, at equal MACs.

For each configuration (``ORDER`` or ``ORDER/M``: ``runtime_order`` and ``count_multiple``) and
each MAC budget, on a trained network (pure runtime pruning, ``R_r = 1``):

* ``uniform``: the largest uniform runtime keep ratio (on a 0.005 grid) whose MACs, with that
  configuration's rounding, do not exceed the budget; top-1 on the test split;
* ``best static``: per-layer keep ratios searched on the validation split under the budget
  (:func:`~prune_env.evaluation.references.search_static_allocation`, the same for every input),
  scored on the test split (configurations without rounding only: the search's counts are not
  multiples).

Accuracy changes are against ``importance`` (the paper's order, no rounding) at the same MACs:
for ``uniform`` its uniform keep ratio at the MACs the row reached (rounding makes the MAC steps
coarse), for ``best static`` its searched allocation at the same budget; the summary averages
them over the budgets. Uniform and per-layer keep ratios are the same for every input, so these compare
the orders under non-adaptive policies; a trained agent's per-input choices are not included.

    python benchmarks/order_accuracy.py --dataset digits --budgets 0.25 0.4 0.6 --out runs/order
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from prune_env.cli import add_threads_option, positive_int, set_threads
from prune_env.envs.task import PruningTask, TaskConfig
from prune_env.evaluation.references import search_static_allocation
from prune_env.evaluation.split import rollout_split
from prune_env.nets.masks import keep_count


def parse_config(text: str) -> tuple[str, int]:
    order, _, multiple = text.partition("/")
    return order, int(multiple) if multiple else 1


def uniform_at(task: PruningTask, budget: float, multiple: int) -> tuple[float, float]:
    """The largest uniform keep ratio (0.005 grid) whose MACs with ``multiple`` rounding meet ``budget``, and those MACs."""
    best = (0.0, 0.0)
    for r in np.arange(0.005, 1.0001, 0.005):
        counts = torch.stack([keep_count(float(r), int(c), multiple) for c in task.channels])
        macs = float(task.costs.macs_ratio(counts[None])[0])
        if macs <= budget + 1e-9:
            best = (float(r), macs)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--checkpoint", default=None, help="a trained network (default: the shipped one of the dataset)")
    parser.add_argument("--configs", nargs="+", default=["importance", "static", "importance/8", "static/4", "static/8"])
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.25, 0.4, 0.6], help="MAC ratios of dense")
    parser.add_argument("--no-search", action="store_true", help="skip the best static allocation (uniform only)")
    parser.add_argument("--search-images", type=positive_int, default=1024, help="validation images the search scores on")
    parser.add_argument("--search-rounds", type=positive_int, default=40, help="at most this many rounds of the search")
    add_threads_option(parser)
    parser.add_argument("--out", type=Path, default=None, metavar="DIR", help="directory for order_accuracy.json")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    started = time.perf_counter()
    kw = {"dataset": args.dataset, "checkpoint": args.checkpoint, "tradeoff_rate": 1.0}
    rows = []
    for text in args.configs:
        order, multiple = parse_config(text)
        test = PruningTask(TaskConfig(split="test", runtime_order=order, count_multiple=multiple, **kw))
        val = None
        for budget in args.budgets:
            ratio, macs = uniform_at(test, budget, multiple)
            res = rollout_split(test, ratio, 1.0)
            rows.append({"config": text, "policy": "uniform", "budget": budget, "keep": ratio,
                         "macs": float(res.macs.mean()), "accuracy": float(res.correct.mean())})
            if multiple == 1 and not args.no_search:
                if val is None:
                    val = PruningTask(TaskConfig(split="val", runtime_order=order, **kw))
                found = search_static_allocation(val, budget, max_images=args.search_images, max_rounds=args.search_rounds)
                res = rollout_split(test, np.asarray(found["ratios"]), 1.0)
                rows.append({"config": text, "policy": "best static", "budget": budget, "keep": found["ratios"],
                             "macs": float(res.macs.mean()), "accuracy": float(res.correct.mean())})
            print(rows[-1], flush=True)
    reference = PruningTask(TaskConfig(split="test", runtime_order="importance", **kw))
    searched = {r["budget"]: r["accuracy"] for r in rows if r["config"] == "importance" and r["policy"] == "best static"}
    for r in rows:
        if r["policy"] == "uniform":
            ratio, _ = uniform_at(reference, r["macs"], 1)
            r["reference"] = float(rollout_split(reference, ratio, 1.0).correct.mean())
        else:
            r["reference"] = searched.get(r["budget"])
    lines = ["| config | policy | MAC budget | MACs | top-1 | change vs importance order (points) |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        ref = r["reference"]
        delta = "" if ref is None else f"{100 * (r['accuracy'] - ref):+.2f}"
        lines.append(f"| {r['config']} | {r['policy']} | {r['budget']:.2f} | {r['macs']:.3f} | "
                     f"{100 * r['accuracy']:.2f} | {delta} |")
    lines += ["", "| config | policy | distinct policies | mean change vs importance order (points) | min | max |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]
    for key in dict.fromkeys((r["config"], r["policy"]) for r in rows):
        points = {(r["keep"] if isinstance(r["keep"], float) else tuple(r["keep"])): r for r in rows  # distinct policies
                  if (r["config"], r["policy"]) == key and r["reference"] is not None}
        deltas = [100 * (r["accuracy"] - r["reference"]) for r in points.values()]
        if deltas:
            lines.append(f"| {key[0]} | {key[1]} | {len(deltas)} | {np.mean(deltas):+.2f} | {min(deltas):+.2f} | "
                         f"{max(deltas):+.2f} |")
    table = "\n".join(lines)
    print(table)
    print(f"({time.perf_counter() - started:.0f} s)")
    if args.out:
        from prune_env.io import write_text

        write_text(json.dumps({"argv": argv, "rows": rows}, indent=2), args.out / "order_accuracy.json")
        write_text(table + "\n", args.out / "order_accuracy.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
