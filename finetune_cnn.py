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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from prune_env.checkpoint import atomic_save, load_checkpoint, read_checkpoint
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
from prune_env.cnn import STAGES, evaluate, random_ratio_fn, stage_hparams, train_stage, uniform_ratio_fn
from prune_env.data import available_datasets, load_dataset
from prune_env.distributed import cleanup_distributed, init_distributed
from prune_env.nets.backbones import BACKBONES, build_net
from prune_env.nets.gated import GatedNet

# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (sub-commands ``pretrain``, ``importance``, ``finetune``)."""
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("network and data")
    g.add_argument("--checkpoint", type=Path, default=None,
                   help="input checkpoint (required for importance/finetune unless --model builds a fresh net; "
                        "optional for pretrain: continue from it)")
    g.add_argument("--model", choices=sorted(BACKBONES), default=None,
                   help="backbone for a fresh network (default digitnet; taken from --checkpoint when given)")
    g.add_argument("--width", type=positive_float, default=None, help="width multiplier of a fresh network (default 1.0)")
    g.add_argument("--weights", type=Path, default=None, help="torchvision state dict for a fresh resnet18")
    g.add_argument("--dataset", choices=available_datasets(), default=None,
                   help="dataset (default: the checkpoint's, else digits)")
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


def _agent_ratio_fn(job: StageJob, checkpoint: Path):
    """The frozen agents' deterministic keep ratios for ``finetune --runtime-agent/--static-agent``."""
    from agents.algorithm1 import agent_ratio_fn
    from agents.training import agent_policy, load_agent
    from prune_env.envs.task import PruningTask, TaskConfig
    from prune_env.policies import as_policy

    env_kwargs: dict = {}
    runtime, static = as_policy(None), None
    if job.runtime_agent is not None:
        model, meta = load_agent(job.runtime_agent)
        runtime = agent_policy(model, meta)
        env_kwargs = {k: v for k, v in meta.get("env_kwargs", {}).items() if k in TaskConfig.__dataclass_fields__}
    task = PruningTask(TaskConfig(**{**env_kwargs, "checkpoint": str(checkpoint)}))
    if job.static_agent is not None:
        model, meta = load_agent(job.static_agent)
        static = agent_policy(model, meta)
    return agent_ratio_fn(task, runtime, task.static_ratios_of(static))


# --------------------------------------------------------------------------- one stage


class UsageError(ValueError):
    """Inputs of a stage that do not fit together; the message names the command-line option at fault."""


@dataclass
class StageJob:
    """One stage of the CNN phase, from a checkpoint (or a fresh network) to a checkpoint.

    What the ``pretrain`` / ``importance`` / ``finetune`` sub-commands build from their arguments
    (the fields are the options of the same names) and what ``method`` builds directly.
    ``hparams`` overrides the dataset's preset (see :func:`prune_env.cnn.stage_hparams`; None
    values fall back to it). ``random_keep`` or the agents give ``finetune``'s keep ratios.
    """

    stage: str
    checkpoint: Path | None = None
    model: str | None = None
    width: float | None = None
    weights: Path | None = None
    dataset: str | None = None
    data_root: Path | None = None
    download: bool = False
    val_fraction: float = 0.1
    split_seed: int = 0
    hparams: dict[str, Any] = field(default_factory=dict)
    freeze_bn: bool = False
    tradeoff_rate: float | None = None
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    data_on_device: bool = False
    threads: int | None = None
    out: Path | None = None
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    random_keep: float | None = None
    runtime_agent: Path | None = None
    static_agent: Path | None = None


