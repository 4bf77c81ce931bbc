"""Runtime executor: compute only the channels each input keeps (paper Sec. 3.1, Eq. 2).

The masked network computes every output channel and multiplies the pruned ones by zero, so
runtime pruning saves no time ("no real speed-up" is the FBS re-implementations'
complaint). Here the importance predictor runs *first*, since ``u_r = f(GAP(F_in))`` needs only
the layer input; the trade-off mask then says which output channels this input keeps, and the
layer runs a smaller convolution whose weight holds just those output rows and just the input
channels the previous layer kept. The Eq. 2 factor ``(1 - M) (u_r * u_s)`` of the kept channels
is applied to the small output after the activation, as in the masked network.

Prepared once per model (eval-mode semantics):

* BatchNorm is folded into the conv weights and biases (``W' = W g / sqrt(v + eps)``,
  ``b' = (b - mean) g / sqrt(v + eps) + beta``), so a slice of a folded weight is conv + BN;
  after a ReLU, ``|u_s|`` is folded in too (``relu(z) u_s = relu(|u_s| z) sign(u_s)``), so the
  per-input factor left is ``u_r`` (times the sign where ``u_s < 0``), which top-``k`` returns;
* weights stay contiguous ``(C_out, C_in, k_h, k_w)``: ``index_select`` on dim 0 then dim 1
  is the cheapest slice (measured against channels-last layouts and advanced indexing);
* per layer, how the kept set is found: top-``k`` of ``u_r`` for ``R_r = 1`` (``M = M_r``, with
  a stable sort as fallback when ``u_r`` ties at the boundary), a constant for ``R_r = 0``
  (``M = M_s`` = P), the full trade-off pruner (:func:`~prune_env.nets.masks.tradeoff_mask`)
  otherwise. All give the masked network's mask, ties included;
* batch-1 convs of at least :data:`ONEDNN_MIN_MACS` call oneDNN directly (PyTorch sends small
  inputs to its slower im2col + GEMM path); a ``pool -> flatten -> linear`` head reads only
  the kept columns of the linear layer.

Batches: kept sets differ per input. Samples run together while their masks agree (always when
the masks are constant: ``R_r = 0`` or ``d_r = 1``). Where they differ, a layer either splits the
group (down to single samples on the batch-1 path) or runs the group on the *union* of its kept
channels, zeroing per sample what that sample prunes (exact: pruned channels are zero in the
masked network too). :class:`GroupCost` picks the cheaper by a small time model.

Slicing order: under ``runtime_order="static"`` every keep set is a prefix of the order the
export stores the channels in, and the executor runs dense slices ``weight[:k_out, :k_in]``
instead (:mod:`prune_env.deploy.sliced`): no gathers, and inputs with equal keep counts share
one conv whatever their ``u_r``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prune_env.deploy.export import DeployedNet, export_static
from prune_env.deploy.sliced import LayerSlices, SliceCost, plan_groups
from prune_env.nets.gated import GatedNet, Stage
from prune_env.nets.masks import importance_ranks, tradeoff_mask

# same slack as prune_env.nets.masks.keep_count, so the counts agree exactly
_ROUNDING_SLACK = 1e-6


def _keep_count(d: float, channels: int, multiple: int = 1) -> int:
    """``max(1, ceil(d * C))`` in float64, rounded up to ``multiple``, as :func:`~prune_env.nets.masks.keep_count`."""
    k = min(channels, max(1, math.ceil(d * channels - _ROUNDING_SLACK)))
    return k if multiple == 1 else min(channels, -(-k // multiple) * multiple)


def fold_bn(conv: nn.Conv2d, bn: nn.Module, out_scale: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Conv weight and bias with an eval-mode BatchNorm, then ``out_scale`` per output channel, folded in.

    Computed in float64; ``out_scale`` (non-negative) multiplies the output rows after BN.
    """
    weight = conv.weight.detach().double()
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros(weight.shape[0], dtype=torch.float64,
                                                                                 device=weight.device)
    if isinstance(bn, nn.BatchNorm2d):
        mean = bn.running_mean.double() if bn.track_running_stats else torch.zeros_like(bias)
        var = bn.running_var.double() if bn.track_running_stats else torch.ones_like(bias)
        gamma = bn.weight.detach().double() if bn.affine else torch.ones_like(bias)
        beta = bn.bias.detach().double() if bn.affine else torch.zeros_like(bias)
        factor = gamma / torch.sqrt(var + bn.eps)
        weight = weight * factor[:, None, None, None]
        bias = (bias - mean) * factor + beta
    elif not isinstance(bn, nn.Identity):
        raise NotImplementedError(f"cannot fold normalisation {type(bn).__name__}")
    if out_scale is not None:
        factor = out_scale.detach().double()
        weight = weight * factor[:, None, None, None]
        bias = bias * factor
    dtype = conv.weight.dtype
    return weight.to(dtype), bias.to(dtype)


