"""One stage of the CNN phase (:func:`train_stage`): epochs of cross entropy under the stage's gate mode.

Distributed data parallel: under ``torchrun`` (:mod:`prune_env.distributed`) the network is
wrapped in ``DistributedDataParallel`` and every rank reads its shard through a
``DistributedSampler``; only rank 0 prints and writes checkpoints. ``batch_size`` is the *global*
batch, split evenly over the ranks. The data order does not depend on the number of processes
(a single process uses the same sampler with one replica), so N processes see the same global
batches as one and, DDP averaging the per-rank mean-loss gradients, take the same steps, with two
exceptions inherent to data parallelism: BatchNorm in train mode normalises with per-rank
statistics (use ``freeze_bn=True`` to keep BN in eval mode, or SyncBatchNorm on CUDA, which
PyTorch does not support on CPU), and dropout draws different noise on every rank. The last,
partial batch of an epoch can also differ (the sampler pads the shards to equal length).

An epoch reads as: enter the epoch's phase (:mod:`prune_env.cnn.phases`), seed it
(:func:`_seed_epoch`), one pass of optimizer steps (:func:`_train_epoch`), sums over the ranks,
validation (:func:`~prune_env.cnn.metrics.evaluate`), a history record, a checkpoint.
Ctrl-C saves the epoch in progress (the batches done, :class:`EpochProgress`); ``resume=True``
skips those batches of the same data order and goes on from there. In one process the Ctrl-C waits
for the end of the optimizer step in progress (:mod:`prune_env.interrupt`), so that the saved state
is whole.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from prune_env.checkpoint import read_checkpoint, save_checkpoint
from prune_env.cnn.metrics import evaluate
from prune_env.cnn.phases import PHASE_GATES, configure_phase, importance_hold_epochs, phase_of, set_train_mode, stage_parameters
from prune_env.cnn.presets import check_hparams, check_stage
from prune_env.cnn.ratios import RatioFn, ratios_from, uniform_ratio_fn
from prune_env.data import DeviceBatches
from prune_env.distributed import DistContext, all_reduce_sum, barrier, broadcast_buffers, init_distributed
from prune_env.errors import NonFiniteError
from prune_env.interrupt import check_interrupt, deferred_interrupt
from prune_env.nets.gated import GatedNet
from prune_env.progress import bar as progress_bar

if TYPE_CHECKING:
    from prune_env.data import DatasetSplits

__all__ = ["train_stage"]

Scheduler = torch.optim.lr_scheduler.StepLR


@dataclass
class EpochProgress:
    """How far the epoch in progress got: what an interrupted stage saves and a resumed one skips.

    ``batches``: optimizer steps taken in the epoch; ``sums``: this rank's ``[loss sum, correct, samples]`` over them.
    """

    batches: int = 0
    sums: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Seed of the torch RNG for one epoch of one rank (dropout), so resuming replays it."""
    return (int(seed) * 1_000_003 + epoch * 7_919 + rank * 104_729) % (2**63)


def _optimizer(net: GatedNet, stage: str, lr: float, weight_decay: float, lr_decay_every: int | None,
               lr_decay_factor: float) -> tuple[torch.optim.Adam, Scheduler | None]:
    """Adam over the stage's parameters, and the step decay of its learning rate (None: constant)."""
    optimizer = torch.optim.Adam(stage_parameters(net, stage), lr=lr, weight_decay=weight_decay)
    scheduler = Scheduler(optimizer, step_size=lr_decay_every, gamma=lr_decay_factor) if lr_decay_every else None
    return optimizer, scheduler


