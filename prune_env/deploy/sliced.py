"""Dynamic slicing: runtime pruning whose keep sets are prefixes of one channel order per layer.

Under ``runtime_order="static"`` (:class:`~prune_env.nets.gated.GateConfig`) the runtime mask
ranks the static importance ``u_s``, so the channels an input keeps at layer ``t`` are the first
``k_t`` of the order :func:`~prune_env.deploy.export_static` stores them in, and ``k_t`` depends
on ``d_r`` alone (with ``d_s``, ``R_r``, ``C``; as in DS-Net's dynamic slicing, Li et al.,
CVPR 2021). A layer then runs ``weight[:k_t, :k_{t-1}]``: no gather of weights or features, no
index tensors, no mask; what is left per input is the Eq. 2 factor ``u_r u_s`` of the ``k_t``
kept channels, computed from the first ``k_t`` predictor rows.

Batches: inputs whose count rows ``(k_0, ..., k_{L-1})`` are equal run as one dense slice.
Where rows differ, :func:`plan_groups` splits the batch into segments of the rows sorted by
MACs; a segment runs at the column-wise maximum of its rows, each input zeroing the channels
past its own count through its Eq. 2 factor (exact: those channels are pruned, zero, in the
masked network too). The segments minimise a time model (:class:`SliceCost`): one group per
distinct row, one group for the whole batch, or anything between.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from prune_env.nets.masks import _ROUNDING_SLACK, tradeoff_mask

#: contiguous weight slices kept per layer before the cache starts again
MAX_CACHED_SLICES = 256


class LayerSlices:
    """One layer's weights in stored order, its keep counts, and contiguous slices cached by shape.

    ``plan`` is the executor's layer plan: its folded conv (``plan.conv``), the gate consumer
    (``plan.consumer``), the predictor (``plan.pred_weight_t``, ``plan.pred_bias``, full ``C``
    columns) and the Eq. 2 factor left after folding (``plan.scale_factor``, full ``C`` or None).
    """

    def __init__(self, plan, survivors: Tensor):
        self.plan = plan
        self.survivors = survivors
        self.stored = int(survivors.numel())
        self.pred_weight_t = plan.pred_weight_t.index_select(1, survivors).contiguous()  # (S_in, S)
        self.pred_bias = plan.pred_bias.index_select(0, survivors).contiguous()
        self.factor = None if plan.scale_factor is None else plan.scale_factor.index_select(0, survivors).contiguous()
        self._counts: dict[float, int] = {}
        self._weights: dict[tuple[int, int | None], tuple[Tensor, Tensor]] = {}
        self._consumer: dict[int, Tensor] = {}
        #: ``H * W`` of the last output (what the batch planner's MAC count needs)
        self.out_size = 0

    def count(self, d_r: float) -> int:
        """Stored channels kept at runtime keep ratio ``d_r``: the first ``count`` in stored order.

        Computed once per ratio by the trade-off pruner on ``u_s`` (so it is the masked network's
        count, ties and ``count_multiple`` included), with a check that the kept set is a prefix.
        """
        k = self._counts.get(d_r)
        if k is None:
            p = self.plan
            u_s = p.u_s.unsqueeze(0)
            kept = ~tradeoff_mask(u_s, u_s, d_r, p.static_keep_ratio, p.rate, p.multiple)[0].index_select(0, self.survivors)
            k = int(kept.sum())
            if not bool(kept[:k].all()):
                raise AssertionError("runtime_order='static': the kept channels are not a prefix of the stored order")
            self._counts[d_r] = k
        return k

    def counts(self, ratios: np.ndarray) -> np.ndarray:
        """:meth:`count` of every runtime keep ratio in ``ratios`` (``(B,)``), vectorised for ``R_r = 1``."""
        p = self.plan
        if p.rate == 1.0:  # M = M_r, nothing removed: keep_count(d_r, C, multiple)
            k = np.clip(np.ceil(ratios * p.channels - _ROUNDING_SLACK), 1, p.channels).astype(np.int64)
            return k if p.multiple == 1 else np.minimum(-(-k // p.multiple) * p.multiple, p.channels)
        values, inverse = np.unique(ratios, return_inverse=True)
        return np.array([self.count(float(d)) for d in values], dtype=np.int64)[inverse.reshape(-1)]

    def weights(self, k: int, k_in: int | None) -> tuple[Tensor, Tensor]:
        """Contiguous folded ``weight[:k, :k_in]`` and ``bias[:k]`` (``k_in`` None: every input)."""
        key = (k, k_in)
        found = self._weights.get(key)
        if found is None:
            conv = self.plan.conv
            w = conv.weight[:k] if k_in is None else conv.weight[:k, :k_in]
            found = (w.contiguous(), conv.bias[:k])
            if len(self._weights) >= MAX_CACHED_SLICES:
                self._weights.clear()
            self._weights[key] = found
        return found

    def consumer_weight(self, k: int) -> Tensor:
        """The gate consumer's contiguous folded ``weight[:, :k]``."""
        found = self._consumer.get(k)
        if found is None:
            found = self.plan.consumer.weight[:, :k].contiguous()
            if len(self._consumer) >= MAX_CACHED_SLICES:
                self._consumer.clear()
            self._consumer[k] = found
        return found

    def __call__(self, x: Tensor, k: int, k_in: int | None, own: Tensor | None) -> tuple[Tensor, int | None]:
        """The layer on the first ``k`` stored channels; ``x`` holds the first ``k_in`` of the previous layer
        (None: all its channels). ``own``: ``(G,)`` counts of the group's inputs where they differ (their
        channels from ``own[i]`` on are zeroed), else None. Returns the output and the channels it holds."""
        p = self.plan
        pooled = x.sum(dim=(2, 3))
        rows = k_in if (k_in is not None and p.reads_previous) else None
        pred = self.pred_weight_t[:, :k] if rows is None else self.pred_weight_t[:rows, :k]
        u = torch.addmm(self.pred_bias[:k], pooled, pred, alpha=1.0 / (x.shape[2] * x.shape[3]))
        if self.factor is not None:
            u = u * self.factor[:k]
        if own is not None:
            u = u.masked_fill(torch.arange(k, device=u.device)[None, :] >= own[:, None], 0.0)
        weight, bias = self.weights(k, rows)
        y = p.conv.conv(x, weight, bias)
        self.out_size = y.shape[2] * y.shape[3]
        y = torch.relu_(y) if p.act is None else p.act(y)
        y = y.mul_(u.view(*u.shape, 1, 1))
        if p.consumer is not None:
            consumer, w2 = p.consumer, self.consumer_weight(k)
            return p.stage.tail(x, y, lambda h: consumer.conv(h, w2, consumer.bias)), None
        if not p.skip_tail:
            y = p.stage.tail(x, y)
        return y, k