#: per-sample MACs from which a batch-1 conv calls oneDNN directly: below PyTorch's own oneDNN
#: threshold (inputs of 20480 elements) its im2col + GEMM path is slower on mid-sized convs,
#: while oneDNN's fixed cost per call (about 40 us) loses on tiny ones (docs/results/latency.md)
ONEDNN_MIN_MACS = 3_000_000


def _onednn_available() -> bool:
    """Whether ``torch.mkldnn_convolution`` (oneDNN) can be called on CPU tensors."""
    return torch.backends.mkldnn.is_available() and hasattr(torch, "mkldnn_convolution")


@dataclass
class _ConvPlan:
    """A conv with BN folded in; weight ``(C_out, C_in, k_h, k_w)`` contiguous, sliced per input."""

    weight: Tensor
    bias: Tensor
    stride: list[int]
    padding: list[int]
    dilation: list[int]
    onednn: bool = False

    @classmethod
    def build(cls, conv: nn.Conv2d, bn: nn.Module, out_scale: Tensor | None = None) -> "_ConvPlan":
        if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise NotImplementedError("the executor supports ungrouped, zero-padded convs with numeric padding")
        weight, bias = fold_bn(conv, bn, out_scale)
        onednn = _onednn_available() and weight.dtype == torch.float32 and weight.device.type == "cpu"
        return cls(weight.contiguous(), bias.contiguous(), list(conv.stride), list(conv.padding), list(conv.dilation),
                   onednn)

    def weights(self, out_index: Tensor | None, in_index: Tensor | None) -> tuple[Tensor, Tensor]:
        """Folded weight and bias of the kept output rows and input columns (None = all)."""
        weight, bias = self.weight, self.bias
        if out_index is not None:
            weight = weight.index_select(0, out_index)
            bias = bias.index_select(0, out_index)
        if in_index is not None:
            weight = weight.index_select(1, in_index)
        return weight, bias

    def conv(self, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        """The conv (+ folded BN) with the given (sliced) weight and bias.

        Convs of at least :data:`ONEDNN_MIN_MACS` per sample go to oneDNN directly; the others
        to ``F.conv2d``, which picks its own kernel. Both compute the same convolution.
        """
        macs = weight.numel() * x.shape[-2] * x.shape[-1] // (self.stride[0] * self.stride[1])  # about, per sample
        if self.onednn and macs >= ONEDNN_MIN_MACS:
            return torch.mkldnn_convolution(x, weight, bias, self.padding, self.stride, self.dilation, 1)
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation)


_RUNTIME, _STATIC, _GENERAL = "runtime", "static", "general"


