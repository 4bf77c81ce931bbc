#!/usr/bin/env python
"""Train the runtime or static pruning agent (or both, --joint) and evaluate it on the test split.

    python train_agents.py --env RuntimePrune-v0                      # the embedded default
    python train_agents.py --env StaticPrune-v0 --algo ppo --timesteps 20000
    python train_agents.py --env RuntimePrune-v0 --env-kwargs budget=0.7 tradeoff_rate=0.5 \\
        --static-agent runs/staticprune-ppo-s0                        # a fixed, trained static agent
    python train_agents.py --joint                                    # both agents, four rounds of alternation
    python train_agents.py --joint --agent-update joint               # ... or Algorithm 1's joint update (l. 12-15)
    python train_agents.py --env-kwargs budget=0.3:0.7                # one agent for every budget in a range

One agent for every budget (docs/guide/any_budget.md): --env-kwargs budget=LOW:HIGH trains over a range
(each episode draws its budget in [LOW, HIGH]; budget=LOW,HIGH is the same range), budget=[B1,B2,...]
over a set of budgets (or budget=B1,B2,B3 with three or more). The budget is then part of the agent's observation and its
evaluation sweeps the range on the test split (--sweep-budgets / --sweep-points), writing
any_budget.json, any_budget.csv and any_budget.png (top-1 against mean MACs beside uniform, the
best static allocation and the calibrated agent; --per-budget-runs adds one-budget agents).

Both agents (--joint) learn, by default, in four rounds of alternation, each agent's learn() against
the other's frozen policy. --agent-update joint trains them as the paper's Algorithm 1 (lines 12-15)
does: both act in the same episodes, and one reward batch, from one forward pass, updates both
(agents/joint.py; docs/results/algorithm1.md). A joint batch is --n-envs images split into --joint-groups
static episodes; the runtime agent gets its default steps (or --timesteps), the static agent
joint-groups / n-envs of them (agents.training.joint_plan). Without the CNN phase the joint update
overspent the MAC budget on 2 of 3 seeds where the alternation held it (docs/results/algorithm1.md), hence
the default here; in finetune_cnn.py algorithm1 the joint update is the default. Off-policy
algorithms train only in alternation.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from agents.registry import ALGORITHMS, DEFAULT_ALGO, ENV_IDS
from prune_env.cli import (
    add_output_options,
    add_threads_option,
    device,
    fraction,
    parse_key_values,
    positive_int,
    refuse_overwrite,
    seed_value,
    set_threads,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="RuntimePrune-v0", choices=ENV_IDS, help="environment id (default: %(default)s)")
    p.add_argument("--algo", default=DEFAULT_ALGO,
                   help=f"one of {sorted(ALGORITHMS)} or module:Class (default: %(default)s)")
    p.add_argument("--timesteps", type=positive_int, default=None,
                   help="environment steps (layer decisions; default: per algorithm and env); the run ends there, "
                        "rounded up to whole rollouts of --n-envs environments")
    p.add_argument("--seed", type=seed_value, default=0, help="random seed, in [0, 2**32) (default: %(default)s)")
    p.add_argument("--n-envs", type=positive_int, default=64, help="episodes run together in the batched VecEnv")
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                   help="environment keywords, e.g. budget=0.7, a range budget=0.3:0.7 or a set budget=[0.3,0.5,0.7] "
                        "(RL Zoo's KEY:VALUE works too)")
    p.add_argument("--hyperparams", nargs="*", default=[], metavar="KEY=VALUE",
                   help="algorithm keywords, e.g. learning_rate=3e-4 policy_kwargs.lstm_hidden_size=64 (or KEY:VALUE)")
    p.add_argument("--preset", default="fast", help="hyper-parameter preset: fast (default) or paper (recurrent_ppo)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="run directory (default: runs/<env>-<algo>-s<seed>, e.g. runs/runtimeprune-recurrent_ppo-s0)")
    p.add_argument("--device", type=device, default="auto",
                   help="torch device for the agent: auto (cuda when available), cpu, cuda, cuda:1 (default: auto)")
    add_output_options(p, "continue from the run directory's last checkpoint")
    p.add_argument("--static-agent", default=None, metavar="PATH", help="fixed static agent for RuntimePrune-v0")
    p.add_argument("--runtime-agent", default=None, metavar="PATH", help="fixed runtime agent for StaticPrune-v0")
    p.add_argument("--joint", action="store_true",
                   help="train the runtime and the static agent together (Algorithm 1, lines 12-15; see --agent-update)")
    p.add_argument("--agent-update", choices=["joint", "alternating"], default=None,
                   help="--joint: alternating (four rounds, each agent against the other's frozen policy; the default, "
                        "and the only choice for off-policy algorithms) or joint (Algorithm 1's update: both agents "
                        "act in the same episodes, one reward batch updates both; recurrent_ppo, ppo, a2c, trpo)")
    p.add_argument("--joint-groups", type=positive_int, default=None, metavar="G",
                   help="--joint with the joint update: static episodes per joint batch of --n-envs images "
                        "(default: the fewest giving the static agent its default steps, at least 8 images each)")
    p.add_argument("--checkpoint-every", type=positive_int, default=20_000, help="steps between checkpoints")
    p.add_argument("--sweep-budgets", type=fraction, nargs="+", default=None, metavar="B",
                   help="an any-budget agent (budget a range): the budgets its evaluation sweeps, inside the range "
                        "(default: --sweep-points evenly spaced, both ends included)")
    p.add_argument("--sweep-points", type=positive_int, default=5, help="evenly spaced sweep budgets (default %(default)s)")
    p.add_argument("--per-budget-runs", nargs="+", default=[], metavar="DIR",
                   help="finished one-budget runs to put beside an any-budget agent's curve (their metrics.json)")
    p.add_argument("--supervised-start", choices=["loss", "accuracy"], default=None, metavar="OBJECTIVE",
                   help="RuntimePrune-v0, one budget: before the reinforcement learning, behaviour-clone the runtime "
                        "policy on the keep ratios the label oracle gives each training image at the budget (objective "
                        "loss: least total loss; accuracy: the cheapest width that classifies it right); writes "
                        "supervised_start.json (recurrent_ppo, ppo, a2c, trpo)")
    p.add_argument("--supervised-family", choices=["uniform", "best_static"], default="uniform",
                   help="--supervised-start: the allocations the oracle chooses among, uniform keep ratios (default) "
                        "or the best static allocation of the training split scaled to each uniform level's MACs")
    p.add_argument("--supervised-levels", type=fraction, nargs="+", default=None, metavar="KEEP",
                   help="--supervised-start: the uniform keep ratios the oracle chooses among (default: "
                        "0.15 0.2 0.25 0.3 0.4 0.5 0.75 1); a narrow set around the budget's keep ratio keeps mistakes cheap")
    add_threads_option(p)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    from agents.arguments import check_budget_range, check_run_arguments
    from agents.registry import get_spec

    try:
        get_spec(args.algo)
    except (ValueError, ImportError, AttributeError, TypeError) as exc:
        parser.error(f"--algo: {exc}")
    try:  # typos end here, before anything is created
        env_kwargs = parse_key_values(args.env_kwargs, "--env-kwargs")
        hyperparams = parse_key_values(args.hyperparams, "--hyperparams")
        check_run_arguments(algo=args.algo, env_id=args.env, hyperparams=hyperparams, env_kwargs=env_kwargs,
                            preset=args.preset, joint=args.joint)
        check_budget_range(env_kwargs, joint=args.joint, sweep_budgets=args.sweep_budgets)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.static_agent and args.env != "RuntimePrune-v0":
        parser.error("--static-agent applies to --env RuntimePrune-v0")
    if args.runtime_agent and args.env != "StaticPrune-v0":
        parser.error("--runtime-agent applies to --env StaticPrune-v0")
    if (args.supervised_family != "uniform" or args.supervised_levels) and args.supervised_start is None:
        parser.error("--supervised-family and --supervised-levels apply to --supervised-start")
    if args.supervised_start is not None and (args.env != "RuntimePrune-v0" or args.joint):
        parser.error("--supervised-start applies to --env RuntimePrune-v0 without --joint (it clones the runtime policy)")
    if args.agent_update is not None and not args.joint:
        parser.error(f"--agent-update {args.agent_update}: how the two agents of --joint learn; add --joint "
                     "(a single agent learns alone)")
    agent_update = None
    if args.joint:
        from agents.config import on_policy
        from agents.joint import resolve_agent_update
        from agents.training import JOINT_RUN_DEFAULT_UPDATE

        try:  # one budget here (check_budget_range refused a range with --joint)
            agent_update = resolve_agent_update(args.agent_update, on_policy=on_policy(args.algo), algo=args.algo,
                                                option="--agent-update", default=JOINT_RUN_DEFAULT_UPDATE)
        except ValueError as exc:
            parser.error(str(exc))
    if args.joint_groups is not None and agent_update != "joint":
        parser.error("--joint-groups applies to --joint with the joint update (--agent-update joint)")
    name = "joint" if args.joint else args.env.split("-")[0].lower()
    out = args.out or f"runs/{name}-{args.algo}-s{args.seed}"
    refusal = refuse_overwrite(out, kind="dir", resume=args.resume, overwrite=args.overwrite)
    if refusal:
        parser.error(refusal)
    if args.resume:
        from pathlib import Path

        subs = ("runtime", "static") if args.joint else (".",)
        if not any((Path(out) / sub / "checkpoint.zip").is_file() for sub in subs):
            parser.error(f"--resume: {out} holds no checkpoint to continue (checkpoint.zip"
                         f"{' in runtime/ or static/' if args.joint else ''}); run the command without --resume to start")
    from agents.config import RunConfig
    from agents.training import run, started_agent_update

    started = started_agent_update(out) if args.joint and args.resume else None
    if started is not None and args.agent_update is None:  # a resumed run continues with the update it started with
        agent_update = started
    if started is not None and started != agent_update:
        parser.error(f"--resume: {out} was started with --agent-update {started}, not {agent_update}")

    set_threads(args.threads)
    cfg = RunConfig(
        env_id=args.env, algo=args.algo, timesteps=args.timesteps, seed=args.seed, n_envs=args.n_envs,
        env_kwargs=env_kwargs, hyperparams=hyperparams, preset=args.preset,
        out=out, device=args.device, resume=args.resume,
        static_agent=args.static_agent, runtime_agent=args.runtime_agent, joint=args.joint,
        agent_update=agent_update, joint_groups=args.joint_groups,
        progress=not args.no_progress, checkpoint_every=args.checkpoint_every,
        sweep_budgets=args.sweep_budgets, sweep_points=args.sweep_points, per_budget_runs=args.per_budget_runs,
        supervised_start=args.supervised_start, supervised_family=args.supervised_family,
        supervised_levels=args.supervised_levels,
        command=" ".join(shlex.quote(a) for a in ["python", "train_agents.py", *(sys.argv[1:] if argv is None else argv)]),
    )
    from prune_env.checkpoint import CheckpointError
    from prune_env.errors import UsageError

    try:
        return run(cfg)
    except (CheckpointError, UsageError) as exc:  # a file or value of the user's that cannot be used: exit 2, one line
        parser.error(str(exc))
    except FileNotFoundError as exc:  # a path given (--static-agent, checkpoint=...) that does not exist
        parser.error(str(exc))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
