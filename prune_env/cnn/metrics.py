"""Accuracy, loss and kept channels of a gated network on a split (eval mode, optionally data-parallel)."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from prune_env.cnn.ratios import RatioFn, dataset_ratios, ratios_from
from prune_env.data import DeviceBatches
from prune_env.distributed import DistContext, all_reduce_sum
from prune_env.nets.gated import GatedNet

__all__ = ["evaluate"]


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
    :func:`~prune_env.cnn.train.train_stage`'s ``finetune``). Under an initialised process group (or
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
        runtime_keep_ratios = dataset_ratios(runtime_keep_ratios, net.num_layers)
        static_keep_ratios = dataset_ratios(static_keep_ratios, net.num_layers)
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
                runtime_keep_ratios, static_keep_ratios = ratios_from(ratio_fn, net, images)
            state = net.run(images, runtime_keep_ratios, static_keep_ratios)
            logits = state.logits
            loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
            correct += float((logits.argmax(dim=1) == labels).sum())
            count += labels.shape[0]
            kept_sum += state.kept.double().cpu().sum(dim=0) / channels
    finally:
        net.train(was_training)
    sums = all_reduce_sum([loss_sum, correct, count, *kept_sum.tolist()], ctx, dev)
    loss_sum, correct, count, kept = sums[0], sums[1], sums[2], sums[3:]
    if count == 0:
        raise ValueError("evaluate: the dataset is empty")
    return {
        "accuracy": correct / count,
        "loss": loss_sum / count,
        "samples": int(count),
        "kept_fraction": [k / count for k in kept],
    }
