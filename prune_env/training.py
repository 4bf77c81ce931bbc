"""The CNN phase of the method: pre-training, importance learning and fine-tuning under masks.

The paper (Sec. 4.1 and Algorithm 1; DESIGN.md, "Training schedule") trains the gated CNN in
these stages, each a call of :func:`train_stage`:

``pretrain``
    Algorithm 1's input, "a pretrained backbone CNN": the gates are off
    (``gating=False``) and the backbone is trained with cross entropy.
``importance``
    Algorithm 1 lines 1-7 / Sec. 4.1, two sub-steps. First (*hold_static*) the runtime
    importance predictor ``f`` is added and trained jointly with the backbone while every
    static importance ``u_s`` is held at 1 and ``d_r = 1``. Then (*free_static*) ``u_s`` is
    freed and ``u_s``, ``f`` and the backbone are trained with ``d_s = d_r = 1``. The stage's
    epochs are split between the two (``importance_split``, half each by default).
``finetune``
    Algorithm 1 lines 16-19: the agents are frozen and give the keep ratios; the CNN, ``f``
    and ``u_s`` are trained with cross entropy under the resulting hard masks (gradients flow
    through the kept channels and through ``u_r * u_s``, Eq. 2 and 6). The keep ratios come
    from ``ratio_fn(net, images) -> (runtime (B, L) tensor, static (L,) list)``; by default
    (until trained agents are wired in) a uniform ``keep`` for both.

Hyper-parameters (:data:`PRESETS`): batch 128 and Adam in every preset (paper Sec. 4.1,
rebuttal); learning rate 1e-3 on CIFAR-10 and 1e-4 on ImageNet (rebuttal) divided by 10 after
a number of iterations (Sec. 4.1 says "after 15 millions iterations"; we read that as 15 M
*images*, i.e. 117,188 batches of 128, which falls inside the final 200,000-batch fine-tune;
``lr_decay_every`` overrides it). ``digits`` and ``fashion-mnist`` have fast defaults of our
choosing. Every value can be overridden.

Distributed data parallel: under ``torchrun`` (``RANK`` / ``WORLD_SIZE`` set) the process
group is initialised (gloo on CPU, NCCL on CUDA), the network is wrapped in
``DistributedDataParallel`` and every rank reads its shard through a ``DistributedSampler``;
only rank 0 prints and writes checkpoints. ``batch_size`` is the *global* batch, split evenly
over the ranks. The data order does not depend on the number of processes (a single process
uses the same sampler with one replica), so N processes see the same global batches as one
and, DDP averaging the per-rank mean-loss gradients, take the same steps, with two
exceptions inherent to data parallelism: BatchNorm in train mode normalises with per-rank
statistics (use ``freeze_bn=True`` to keep BN in eval mode, or SyncBatchNorm on CUDA, which
PyTorch does not support on CPU), and dropout draws different noise on every rank. The last,
partial batch of an epoch can also differ (the sampler pads the shards to equal length).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm.auto import tqdm

from prune_env.checkpoint import read_checkpoint, save_checkpoint
from prune_env.nets.gated import GatedNet

if TYPE_CHECKING:
    from prune_env.data import DatasetSplits

__all__ = [
    "STAGES",
    "PRESETS",
    "RatioFn",
    "DistContext",
    "stage_hparams",
    "uniform_ratio_fn",
    "resolve_device",
    "init_distributed",
    "cleanup_distributed",
    "train_stage",
    "evaluate",
]

#: The CNN training stages, in the order they are run.
STAGES: tuple[str, ...] = ("pretrain", "importance", "finetune")

#: ``ratio_fn(net, images) -> (runtime keep ratios (B, L) tensor, static keep ratios (L,) list)``.
RatioFn = Callable[[GatedNet, Tensor], tuple[Tensor, Sequence[float]]]

#: Hyper-parameters per dataset. Top-level values apply to every stage; ``stages`` holds
#: per-stage overrides (at least the number of epochs). Keys: ``batch_size`` (global batch),
#: ``lr`` (Adam), ``weight_decay``, ``lr_decay_every`` (iterations between /``lr_decay_factor``
#: steps, None = constant), ``importance_split`` (fraction of the importance epochs spent with
#: ``u_s`` held at 1), ``steps_per_epoch`` (cap on batches per epoch, None = the whole split),
#: ``keep`` (uniform keep ratio of ``finetune`` while no agents are given).
#: What every preset shares unless it says otherwise: Adam's batch and schedule knobs (paper Sec. 4.1).
_PRESET_BASE: dict[str, Any] = {
    "batch_size": 128,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "lr_decay_every": None,
    "lr_decay_factor": 0.1,
    "importance_split": 0.5,
    "steps_per_epoch": None,
    "keep": 0.5,
}

PRESETS: dict[str, dict[str, Any]] = {
    # Paper values (Sec. 4.1, rebuttal): batch 128, Adam, lr 1e-3; a fine-tune round is
    # N2 = 780 batches (two passes over the 50,000 training images). The paper starts from a
    # pretrained backbone and does not say how it was trained; 60 epochs of Adam is our choice,
    # as is the importance length.
    "cifar10": {
        **_PRESET_BASE,
        "stages": {"pretrain": {"epochs": 60}, "importance": {"epochs": 10}, "finetune": {"epochs": 2}},
    },
    # Rebuttal: lr 1e-4, batch 128; a fine-tune round is N2 = 600 batches (the last one
    # 200,000: override steps_per_epoch). Pre-training is normally replaced by torchvision
    # weights (``build_net("resnet18", weights=...)``); the numbers below are for completeness.
    "imagenet": {
        **_PRESET_BASE,
        "lr": 1e-4,
        "lr_decay_every": 117_188,  # 15 M images / 128 (Sec. 4.1, see the module docstring)
        "stages": {
            "pretrain": {"epochs": 90},
            "importance": {"epochs": 2},
            "finetune": {"epochs": 1, "steps_per_epoch": 600},
        },
    },
    # Fast defaults (ours): digitnet pre-trains in a few seconds on two CPU cores.
    "digits": {
        **_PRESET_BASE,
        "batch_size": 64,
        "lr": 3e-3,
        # importance at 1e-3: at 3e-3 the gates' first epochs cost a few points of accuracy.
        "stages": {
            "pretrain": {"epochs": 15},
            "importance": {"epochs": 6, "lr": 1e-3},
            "finetune": {"epochs": 6},
        },
    },
    # Seeded random images (prune_env.data "synthetic"), for tests and benchmarks: fast values.
    "synthetic": {
        **_PRESET_BASE,
        "batch_size": 64,
        "lr": 3e-3,
        "stages": {"pretrain": {"epochs": 5}, "importance": {"epochs": 2, "lr": 1e-3}, "finetune": {"epochs": 2}},
    },
    # Datasets without a preset of their own: the paper's CIFAR-10 values, shorter pre-training.
    "default": {
        **_PRESET_BASE,
        "stages": {"pretrain": {"epochs": 20}, "importance": {"epochs": 4}, "finetune": {"epochs": 2}},
    },
    "fashion-mnist": {
        **_PRESET_BASE,
        "stages": {"pretrain": {"epochs": 10}, "importance": {"epochs": 4}, "finetune": {"epochs": 2}},
    },
}

_HPARAM_KEYS = (
    "epochs", "batch_size", "lr", "weight_decay", "lr_decay_every", "lr_decay_factor",
    "importance_split", "steps_per_epoch", "keep",
)


def stage_hparams(dataset: str, stage: str, **overrides: Any) -> dict[str, Any]:
    """The flat hyper-parameters of ``stage`` on ``dataset``: the preset, then ``overrides``.

    Overrides whose value is None are ignored (so command-line defaults of None fall back to
    the preset). Returns a dict with the keys ``epochs, batch_size, lr, weight_decay,
    lr_decay_every, lr_decay_factor, importance_split, steps_per_epoch, keep``; the stage-specific
    ``importance_split`` (importance) and ``keep`` (finetune) are None for the other stages.
    ``stage_hparams(...)`` minus its None values can be passed to :func:`train_stage` as is.

    A dataset without a preset of its own gets ``PRESETS["default"]``.

    Raises:
        ValueError: unknown stage or override key.
    """
    _check_stage(stage)
    unknown = set(overrides) - set(_HPARAM_KEYS)
    if unknown:
        raise ValueError(f"unknown hyper-parameter(s) {sorted(unknown)}; accepted: {list(_HPARAM_KEYS)}")
    preset = PRESETS.get(dataset, PRESETS["default"])
    merged = {k: v for k, v in preset.items() if k != "stages"}
    merged.update(preset["stages"][stage])
    merged.update({k: v for k, v in overrides.items() if v is not None})
    if stage != "importance":
        merged["importance_split"] = None
    if stage != "finetune":
        merged["keep"] = None
    return {k: merged.get(k) for k in _HPARAM_KEYS}


def uniform_ratio_fn(keep: float) -> RatioFn:
    """A ``ratio_fn`` giving the same keep ratio ``keep`` to every layer, runtime and static.

    Stands in for the frozen agents of Algorithm 1 lines 16-19 until trained agents are wired in.
    """
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep}")

    def ratio_fn(net: GatedNet, images: Tensor) -> tuple[Tensor, list[float]]:
        runtime = torch.full((images.shape[0], net.num_layers), float(keep), device=images.device)
        return runtime, [float(keep)] * net.num_layers

    return ratio_fn


def random_ratio_fn(low: float = 0.2, high: float = 1.0, static: float = 1.0, seed: int = 0) -> RatioFn:
    """A ``ratio_fn`` drawing every sample's runtime keep ratio per layer uniformly in ``[low, high]``.

    Fine-tuning under it makes the network work for whatever allocation an agent picks later
    (the shipped default checkpoint is prepared this way before any agent exists).
    """
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"need 0 < low <= high <= 1, got low={low}, high={high}")
    generator = torch.Generator().manual_seed(seed)

    def ratio_fn(net: GatedNet, images: Tensor) -> tuple[Tensor, list[float]]:
        u = torch.rand(images.shape[0], net.num_layers, generator=generator)
        return (low + (high - low) * u).to(images.device), [float(static)] * net.num_layers

    return ratio_fn


# --------------------------------------------------------------------------- devices, DDP


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly one-process) data-parallel job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) picks CUDA when available, else CPU; anything else is passed to torch."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available")
    return dev


def init_distributed(device: str | torch.device | None = "auto") -> tuple[DistContext, torch.device]:
    """Join the data-parallel job this process belongs to, if any.

    * a process group already initialised (e.g. by ``torch.multiprocessing.spawn`` workers)
      is used as it is;
    * else, when ``WORLD_SIZE > 1`` (set by ``torchrun``), the group is initialised from the
      environment: NCCL when the device is CUDA (each rank on ``cuda:LOCAL_RANK``), else gloo;
    * else this is a single process.

    Returns the context and the device this rank computes on. Idempotent.
    """
    dev = resolve_device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if dist.is_available() and dist.is_initialized():
        ctx = DistContext(dist.get_rank(), dist.get_world_size(), local_rank)
    elif int(os.environ.get("WORLD_SIZE", 1)) > 1:
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available in this build")
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, init_method="env://")
        ctx = DistContext(dist.get_rank(), dist.get_world_size(), local_rank)
    else:
        ctx = DistContext()
    if ctx.distributed and dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    return ctx, dev


def cleanup_distributed() -> None:
    """Destroy the default process group if one is initialised."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _all_reduce_sum(values: list[float], ctx: DistContext, device: torch.device) -> list[float]:
    if not ctx.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def _barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


