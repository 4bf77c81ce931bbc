#!/usr/bin/env python
"""The CNN phase of the method from the command line: pre-training, importance, fine-tuning.

One sub-command per stage of the CNN phase, :mod:`prune_env.cnn` (paper Sec. 4.1, Algorithm 1), and two that run more::

    python finetune_cnn.py pretrain   --model digitnet --dataset digits --out runs/pre.pt
    python finetune_cnn.py importance --checkpoint runs/pre.pt --out runs/imp.pt
    python finetune_cnn.py finetune   --checkpoint runs/imp.pt --keep 0.5 --out runs/ft.pt
    python finetune_cnn.py finetune   --checkpoint runs/imp.pt --runtime-agent runs/rt --static-agent runs/st
    python finetune_cnn.py algorithm1 --checkpoint runs/imp.pt --schedule cifar10      # Algorithm 1, K x (N1, N2)
    python finetune_cnn.py method                                                     # all of it, embedded default

Hyper-parameters default to the dataset's preset (``prune_env.cnn.PRESETS``); every one
can be overridden. Each epoch prints its validation accuracy; the last line is a summary with
the test accuracy. Checkpoints are written atomically after every epoch and are
self-describing (backbone, width, dataset, input shape, dense costs), so ``--resume`` continues
an interrupted stage and other tools load them with nothing else. Under ``torchrun`` the stage
runs data-parallel (``--batch-size`` is the global batch).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from agents.cnn_stages import StageJob, UsageError, run_method_stages, run_stage
from prune_env.checkpoint import CheckpointError, read_checkpoint
from prune_env.cli import (
    ALGORITHM1_FILES,
    add_output_options,
    add_threads_option,
    budget_value,
    check_keys,
    device,
    env_keywords,
    fraction,
    non_negative_float,
    non_negative_int,
    parse_key_values,
    positive_float,
    positive_int,
    refuse_overwrite,
    set_threads,
    unit_interval,
)
from prune_env.data import available_datasets
from prune_env.nets.backbones import BACKBONES


# --------------------------------------------------------------------------- parser
def model_spec(text: str) -> str:
    """``--model``: a backbone name or an import path ``module:function`` (imported when the stage runs)."""
    module, sep, attr = text.partition(":")
    if text in BACKBONES or (sep and module and attr):
        return text
    raise argparse.ArgumentTypeError(f"expected one of {sorted(BACKBONES)} or 'module:function' "
                                     f"(e.g. torchvision.models:resnet34), got {text!r}")


def dataset_spec(text: str) -> str:
    """``--dataset``: a dataset name or ``imagefolder:PATH``."""
    if text in available_datasets() or (text.startswith("imagefolder:") and len(text) > len("imagefolder:")):
        return text
    raise argparse.ArgumentTypeError(f"expected one of {available_datasets()} or imagefolder:PATH, got {text!r}")



def build_parser() -> argparse.ArgumentParser:
    """The argument parser (sub-commands ``pretrain``, ``importance``, ``finetune``)."""
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("network and data")
    g.add_argument("--checkpoint", type=Path, default=None,
                   help="input checkpoint (required for importance/finetune unless --model builds a fresh net; "
                        "optional for pretrain: continue from it)")
    g.add_argument("--model", type=model_spec, default=None,
                   help=f"backbone for a fresh network: one of {sorted(BACKBONES)} or a builder 'module:function' "
                        "(e.g. torchvision.models:resnet34, converted by prune_env.nets.gate); default digitnet; with "
                        "--checkpoint, a builder must be named again to rebuild a converted network")
    g.add_argument("--width", type=positive_float, default=None, help="width multiplier of a fresh network (default 1.0)")
    g.add_argument("--weights", type=Path, default=None, help="torchvision state dict for a fresh resnet18")
    g.add_argument("--dataset", type=dataset_spec, default=None,
                   help=f"dataset: one of {available_datasets()} or imagefolder:PATH (default: the checkpoint's, else digits)")
    g.add_argument("--data-root", type=Path, default=None, help="dataset root directory (see prune_env.data)")
    g.add_argument("--download", action="store_true",
                   help="fetch a missing dataset with torchvision's own download (CIFAR-10, Fashion-MNIST; needs the internet)")
    g.add_argument("--val-fraction", type=unit_interval, default=0.1, help="held-out validation fraction (default 0.1)")
    g.add_argument("--split-seed", type=non_negative_int, default=0, help="seed of the train/val split (default 0)")

    h = common.add_argument_group("training (defaults: the dataset's preset)")
    h.add_argument("--epochs", type=positive_int, default=None)
    h.add_argument("--lr", type=positive_float, default=None, help="Adam learning rate")
    h.add_argument("--batch-size", type=positive_int, default=None, help="global batch size")
    h.add_argument("--weight-decay", type=non_negative_float, default=None)
    h.add_argument("--lr-decay-every", type=positive_int, default=None,
                   help="iterations between learning-rate decays (times --lr-decay-factor)")
    h.add_argument("--lr-decay-factor", type=fraction, default=None)
    h.add_argument("--steps-per-epoch", type=positive_int, default=None, help="cap on batches per epoch")
    h.add_argument("--freeze-bn", action="store_true", help="keep BatchNorm in eval mode (running statistics fixed)")
    h.add_argument("--tradeoff-rate", type=unit_interval, default=None,
                   help="R_r in [0, 1] (1 = pure runtime, 0 = pure static; default: the checkpoint's, else 0.5)")
    h.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and dropout")
    h.add_argument("--device", type=device, default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    h.add_argument("--num-workers", type=non_negative_int, default=0, help="data loader workers")
    h.add_argument("--data-on-device", action="store_true",
                   help="hold the splits as tensors on the device and augment batches there (fast on a GPU; "
                        "datasets that fit in memory)")
    add_threads_option(h)

    o = common.add_argument_group("output")
    o.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="output checkpoint, a file (default runs/<model>_<dataset>_<stage>.pt)")
    add_output_options(o, "continue the stage from --out if it holds it")
    o.add_argument("--no-progress", action="store_true", help="no progress bars")

    parser = argparse.ArgumentParser(
        prog="finetune_cnn.py",
        description="CNN phase of runtime + static DRL pruning: pretrain, importance, finetune (paper Sec. 4.1).",
    )
    sub = parser.add_subparsers(dest="stage", required=True, metavar="{pretrain,importance,finetune,algorithm1,method}")
    sub.add_parser("pretrain", parents=[common], help="train the backbone, gates off")
    imp = sub.add_parser("importance", parents=[common],
                         help="train f with u_s = 1, then u_s, f and backbone (keep ratios 1)")
    imp.add_argument("--importance-split", type=unit_interval, default=None,
                     help="fraction of the epochs with u_s held at 1 (default 0.5)")
    ft = sub.add_parser("finetune", parents=[common], help="train CNN, f and u_s under the agents' masks")
    ft.add_argument("--keep", type=fraction, default=None,
                    help="uniform keep ratio in (0, 1] for runtime and static masks when no agents are given (default 0.5)")
    ft.add_argument("--random-keep", type=fraction, default=None, metavar="LOW",
                    help="instead of agents: random runtime keep ratios per input and layer in [LOW, 1] "
                         "(prepares a network for whatever allocation agents will pick)")
    ft.add_argument("--runtime-agent", type=Path, default=None, metavar="PATH",
                    help="frozen runtime agent (a train_agents.py run directory): its deterministic keep ratios")
    ft.add_argument("--static-agent", type=Path, default=None, metavar="PATH",
                    help="frozen static agent (a train_agents.py run directory)")

    a1 = sub.add_parser("algorithm1", help="Algorithm 1: K x (N1 batches of agent training, N2 batches of CNN fine-tuning)")
    _algorithm1_arguments(a1)
    a1.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint after the importance stage")
    method = sub.add_parser("method", help="the whole method on one dataset: pretrain, importance, Algorithm 1")
    _algorithm1_arguments(method)
    method.add_argument("--model", choices=sorted(BACKBONES), default="digitnet")
    method.add_argument("--width", type=positive_float, default=1.0)
    method.add_argument("--warmup-epochs", type=non_negative_int, default=25,
                        help="epochs of fine-tuning under random keep ratios before Algorithm 1 (0: none)")
    return parser


def _algorithm1_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=available_datasets(), default=None, help="default: the checkpoint's, else digits")
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--schedule", default=None,
                   help="K/N1/N2 preset: cifar10, imagenet, fashion-mnist, digits (default: the dataset's)")
    p.add_argument("--iterations", type=positive_int, default=None, help="K")
    p.add_argument("--agent-batches", type=positive_int, default=None, help="N1: batches of agent training per iteration")
    p.add_argument("--cnn-batches", type=positive_int, default=None, help="N2: batches of CNN fine-tuning per iteration")
    p.add_argument("--final-cnn-batches", type=non_negative_int, default=None,
                   help="extra CNN fine-tuning batches after the last iteration (as the paper's last ImageNet round)")
    p.add_argument("--static-episodes", type=positive_int, default=None,
                   help="static episodes per agent batch (the paper's is one)")
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--lr", type=positive_float, default=None, help="CNN learning rate")
    p.add_argument("--budget", type=budget_value, default=0.5,
                   help="sparsity defining the MAC and parameter budgets; a range LOW:HIGH (or a list B1,B2,...) "
                        "trains one runtime agent for every budget in it and fine-tunes the CNN under a mix of them")
    p.add_argument("--budget-mix", type=positive_int, default=4,
                   help="a budget range: groups of each CNN batch, each at its own budget (lowest, highest, drawn; "
                        "default 4)")
    p.add_argument("--eval-budgets", type=fraction, nargs="+", default=None, metavar="B",
                   help="a budget range: the budgets each iteration is evaluated at (default: five evenly spaced)")
    p.add_argument("--tradeoff-rate", type=unit_interval, default=0.5, help="R_r (default 0.5)")
    p.add_argument("--algo", default="recurrent_ppo", help="agent algorithm (default: the paper's recurrent PPO)")
    p.add_argument("--agent-update", choices=("joint", "alternating"), default=None,
                   help="lines 12-15: joint (both agents act in one episode, one reward batch updates both; the "
                        "default for one budget) or alternating (each agent against the other's frozen policy; "
                        "the default and the only choice for a budget range)")
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                   help="environment keywords for both agents' environments, e.g. alpha_budget=30 (or KEY:VALUE)")
    p.add_argument("--agent-preset", default="fast", help="agent hyper-parameters: fast or paper")
    p.add_argument("--n-envs", type=positive_int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", type=device, default="cpu", help="device of the CNN and the environments (cpu, cuda, ...)")
    p.add_argument("--agent-device", type=device, default=None, help="device of the agents' networks (default: --device)")
    p.add_argument("--data-on-device", action="store_true",
                   help="hold the splits as tensors on the device and augment batches there (fast on a GPU)")
    add_threads_option(p)
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="run directory (default runs/algorithm1-<dataset>)")
    add_output_options(p, "continue from where the run stopped (the last finished iteration, or a saved interruption)")
    p.add_argument("--no-progress", action="store_true")


def _run_algorithm1(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The ``algorithm1`` and ``method`` sub-commands."""
    import shlex
    import sys

    from agents.algorithm1 import PRESETS, Algorithm1Config, run_algorithm1

    set_threads(args.threads)
    try:  # typos end here, before anything is created
        env_kwargs = parse_key_values(args.env_kwargs, "--env-kwargs")
        check_keys(env_kwargs, set(env_keywords("RuntimePrune-v0")) | set(env_keywords("StaticPrune-v0")), "--env-kwargs")
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    checkpoint = getattr(args, "checkpoint", None)
    try:
        saved = read_checkpoint(checkpoint) if checkpoint else {}
    except (FileNotFoundError, ValueError) as err:
        parser.error(f"--checkpoint: {err}")
    dataset = args.dataset or saved.get("dataset") or "digits"
    schedule = args.schedule or (dataset if dataset in PRESETS else "digits")
    if schedule not in PRESETS:
        parser.error(f"--schedule must be one of {sorted(PRESETS)}, got {schedule!r}")
    out = args.out or Path("runs") / f"algorithm1-{dataset}"
    refusal = refuse_overwrite(out, kind="dir", markers=ALGORITHM1_FILES, resume=args.resume, overwrite=args.overwrite)
    if refusal:
        parser.error(refusal)
    try:
        from agents.registry import get_spec

        get_spec(args.algo)
    except (ValueError, ImportError, AttributeError, TypeError) as err:
        parser.error(f"--algo: {err}")
    if args.stage == "method":
        shared = dict(dataset=dataset, seed=args.seed, threads=args.threads, device=args.device,
                      data_on_device=args.data_on_device, data_root=args.data_root, progress=not args.no_progress)
        try:
            checkpoint = run_method_stages(out, model=args.model, width=args.width, warmup_epochs=args.warmup_epochs,
                                           resume=args.resume, overwrite=args.overwrite, **shared)
        except UsageError as err:
            parser.error(str(err))
    schedule_values = dict(PRESETS[schedule])
    for key in ("iterations", "agent_batches", "cnn_batches", "final_cnn_batches", "static_episodes", "batch_size", "lr"):
        if getattr(args, key) is not None:
            schedule_values[key] = getattr(args, key)
    try:
        cfg = Algorithm1Config(
            env_kwargs=env_kwargs, checkpoint=str(checkpoint), out=str(out), budget=args.budget,
            tradeoff_rate=args.tradeoff_rate, algo=args.algo, agent_update=args.agent_update, budget_mix=args.budget_mix,
            eval_budgets=args.eval_budgets, preset=args.agent_preset, seed=args.seed, n_envs=args.n_envs,
            device=args.device, agent_device=args.agent_device, data_on_device=args.data_on_device,
            data_root=str(args.data_root) if args.data_root else None, resume=args.resume, progress=not args.no_progress,
            command=" ".join(shlex.quote(a) for a in ["python", "finetune_cnn.py", *sys.argv[1:]]), **schedule_values,
        )
    except ValueError as err:  # --agent-update joint with a range, --eval-budgets outside it
        parser.error(str(err).replace("agent_update=", "--agent-update ").replace("eval_budgets", "--eval-budgets"))
    return run_algorithm1(cfg)


