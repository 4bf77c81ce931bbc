"""Where the CNN phase's keep ratios come from: ``ratio_fn(net, images) -> (runtime, static)``.

In ``finetune`` (Algorithm 1 lines 16-19) the frozen agents give every batch's keep ratios; until
trained agents are wired in, :func:`uniform_ratio_fn` or :func:`random_ratio_fn` stand in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from prune_env.nets.gated import GatedNet, scalar_or_tensor

__all__ = ["RatioFn", "uniform_ratio_fn", "random_ratio_fn", "ratios_from", "dataset_ratios"]

#: ``ratio_fn(net, images) -> (runtime keep ratios (B, L) tensor, static keep ratios (L,) list)``.
RatioFn = Callable[[GatedNet, Tensor], tuple[Tensor, Sequence[float]]]


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


def dataset_ratios(ratios: Any, num_layers: int) -> Any:
    """Validate dataset-wide ratios: a scalar or one value per layer."""
    r = scalar_or_tensor(ratios)
    if isinstance(r, float):
        return r
    if r.shape != (num_layers,):
        raise ValueError(f"keep ratios must be a scalar or one per layer ({num_layers},), got shape {tuple(r.shape)}")
    return [float(v) for v in r]


def ratios_from(ratio_fn: RatioFn, net: GatedNet, images: Tensor) -> tuple[Tensor, Sequence[float]]:
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
        raise ValueError(f"ratio_fn: runtime keep ratios of shape {tuple(runtime.shape)}, "
                         f"expected ({images.shape[0]}, {net.num_layers})")
    return runtime, static