# --------------------------------------------------------------------------- evaluation


def _layer_ratios(ratios: Any, num_layers: int) -> Any:
    """Validate dataset-wide ratios: a scalar or one value per layer."""
    if isinstance(ratios, (int, float)):
        return float(ratios)
    r = torch.as_tensor(ratios)
    if r.dim() == 0:
        return float(r)
    if r.shape != (num_layers,):
        raise ValueError(f"keep ratios must be a scalar or one per layer ({num_layers},), got shape {tuple(r.shape)}")
    return [float(v) for v in r]


def _ratios_from(ratio_fn: RatioFn, net: GatedNet, images: Tensor) -> tuple[Tensor, Sequence[float]]:
    """Ask ``ratio_fn`` for a batch's keep ratios, with the network in eval mode and no grad.

    Eval mode: the frozen agents observe the features they were trained on, and BN running
    statistics are not updated by the extra pass. The previous mode is restored.
    """
    modes = [m.training for m in net.modules()]
    net.eval()
    try:
        with torch.no_grad():
            runtime, static = ratio_fn(net, images)
    finally:
        for m, mode in zip(net.modules(), modes):
            m.training = mode
    runtime = torch.as_tensor(runtime, dtype=torch.float32, device=images.device)
    if runtime.dim() == 2 and runtime.shape != (images.shape[0], net.num_layers):
        raise ValueError(f"ratio_fn: runtime keep ratios of shape {tuple(runtime.shape)}, expected ({images.shape[0]}, {net.num_layers})")
    return runtime, static


