"""Gated networks: masks (Eq. 3-5), gated layers (Eq. 2, 6) and backbones."""

from prune_env.nets.backbones import BACKBONES, build_net, rebuild_net
from prune_env.nets.convert import ConversionError, explain, gate
from prune_env.nets.gated import GateConfig, GatedConv, GatedNet, StepState, global_pool
from prune_env.nets.masks import keep_count, permanent_count, permanent_mask, tradeoff_mask

__all__ = [
    "BACKBONES", "build_net", "rebuild_net", "ConversionError", "explain", "gate",
    "GateConfig", "GatedConv", "GatedNet", "StepState", "global_pool",
    "keep_count", "permanent_count", "permanent_mask", "tradeoff_mask",
]