# --------------------------------------------------------------------------- main


def _job_from_args(args: argparse.Namespace) -> StageJob:
    hparams = dict(
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, weight_decay=args.weight_decay,
        lr_decay_every=args.lr_decay_every, lr_decay_factor=args.lr_decay_factor,
        steps_per_epoch=args.steps_per_epoch,
        importance_split=getattr(args, "importance_split", None), keep=getattr(args, "keep", None),
    )
    return StageJob(
        args.stage, checkpoint=args.checkpoint, model=args.model, width=args.width, weights=args.weights,
        dataset=args.dataset, data_root=args.data_root, download=args.download, val_fraction=args.val_fraction,
        split_seed=args.split_seed, hparams=hparams, freeze_bn=args.freeze_bn, tradeoff_rate=args.tradeoff_rate,
        seed=args.seed, device=args.device,
        num_workers=args.num_workers, data_on_device=args.data_on_device, threads=args.threads, out=args.out,
        resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress,
        random_keep=getattr(args, "random_keep", None),
        runtime_agent=getattr(args, "runtime_agent", None), static_agent=getattr(args, "static_agent", None),
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run one sub-command; returns ``{"history", "test", "out"}`` for a stage (for tests and scripts)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.stage in ("algorithm1", "method"):
            return _run_algorithm1(args, parser)
        return run_stage(_job_from_args(args))
    except (UsageError, CheckpointError, FileNotFoundError) as err:  # a user's file or value: exit 2, one line
        parser.error(str(err))
    except KeyboardInterrupt:  # the stage or iteration in progress saved itself first
        sys.exit(130)


if __name__ == "__main__":
    main()