@torch.no_grad()
def evaluate(
    net: GatedNet,
    dataset: Dataset,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    runtime_keep_ratios: Any = 1.0,
    static_keep_ratios: Any = 1.0,
    ratio_fn: RatioFn | None = None,
    distributed: bool | None = None,
    num_workers: int = 0,
    data_on_device: bool = False,
) -> dict[str, Any]:
    """Accuracy and mean cross entropy of ``net`` on ``dataset`` in eval mode.

    The gates act as ``net.gate_config`` says. Keep ratios are a scalar or one per layer for
    the whole dataset, or, when ``ratio_fn`` is given, asked of it for every batch (as in
    :func:`train_stage`'s ``finetune``). Under an initialised process group (or
    ``distributed=True``) every rank evaluates a disjoint shard and the sums are all-reduced,
    so every rank returns the figures of the whole dataset.

    Returns:
        ``{"accuracy", "loss", "samples", "kept_fraction"}``; ``kept_fraction`` is, per
        prunable layer, the mean fraction of output channels kept (1.0 with the gates off).
    """
    dev = torch.device(device)
    if distributed is None:
        distributed = dist.is_available() and dist.is_initialized()
    ctx = DistContext(dist.get_rank(), dist.get_world_size()) if distributed else DistContext()
    if ctx.distributed:
        dataset = Subset(dataset, list(range(ctx.rank, len(dataset), ctx.world_size)))  # type: ignore[arg-type]
    if ratio_fn is None:
        runtime_keep_ratios = _layer_ratios(runtime_keep_ratios, net.num_layers)
        static_keep_ratios = _layer_ratios(static_keep_ratios, net.num_layers)
    channels = torch.tensor(net.channels, dtype=torch.float64)
    if data_on_device:
        loader = DeviceBatches(dataset, range(len(dataset)), batch_size, dev)  # type: ignore[arg-type]
    else:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    was_training = net.training
    net.eval()
    loss_sum, correct, count = 0.0, 0.0, 0.0
    kept_sum = torch.zeros(net.num_layers, dtype=torch.float64)
    try:
        for images, labels in loader:
            images, labels = images.to(dev), torch.as_tensor(labels).to(dev)
            if ratio_fn is not None:
                runtime_keep_ratios, static_keep_ratios = _ratios_from(ratio_fn, net, images)
            state = net.run(images, runtime_keep_ratios, static_keep_ratios)
            logits = state.logits
            loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
            correct += float((logits.argmax(dim=1) == labels).sum())
            count += labels.shape[0]
            kept_sum += state.kept.double().cpu().sum(dim=0) / channels
    finally:
        net.train(was_training)
    sums = _all_reduce_sum([loss_sum, correct, count, *kept_sum.tolist()], ctx, dev)
    loss_sum, correct, count, kept = sums[0], sums[1], sums[2], sums[3:]
    if count == 0:
        raise ValueError("evaluate: the dataset is empty")
    return {
        "accuracy": correct / count,
        "loss": loss_sum / count,
        "samples": int(count),
        "kept_fraction": [k / count for k in kept],
    }


