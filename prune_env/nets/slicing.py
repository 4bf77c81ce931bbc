"""Copies of conv, linear and BatchNorm layers that keep only some output or input channels.

What static export (:mod:`prune_env.deploy.export`) and the stages' :meth:`~prune_env.nets.gated.Stage.rebuild`
use to cut removed channels out of the weights. Every function returns a new module; nothing is shared
with the original.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn


def _select(t: Tensor, dim: int, index: Tensor | None) -> Tensor:
    return t if index is None else t.index_select(dim, index.to(t.device))


def slice_conv(conv: nn.Conv2d, out_index: Tensor | None, in_index: Tensor | None) -> nn.Conv2d:
    """A new conv keeping output channels ``out_index`` and input channels ``in_index`` (None = all)."""
    if conv.groups != 1 and (out_index is not None or in_index is not None):
        raise NotImplementedError("slicing grouped convolutions is not supported")
    weight = _select(_select(conv.weight.detach(), 0, out_index), 1, in_index)
    new = nn.Conv2d(weight.shape[1] * conv.groups, weight.shape[0], conv.kernel_size, stride=conv.stride,
                    padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                    padding_mode=conv.padding_mode, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if conv.bias is not None:
            new.bias.copy_(_select(conv.bias.detach(), 0, out_index))
    return new


def slice_linear(linear: nn.Linear, out_index: Tensor | None, in_index: Tensor | None) -> nn.Linear:
    """A new linear layer keeping outputs ``out_index`` and inputs ``in_index`` (None = all)."""
    weight = _select(_select(linear.weight.detach(), 0, out_index), 1, in_index)
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=linear.bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if linear.bias is not None:
            new.bias.copy_(_select(linear.bias.detach(), 0, out_index))
    return new


def slice_input(module: nn.Module, in_index: Tensor | None) -> nn.Module:
    """A conv or linear layer reading only input channels ``in_index`` (None = a plain copy)."""
    if in_index is None:
        return copy.deepcopy(module)
    if isinstance(module, nn.Conv2d):
        return slice_conv(module, None, in_index)
    if isinstance(module, nn.Linear):
        return slice_linear(module, None, in_index)
    raise NotImplementedError(f"cannot slice the input channels of {type(module).__name__}")


def slice_norm(bn: nn.Module, index: Tensor | None) -> nn.Module:
    """A BatchNorm2d keeping channels ``index`` (an Identity, or None for ``index``, is copied)."""
    if isinstance(bn, nn.Identity) or index is None:
        return copy.deepcopy(bn)
    if not isinstance(bn, nn.BatchNorm2d):
        raise NotImplementedError(f"cannot slice normalisation {type(bn).__name__}")
    ref = bn.weight if bn.affine else bn.running_mean
    new = nn.BatchNorm2d(len(index), eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                         track_running_stats=bn.track_running_stats, device=index.device,
                         dtype=ref.dtype if ref is not None else None)
    with torch.no_grad():
        if bn.affine:
            new.weight.copy_(_select(bn.weight.detach(), 0, index))
            new.bias.copy_(_select(bn.bias.detach(), 0, index))
        if bn.track_running_stats:
            new.running_mean.copy_(_select(bn.running_mean, 0, index))
            new.running_var.copy_(_select(bn.running_var, 0, index))
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new


def input_width(module: nn.Module) -> int:
    """The input channels (features) a conv or linear layer reads."""
    return module.in_features if isinstance(module, nn.Linear) else module.in_channels


def replace_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` in place of ``root``'s submodule ``name`` (a dotted path)."""
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def first_weighted_module(module: nn.Module) -> tuple[str, nn.Module] | None:
    """``(name, module)`` of the first conv or linear layer in ``module`` (registration order)."""
    return next(((n, m) for n, m in module.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