def _load_input(job: StageJob) -> tuple[GatedNet | None, dict]:
    """The ``--checkpoint`` network and its checkpoint dict, or ``(None, {})`` for a fresh one."""
    if job.checkpoint is None:
        if job.stage != "pretrain" and job.model is None:
            raise UsageError(f"{job.stage} needs --checkpoint (the previous stage's output) or --model for a fresh network")
        if job.weights is not None and (job.model or "digitnet") != "resnet18":
            raise UsageError("--weights loads a torchvision state dict and applies to --model resnet18 only")
        return None, {}
    if job.weights is not None:
        raise UsageError("--weights applies to a fresh resnet18, not together with --checkpoint")
    try:
        config = read_checkpoint(job.checkpoint)["config"]
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(f"--checkpoint: {err}") from None
    if job.model is not None and job.model != config["name"]:
        raise UsageError(f"--model {job.model} conflicts with --checkpoint, which holds a {config['name']}")
    if job.width is not None and float(job.width) != float(config.get("width", 1.0)):
        raise UsageError(f"--width {job.width} conflicts with --checkpoint, whose width is {config.get('width')}")
    return load_checkpoint(job.checkpoint)


def _fresh_network(job: StageJob, num_classes: int, in_channels: int) -> GatedNet:
    kwargs: dict[str, Any] = dict(num_classes=num_classes, in_channels=in_channels, width=job.width or 1.0)
    if job.weights is not None:
        kwargs["weights"] = job.weights
    try:
        return build_net(job.model or "digitnet", **kwargs)
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(str(err)) from None


def run_stage(job: StageJob) -> dict[str, Any]:
    """Run one stage: load (or build) the network and the data, train, test; returns ``{"history", "test", "out"}``.

    Prints one line per epoch and a summary with the test accuracy (rank 0), and records the
    test figures in the output checkpoint. Under ``torchrun`` the stage runs data-parallel.

    Raises:
        UsageError: inputs that do not fit together (the message names the option).
    """
    stage = job.stage
    assert stage in STAGES
    if job.random_keep is not None and (job.runtime_agent is not None or job.static_agent is not None):
        raise UsageError("--random-keep replaces the agents; give one or the other")
    net, payload = _load_input(job)
    dataset = job.dataset or payload.get("dataset") or "digits"
    hp = stage_hparams(dataset, stage, **job.hparams)
    try:
        splits = load_dataset(dataset, job.data_root, val_fraction=job.val_fraction, seed=job.split_seed,
                              download=job.download)
    except (ValueError, FileNotFoundError) as err:  # DatasetNotFoundError is a FileNotFoundError
        raise UsageError(f"--dataset {dataset}: {err}") from None

    set_threads(job.threads)  # 0 or None: torch's own choice
    owns_group = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    ctx, device = init_distributed(job.device)
    try:
        torch.manual_seed(job.seed)
        if net is None:
            net = _fresh_network(job, splits.num_classes, splits.input_shape[0])
        elif (net.config.get("num_classes"), net.config.get("in_channels")) != (splits.num_classes, splits.input_shape[0]):
            raise UsageError(
                f"--checkpoint's network ({net.config.get('in_channels')} input channels, {net.config.get('num_classes')} "
                f"classes) does not fit dataset {dataset!r} ({splits.input_shape[0]} channels, {splits.num_classes} classes)"
            )
        model_name = net.config["name"]
        out = job.out or Path("runs") / f"{model_name}_{dataset}_{stage}.pt"
        if job.checkpoint is not None and Path(out).resolve() == Path(job.checkpoint).resolve():
            raise UsageError("--out must differ from --checkpoint (the input would be overwritten every epoch)")
        refusal = refuse_overwrite(out, kind="file", resume=job.resume, overwrite=job.overwrite)
        if refusal:
            raise UsageError(refusal)

        extra = {
            "parent": str(job.checkpoint) if job.checkpoint is not None else None,
            "data": {"val_fraction": job.val_fraction, "split_seed": job.split_seed,
                     "root": str(job.data_root) if job.data_root else None},
        }
        log = print if ctx.is_main else None
        if log:
            log(f"{stage}: {model_name} (width {net.config.get('width', 1.0)}) on {dataset}, "
                f"{', '.join(f'{k}={v}' for k, v in hp.items() if v is not None)}, device {device}, "
                f"{ctx.world_size} process(es)")
        t0 = time.perf_counter()
        stage_kwargs = {k: v for k, v in hp.items() if v is not None}
        agents_given = stage == "finetune" and (job.runtime_agent is not None or job.static_agent is not None)
        agent_fn = _agent_ratio_fn(job, job.checkpoint) if agents_given else None
        if job.random_keep is not None:
            agent_fn = random_ratio_fn(job.random_keep, 1.0, seed=job.seed)
        history = train_stage(
            net, stage, splits, **stage_kwargs, ratio_fn=agent_fn,
            device=device, seed=job.seed, progress=job.progress, tradeoff_rate=job.tradeoff_rate,
            freeze_bn=job.freeze_bn, checkpoint_path=out, resume=job.resume, checkpoint_extra=extra,
            num_workers=job.num_workers, data_on_device=job.data_on_device, log=log,
        )
        seconds = time.perf_counter() - t0
        ratio_fn = (agent_fn or uniform_ratio_fn(hp["keep"])) if stage == "finetune" else None
        test = evaluate(net, splits.test, device=device, ratio_fn=ratio_fn, num_workers=job.num_workers,
                        data_on_device=job.data_on_device)
        if ctx.is_main:
            if Path(out).is_file():  # record the test figures in the checkpoint too
                final = read_checkpoint(out)
                final["test"] = {"accuracy": test["accuracy"], "loss": test["loss"], "kept_fraction": test["kept_fraction"]}
                atomic_save(final, out)
            val = history[-1]["val_acc"] if history else float("nan")
            kept = f" kept {sum(test['kept_fraction']) / len(test['kept_fraction']):.3f}" if stage == "finetune" else ""
            print(
                f"done: {stage} {model_name} on {dataset}: {len(history)} epochs, val_acc {val:.4f}, "
                f"test_acc {test['accuracy']:.4f} (loss {test['loss']:.4f}{kept}), {seconds:.1f}s -> {out}"
            )
        return {"history": history, "test": test, "out": out}
    finally:
        if owns_group:
            cleanup_distributed()