def epochs_for_batches(batches: int, train_size: int, batch_size: int, world_size: int = 1) -> tuple[int, int]:
    """``(epochs, steps_per_epoch)`` for :func:`train_stage` to run ``batches`` optimizer steps.

    One epoch holds at most ``ceil(train_size / batch_size)`` batches (``steps_per_epoch`` only
    caps it), so a schedule longer than an epoch is spread over several, as evenly as possible
    (``epochs * steps_per_epoch`` may exceed ``batches`` by less than ``epochs``).
    """
    if batches < 1:
        raise ValueError(f"batches must be >= 1, got {batches}")
    per_epoch = math.ceil(math.ceil(train_size / world_size) / (batch_size // world_size))
    epochs = math.ceil(batches / per_epoch)
    return epochs, math.ceil(batches / epochs)


# --------------------------------------------------------------------------- data on the device


class DeviceBatches:
    """Batches of a split held as one tensor on the device, in the order of an index sampler.

    Yields ``(images, labels)`` like a ``DataLoader`` over the same sampler would (the same
    images in the same order, without the last partial batch dropped), with ``augment``
    applied to every batch on the device, its randomness seeded by :meth:`seed`.
    """

    def __init__(self, dataset: Dataset, sampler: Any, batch_size: int, device: torch.device,
                 augment: Callable[..., Tensor] | None = None) -> None:
        from prune_env.data import materialize

        self.images, self.labels = materialize(dataset, device)
        self.sampler, self.batch_size, self.augment = sampler, batch_size, augment
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(0)

    def seed(self, seed: int) -> None:
        """Reseed the augmentation (once per epoch)."""
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self):
        order = torch.as_tensor(list(iter(self.sampler)), dtype=torch.long).to(self.images.device)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            images = self.images[idx]
            if self.augment is not None:
                images = self.augment(images, self.generator)
            yield images, self.labels[idx]


# --------------------------------------------------------------------------- training


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")


def _importance_hold_epochs(epochs: int, split: float) -> int:
    """How many of the importance epochs hold ``u_s`` at 1 (sub-step 1, Algorithm 1 lines 1-3).

    ``floor(split * epochs)``, but at least one epoch of each sub-step when ``epochs >= 2``
    and ``0 < split < 1``.
    """
    if not 0.0 <= split <= 1.0:
        raise ValueError(f"importance_split must be in [0, 1], got {split}")
    n = int(math.floor(split * epochs + 1e-9))
    if epochs >= 2 and 0.0 < split < 1.0:
        n = min(max(n, 1), epochs - 1)
    return n


def _phase(stage: str, epoch: int, hold_epochs: int) -> str:
    """The gate mode of an epoch: ``pretrain``, ``hold_static``, ``free_static`` or ``finetune``."""
    if stage == "importance":
        return "hold_static" if epoch < hold_epochs else "free_static"
    return stage


_PHASE_GATES: dict[str, dict[str, bool]] = {
    "pretrain": {"gating": False},
    "hold_static": {"gating": True, "hold_static": True},
    "free_static": {"gating": True, "hold_static": False},
    "finetune": {"gating": True, "hold_static": False},
}


def _configure_phase(net: GatedNet, phase: str) -> list[nn.Parameter]:
    """Set the gate mode of ``phase`` and mark which parameters train; returns them.

    * ``pretrain``: gates off, backbone only;
    * ``hold_static`` (Sec. 4.1, first step): gates on, ``u_s`` held at 1: backbone + ``f``;
    * ``free_static`` (second step) and ``finetune``: backbone, ``f`` and ``u_s``.

    Parameters that do not train get ``requires_grad = False`` so that DDP does not wait for
    their gradients.
    """
    net.configure(**_PHASE_GATES[phase])
    if phase == "pretrain":
        trainable = list(net.backbone_parameters())
    elif phase == "hold_static":
        statics = {id(g.static_importance) for g in net.layers}
        trainable = [p for p in net.parameters() if id(p) not in statics]
    else:
        trainable = list(net.parameters())
    ids = {id(p) for p in trainable}
    for p in net.parameters():
        p.requires_grad_(id(p) in ids)
    return trainable


def _stage_parameters(net: GatedNet, stage: str) -> list[nn.Parameter]:
    """Every parameter the stage's optimizer holds (one optimizer for the whole stage)."""
    return list(net.backbone_parameters()) if stage == "pretrain" else list(net.parameters())


def _set_train_mode(net: nn.Module, freeze_bn: bool) -> None:
    net.train()
    if freeze_bn:
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Seed of the torch RNG for one epoch of one rank (dropout), so resuming replays it."""
    return (int(seed) * 1_000_003 + epoch * 7_919 + rank * 104_729) % (2**63)


def _check_hparams(epochs: int, lr: float, batch_size: int, weight_decay: float, steps_per_epoch: int | None,
                   lr_decay_every: int | None, lr_decay_factor: float, keep: float) -> None:
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if steps_per_epoch is not None and steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1 or None, got {steps_per_epoch}")
    if lr_decay_every is not None and lr_decay_every < 1:
        raise ValueError(f"lr_decay_every must be >= 1 or None, got {lr_decay_every}")
    if not 0 < lr_decay_factor <= 1:
        raise ValueError(f"lr_decay_factor must be in (0, 1], got {lr_decay_factor}")
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")


def train_stage(
    net: GatedNet,
    stage: str,
    splits: DatasetSplits,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float = 0.0,
    device: str | torch.device = "auto",
    seed: int = 0,
    progress: bool = True,
    ratio_fn: RatioFn | None = None,
    keep: float = 0.5,
    tradeoff_rate: float | None = None,
    importance_split: float = 0.5,
    lr_decay_every: int | None = None,
    lr_decay_factor: float = 0.1,
    steps_per_epoch: int | None = None,
    freeze_bn: bool = False,
    checkpoint_path: str | os.PathLike | None = None,
    resume: bool = False,
    checkpoint_extra: dict[str, Any] | None = None,
    eval_batch_size: int = 256,
    num_workers: int = 0,
    data_on_device: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Train ``net`` in place for one stage of the CNN phase (see the module docstring).

    Args:
        net: the gated network (moved to ``device``). Its initial weights are the caller's.
        stage: one of :data:`STAGES`.
        splits: a :class:`~prune_env.data.DatasetSplits` (``train``, ``val``, ``name``,
            ``input_shape`` are used).
        epochs: total epochs of the stage (a resumed run continues up to this number).
        lr: Adam learning rate. ``batch_size``: the global batch (split over DDP ranks).
        weight_decay: Adam's L2 weight decay.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...; under DDP on CUDA each rank uses its
            ``LOCAL_RANK`` GPU.
        seed: seeds data order (a ``DistributedSampler`` seeded with ``seed``, reshuffled each
            epoch) and the torch RNG at the start of every epoch: same seed, same result.
        progress: a tqdm bar per epoch (off on non-tty streams and on ranks other than 0).
        ratio_fn: ``finetune`` only: ``ratio_fn(net, images) -> (runtime (B, L), static (L,))``
            keep ratios of the frozen agents; called in eval mode without gradients.
            Default: :func:`uniform_ratio_fn` of ``keep``.
        keep: ``finetune`` only: the uniform keep ratio used when ``ratio_fn`` is None.
        tradeoff_rate: ``R_r``; None keeps the network's current value.
        importance_split: ``importance`` only: fraction of the epochs with ``u_s`` held at 1
            (sub-step 1); the rest free ``u_s`` (sub-step 2).
        lr_decay_every: multiply the learning rate by ``lr_decay_factor`` (0.1: divide by 10)
            every this many iterations (optimizer steps of this stage); None = constant.
        steps_per_epoch: cap on the batches of one epoch (None = the whole train split).
        freeze_bn: keep BatchNorm layers in eval mode (running statistics fixed, affine
            parameters still trained); makes DDP equal to one process exactly.
        checkpoint_path: written atomically after every epoch (rank 0): the network, the
            optimizer and scheduler states, ``stage``, ``epoch`` (epochs done), ``epochs``,
            ``history``, ``hparams``, plus ``checkpoint_extra``.
        resume: continue from ``checkpoint_path`` if it holds this stage (the epoch count
            continues; a missing file starts afresh; another stage's file is an error).
        data_on_device: hold the train and validation splits as tensors on ``device`` and
            augment whole batches there (``splits.batch_augment``) instead of a per-image
            ``DataLoader``: the same data order, the same augmentation distribution, far
            faster on a GPU. For splits that fit in memory; needs ``splits.train_plain``.
        log: receives one summary line per epoch (rank 0); default: ``tqdm.write`` when
            ``progress`` is on, else nothing.

    Returns:
        The stage's history: one dict per epoch with ``epoch`` (1-based), ``phase``,
        ``train_loss``, ``train_acc``, ``val_acc``, ``val_loss``, ``lr``, ``seconds`` (and
        ``val_kept_fraction`` for ``finetune``), including epochs from before a resume.
    """
    _check_stage(stage)
    _check_hparams(epochs, lr, batch_size, weight_decay, steps_per_epoch, lr_decay_every, lr_decay_factor, keep)
    ctx, dev = init_distributed(device)
    if batch_size % ctx.world_size:
        raise ValueError(f"batch_size {batch_size} (the global batch) is not divisible by the {ctx.world_size} processes")
    if ratio_fn is not None and stage != "finetune":
        raise ValueError(f"ratio_fn applies to the finetune stage only, not {stage!r}")
    ratio_source = None if stage != "finetune" else ("uniform" if ratio_fn is None else "ratio_fn")
    if stage == "finetune" and ratio_fn is None:
        ratio_fn = uniform_ratio_fn(keep)
    if log is None and progress:
        log = tqdm.write
    if not ctx.is_main:
        log = None

    net.to(dev)
    if tradeoff_rate is not None:
        net.configure(tradeoff_rate=tradeoff_rate)
    hold_epochs = _importance_hold_epochs(epochs, importance_split) if stage == "importance" else 0
    hparams = dict(
        epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay, seed=seed,
        importance_split=importance_split, lr_decay_every=lr_decay_every, lr_decay_factor=lr_decay_factor,
        steps_per_epoch=steps_per_epoch, freeze_bn=freeze_bn, ratio_source=ratio_source,
        keep=keep if ratio_source == "uniform" else None,
        tradeoff_rate=net.gate_config.tradeoff_rate, world_size=ctx.world_size,
    )

    requires_grad = [p.requires_grad for p in net.parameters()]
    optimizer = torch.optim.Adam(_stage_parameters(net, stage), lr=lr, weight_decay=weight_decay)
    scheduler = (
        torch.optim.lr_scheduler.StepLR(optimizer, step_size=lr_decay_every, gamma=lr_decay_factor)
        if lr_decay_every
        else None
    )
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if resume and checkpoint_path is not None and Path(checkpoint_path).is_file():
        payload = read_checkpoint(checkpoint_path)
        if payload.get("stage") != stage:
            raise ValueError(
                f"cannot resume stage {stage!r} from {str(checkpoint_path)!r}: it holds stage {payload.get('stage')!r}"
            )
        net.load_state_dict(payload["state_dict"])
        if payload.get("optimizer") is not None:  # absent from stripped files such as the shipped asset
            optimizer.load_state_dict(payload["optimizer"])
        if scheduler is not None and payload.get("scheduler") is not None:
            scheduler.load_state_dict(payload["scheduler"])
        for group in optimizer.param_groups:  # a changed lr / weight decay on resume wins
            group["weight_decay"] = weight_decay
            if scheduler is None:
                group["lr"] = lr
        history = list(payload.get("history", []))
        start_epoch = int(payload["epoch"])
        if log:
            log(f"[{stage}] resuming from {checkpoint_path} after epoch {start_epoch}/{epochs}")

    per_rank_batch = batch_size // ctx.world_size
    # The same sampler for one or many processes: the data order does not depend on world size.
    sampler = DistributedSampler(splits.train, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed)
    if data_on_device:
        if splits.train_plain is None:
            raise ValueError(f"data_on_device: dataset {splits.name!r} has no unaugmented train view (train_plain)")
        loader = DeviceBatches(splits.train_plain, sampler, per_rank_batch, dev, splits.batch_augment)
    else:
        loader = DataLoader(
            splits.train, batch_size=per_rank_batch, sampler=sampler, num_workers=num_workers,
            generator=torch.Generator().manual_seed(seed), pin_memory=dev.type == "cuda",
        )
    n_batches = len(loader) if steps_per_epoch is None else min(len(loader), steps_per_epoch)

    phase: str | None = None
    model: nn.Module = net
    try:
        for epoch in range(start_epoch, epochs):
            t0 = time.perf_counter()
            new_phase = _phase(stage, epoch, hold_epochs)
            if new_phase != phase:
                phase = new_phase
                _configure_phase(net, phase)
                if ctx.distributed:
                    del model  # drop the previous wrapper (and its gradient hooks) first
                    model = DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)
            torch.manual_seed(_epoch_seed(seed, epoch, ctx.rank))
            sampler.set_epoch(epoch)
            if data_on_device:
                loader.seed(_epoch_seed(seed, epoch, ctx.rank))
            _set_train_mode(net, freeze_bn)
            loss_sum = correct = count = 0.0
            bar = tqdm(
                total=n_batches, desc=f"{stage} {epoch + 1}/{epochs}", leave=False,
                disable=True if not (progress and ctx.is_main) else None, file=sys.stderr,
            )
            for step, (images, labels) in enumerate(loader):
                if step >= n_batches:
                    break
                images = images.to(dev, non_blocking=True)
                labels = torch.as_tensor(labels).to(dev, non_blocking=True)
                if stage == "finetune":
                    runtime, static = _ratios_from(ratio_fn, net, images)  # type: ignore[arg-type]
                    logits = model(images, runtime, static)
                else:
                    logits = model(images)  # d_r = d_s = 1 (importance) or gates off (pretrain)
                loss = F.cross_entropy(logits, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                n = labels.shape[0]
                loss_sum += float(loss.detach()) * n
                correct += float((logits.detach().argmax(dim=1) == labels).sum())
                count += n
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / count:.4f}", acc=f"{correct / count:.3f}")
            bar.close()
            loss_sum, correct, count = _all_reduce_sum([loss_sum, correct, count], ctx, dev)
            if ctx.distributed:  # BN running statistics: every rank takes rank 0's
                for buffer in net.buffers():
                    dist.broadcast(buffer, src=0)
            val = evaluate(
                net, splits.val, batch_size=eval_batch_size, device=dev, ratio_fn=ratio_fn if stage == "finetune" else None,
                distributed=ctx.distributed, num_workers=num_workers, data_on_device=data_on_device,
            )
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "phase": phase,
                "train_loss": loss_sum / max(count, 1.0),
                "train_acc": correct / max(count, 1.0),
                "val_acc": val["accuracy"],
                "val_loss": val["loss"],
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - t0,
            }
            if stage == "finetune":
                record["val_kept_fraction"] = val["kept_fraction"]
            history.append(record)
            if log:
                log(
                    f"[{stage}] epoch {epoch + 1}/{epochs} ({phase}) train_loss {record['train_loss']:.4f} "
                    f"train_acc {record['train_acc']:.4f} val_acc {record['val_acc']:.4f} "
                    f"lr {record['lr']:.2e} {record['seconds']:.1f}s"
                )
            if checkpoint_path is not None and ctx.is_main:
                save_checkpoint(
                    checkpoint_path, net, dataset=splits.name, input_shape=tuple(splits.input_shape),
                    stage=stage, epoch=epoch + 1, epochs=epochs, completed=epoch + 1 >= epochs,
                    history=history, hparams=hparams,
                    optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict() if scheduler is not None else None,
                    **(checkpoint_extra or {}),
                )
            _barrier(ctx)
    finally:
        for p, flag in zip(net.parameters(), requires_grad):
            p.requires_grad_(flag)
    # The gate mode the stage ends in, also when a resumed stage had nothing left to do.
    final_phase = _phase(stage, max(epochs - 1, 0), hold_epochs)
    net.configure(**_PHASE_GATES[final_phase])
    net.train()
    return history