def _resume(path: str | os.PathLike, stage: str, net: GatedNet, optimizer: torch.optim.Optimizer,
            scheduler: Scheduler | None, lr: float, weight_decay: float) -> tuple[list[dict[str, Any]], int, EpochProgress]:
    """Load the stage's checkpoint into ``net``, the optimizer and scheduler; returns its history, epochs done and
    how far the next epoch got before an interruption."""
    payload = read_checkpoint(path)
    if payload.get("stage") != stage:
        raise ValueError(f"cannot resume stage {stage!r} from {str(path)!r}: it holds stage {payload.get('stage')!r}")
    net.load_state_dict(payload["state_dict"])
    if payload.get("optimizer") is not None:  # absent from stripped files such as the shipped asset
        optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None and payload.get("scheduler") is not None:
        scheduler.load_state_dict(payload["scheduler"])
    for group in optimizer.param_groups:  # a changed lr / weight decay on resume wins
        group["weight_decay"] = weight_decay
        if scheduler is None:
            group["lr"] = lr
    partial = EpochProgress(**payload["interrupted"]) if payload.get("interrupted") else EpochProgress()
    return list(payload.get("history", []))[: int(payload["epoch"])], int(payload["epoch"]), partial


def _train_batches(splits: DatasetSplits, ctx: DistContext, dev: torch.device, batch_size: int, seed: int,
                   num_workers: int, data_on_device: bool) -> tuple[DistributedSampler, DataLoader | DeviceBatches]:
    """This rank's sampler over the train split and the batches it yields (its share of the global batch)."""
    per_rank_batch = batch_size // ctx.world_size
    # The same sampler for one or many processes: the data order does not depend on world size.
    sampler = DistributedSampler(splits.train, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed)
    if data_on_device:
        if splits.train_plain is None:
            raise ValueError(f"data_on_device: dataset {splits.name!r} has no unaugmented train view (train_plain)")
        return sampler, DeviceBatches(splits.train_plain, sampler, per_rank_batch, dev, splits.batch_augment)
    loader = DataLoader(
        splits.train, batch_size=per_rank_batch, sampler=sampler, num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed), pin_memory=dev.type == "cuda",
    )
    return sampler, loader


def _seed_epoch(seed: int, epoch: int, ctx: DistContext, sampler: DistributedSampler, loader: Any) -> None:
    """Seed dropout, the data order and (on the device) the augmentation of one epoch."""
    torch.manual_seed(_epoch_seed(seed, epoch, ctx.rank))
    sampler.set_epoch(epoch)
    if isinstance(loader, DeviceBatches):
        loader.seed(_epoch_seed(seed, epoch, ctx.rank))