@dataclass
class SliceCost:
    """Time model for :func:`plan_groups`: a group costs ``layers * overhead + inputs * macs / rate``.

    ``overhead`` is the fixed time of one layer call (seconds), ``rate`` MACs per second: rough
    single-thread CPU figures (their ratio is what matters); the plan never changes the outputs.
    """

    overhead: float = 150e-6
    rate: float = 20e9
    #: planning time per distinct count row (seconds): below this saving the batch runs as one group
    planning: float = 40e-6
    #: at most this many candidate groups (the sorted rows are pooled into as many buckets first)
    max_groups: int = 12


def plan_groups(counts: np.ndarray, macs_of: Callable[[np.ndarray], np.ndarray], layers: int, cost: SliceCost,
                policy: str = "auto") -> list[tuple[np.ndarray, np.ndarray]]:
    """Split a batch into groups, each run as one dense slice: ``[(members, count row), ...]``.

    ``counts`` is ``(B, L)`` (each input's keep counts), ``macs_of`` maps ``(G, L)`` count rows to
    ``(G,)`` MACs per input. ``policy``: ``"split"`` one group per distinct row, ``"union"`` one
    group at the column-wise maximum, ``"auto"`` the segments of the distinct rows sorted by MACs
    that minimise :class:`SliceCost` (dynamic programming over the ``D`` distinct rows, ``O(D^2)``).
    """
    everyone = np.arange(len(counts))
    if policy == "union":
        return [(everyone, counts.max(0))]
    if policy == "auto":
        union = len(counts) * float(macs_of(counts.max(0)[None])[0]) / cost.rate
        if union - float(macs_of(counts).sum()) / cost.rate < cost.planning * len(counts):
            return [(everyone, counts.max(0))]  # splitting could not win back its planning
    rows, inverse = np.unique(counts, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    if len(rows) == 1:
        return [(everyone, rows[0])]
    if policy == "split":
        return [(np.flatnonzero(inverse == g), rows[g]) for g in range(len(rows))]
    d = len(rows)
    own = macs_of(rows)
    sizes = np.bincount(inverse, minlength=d)
    order = np.argsort(own, kind="stable")
    rank = np.empty(d, dtype=np.int64)
    rank[order] = np.arange(d)
    position = rank[inverse]  # each input's row in sorted order
    rows, sizes = rows[order], sizes[order]
    if d > cost.max_groups:  # pool neighbouring rows into buckets of about equal size
        bucket = np.minimum(np.cumsum(sizes) - sizes, len(counts) - 1) * cost.max_groups // len(counts)
        position = bucket[position]
        rows = np.stack([rows[bucket == b].max(0) for b in np.unique(bucket)])
        d = len(rows)
        position = np.searchsorted(np.unique(bucket), position)
        sizes = np.bincount(position, minlength=d)
    # segment (i, j), rows i..j of the sorted ones, runs at their column-wise maximum
    tops = np.concatenate([np.maximum.accumulate(rows[i:], axis=0) for i in range(d)])
    starts = np.repeat(np.arange(d), np.arange(d, 0, -1))
    ends = np.concatenate([np.arange(i, d) for i in range(d)])
    members = np.cumsum(np.concatenate([[0], sizes]))
    seg = np.full((d, d), np.inf)
    seg[starts, ends] = layers * cost.overhead + (members[ends + 1] - members[starts]) * macs_of(tops) / cost.rate
    best = np.zeros(d + 1)
    first = np.zeros(d + 1, dtype=np.int64)
    for j in range(d):
        total = best[: j + 1] + seg[: j + 1, j]
        first[j + 1] = int(np.argmin(total))
        best[j + 1] = total[first[j + 1]]
    groups = []
    j = d
    while j > 0:
        i = int(first[j])
        groups.append((np.flatnonzero((position >= i) & (position < j)), rows[i:j].max(0)))
        j = i
    return groups[::-1]
