"""Backbones, built by name as :class:`~prune_env.nets.gated.GatedNet` instances.

* ``digitnet``: a four-layer net sized for 8x8 digits, the embedded default (trains in seconds).
* ``mcifarnet``: M-CifarNet, the FBS paper's CIFAR-10 backbone (mayo's ``cifarnet.yaml``):
  174.3 M MACs and 1.296 M parameters on 32x32x3.
* ``resnet18``: torchvision's ResNet-18 (ImageNet), optionally loaded from a weights file.
* ``resnet20`` / ``resnet56``: CIFAR ResNets (He et al. 2016, option-A shortcuts).

Sequential nets prune every conv; ResNets prune the first conv of every basic block.
"""

from __future__ import annotations

import os
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from prune_env.nets.gated import GatedConv, GatedNet, ResidualStage, SequentialStage

#: (out_channels, stride, padding, dropout after) per conv layer.
ConvSpec = tuple[int, int, int, float]

MCIFARNET_SPEC: list[ConvSpec] = [
    (64, 1, 0, 0.0),  # conv0, valid padding: 32x32 -> 30x30
    (64, 1, 1, 0.0),
    (128, 2, 1, 0.0),  # 15x15
    (128, 1, 1, 0.5),
    (128, 1, 1, 0.0),
    (192, 2, 1, 0.0),  # 8x8
    (192, 1, 1, 0.5),
    (192, 1, 1, 0.0),
]

DIGITNET_SPEC: list[ConvSpec] = [
    (16, 1, 1, 0.0),  # 8x8
    (32, 1, 1, 0.0),
    (32, 2, 1, 0.0),  # 4x4
    (64, 1, 1, 0.0),
]


def scaled(channels: int, width: float) -> int:
    """Channel count under a width multiplier (at least 1)."""
    return max(1, int(round(channels * width)))


def _check_common(num_classes: int, in_channels: int, width: float) -> None:
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if not 0.0 < width <= 16.0:
        raise ValueError(f"width must be in (0, 16], got {width}")


def sequential_net(spec: list[ConvSpec], *, num_classes: int, in_channels: int, width: float, config: dict) -> GatedNet:
    """A plain conv net: ``conv3x3 -> BN -> ReLU [-> dropout]`` per layer, GAP, linear."""
    stages = []
    c_in = in_channels
    for c_out, stride, padding, dropout in spec:
        c_out = scaled(c_out, width)
        conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=padding, bias=False)
        post = nn.Dropout(dropout) if dropout > 0 else None
        stages.append(SequentialStage(GatedConv(conv, nn.BatchNorm2d(c_out)), post))
        c_in = c_out
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))
    return GatedNet(nn.Identity(), stages, head, config)


def mcifarnet(*, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> GatedNet:
    """M-CifarNet: eight 3x3 conv + BN + ReLU layers, GAP, linear (``docs/design.md``)."""
    _check_common(num_classes, in_channels, width)
    config = dict(name="mcifarnet", num_classes=num_classes, in_channels=in_channels, width=width)
    return sequential_net(MCIFARNET_SPEC, num_classes=num_classes, in_channels=in_channels, width=width, config=config)


def digitnet(*, num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> GatedNet:
    """The small default network for 8x8 digits: four conv layers, GAP, linear."""
    _check_common(num_classes, in_channels, width)
    config = dict(name="digitnet", num_classes=num_classes, in_channels=in_channels, width=width)
    return sequential_net(DIGITNET_SPEC, num_classes=num_classes, in_channels=in_channels, width=width, config=config)


def _residual_stages(blocks: list[nn.Module]) -> list[ResidualStage]:
    """Wrap basic blocks (``conv1, bn1, relu, conv2, bn2`` and a shortcut) as stages."""
    stages = []
    for block in blocks:
        shortcut = getattr(block, "downsample", None)
        if shortcut is None:
            shortcut = getattr(block, "shortcut", None)
        gated = GatedConv(block.conv1, block.bn1, nn.ReLU(inplace=True))
        stages.append(ResidualStage(gated, block.conv2, block.bn2, shortcut))
    return stages


def resnet18(*, num_classes: int = 1000, in_channels: int = 3, width: float = 1.0,
             weights: str | os.PathLike | None = None) -> GatedNet:
    """torchvision's ResNet-18; ``weights`` is a path to a torchvision state dict (no download)."""
    import torchvision

    _check_common(num_classes, in_channels, width)
    if width != 1.0 or in_channels != 3:
        raise ValueError("resnet18 supports only width=1.0 and in_channels=3 (torchvision's architecture)")
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    if weights is not None:
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"weights: no file at {path!r}; pass the path of a torchvision resnet18 state dict")
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    blocks = [b for layer in (model.layer1, model.layer2, model.layer3, model.layer4) for b in layer]
    head = nn.Sequential(model.avgpool, nn.Flatten(), model.fc)
    config = dict(name="resnet18", num_classes=num_classes, in_channels=in_channels, width=width)
    return GatedNet(stem, _residual_stages(blocks), head, config)


class _PadShortcut(nn.Module):
    """Option-A shortcut of CIFAR ResNets: subsample and zero-pad channels (no parameters)."""

    def __init__(self, stride: int, extra_channels: int):
        super().__init__()
        self.stride = stride
        self.extra = extra_channels

    def forward(self, x):
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class _CifarBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = _PadShortcut(stride, c_out - c_in) if (stride != 1 or c_in != c_out) else None


def cifar_resnet(depth: int, *, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> GatedNet:
    """CIFAR ResNet of depth ``6n + 2`` (20, 32, 44, 56, 110)."""
    _check_common(num_classes, in_channels, width)
    if (depth - 2) % 6 != 0:
        raise ValueError(f"depth must be 6n + 2 (20, 32, 44, 56, 110), got {depth}")
    n = (depth - 2) // 6
    widths = [scaled(16, width), scaled(32, width), scaled(64, width)]
    stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
    blocks, c_in = [], widths[0]
    for i, c_out in enumerate(widths):
        for j in range(n):
            blocks.append(_CifarBlock(c_in, c_out, 2 if (i > 0 and j == 0) else 1))
            c_in = c_out
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))
    config = dict(name=f"resnet{depth}", num_classes=num_classes, in_channels=in_channels, width=width)
    return GatedNet(stem, _residual_stages(blocks), head, config)


def resnet20(**kwargs) -> GatedNet:
    """CIFAR ResNet-20 (9 prunable layers)."""
    return cifar_resnet(20, **kwargs)


def resnet56(**kwargs) -> GatedNet:
    """CIFAR ResNet-56 (27 prunable layers)."""
    return cifar_resnet(56, **kwargs)


BACKBONES: dict[str, Callable[..., GatedNet]] = {
    "digitnet": digitnet,
    "mcifarnet": mcifarnet,
    "resnet18": resnet18,
    "resnet20": resnet20,
    "resnet56": resnet56,
}


def build_net(name: str, **kwargs) -> GatedNet:
    """Build a backbone by name (see :data:`BACKBONES`), e.g. ``build_net("mcifarnet", width=0.5)``."""
    if name not in BACKBONES:
        raise ValueError(f"model must be one of {sorted(BACKBONES)}, got {name!r}")
    return BACKBONES[name](**kwargs)


def rebuild_net(config: dict) -> GatedNet:
    """Rebuild a network from its ``config`` (as stored in checkpoints)."""
    config = dict(config)
    return build_net(config.pop("name"), **config)