def _train_epoch(model: nn.Module, net: GatedNet, loader: Any, n_batches: int, optimizer: torch.optim.Optimizer,
                 scheduler: Scheduler | None, ratio_fn: RatioFn | None, dev: torch.device, bar: Any,
                 done: EpochProgress) -> list[float]:
    """One pass of optimizer steps on cross entropy; returns this rank's ``[loss sum, correct, samples]``.

    ``ratio_fn`` (``finetune``) gives each batch's keep ratios; without it the network runs with
    ``d_r = d_s = 1`` (importance) or its gates off (pretrain). The first ``done.batches`` batches
    were trained before an interruption and are skipped; ``done`` follows every step.
    """
    loss_sum, correct, count = done.sums
    for step, (images, labels) in enumerate(loader):
        if step >= n_batches:
            break
        if step < done.batches:  # read all the same, so that the data order and augmentation stay the same
            continue
        images = images.to(dev, non_blocking=True)
        labels = torch.as_tensor(labels).to(dev, non_blocking=True)
        if ratio_fn is not None:
            runtime, static = ratios_from(ratio_fn, net, images)
            logits = model(images, runtime, static)
        else:
            logits = model(images)
        loss = F.cross_entropy(logits, labels)
        if not bool(torch.isfinite(loss)):  # stop before the step: the weights stay the last finite ones
            raise NonFiniteError(f"batch {step + 1}/{n_batches}: the training loss is {float(loss.detach())}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        n = labels.shape[0]
        loss_sum += float(loss.detach()) * n
        correct += float((logits.detach().argmax(dim=1) == labels).sum())
        count += n
        done.batches, done.sums = step + 1, [loss_sum, correct, count]
        bar.update(1)
        bar.set_postfix(loss=f"{loss_sum / count:.4f}", acc=f"{correct / count:.3f}")
        check_interrupt()  # a Ctrl-C during the step stops here, with the step whole
    return [loss_sum, correct, count]


def _epoch_record(epoch: int, phase: str, loss_sum: float, correct: float, count: float, val: dict[str, Any], lr: float,
                  t0: float, kept: bool) -> dict[str, Any]:
    """One entry of the stage's history (``kept``: with the validation split's kept channel fractions)."""
    record: dict[str, Any] = {
        "epoch": epoch + 1,
        "phase": phase,
        "train_loss": loss_sum / max(count, 1.0),
        "train_acc": correct / max(count, 1.0),
        "val_acc": val["accuracy"],
        "val_loss": val["loss"],
        "lr": lr,
        "seconds": time.perf_counter() - t0,
    }
    if kept:
        record["val_kept_fraction"] = val["kept_fraction"]
    return record


def _epoch_line(stage: str, epoch: int, epochs: int, record: dict[str, Any]) -> str:
    return (f"[{stage}] epoch {epoch + 1}/{epochs} ({record['phase']}) train_loss {record['train_loss']:.4f} "
            f"train_acc {record['train_acc']:.4f} val_acc {record['val_acc']:.4f} "
            f"lr {record['lr']:.2e} {record['seconds']:.1f}s")


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
    """Train ``net`` in place for one stage of the CNN phase (see :mod:`prune_env.cnn`).

    Args:
        net: the gated network (moved to ``device``). Its initial weights are the caller's.
        stage: one of :data:`~prune_env.cnn.presets.STAGES`.
        splits: a :class:`~prune_env.data.DatasetSplits` (``train``, ``val``, ``name``,
            ``input_shape`` are used).
        epochs: total epochs of the stage (a resumed run continues up to this number).
        lr: Adam learning rate. ``batch_size``: the global batch (split over DDP ranks).
        weight_decay: Adam's L2 weight decay.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...; under DDP on CUDA each rank uses its
            ``LOCAL_RANK`` GPU.
        seed: seeds data order (a ``DistributedSampler`` seeded with ``seed``, reshuffled each
            epoch) and the torch RNG at the start of every epoch: same seed, same result.
        progress: a bar per epoch (:mod:`prune_env.progress`: lines every 30 s in a log; none on ranks other than 0).
        ratio_fn: ``finetune`` only: ``ratio_fn(net, images) -> (runtime (B, L), static (L,))``
            keep ratios of the frozen agents; called in eval mode without gradients.
            Default: :func:`~prune_env.cnn.ratios.uniform_ratio_fn` of ``keep``.
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
    check_stage(stage)
    check_hparams(epochs, lr, batch_size, weight_decay, steps_per_epoch, lr_decay_every, lr_decay_factor, keep)
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
    hold_epochs = importance_hold_epochs(epochs, importance_split) if stage == "importance" else 0
    hparams = dict(
        epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay, seed=seed,
        importance_split=importance_split, lr_decay_every=lr_decay_every, lr_decay_factor=lr_decay_factor,
        steps_per_epoch=steps_per_epoch, freeze_bn=freeze_bn, ratio_source=ratio_source,
        keep=keep if ratio_source == "uniform" else None,
        tradeoff_rate=net.gate_config.tradeoff_rate, world_size=ctx.world_size,
    )

    requires_grad = [p.requires_grad for p in net.parameters()]
    optimizer, scheduler = _optimizer(net, stage, lr, weight_decay, lr_decay_every, lr_decay_factor)
    history: list[dict[str, Any]] = []
    start_epoch, partial = 0, EpochProgress()
    if resume and checkpoint_path is not None and Path(checkpoint_path).is_file():
        history, start_epoch, partial = _resume(checkpoint_path, stage, net, optimizer, scheduler, lr, weight_decay)
        if log:
            log(f"[{stage}] resuming from {checkpoint_path} after epoch {start_epoch}/{epochs}"
                + (f" and {partial.batches} batches of the next" if partial.batches else ""))
    sampler, loader = _train_batches(splits, ctx, dev, batch_size, seed, num_workers, data_on_device)
    n_batches = len(loader) if steps_per_epoch is None else min(len(loader), steps_per_epoch)

    def save(epochs_done: int, **state: Any) -> None:
        save_checkpoint(
            checkpoint_path, net, dataset=splits.name, input_shape=tuple(splits.input_shape),
            stage=stage, epoch=epochs_done, epochs=epochs, history=history[:epochs_done], hparams=hparams,
            optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict() if scheduler is not None else None,
            **state, **(checkpoint_extra or {}),
        )

    phase: str | None = None
    model: nn.Module | None = net
    epoch, done = start_epoch, None
    try:
        for epoch in range(start_epoch, epochs):
            done = partial if epoch == start_epoch else EpochProgress()
            t0 = time.perf_counter()
            if phase_of(stage, epoch, hold_epochs) != phase:
                phase = phase_of(stage, epoch, hold_epochs)
                configure_phase(net, phase)
                if ctx.distributed:
                    model = None  # drop the previous wrapper (and its gradient hooks) first
                    model = DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)
            _seed_epoch(seed, epoch, ctx, sampler, loader)
            set_train_mode(net, freeze_bn)
            # a bar on a terminal, a line every 30 s in a log (prune_env.progress), as every script shows progress
            bar = progress_bar(n_batches, f"{stage} {epoch + 1}/{epochs}", "batch", leave=False,
                               disable=not (progress and ctx.is_main), file=sys.stderr)
            with deferred_interrupt(enabled=not ctx.distributed):
                sums = _train_epoch(model, net, loader, n_batches, optimizer, scheduler, ratio_fn, dev, bar, done)
            bar.close()
            loss_sum, correct, count = all_reduce_sum(sums, ctx, dev)
            broadcast_buffers(net, ctx)  # BN running statistics: every rank takes rank 0's
            val = evaluate(net, splits.val, batch_size=eval_batch_size, device=dev, ratio_fn=ratio_fn,
                           distributed=ctx.distributed, num_workers=num_workers, data_on_device=data_on_device)
            record = _epoch_record(epoch, phase, loss_sum, correct, count, val, optimizer.param_groups[0]["lr"], t0,
                                   kept=stage == "finetune")
            history.append(record)
            if log:
                log(_epoch_line(stage, epoch, epochs, record))
            if checkpoint_path is not None and ctx.is_main:
                save(epoch + 1, completed=epoch + 1 >= epochs)
            done = None  # the epoch is saved
            barrier(ctx)
    except NonFiniteError as exc:  # a diverged loss: stop, naming the step; the last checkpoint stays as it was
        kept = (f"the last checkpoint {str(checkpoint_path)!r} is kept" if checkpoint_path is not None
                and Path(checkpoint_path).is_file() else "no checkpoint was written")
        raise NonFiniteError(f"[{stage}] stopped in epoch {epoch + 1}/{epochs}, {exc} (NaN or inf weights or inputs, or "
                             f"a learning rate too high); {kept}") from None
    except KeyboardInterrupt:  # Ctrl-C: save the epoch in progress, then stop
        if checkpoint_path is not None and ctx.is_main and done is not None:
            save(epoch, completed=False, interrupted={"batches": done.batches, "sums": done.sums})
            print(f"\n[{stage}] interrupted in epoch {epoch + 1}/{epochs} after {done.batches}/{n_batches} batches; "
                  f"saved {checkpoint_path}; continue with --resume", file=sys.stderr)
        raise
    finally:
        for p, flag in zip(net.parameters(), requires_grad):
            p.requires_grad_(flag)
    # The gate mode the stage ends in, also when a resumed stage had nothing left to do.
    net.configure(**PHASE_GATES[phase_of(stage, max(epochs - 1, 0), hold_epochs)])
    net.train()
    return history