class _LayerPlan:
    """Everything one prunable layer needs at run time, precomputed.

    What reads the gate's channels comes from the stage's declarations (:class:`~prune_env.nets.gated.Stage`):
    the next layer (``gated_output``: the output holds the kept channels only), or the stage's own
    gate consumer, run here on the kept input columns of its BN-folded conv inside the stage's
    :meth:`~prune_env.nets.gated.Stage.tail`.
    """

    def __init__(self, stage: Stage, reads_previous: bool):
        gate = stage.gated
        if len(stage.gate_consumers) > 1:
            raise NotImplementedError(f"cannot execute {type(stage).__name__}: more than one layer reads its gate")
        self.stage = stage
        self.reads_previous = reads_previous
        survivors = gate.survivors
        self.act = None if isinstance(gate.act, nn.ReLU) else gate.act  # None: in-place ReLU
        self.u_s = gate.static_importance.detach().clone()
        # relu(z) u_s = relu(|u_s| z) sign(u_s): |u_s| is folded into the conv, the sign stays in the scale
        fold = self.act is None
        self.conv = _ConvPlan.build(gate.conv, gate.bn, self.u_s.abs()[survivors] if fold else None)
        if not fold:
            self.scale_factor: Tensor | None = self.u_s
        elif bool((self.u_s < 0).any()):
            self.scale_factor = torch.where(self.u_s < 0, -1.0, 1.0).to(self.u_s.dtype)
        else:
            self.scale_factor = None
        self.pred_weight_t = gate.predictor.weight.detach().t().contiguous()  # (S_in, C)
        self.pred_bias = gate.predictor.bias.detach().clone()
        self.channels = gate.channels
        self.static_keep_ratio = gate.static_keep_ratio
        self.rate = gate.tradeoff_rate
        self.mode = _STATIC if gate.input_independent else (_RUNTIME if self.rate == 1.0 else _GENERAL)
        self.multiple = int(getattr(gate, "count_multiple", 1))
        #: ``runtime_order="static"``: keep sets are prefixes of the stored order (dynamic slicing)
        self.sliced = getattr(gate, "runtime_order", "importance") == "static" and not gate.input_independent
        self.stored = survivors.numel()
        self.has_removed = self.stored < self.channels
        self.full_to_stored = torch.full((self.channels,), -1, dtype=torch.long, device=survivors.device)
        self.full_to_stored[survivors] = torch.arange(self.stored, device=survivors.device)
        #: "every stored channel, in stored order": compared by identity, it skips all gathers
        self.survivors = survivors
        # full indices kept when the mask is constant
        self.static_kept = survivors if not bool(gate.dense_mask.any()) else survivors[~gate.dense_mask]
        #: the stage's gate consumer (conv + folded norm), or None when the gate's channels leave the stage
        self.consumer = None
        for conv, norm in stage.gate_consumers:
            self.consumer = _ConvPlan.build(stage.get_submodule(conv), stage.get_submodule(norm))
        # a tail of eval-mode identities (dropout) is skipped
        path = [m for name in stage.gate_path for m in stage.get_submodule(name).modules()]
        self.skip_tail = stage.gated_output and all(isinstance(m, (nn.Identity, nn.Dropout, nn.Sequential)) for m in path)
        if self.sliced:
            self.slices = LayerSlices(self, survivors)

    def predict(self, x: Tensor, kept_prev: Tensor | None) -> Tensor:
        """``u_r = f(GAP(x))``, ``(G, C)``, before the conv; ``x`` holds the stored inputs ``kept_prev``."""
        pred = self.pred_weight_t if kept_prev is None else self.pred_weight_t.index_select(0, kept_prev)
        return torch.addmm(self.pred_bias, x.sum(dim=(2, 3)), pred, alpha=1.0 / (x.shape[2] * x.shape[3]))

    def gate_scale(self, u_r: Tensor) -> Tensor:
        """The Eq. 2 factor ``u_r u_s`` per full channel, less the ``|u_s|`` folded into the conv."""
        return u_r if self.scale_factor is None else u_r * self.scale_factor

    def keep_one(self, u_r: Tensor, d_r: float) -> tuple[Tensor, Tensor]:
        """Original indices of the channels one input keeps, and their ``u_r`` (``u_r`` is ``(C,)``)."""
        if self.mode == _STATIC:
            return self.static_kept, u_r.index_select(0, self.static_kept)
        channels = self.channels
        if self.mode == _RUNTIME:  # M = M_r: prune the C - k smallest u_r, ties by index (stable)
            k = _keep_count(d_r, channels, self.multiple)
            if k == channels:  # R_r = 1 removes nothing, so these are the survivors (all, in order)
                return self.survivors, u_r
            values, index = torch.topk(u_r, k + 1)
            smallest_kept, largest_pruned = values[k - 1 : k + 1].tolist()
            if smallest_kept != largest_pruned:  # no tie at the boundary: the k largest are the kept set
                return index[:k], values[:k]
            kept = torch.argsort(u_r, stable=True)[channels - k:]
        else:
            mask = tradeoff_mask(u_r.unsqueeze(0), self.u_s, d_r, self.static_keep_ratio, self.rate, self.multiple)[0]
            kept = torch.nonzero(~mask).flatten()
        return kept, u_r.index_select(0, kept)

    def keep_many(self, u_r: Tensor, d_r: list[float]) -> Tensor | None:
        """``(G, C)`` keep masks of a group (True = kept), or None when it is ``static_kept`` for all."""
        if self.mode == _STATIC:
            return None
        if self.mode == _RUNTIME:
            counts = {d: self.channels - _keep_count(d, self.channels, self.multiple) for d in set(d_r)}
            if not any(counts.values()):  # every sample keeps every channel
                return None
            n_prune = torch.tensor([counts[d] for d in d_r], device=u_r.device)
            return importance_ranks(u_r) >= n_prune[:, None]
        ratios = torch.tensor(d_r, dtype=torch.float64, device=u_r.device)
        return ~tradeoff_mask(u_r, self.u_s, ratios, self.static_keep_ratio, self.rate, self.multiple)

    def out_size(self, height: int, width: int) -> int:
        """``H_out * W_out`` of the gated conv for an input of ``height x width``."""
        conv = self.conv
        h = (height + 2 * conv.padding[0] - conv.dilation[0] * (conv.weight.shape[2] - 1) - 1) // conv.stride[0] + 1
        w = (width + 2 * conv.padding[1] - conv.dilation[1] * (conv.weight.shape[3] - 1) - 1) // conv.stride[1] + 1
        return h * w

    def macs_per_kept_channel(self, in_channels: int, height: int, width: int) -> int:
        """MACs one kept output channel costs (its conv row, plus its column in the stage's gate consumer)."""
        kernel = self.conv.weight.shape[2] * self.conv.weight.shape[3]
        macs = kernel * in_channels * self.out_size(height, width)
        if self.consumer is not None:
            w2 = self.consumer.weight
            macs += w2.shape[0] * w2.shape[2] * w2.shape[3] * self.out_size(height, width)
        return macs

    def __call__(self, x: Tensor, scale: Tensor, kept_full: Tensor, kept_prev: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """The layer on the kept channels only: ``act(conv(x)) * scale`` (Eq. 2 on the small output).

        ``kept_full`` holds original channel indices and ``scale`` the ``(G, k)`` factors
        ``(1 - M) (u_r u_s)`` of those channels, less what the conv holds (:meth:`gate_scale`);
        ``kept_prev`` the stored channels of the previous
        layer that ``x`` holds (None = all, in order). Returns the output and the stored channels
        it holds.
        """
        if kept_full is self.survivors:
            kept_pos = None
        else:
            kept_pos = self.full_to_stored.index_select(0, kept_full) if self.has_removed else kept_full
        conv = self.conv
        weight, bias = conv.weights(kept_pos, kept_prev if self.reads_previous else None)
        y = conv.conv(x, weight, bias)
        y = torch.relu_(y) if self.act is None else self.act(y)
        y = y.mul_(scale.view(*scale.shape, 1, 1))
        if self.consumer is not None:  # the gate's channels end inside the stage: its consumer reads the kept ones
            consumer = self.consumer
            w2, b2 = consumer.weights(None, kept_pos)
            return self.stage.tail(x, y, lambda h: consumer.conv(h, w2, b2)), None
        if not self.skip_tail:
            y = self.stage.tail(x, y)
        return y, kept_pos


def _pool_linear(head: nn.Module) -> tuple[Tensor, Tensor] | None:
    """``(W^T, b)`` of a ``global average pool -> flatten -> linear`` head, else None."""
    if not (isinstance(head, nn.Sequential) and len(head) == 3):
        return None
    pool, flatten, linear = head
    if not (isinstance(pool, nn.AdaptiveAvgPool2d) and pool.output_size in (1, (1, 1))
            and isinstance(flatten, nn.Flatten) and flatten.start_dim == 1 and flatten.end_dim == -1
            and isinstance(linear, nn.Linear)):
        return None
    weight = linear.weight.detach()
    bias = linear.bias.detach() if linear.bias is not None else weight.new_zeros(weight.shape[0])
    return weight.t().contiguous(), bias.clone()


@dataclass
class GroupCost:
    """Time model that chooses, where a group's masks differ, between splitting and the union.

    Splitting costs ``G * overhead + sum_i macs_i / single_rate``; the union costs
    ``overhead + G * macs_union / batch_rate`` (MACs of this layer; rates in MACs per second).
    The defaults are rough single-thread CPU figures; the choice never changes the outputs.
    """

    overhead: float = 60e-6
    single_rate: float = 30e9
    batch_rate: float = 45e9

    def prefer_union(self, group: int, kept_counts: list[int], union: int, macs_per_channel: int) -> bool:
        split = group * self.overhead + sum(kept_counts) * macs_per_channel / self.single_rate
        joint = self.overhead + group * union * macs_per_channel / self.batch_rate
        return joint < split


class RuntimeExecutor:
    """Inference that computes only the kept output channels and reads only the kept inputs.

    ``executor(images, d_r)`` equals the masked network ``net(images, d_r, d_s)`` (and the
    deployed ``model(images, d_r)``) in eval mode, up to float rounding. The executor holds
    its own folded copies of the weights: rebuild it after the weights change.

    Args:
        model: a :class:`DeployedNet`, or a :class:`GatedNet` (exported first with
            ``static_keep_ratios``).
        static_keep_ratios: ``d_s`` when ``model`` is a :class:`GatedNet`.
        channels_last: feed the convs channels-last activations (off by default: no faster
            at batch 1 on the CPUs measured, see docs/benchmarks).
        group_policy: where the masks of a batch differ: ``"split"`` into sub-groups,
            ``"union"`` (compute the union of the kept channels), or ``"auto"`` (per layer,
            by ``group_cost``). Outputs are the same either way. Under ``runtime_order="static"``
            the same names choose how inputs with different keep counts are grouped
            (:func:`~prune_env.deploy.sliced.plan_groups`: one group per count row, one group for
            the batch, or the cheapest segments by ``slice_cost``).
        group_cost: the time model behind ``"auto"``.
        slice_cost: the time model behind ``"auto"`` under ``runtime_order="static"``.
    """

    def __init__(self, model: DeployedNet | GatedNet, static_keep_ratios: Any = 1.0, *, channels_last: bool = False,
                 group_policy: str = "auto", group_cost: GroupCost | None = None, slice_cost: SliceCost | None = None):
        if isinstance(model, GatedNet):
            model = export_static(model, static_keep_ratios)
        if not isinstance(model, DeployedNet):
            raise TypeError(f"expected a DeployedNet or a GatedNet, got {type(model).__name__}")
        if group_policy not in ("auto", "split", "union"):
            raise ValueError(f"group_policy must be 'auto', 'split' or 'union', got {group_policy!r}")
        self.model = model
        self.channels_last = channels_last
        self.group_policy = group_policy
        self.group_cost = group_cost or GroupCost()
        self.slice_cost = slice_cost or SliceCost()
        self.stem = None if isinstance(model.stem, nn.Identity) else model.stem
        self.head = model.head
        with torch.no_grad():
            self.layers = [
                _LayerPlan(stage, reads_previous=model.reads_previous(t))
                for t, stage in enumerate(model.stages)
            ]
        self.num_layers = len(self.layers)
        self.pool_linear = _pool_linear(self.head)
        self.last_stored = model.stored_channels[-1]
        self.last_gated = model.stages[-1].gated_output
        #: every layer's keep set is a prefix of its stored order (``runtime_order="static"``)
        self.sliced = bool(self.layers) and all(layer.sliced for layer in self.layers)
        #: per image size, each layer's output ``H * W`` (recorded on the first sliced call)
        self._geometry: dict[tuple[int, ...], list[int]] = {}
        self._macs_coefficients: dict[tuple[int, ...], tuple[np.ndarray, ...]] = {}

    # ------------------------------------------------------------------ ratios
    def _ratio_rows(self, ratios: Any, batch: int) -> list[list[float]]:
        """``(B, L)`` python floats from a scalar, an ``(L,)`` sequence or a ``(B, L)`` tensor."""
        if isinstance(ratios, (int, float)):
            return [[float(ratios)] * self.num_layers] * batch
        r = torch.as_tensor(ratios)
        if r.dim() == 0:
            return [[float(r)] * self.num_layers] * batch
        if r.dim() == 1:
            if r.numel() != self.num_layers:
                raise ValueError(f"expected {self.num_layers} runtime keep ratios, got {r.numel()}")
            return [r.tolist()] * batch
        if r.shape != (batch, self.num_layers):
            raise ValueError(f"expected runtime keep ratios of shape ({batch}, {self.num_layers}), got {tuple(r.shape)}")
        return r.tolist()

    # ------------------------------------------------------------------ forward
    def run(self, images: Tensor, runtime_keep_ratios: Any = 1.0) -> tuple[Tensor, Tensor]:
        """Logits ``(B, classes)`` and the ``(B, L)`` channels each sample keeps per layer.

        The counts are the masked network's (what :meth:`CostModel.macs` charges); a group run
        on the union of its kept channels computes more than its members keep.

        ``runtime_keep_ratios`` is a scalar, an ``(L,)`` sequence or a ``(B, L)`` tensor.
        """
        with torch.inference_mode():
            batch = images.shape[0]
            rows = self._ratio_rows(runtime_keep_ratios, batch)
            kept = [[0] * self.num_layers for _ in range(batch)]
            x = images.contiguous(memory_format=torch.channels_last) if self.channels_last else images
            if self.stem is not None:
                x = self.stem(x)
            if self.sliced:
                logits = self._run_sliced(x, rows, kept, tuple(images.shape[1:]))
            elif batch == 1:
                logits = self._run_single(x, rows[0], kept[0])
            else:
                logits = self._run_group(x, list(range(batch)), rows, 0, None, kept)
        return logits, torch.tensor(kept, dtype=torch.long)

    def __call__(self, images: Tensor, runtime_keep_ratios: Any = 1.0) -> Tensor:
        return self.run(images, runtime_keep_ratios)[0]

    def _head(self, x: Tensor, kept_prev: Tensor | None) -> Tensor:
        if self.last_gated and kept_prev is not None:  # the head reads all stored channels
            if self.pool_linear is not None:  # GAP + linear on the kept channels only (the others are zero)
                weight_t, bias = self.pool_linear
                return torch.addmm(bias, x.sum(dim=(2, 3)), weight_t.index_select(0, kept_prev),
                                   alpha=1.0 / (x.shape[2] * x.shape[3]))
            full = x.new_zeros(x.shape[0], self.last_stored, *x.shape[2:])  # zeros back
            x = full.index_copy_(1, kept_prev, x)
        return self.head(x)

    # ------------------------------------------------------------------ dynamic slicing
    def _run_sliced(self, x: Tensor, rows: list[list[float]], kept: list[list[int]], shape: tuple[int, ...]) -> Tensor:
        """``runtime_order="static"``: every input's keep sets are prefixes; groups of inputs run as dense slices."""
        first = rows[0]
        if all(r is first or r == first for r in rows):  # one count row for all: no planning
            top = [layer.slices.count(float(d)) for layer, d in zip(self.layers, first)]
            kept[:] = [top] * len(rows)
            return self._sliced_group(x, top, None, shape)
        ratios = np.asarray(rows, dtype=np.float64).reshape(len(rows), self.num_layers)
        counts = np.empty(ratios.shape, dtype=np.int64)
        for t, layer in enumerate(self.layers):
            counts[:, t] = layer.slices.counts(ratios[:, t])
        kept[:] = counts.tolist()
        if bool((counts == counts[:1]).all()):
            return self._sliced_group(x, counts[0], None, shape)
        if shape not in self._geometry:  # one input through the widest slice records the layer sizes
            self._sliced_group(x[:1], counts.max(0), None, shape)
        groups = plan_groups(counts, lambda k: self._slice_macs(k, shape), self.num_layers, self.slice_cost,
                             self.group_policy)
        device = x.device
        if len(groups) == 1:
            return self._sliced_group(x, groups[0][1], torch.from_numpy(counts).to(device), shape)
        out = None
        for members, top in groups:
            own, index = counts[members], torch.from_numpy(members).to(device)
            sub = self._sliced_group(x.index_select(0, index), top,
                                     torch.from_numpy(own).to(device) if bool((own != top).any()) else None, shape)
            if out is None:
                out = sub.new_empty(x.shape[0], *sub.shape[1:])
            out[index] = sub
        return out

    def _sliced_group(self, x: Tensor, top: np.ndarray | list[int], own: Tensor | None, shape: tuple[int, ...]) -> Tensor:
        """One dense slice: layer ``t`` keeps its first ``top[t]`` stored channels; ``own`` ``(G, L)``
        the inputs' own counts where some are smaller (the rest of their channels are zeroed)."""
        k_in: int | None = None
        for t, layer in enumerate(self.layers):
            k = int(top[t])
            col = None if own is None else own[:, t]
            if col is not None and bool((col == k).all()):
                col = None
            x, k_in = layer.slices(x, k, k_in, col)
        if shape not in self._geometry:
            self._geometry[shape] = [layer.slices.out_size for layer in self.layers]
        if self.last_gated and k_in is not None:
            if self.pool_linear is not None:
                weight_t, bias = self.pool_linear
                return torch.addmm(bias, x.sum(dim=(2, 3)), weight_t[:k_in], alpha=1.0 / (x.shape[2] * x.shape[3]))
            full = x.new_zeros(x.shape[0], self.last_stored, *x.shape[2:])
            full[:, :k_in] = x
            x = full
        return self.head(x)

    def _slice_macs(self, counts: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """``(G,)`` MACs per input of the gated convs and their consumers at count rows ``(G, L)``, images of ``shape``."""
        coef = self._macs_coefficients.get(shape)
        if coef is None:
            geometry = self._geometry[shape]
            a, b, fixed_in, reads = [], [], [], []
            for t, layer in enumerate(self.layers):
                w = layer.conv.weight
                a.append(w.shape[2] * w.shape[3] * geometry[t])
                w2 = layer.consumer.weight if layer.consumer is not None else None
                b.append(0 if w2 is None else w2.shape[0] * w2.shape[2] * w2.shape[3] * geometry[t])
                fixed_in.append(w.shape[1])
                reads.append(t > 0 and layer.reads_previous)
            coef = self._macs_coefficients[shape] = tuple(np.asarray(v, dtype=np.float64) for v in (a, b, fixed_in, reads))
        a, b, fixed_in, reads = coef
        k = counts.astype(np.float64)
        k_in = np.where(reads.astype(bool), np.roll(k, 1, axis=1), fixed_in)
        return (k * (k_in * a + b)).sum(1)

    def _run_single(self, x: Tensor, row: list[float], kept: list[int]) -> Tensor:
        """The batch-1 path: predictor, kept set, small conv, layer after layer."""
        kept_prev = None
        for t, layer in enumerate(self.layers):
            kept_full, u_kept = layer.keep_one(layer.predict(x, kept_prev)[0], row[t])
            kept[t] = kept_full.numel()
            if layer.scale_factor is not None:
                u_kept = u_kept * layer.scale_factor.index_select(0, kept_full)
            x, kept_prev = layer(x, u_kept.view(1, -1), kept_full, kept_prev)
        return self._head(x, kept_prev)

    def _run_group(self, x: Tensor, ids: list[int], rows: list[list[float]], start: int, kept_prev: Tensor | None,
                   kept: list[list[int]]) -> Tensor:
        """Run samples ``ids`` (features ``x``) from layer ``start`` on; split where masks differ."""
        for t in range(start, self.num_layers):
            layer = self.layers[t]
            u_r = layer.predict(x, kept_prev)  # (G, C), before the conv
            importance = layer.gate_scale(u_r)
            if len(ids) == 1:
                kept_full = layer.keep_one(u_r[0], rows[0][t])[0]
                kept[ids[0]][t] = kept_full.numel()
            else:
                keep = layer.keep_many(u_r, [r[t] for r in rows])
                if keep is None:
                    kept_full = layer.static_kept
                    counts = [kept_full.numel()] * len(ids)
                else:
                    counts = keep.sum(1).tolist()
                    union = keep.any(0)
                    same = bool((keep == keep[:1]).all())
                    if not same and not self._prefer_union(layer, x, counts, int(union.sum())):
                        return self._split(x, ids, rows, t, kept_prev, kept, keep)
                    kept_full = layer.survivors if bool(union.all()) else torch.nonzero(union).flatten()
                    if not same:  # union: zero what each sample prunes
                        importance = importance.masked_fill(~keep, 0.0)
                for i, n in zip(ids, counts):
                    kept[i][t] = n
            x, kept_prev = layer(x, importance.index_select(1, kept_full), kept_full, kept_prev)
        return self._head(x, kept_prev)

    def _prefer_union(self, layer: _LayerPlan, x: Tensor, counts: list[int], union: int) -> bool:
        if self.group_policy != "auto":
            return self.group_policy == "union"
        per_channel = layer.macs_per_kept_channel(x.shape[1], x.shape[2], x.shape[3])
        return self.group_cost.prefer_union(len(counts), counts, union, per_channel)

    def _split(self, x: Tensor, ids: list[int], rows: list[list[float]], t: int, kept_prev: Tensor | None,
               kept: list[list[int]], keep: Tensor) -> Tensor:
        """Run the sub-groups of identical masks at layer ``t`` separately and merge their logits."""
        _, inverse = torch.unique(keep, dim=0, return_inverse=True)
        out = None
        for g in inverse.unique().tolist():
            members = torch.nonzero(inverse == g).flatten()
            positions = members.tolist()
            sub = self._run_group(x.index_select(0, members), [ids[i] for i in positions], [rows[i] for i in positions],
                                  t, kept_prev, kept)
            if out is None:
                out = sub.new_empty(len(ids), *sub.shape[1:])
            out[members] = sub
        return out
