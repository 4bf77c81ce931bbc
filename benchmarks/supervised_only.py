#!/usr/bin/env python
"""The supervised start alone: the runtime policy behaviour-cloned on the training split's oracle
targets (``agents.supervised_start``), with no reinforcement learning after it, scored on the test
split (as is and calibrated to the budget on the training split) beside its own shuffled allocations.

Tells what the reinforcement learning adds to (or takes from) a supervised start
(``train_agents.py --supervised-start``). Writes ``supervised_only.json`` to ``--out``.

    python benchmarks/supervised_only.py --env-kwargs dataset=fashion-mnist budget=0.4 observation=raw+confidence \\
        --out bench/fm_supervised_only
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from prune_env.cli import fraction, parse_key_values, positive_int, seed_value


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE", help="RuntimePrune-v0 keywords")
    p.add_argument("--objective", choices=["loss", "accuracy"], default="loss")
    p.add_argument("--family", choices=["uniform", "best_static"], default="uniform")
    p.add_argument("--levels", type=fraction, nargs="+", default=None, metavar="KEEP")
    p.add_argument("--search-rounds", type=positive_int, default=8, help="the best static search's rounds (family best_static)")
    p.add_argument("--max-images", type=positive_int, default=8192, help="training images the oracle's targets are built on")
    p.add_argument("--rounds", type=positive_int, default=4, help="DAgger rounds")
    p.add_argument("--epochs", type=positive_int, default=20, help="epochs of each round's fit")
    p.add_argument("--seed", type=seed_value, default=0)
    p.add_argument("--out", required=True, metavar="DIR")
    args = p.parse_args(argv)
    try:
        env_kwargs = parse_key_values(args.env_kwargs, "--env-kwargs")
    except argparse.ArgumentTypeError as exc:
        p.error(str(exc))

    import torch

    from agents.config import MAIN_JOB_ENV_KWARGS, RunConfig
    from agents.evaluate import test_task
    from agents.registry import RUNTIME
    from agents.saved import agent_policy
    from agents.supervised_start import supervised_start
    from agents.training import build_model, make_env
    from prune_env.evaluation.references import OffsetPolicy, adaptation_controls, calibrate_offset
    from prune_env.evaluation.split import rollout_split
    from prune_env.io import write_json

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    kwargs = {**MAIN_JOB_ENV_KWARGS.get(RUNTIME, {}), **env_kwargs}
    cfg = RunConfig(env_kwargs=kwargs, seed=args.seed, search_rounds=args.search_rounds)
    venv = make_env(RUNTIME, cfg.spec, cfg.n_envs, args.seed, kwargs)
    model = build_model(cfg, RUNTIME, venv, None)
    task, static = venv.unwrapped.task, venv.unwrapped.env.static_ratios
    start = time.time()
    fit = supervised_start(model, task, static, objective=args.objective, family=args.family,
                           search_rounds=args.search_rounds, seed=args.seed, max_images=args.max_images,
                           rounds=args.rounds, epochs=args.epochs,
                           **({"levels": tuple(args.levels)} if args.levels else {}))
    policy = agent_policy(model, {"algo": cfg.algo})
    test = test_task(task)
    agent = rollout_split(test, policy, static)
    offset = calibrate_offset(task, policy, static, test.macs_budget, seed=args.seed)
    calibrated = rollout_split(test, OffsetPolicy(policy, offset, test.num_layers), static)
    shuffled = adaptation_controls(test, agent, static, seed=args.seed)["shuffled"]
    result = {"command": " ".join(["python", "benchmarks/supervised_only.py", *(sys.argv[1:] if argv is None else argv)]),
              "env_kwargs": {k: v for k, v in kwargs.items()}, "supervised_start": fit,
              "accuracy": float(agent.correct.mean()), "macs_ratio": float(agent.macs.mean()),
              "calibrated_accuracy": float(calibrated.correct.mean()), "calibrated_macs_ratio": float(calibrated.macs.mean()),
              "calibration_offset": offset, "shuffled_accuracy": shuffled["accuracy"],
              "adaptation_gain_shuffled": float(agent.correct.mean()) - shuffled["accuracy"],
              "adaptation_p_value_shuffled": shuffled["paired_test"]["p_value"],
              "keep_ratio_std": agent.keep.std(0).tolist(), "seconds": time.time() - start}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(result, out / "supervised_only.json")
    print(f"cloned policy alone: {100 * result['accuracy']:.2f}% at {result['macs_ratio']:.4f} MACs, calibrated "
          f"{100 * result['calibrated_accuracy']:.2f}% at {result['calibrated_macs_ratio']:.4f}; shuffled "
          f"{100 * result['shuffled_accuracy']:.2f}% (McNemar p = {result['adaptation_p_value_shuffled']:.3g}); "
          f"written {out / 'supervised_only.json'}")
    venv.close()
    return result


if __name__ == "__main__":
    main()
