"""Exact cost accounting: per-sample MACs under runtime masks, stored parameters after static removal.

Rules (``docs/design.md``, "Cost accounting"):

* MACs of a conv: ``k_h * k_w * (C_in_active / groups) * C_out_active * H_out * W_out``, where
  ``C_in_active`` is what the producing prunable layer kept for this sample; linear layers
  likewise with ``k = H = W = 1``. Bias adds, BN, pooling and activations are not counted
  (as in ``torch.utils.flop_counter``, whose FLOPs are 2 x these MACs).
* Stored parameters: every backbone parameter, after removing the permanent sets; a removed
  output channel also removes its BN entries and the matching input slice of the next layer.
* Overheads (importance predictors ``f`` and static importances ``u_s``) are counted apart.
* Budgets: "sparsity s" is the cost of the network that keeps ``ceil(s * C)`` channels in every
  prunable layer, as a fraction of the dense cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from prune_env.nets.gated import GatedNet
from prune_env.nets.masks import keep_count


@dataclass(frozen=True)
class CostEntry:
    """A conv, linear or BN module of the backbone and how its channels follow the gates.

    ``in_layer`` / ``out_layer`` name the prunable layer whose kept channels this module's
    input / output channels follow, or -1 when they are fixed.
    """

    name: str
    kind: str  # "conv", "linear" or "bn"
    in_channels: int
    out_channels: int
    kernel: int  # k_h * k_w (1 for linear and BN)
    groups: int
    spatial: int  # H_out * W_out (1 for linear)
    has_bias: bool
    in_layer: int
    out_layer: int

    def macs(self, c_in: Tensor, c_out: Tensor) -> Tensor:
        if self.kind == "bn":
            return torch.zeros_like(c_in, dtype=torch.float64)
        return self.kernel * (c_in.double() / self.groups) * c_out.double() * self.spatial

    def params(self, c_in: Tensor, c_out: Tensor) -> Tensor:
        if self.kind == "bn":
            return 2 * c_out.double()
        weight = self.kernel * (c_in.double() / self.groups) * c_out.double()
        return weight + (c_out.double() if self.has_bias else 0.0)


class CostModel:
    """MAC and parameter accounting of a :class:`GatedNet` at a given input shape.

    Args:
        net: the gated network.
        input_shape: ``(C, H, W)`` of one input image.
    """

    def __init__(self, net: GatedNet, input_shape: tuple[int, int, int]):
        self.input_shape = tuple(int(v) for v in input_shape)
        self.channels = torch.tensor(net.channels, dtype=torch.long)
        self.in_channels_of_layer = torch.tensor(net.in_channels, dtype=torch.long)
        self.num_layers = net.num_layers
        self.entries = self._trace(net)
        self._macs_q = self._macs_form()
        # predictor input follows the previous layer exactly when the layer's conv input does
        conv_in = {e.out_layer: e.in_layer for e in self.entries if e.kind == "conv" and e.out_layer >= 0}
        self._predictor_in_layer = [conv_in[t] for t in range(self.num_layers)]
        importance = {id(p) for p in net.importance_parameters()}
        counted = sum(e.params(torch.tensor(e.in_channels), torch.tensor(e.out_channels)).item() for e in self.entries)
        total = sum(p.numel() for p in net.parameters() if id(p) not in importance)
        self.fixed_params = int(total - counted)  # parameters outside conv / linear / BN modules
        full = self.channels.unsqueeze(0)
        self.dense_macs = float(self.macs(full)[0])
        self.dense_params = float(self.params(self.channels))

    # ------------------------------------------------------------------ construction
    def _trace(self, net: GatedNet) -> list[CostEntry]:
        roles: dict[int, tuple[int, int]] = {}
        for t, stage in enumerate(net.stages):
            previous = t - 1 if net.reads_previous(t) else -1
            for module, source, output_follows_gate in stage.cost_roles():
                in_layer = {"previous": previous, "this": t, None: -1}[source]
                roles[id(module)] = (in_layer, t if output_follows_gate else -1)
        first_head = net.head_consumer()
        if first_head is not None and net.stages[-1].gated_output:
            roles[id(first_head[1])] = (net.num_layers - 1, -1)

        predictors = {id(g.predictor) for g in net.layers}
        shapes: dict[int, tuple[str, tuple]] = {}
        hooks = []
        for name, module in net.named_modules():
            if id(module) in predictors or not isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
                continue

            def hook(mod, inputs, output, name=name):
                shapes[id(mod)] = (name, tuple(output.shape))

            hooks.append(module.register_forward_hook(hook))
        was_training, old_cfg = net.training, net.gate_config
        try:
            net.eval()
            net.configure(gating=False)
            with torch.no_grad():
                device = next(net.parameters()).device
                net(torch.zeros(1, *self.input_shape, device=device))
        finally:
            for h in hooks:
                h.remove()
            net.train(was_training)
            net.gate_config = old_cfg

        entries = []
        for module in net.modules():
            if id(module) not in shapes:
                continue
            name, out_shape = shapes[id(module)]
            in_layer, out_layer = roles.get(id(module), (-1, -1))
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                entries.append(CostEntry(name, "conv", module.in_channels, module.out_channels, kh * kw, module.groups,
                                         out_shape[2] * out_shape[3], module.bias is not None, in_layer, out_layer))
            elif isinstance(module, nn.Linear):
                entries.append(CostEntry(name, "linear", module.in_features, module.out_features, 1, 1, 1,
                                         module.bias is not None, in_layer, out_layer))
            elif module.affine:
                entries.append(CostEntry(name, "bn", module.num_features, module.num_features, 1, 1, 1, True, -1, out_layer))
        return entries

    # ------------------------------------------------------------------ helpers
    def _active(self, counts: Tensor, layer: int, full: int) -> Tensor:
        if layer < 0:
            return torch.full(counts.shape[:1], full, dtype=torch.long)
        return counts[:, layer]

    def _as_counts(self, counts) -> Tensor:
        c = torch.as_tensor(counts, dtype=torch.long).cpu()
        if c.dim() == 1:
            c = c.unsqueeze(0)
        if c.shape[-1] != self.num_layers:
            raise ValueError(f"expected {self.num_layers} channel counts per sample, got shape {tuple(c.shape)}")
        return c

    def uniform_counts(self, keep_ratio: float) -> Tensor:
        """``(L,)`` channels kept per layer by a uniform keep ratio: ``max(1, ceil(s * C))``."""
        return torch.stack([keep_count(keep_ratio, int(c)) for c in self.channels])

    # ------------------------------------------------------------------ MACs
    def _macs_form(self) -> Tensor:
        """``Q`` with ``macs(kept) = c Q c^T`` for ``c = [kept, 1]``: every conv / linear contributes
        ``k * spatial / groups`` times its (active or fixed) input and output channel counts."""
        L = self.num_layers
        q = torch.zeros(L + 1, L + 1, dtype=torch.float64)
        for e in self.entries:
            if e.kind == "bn":
                continue
            weight = e.kernel * e.spatial / e.groups
            weight *= 1 if e.in_layer >= 0 else e.in_channels
            weight *= 1 if e.out_layer >= 0 else e.out_channels
            q[e.in_layer if e.in_layer >= 0 else L, e.out_layer if e.out_layer >= 0 else L] += weight
        return q

    def macs(self, kept) -> Tensor:
        """Per-sample backbone MACs given ``(B, L)`` (or ``(L,)``) kept channel counts; ``(B,)`` float64."""
        kept = self._as_counts(kept)
        c = torch.cat([kept.double(), torch.ones(kept.shape[0], 1, dtype=torch.float64)], 1)
        return ((c @ self._macs_q) * c).sum(1)

    def macs_ratio(self, kept) -> Tensor:
        """Per-sample MACs as a fraction of the dense network's."""
        return self.macs(kept) / self.dense_macs

    def overhead_macs(self, kept) -> Tensor:
        """Per-sample MACs of the importance predictors (reported apart from the backbone)."""
        kept = self._as_counts(kept)
        total = torch.zeros(kept.shape[0], dtype=torch.float64)
        for t in range(self.num_layers):
            c_in = self._active(kept, self._predictor_in_layer[t], int(self.in_channels_of_layer[t]))
            total += c_in.double() * float(self.channels[t])
        return total

    # ------------------------------------------------------------------ parameters
    def params(self, stored) -> Tensor | float:
        """Stored backbone parameters given channels stored per layer (``(L,)`` -> float, ``(B, L)`` -> ``(B,)``)."""
        single = torch.as_tensor(stored).dim() == 1
        stored = self._as_counts(stored)
        total = torch.full((stored.shape[0],), float(self.fixed_params), dtype=torch.float64)
        for e in self.entries:
            total += e.params(self._active(stored, e.in_layer, e.in_channels), self._active(stored, e.out_layer, e.out_channels))
        return float(total[0]) if single else total

    def params_ratio(self, stored) -> Tensor | float:
        """Stored parameters as a fraction of the dense network's."""
        return self.params(stored) / self.dense_params

    def overhead_params(self, stored) -> float:
        """Parameters of the predictors (``Linear(C_in, C_out)``) and ``u_s`` given stored channels."""
        stored = self._as_counts(stored)[0]
        total = 0
        for t in range(self.num_layers):
            prev = self._predictor_in_layer[t]
            c_in = int(stored[prev]) if prev >= 0 else int(self.in_channels_of_layer[t])
            c_out = int(stored[t])
            total += c_in * c_out + 2 * c_out
        return float(total)

    # ------------------------------------------------------------------ budgets
    def macs_budget(self, sparsity: float) -> float:
        """MAC budget of "sparsity s" as a fraction of dense MACs."""
        return float(self.macs_ratio(self.uniform_counts(sparsity))[0])

    def params_budget(self, sparsity: float) -> float:
        """Parameter budget of "sparsity s" as a fraction of dense stored parameters."""
        return float(self.params_ratio(self.uniform_counts(sparsity)))

    def summary(self) -> dict:
        """Dense figures, as recorded in checkpoints."""
        return {
            "input_shape": list(self.input_shape),
            "dense_macs": self.dense_macs,
            "dense_params": self.dense_params,
            "overhead_macs": float(self.overhead_macs(self.channels)[0]),
            "overhead_params": self.overhead_params(self.channels),
            "channels": self.channels.tolist(),
        }
