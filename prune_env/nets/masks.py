"""Channel masks from importance vectors: the keep-count rule and the trade-off pruner.

Conventions (paper Sec. 3.1-3.2, ``docs/design.md``):

* a mask is a boolean tensor of shape ``(B, C)``; ``True`` means *pruned* (the paper's 1);
* a keep ratio ``d`` keeps ``max(1, ceil(d * C))`` channels and prunes the rest, the ones
  with the smallest importance;
* ties in importance are broken deterministically: among equal values the channel with the
  lower index is pruned first (a stable sort);
* ``count_multiple=m`` rounds the runtime keep count up to a multiple of ``m`` (at most ``C``),
  shapes that vector kernels and batch grouping like (1 = the paper's rule).

Everything is batched: importances are ``(B, C)`` (or ``(C,)``, broadcast over the batch) and
ratios are scalars or ``(B,)`` tensors, so one call computes the masks of a whole batch with
no per-sample Python loop.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Keep ratios such as 0.7 are not exact in binary floating point (0.7 * 10 == 7.000000000000001),
# so the rounding functions below give way by this much before rounding.
_ROUNDING_SLACK = 1e-6


def _as_batch(value: float | Tensor, batch: int, device: torch.device) -> Tensor:
    """A float64 ``(B,)`` tensor from a scalar or a ``(B,)`` tensor."""
    t = torch.as_tensor(value, dtype=torch.float64, device=device)
    if t.dim() == 0:
        return t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"expected a scalar or a tensor of shape ({batch},), got {tuple(t.shape)}")
    return t


def keep_count(keep_ratio: float | Tensor, channels: int, multiple: int = 1) -> Tensor:
    """Number of channels a keep ratio keeps: ``max(1, ceil(d * C))`` (paper Sec. 3.1.1).

    ``multiple=m`` rounds that up to a multiple of ``m``, at most ``C``. Returns an int64 tensor
    with the shape of ``keep_ratio``.
    """
    d = torch.as_tensor(keep_ratio, dtype=torch.float64)
    k = torch.ceil(d * channels - _ROUNDING_SLACK).clamp(1, channels).long()
    if check_multiple(multiple) != 1:
        k = torch.clamp(-(-k // multiple) * multiple, max=channels)
    return k


def check_multiple(multiple: int) -> int:
    """``multiple`` if it is a positive integer, else a ValueError naming ``count_multiple``."""
    if isinstance(multiple, bool) or not hasattr(multiple, "__index__") or int(multiple) < 1:
        raise ValueError(f"count_multiple must be an integer >= 1, got {multiple!r}")
    return int(multiple)


def permanent_count(static_keep_ratio: float | Tensor, tradeoff_rate: float, channels: int) -> Tensor:
    """Size of the permanent set P: ``floor((1 - d_s) * (1 - R_r) * C)`` (paper Sec. 3.4).

    Never more than ``C - keep_count(d_s, C)``, so P always lies inside the static mask.
    """
    d = torch.as_tensor(static_keep_ratio, dtype=torch.float64)
    n = torch.floor((1.0 - d) * (1.0 - tradeoff_rate) * channels + _ROUNDING_SLACK).long()
    return torch.minimum(n.clamp(min=0), channels - keep_count(d, channels))


def importance_ranks(importance: Tensor) -> Tensor:
    """Rank of every channel by ascending importance (0 = least important), ties by index."""
    order = torch.sort(importance, dim=-1, stable=True).indices
    ranks = torch.empty_like(order)
    arange = torch.arange(importance.shape[-1], device=importance.device).expand_as(order)
    return ranks.scatter_(-1, order, arange)


def smallest_mask(importance: Tensor, n_prune: Tensor | int, candidates: Tensor | None = None) -> Tensor:
    """Mask of the ``n_prune`` least important channels (per row), optionally among ``candidates``.

    Args:
        importance: ``(B, C)`` importance values.
        n_prune: how many to prune, an int or a ``(B,)`` integer tensor.
        candidates: optional ``(B, C)`` boolean tensor; only these channels may be pruned
            (``n_prune`` must not exceed their number).
    """
    if candidates is not None:
        importance = importance.masked_fill(~candidates, float("inf"))
    n = torch.as_tensor(n_prune, device=importance.device).reshape(-1, 1)
    mask = importance_ranks(importance) < n
    if candidates is not None:
        mask &= candidates
    return mask


def keep_ratio_mask(importance: Tensor, keep_ratio: float | Tensor, multiple: int = 1) -> Tensor:
    """Mask pruning ``C - keep_count(d, C, multiple)`` least important channels (``M_r`` or ``M_s``)."""
    batch, channels = importance.shape
    d = _as_batch(keep_ratio, batch, importance.device)
    return smallest_mask(importance, channels - keep_count(d, channels, multiple))


def permanent_mask(static_importance: Tensor, static_keep_ratio: float | Tensor, tradeoff_rate: float) -> Tensor:
    """The permanent set P: the ``permanent_count`` channels of smallest static importance.

    ``static_importance`` is ``(B, C)`` (or ``(C,)``, giving a ``(1, C)`` mask).
    """
    u_s = static_importance.reshape(-1, static_importance.shape[-1])
    batch, channels = u_s.shape
    d = _as_batch(static_keep_ratio, batch, u_s.device)
    return smallest_mask(u_s, permanent_count(d, tradeoff_rate, channels))


def tradeoff_mask(
    runtime_importance: Tensor,
    static_importance: Tensor,
    runtime_keep_ratio: float | Tensor,
    static_keep_ratio: float | Tensor,
    tradeoff_rate: float,
    count_multiple: int = 1,
) -> Tensor:
    """The trade-off pruner ``g`` (paper Eq. 1, 3-5) with the permanent set P forced in.

    * ``M_r``: prune the ``C - keep(d_r)`` smallest ``u_r`` (``keep(d_r)`` rounded up to a multiple
      of ``count_multiple``); ``M_s`` likewise from ``u_s``, ``d_s``;
    * ``M_o = M_s AND M_r`` (Eq. 3);
    * of ``M_r - M_o`` prune the ``floor(R_r * |M_r - M_o|)`` smallest by ``u_r`` (Eq. 4);
    * of ``M_s - M_o`` prune the ``floor((1 - R_r) * |M_s - M_o|)`` smallest by ``u_s``;
    * ``M = M_o + M_r_hat + M_s_hat`` (Eq. 5), united with P (``docs/design.md``, "Deployment consistency").

    ``R_r = 1`` gives ``M = M_r`` (pure runtime pruning), ``R_r = 0`` gives ``M = M_s`` (pure
    static pruning).

    Args:
        runtime_importance: ``u_r``, ``(B, C)``.
        static_importance: ``u_s``, ``(C,)`` or ``(B, C)``.
        runtime_keep_ratio: ``d_r``, a scalar or ``(B,)``.
        static_keep_ratio: ``d_s``, a scalar or ``(B,)``.
        tradeoff_rate: ``R_r`` in ``[0, 1]``.
        count_multiple: round the runtime keep count up to a multiple of this (1: no rounding).

    Returns:
        ``(B, C)`` boolean mask, ``True`` = pruned.
    """
    if not 0.0 <= tradeoff_rate <= 1.0:
        raise ValueError(f"tradeoff_rate (R_r) must be in [0, 1], got {tradeoff_rate}")
    u_r = runtime_importance
    u_s = static_importance.expand_as(u_r)
    if tradeoff_rate == 1.0:  # exactly M_r: nothing of M_s - M_o is pruned and P is empty
        return keep_ratio_mask(u_r, runtime_keep_ratio, count_multiple)
    if tradeoff_rate == 0.0:  # exactly M_s (P lies inside it)
        return keep_ratio_mask(u_s, static_keep_ratio)
    m_r = keep_ratio_mask(u_r, runtime_keep_ratio, count_multiple)
    m_s = keep_ratio_mask(u_s, static_keep_ratio)
    m_o = m_r & m_s
    only_r = m_r & ~m_o
    only_s = m_s & ~m_o
    n_r = torch.floor(tradeoff_rate * only_r.sum(-1) + _ROUNDING_SLACK).long()
    n_s = torch.floor((1.0 - tradeoff_rate) * only_s.sum(-1) + _ROUNDING_SLACK).long()
    mask = m_o | smallest_mask(u_r, n_r, only_r) | smallest_mask(u_s, n_s, only_s)
    return mask | permanent_mask(u_s, static_keep_ratio, tradeoff_rate)


#: runtime channel orders: ``"importance"`` ranks the runtime mask by the per-input ``u_r``
#: (paper Sec. 3.1.1, the default), ``"static"`` by the static ``u_s``, so that every keep set
#: is a prefix of one order per layer, fixed at export (dynamic slicing)
RUNTIME_ORDERS = ("importance", "static")


def check_order(order: str) -> str:
    """``order`` if it is one of :data:`RUNTIME_ORDERS`, else a ValueError naming ``runtime_order``."""
    if order not in RUNTIME_ORDERS:
        raise ValueError(f"runtime_order must be one of {', '.join(map(repr, RUNTIME_ORDERS))}, got {order!r}")
    return order


def runtime_ranking(runtime_importance: Tensor, static_importance: Tensor, order: str) -> Tensor:
    """What the runtime mask ``M_r`` ranks under ``order``: ``u_r``, or ``u_s`` broadcast to ``u_r``'s shape.

    Under ``"static"`` the whole trade-off mask (Eq. 3-5, with P) ranks ``u_s`` only, so the kept
    channels are the ``k`` of largest ``u_s`` (ties: the higher index first) for a ``k`` that
    depends on ``d_r``, ``d_s``, ``R_r`` and ``C`` alone: a prefix of the descending ``u_s`` order.
    """
    if order == "importance":
        return runtime_importance
    check_order(order)
    return static_importance.expand_as(runtime_importance)


def static_order(static_importance: Tensor) -> Tensor:
    """Channel indices by descending ``u_s``, ties by descending index: the reverse of the stable
    ascending ranking, so every ``"static"``-order keep set is a prefix of it."""
    return torch.sort(static_importance, stable=True).indices.flip(0)
