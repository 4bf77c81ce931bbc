"""ONNX export of the static part of a deployed network (runtime keep ratio fixed at 1).

At ``d_r = 1`` the runtime mask ``M_r`` is empty, so the trade-off mask (Eq. 3-5) depends on
``u_s`` and ``d_s`` only: it is a constant. :class:`StaticGraph` folds it into a constant
per-channel factor, leaving plain tensor ops (conv, BN, ReLU, GAP, linear, multiply) that any
ONNX runtime executes; the input-dependent Eq. 2 scale ``u_r * u_s`` is kept, computed by the
predictor rows of the stored channels. ``StaticGraph(model)(x)`` equals ``model(x, 1.0)``, i.e.
the masked network ``net(x, 1.0, d_s)``. For ``R_r = 0`` that is the whole deployed function
(the mask never depends on ``d_r``). Data-dependent runtime masks (sorting ``u_r`` per input)
are not exported.
"""

from __future__ import annotations

import copy
import io
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from prune_env.deploy.export import DeployedGate, DeployedNet
from prune_env.io import write_bytes
from prune_env.nets.gated import global_pool
from prune_env.nets.slicing import slice_linear


class _FrozenGate(nn.Module):
    """A deployed gate at ``d_r = 1``: ``act(bn(conv(x))) * f_S(GAP(x)) * (u_s (1 - M))``, and no mask."""

    scale: Tensor

    def __init__(self, gate: DeployedGate):
        super().__init__()
        self.conv = copy.deepcopy(gate.conv)
        self.bn = copy.deepcopy(gate.bn)
        self.act = copy.deepcopy(gate.act)
        self.predictor = slice_linear(gate.predictor, gate.survivors, None)  # u_r of the stored channels
        u_s = gate.static_importance.index_select(0, gate.survivors)
        self.register_buffer("scale", u_s * (~gate.dense_mask).to(u_s.dtype))

    def forward(self, x: Tensor, pooled: Tensor) -> tuple[Tensor, None]:
        return self.act(self.bn(self.conv(x))) * (self.predictor(pooled) * self.scale)[:, :, None, None], None


class StaticGraph(nn.Module):
    """The deployed network frozen at runtime keep ratio 1: no sorting, constant masks.

    ``StaticGraph(model)(images) == model(images, 1.0)``. Weights are copied from ``model``; each
    stage is the deployed stage around a frozen gate (:meth:`~prune_env.nets.gated.Stage.rebuild`).
    """

    def __init__(self, model: DeployedNet):
        super().__init__()
        self.stem = copy.deepcopy(model.stem)
        self.stages = nn.ModuleList(stage.rebuild(_FrozenGate(stage.gated)) for stage in model.stages)
        self.head = copy.deepcopy(model.head)
        self.train(model.training)

    def forward(self, images: Tensor) -> Tensor:
        x = self.stem(images)
        for stage in self.stages:
            x = stage(x, global_pool(x))[0]
        return self.head(x)


def export_onnx(model: DeployedNet, path: str | os.PathLike, input_shape: tuple[int, int, int], *, opset: int = 17,
                dynamic_batch: bool = True) -> Path:
    """Export ``StaticGraph(model)`` (eval mode) to ONNX at ``path``, written atomically.

    Uses the TorchScript-based exporter (``dynamo=False``), which needs no ``onnxscript``.
    The graph has one input ``images`` of shape ``(B, *input_shape)`` and one output ``logits``;
    ``B`` is symbolic when ``dynamic_batch``.
    """
    graph = StaticGraph(model).eval().cpu()
    example = torch.zeros(1, *input_shape)
    buffer = io.BytesIO()
    axes = {"images": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter warns that it is legacy
        torch.onnx.export(graph, (example,), buffer, dynamo=False, opset_version=opset, input_names=["images"],
                          output_names=["logits"], dynamic_axes=axes)
    return write_bytes(buffer.getvalue(), path)
