"""The CNN phase's stages as jobs: one stage from a checkpoint to a checkpoint, and the stages before Algorithm 1.

What ``finetune_cnn.py``'s sub-commands run (:mod:`prune_env.cnn` is the training itself, paper
Sec. 4.1): :class:`StageJob` describes one stage (``pretrain``, ``importance`` or ``finetune``),
:func:`run_stage` runs it, :func:`run_method_stages` runs pretrain, importance and a warm-up in
a row. ``finetune`` under frozen agents (``runtime_agent`` / ``static_agent``) loads them here,
which is why this lives on the agents' side.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from agents.algorithm1 import agent_ratio_fn
from agents.saved import agent_policy, load_agent
from prune_env.checkpoint import atomic_save, load_checkpoint, read_checkpoint
from prune_env.cli import refuse_overwrite, set_threads
from prune_env.cnn import STAGES, evaluate, random_ratio_fn, stage_hparams, train_stage, uniform_ratio_fn
from prune_env.data import load_dataset
from prune_env.distributed import cleanup_distributed, init_distributed
from prune_env.envs.task import PruningTask, TaskConfig
from prune_env.errors import UsageError  # inputs of a stage that do not fit together; the message names the option
from prune_env.nets.backbones import build_net
from prune_env.nets.gated import GatedNet
from prune_env.nets.models import build_model, is_backbone
from prune_env.own_data import dataset_label
from prune_env.policies import as_policy


def _agent_ratio_fn(job: StageJob, checkpoint: Path):
    """The frozen agents' deterministic keep ratios for ``finetune --runtime-agent/--static-agent``."""
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
    if is_backbone(job.model) and job.model is not None and job.model != config["name"]:
        raise UsageError(f"--model {job.model} conflicts with --checkpoint, which holds a {config['name']}")
    if job.width is not None and float(job.width) != float(config.get("width", 1.0)):
        raise UsageError(f"--width {job.width} conflicts with --checkpoint, whose width is {config.get('width')}")
    try:  # a converted network is rebuilt only by the builder --model names
        return load_checkpoint(job.checkpoint, models=() if is_backbone(job.model) else (job.model,))
    except ValueError as err:
        raise UsageError(f"--checkpoint: {err}") from None


def check_weights_file(path: Path) -> None:
    """``--weights`` read as untrusted input (``torch.load(weights_only=True)``): a state dict of finite
    tensors, else a UsageError naming the file."""
    from prune_env.checkpoint import CheckpointError, load_file

    try:
        state = load_file(path, kind="--weights")
    except (CheckpointError, FileNotFoundError) as err:
        raise UsageError(str(err)) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"--weights {str(path)!r}: not a torchvision state dict (a dict of tensors)")
    bad = next((k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if bad is not None:
        raise UsageError(f"--weights {str(path)!r}: tensor {bad!r} holds NaN or inf")


def _fits(config: dict) -> tuple[Any, Any]:
    """``(num_classes, in_channels)`` a checkpoint's network was built for."""
    if config.get("name") == "gated":
        return config.get("kwargs", {}).get("num_classes"), (config.get("input_shape") or [None])[0]
    return config.get("num_classes"), config.get("in_channels")


def _fresh_network(job: StageJob, num_classes: int, input_shape: tuple[int, int, int]) -> GatedNet:
    if not is_backbone(job.model):  # "module:function": the converter gates what the builder returns
        try:
            return build_model(job.model, num_classes=num_classes, input_shape=input_shape, width=job.width)
        except ValueError as err:  # ConversionError is a ValueError
            raise UsageError(f"--model {job.model}: {err}") from None
    kwargs: dict[str, Any] = dict(num_classes=num_classes, in_channels=input_shape[0], width=job.width or 1.0)
    if job.weights is not None:
        check_weights_file(job.weights)
        kwargs["weights"] = job.weights
    try:
        return build_net(job.model or "digitnet", **kwargs)
    except (ValueError, RuntimeError, FileNotFoundError) as err:  # RuntimeError: a state dict of another network
        raise UsageError(f"--weights {str(job.weights)!r}: {str(err).splitlines()[0]}" if job.weights is not None
                         else str(err)) from None


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
            net = _fresh_network(job, splits.num_classes, tuple(splits.input_shape))
        elif _fits(net.config) != (splits.num_classes, splits.input_shape[0]):
            raise UsageError(
                f"--checkpoint's network ({net.config.get('in_channels')} input channels, {net.config.get('num_classes')} "
                f"classes) does not fit dataset {dataset!r} ({splits.input_shape[0]} channels, {splits.num_classes} classes)"
            )
        model_name = net.config["name"]
        out = job.out or Path("runs") / f"{model_name}_{Path(str(dataset)).name}_{stage}.pt"
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
            log(f"{stage}: {model_name} (width {net.config.get('width', 1.0)}) on {dataset_label(dataset)}, "
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
                f"done: {stage} {model_name} on {dataset_label(dataset)}: {len(history)} epochs, val_acc {val:.4f}, "
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


__all__ = ["StageJob", "UsageError", "run_method_stages", "run_stage"]
