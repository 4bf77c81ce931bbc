"""A difficulty signal for the runtime agent: the confidence of linear probes on each layer's pooled input.

Pooled features alone tell an easy input from a hard one only so well; the dynamic-width methods
that pay give their gates a confidence signal (early-exit networks, DS-Net's gate targets). Here
each prunable layer ``t`` gets a linear probe ``P_t: GAP(F_in_t) -> class logits`` (multinomial
logistic regression on standardised features), fitted once on training images with the backbone
frozen, under random uniform keep ratios so that it reads pruned features as well as dense ones.
Before layer ``t`` the agent then also observes the probe's

* top softmax probability,
* margin between the two most probable classes,
* entropy normalised to ``[0, 1]`` (divided by ``log(num_classes)``).

A probe costs ``C_in_t x num_classes`` MACs per input (:attr:`ConfidenceProbes.macs`), reported as
overhead beside the importance predictors'. The probes are a function of the network, its training
images and the seed: every environment built on the same checkpoint sees the same probes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

#: what a probe reports per input, in this order
CONFIDENCE_FEATURES = ("max_prob", "margin", "entropy")


@dataclass
class ConfidenceProbes:
    """One linear probe per prunable layer: ``softmax(((pooled - mean) / std) @ weight + bias)``."""

    mean: list[Tensor]
    std: list[Tensor]
    weight: list[Tensor]
    bias: list[Tensor]

    @property
    def num_classes(self) -> int:
        return int(self.bias[0].shape[0])

    @property
    def macs(self) -> int:
        """MACs per input of all probes together (one matrix-vector product each)."""
        return int(sum(w.numel() for w in self.weight))

    def logits(self, pooled: Tensor, t: int) -> Tensor:
        """The probe of layer ``t`` on ``GAP(F_in_t)`` ``(B, C_in_t)``: class logits ``(B, K)``."""
        x = (pooled.float() - self.mean[t]) / self.std[t]
        return x @ self.weight[t] + self.bias[t]

    def features(self, pooled: Tensor, t: int) -> Tensor:
        """``(B, 3)``: top probability, top-two margin and normalised entropy of layer ``t``'s probe."""
        probs = self.logits(pooled, t).softmax(1)
        top = probs.topk(2, dim=1).values if probs.shape[1] > 1 else torch.cat([probs, torch.zeros_like(probs)], 1)
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(1) / math.log(max(probs.shape[1], 2))
        return torch.stack([top[:, 0], top[:, 0] - top[:, 1], entropy], 1)

    @classmethod
    def fit(cls, net: torch.nn.Module, images: Tensor, labels: Tensor, *, low: float = 0.2, seed: int = 0,
            weight_decay: float = 1e-3, max_iter: int = 100) -> ConfidenceProbes:
        """Fit the probes of ``net`` (a :class:`~prune_env.nets.gated.GatedNet`, frozen) on ``images``.

        Each image runs at one uniform runtime keep ratio drawn from ``[low, 1]`` (every layer the
        same, static keep ratio 1), so the probes see the pooled features of pruned networks; each
        probe is an L2-regularised (``weight_decay``) multinomial logistic regression fitted by L-BFGS.
        """
        if not 0.0 < low <= 1.0:
            raise ValueError(f"low must be in (0, 1], got {low!r}")
        generator = torch.Generator().manual_seed(int(seed))
        ratios = (low + (1.0 - low) * torch.rand(images.shape[0], generator=generator)).to(images.device)
        with torch.no_grad():
            state = net.begin(images)
            pooled = []
            for _ in range(net.num_layers):
                pooled.append(state.pooled.float().cpu())
                state = net.step(state, ratios, 1.0)
        targets = labels.cpu().long()
        num_classes = int((getattr(net, "config", None) or {}).get("num_classes") or int(targets.max()) + 1)
        probes = {"mean": [], "std": [], "weight": [], "bias": []}
        for t, x in enumerate(pooled):
            mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
            z = (x - mean) / std
            weight = torch.zeros(z.shape[1], num_classes, requires_grad=True)
            bias = torch.zeros(num_classes, requires_grad=True)
            optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

            def closure(weight=weight, bias=bias, z=z, optimizer=optimizer) -> Tensor:
                optimizer.zero_grad()
                loss = F.cross_entropy(z @ weight + bias, targets) + weight_decay * weight.pow(2).sum()
                loss.backward()
                return loss

            torch.manual_seed(int(seed) + t)  # L-BFGS itself draws nothing; pinned for the record
            optimizer.step(closure)
            device = images.device
            probes["mean"].append(mean.to(device))
            probes["std"].append(std.to(device))
            probes["weight"].append(weight.detach().to(device))
            probes["bias"].append(bias.detach().to(device))
        return cls(**probes)


__all__ = ["CONFIDENCE_FEATURES", "ConfidenceProbes"]
