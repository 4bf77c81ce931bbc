"""The gate mode and the trainable parameters of each part of a CNN training stage.

An epoch runs in one *phase*:

* ``pretrain``: gates off, backbone only;
* ``hold_static`` (importance, Sec. 4.1, first step): gates on, ``u_s`` held at 1: backbone + ``f``;
* ``free_static`` (importance, second step) and ``finetune``: backbone, ``f`` and ``u_s``.
"""

from __future__ import annotations

import math

from torch import nn

from prune_env.nets.gated import GatedNet

PHASE_GATES: dict[str, dict[str, bool]] = {
    "pretrain": {"gating": False},
    "hold_static": {"gating": True, "hold_static": True},
    "free_static": {"gating": True, "hold_static": False},
    "finetune": {"gating": True, "hold_static": False},
}


def importance_hold_epochs(epochs: int, split: float) -> int:
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


def phase_of(stage: str, epoch: int, hold_epochs: int) -> str:
    """The gate mode of an epoch: ``pretrain``, ``hold_static``, ``free_static`` or ``finetune``."""
    if stage == "importance":
        return "hold_static" if epoch < hold_epochs else "free_static"
    return stage


def configure_phase(net: GatedNet, phase: str) -> list[nn.Parameter]:
    """Set the gate mode of ``phase`` and mark which parameters train; returns them.

    Parameters that do not train get ``requires_grad = False`` so that DDP does not wait for
    their gradients.
    """
    net.configure(**PHASE_GATES[phase])
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


def stage_parameters(net: GatedNet, stage: str) -> list[nn.Parameter]:
    """Every parameter the stage's optimizer holds (one optimizer for the whole stage)."""
    return list(net.backbone_parameters()) if stage == "pretrain" else list(net.parameters())


def set_train_mode(net: nn.Module, freeze_bn: bool) -> None:
    """Train mode, with BatchNorm layers kept in eval mode when ``freeze_bn``."""
    net.train()
    if freeze_bn:
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
