"""The plain network inside a :class:`~prune_env.nets.gated.GatedNet`: its layers without the gates.

:func:`plain_module` returns an ``nn.Module`` computing what the gated network computes dense
(``configure(gating=False)``), sharing nothing with it. :func:`~prune_env.nets.convert.gate` turns it
back into a gated network of the same structure, which is how the hand-written backbones are checked
against the converter.
"""

from __future__ import annotations

import copy

from torch import Tensor, nn

from prune_env.nets.gated import BlockStage, GatedNet, ResidualStage, SequentialStage


class PlainBlock(nn.Module):
    """A residual block: ``act(rest(bn2(conv2(act1(bn1(conv1(x)))))) + shortcut(x))``."""

    def __init__(self, stage: ResidualStage):
        super().__init__()
        self.conv1, self.bn1, self.act1 = stage.gated.conv, stage.gated.bn, stage.gated.act
        self.conv2, self.bn2, self.shortcut = stage.conv2, stage.bn2, stage.shortcut
        self.rest = stage.rest if isinstance(stage, BlockStage) else nn.Identity()
        self.act = stage.act

    def forward(self, x: Tensor) -> Tensor:
        z = self.rest(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))))
        return self.act(z + self.shortcut(x))


def plain_module(net: GatedNet) -> nn.Sequential:
    """``stem, layers..., head`` of ``net`` as one ``nn.Sequential`` without gates (a deep copy)."""
    layers = []
    for stage in copy.deepcopy(net.stages):
        if isinstance(stage, SequentialStage):
            g = stage.gated
            layers.append(nn.Sequential(g.conv, g.bn, g.act, stage.post))
        elif isinstance(stage, ResidualStage):
            layers.append(PlainBlock(stage))
        else:
            raise NotImplementedError(f"plain_module: no plain form of {type(stage).__name__}")
    return nn.Sequential(copy.deepcopy(net.stem), *layers, copy.deepcopy(net.head))