def _completed(path: Path) -> bool:
    return path.is_file() and bool(read_checkpoint(path).get("completed"))


def run_method_stages(out: Path, *, model: str, width: float, warmup_epochs: int, resume: bool, overwrite: bool = False,
                      **shared: Any) -> Path:
    """The CNN stages before Algorithm 1, into ``out``: pretrain, importance and a warm-up; returns the last checkpoint.

    ``shared`` holds the :class:`StageJob` fields common to the three (dataset, seed, device...).
    With ``resume`` a stage whose checkpoint is complete is skipped and an interrupted one continues;
    ``overwrite`` lets the stages replace earlier checkpoints.
    """
    shared = {**shared, "resume": resume, "overwrite": overwrite}
    out.mkdir(parents=True, exist_ok=True)
    pre, imp, warm = out / "pretrain.pt", out / "importance.pt", out / "warmup.pt"
    if not (resume and _completed(pre)):
        run_stage(StageJob("pretrain", model=model, width=width, out=pre, **shared))
    if not (resume and _completed(imp)):
        run_stage(StageJob("importance", checkpoint=pre, out=imp, **shared))
    if warmup_epochs == 0:
        return imp
    # our addition to the schedule: before any agent exists, fine-tune under random keep ratios,
    # so that the agents' first rewards tell allocations apart (an untouched network answers
    # every pruned allocation with chance-level loss, and the agents then drift to alpha)
    if not (resume and _completed(warm)):
        run_stage(StageJob("finetune", checkpoint=imp, random_keep=0.2, hparams={"epochs": warmup_epochs},
                           tradeoff_rate=1.0, out=warm, **shared))
    return warm


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
    except UsageError as err:
        parser.error(str(err))
    except KeyboardInterrupt:  # the stage or iteration in progress saved itself first
        sys.exit(130)


if __name__ == "__main__":
    main()
