"""Exact masks of the keep-count rule and the trade-off pruner (paper Eq. 3-5) on hand-built vectors."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prune_env.nets.masks import (
    keep_count,
    keep_ratio_mask,
    permanent_count,
    permanent_mask,
    smallest_mask,
    tradeoff_mask,
)

U_R = torch.tensor([[0.1, 0.5, 0.3, 0.9, 0.2, 0.7, 0.4, 0.8]])
U_S = torch.tensor([0.8, 0.1, 0.2, 0.3, 0.9, 0.4, 0.7, 0.5])


def pruned(mask):
    return sorted(torch.nonzero(mask.flatten()).flatten().tolist())


@pytest.mark.parametrize(
    "ratio, channels, expected",
    [(0.5, 64, 32), (0.7, 10, 7), (0.3, 10, 3), (0.01, 64, 1), (0.0, 5, 1), (1.0, 7, 7), (0.51, 2, 2), (0.5, 1, 1)],
)
def test_keep_count_is_max_one_ceil(ratio, channels, expected):
    assert int(keep_count(ratio, channels)) == expected


def test_keep_count_is_exact_where_floating_point_is_not():
    # 0.55 * 100 == 55.00000000000001 in binary floating point; ceil must still give 55
    assert 0.55 * 100 > 55
    assert int(keep_count(0.55, 100)) == 55
    assert int(keep_count(0.55, 220)) == 121
    assert int(keep_count(0.7, 192)) == math.ceil(0.7 * 192)  # 134.4 -> 135


def test_runtime_and_static_masks_prune_the_smallest():
    assert pruned(keep_ratio_mask(U_R, 0.5)) == [0, 2, 4, 6]
    assert pruned(keep_ratio_mask(U_S[None], 0.5)) == [1, 2, 3, 5]
    assert pruned(keep_ratio_mask(U_R, 0.75)) == [0, 4]


def test_ties_broken_by_lower_index_first():
    u = torch.tensor([[1.0, 0.5, 0.5, 0.5, 2.0]])
    assert pruned(smallest_mask(u, 2)) == [1, 2]
    assert pruned(smallest_mask(torch.ones(1, 6), 3)) == [0, 1, 2]


def test_tradeoff_rate_half_by_hand():
    # M_r = {0,2,4,6}, M_s = {1,2,3,5}, M_o = {2}; of M_r - M_o = {0,4,6} prune floor(0.5*3) = 1 by u_r -> 0;
    # of M_s - M_o = {1,3,5} prune 1 by u_s -> 1; P = floor(0.5*0.5*8) = 2 smallest u_s = {1,2} already inside.
    mask = tradeoff_mask(U_R, U_S, 0.5, 0.5, 0.5)
    assert pruned(mask) == [0, 1, 2]


def test_tradeoff_rate_one_is_pure_runtime_and_zero_pure_static():
    assert pruned(tradeoff_mask(U_R, U_S, 0.5, 0.5, 1.0)) == [0, 2, 4, 6]
    assert pruned(tradeoff_mask(U_R, U_S, 0.5, 0.5, 0.0)) == [1, 2, 3, 5]
    # with different ratios as well
    assert pruned(tradeoff_mask(U_R, U_S, 0.25, 0.75, 1.0)) == pruned(keep_ratio_mask(U_R, 0.25))
    assert pruned(tradeoff_mask(U_R, U_S, 0.25, 0.75, 0.0)) == pruned(keep_ratio_mask(U_S[None], 0.75))


def test_permanent_set_is_forced_into_the_mask():
    # u_r and u_s agree on {4,5,6,7} as least important at runtime and {0,1} statically.
    u_r = torch.tensor([[5.0, 6.0, 7.0, 8.0, 1.0, 2.0, 3.0, 4.0]])
    u_s = torch.tensor([0.1, 0.2, 0.9, 0.8, 0.3, 0.4, 0.7, 0.6])
    # d_s = 0.25: M_s = 6 smallest u_s = {0,1,4,5,7,6}; M_r (d_r=0.5) = {4,5,6,7}; M_o = {4,5,6,7};
    # M_s - M_o = {0,1}: floor(0.5*2) = 1 -> {0}. P = floor(0.75*0.5*8) = 3 smallest u_s = {0,1,4}.
    # Without P the mask would be {0,4,5,6,7}; channel 1 must be added.
    mask = tradeoff_mask(u_r, u_s, 0.5, 0.25, 0.5)
    assert pruned(permanent_mask(u_s, 0.25, 0.5)) == [0, 1, 4]
    assert pruned(mask) == [0, 1, 4, 5, 6, 7]


def test_single_channel_is_never_pruned():
    u = torch.tensor([[0.3]])
    for rate in (0.0, 0.5, 1.0):
        assert pruned(tradeoff_mask(u, torch.tensor([0.2]), 0.05, 0.05, rate)) == []


def test_batched_masks_have_per_sample_ratios():
    u_r = torch.stack([U_R[0], U_R[0].flip(0)])
    mask = tradeoff_mask(u_r, U_S, torch.tensor([0.5, 0.25]), 1.0, 1.0)
    assert pruned(mask[0]) == [0, 2, 4, 6]
    assert mask[1].sum() == 6
    assert pruned(mask[1]) == [1, 2, 3, 5, 6, 7]  # the flipped u_r: its six smallest


def test_bad_tradeoff_rate_is_a_clear_error():
    with pytest.raises(ValueError, match="tradeoff_rate"):
        tradeoff_mask(U_R, U_S, 0.5, 0.5, 1.5)


@settings(max_examples=150, deadline=None)
@given(
    channels=st.integers(1, 24),
    d_r=st.floats(0.05, 1.0),
    d_s=st.floats(0.05, 1.0),
    rate=st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),
    seed=st.integers(0, 2**16),
    ties=st.booleans(),
)
def test_mask_invariants(channels, d_r, d_s, rate, seed, ties):
    g = torch.Generator().manual_seed(seed)
    u_r = torch.randn(3, channels, generator=g)
    u_s = torch.randn(channels, generator=g)
    if ties:
        u_r, u_s = u_r.round(), u_s.round()
    mask = tradeoff_mask(u_r, u_s, d_r, d_s, rate)
    assert torch.equal(mask, tradeoff_mask(u_r.clone(), u_s.clone(), d_r, d_s, rate))  # deterministic
    perm = permanent_mask(u_s, d_s, rate).expand_as(mask)
    assert not (perm & ~mask).any()  # P inside every mask
    assert int(perm[0].sum()) == int(permanent_count(d_s, rate, channels))
    # the number pruned: |M_o| + floor(R |M_r - M_o|) + max(floor((1-R) |M_s - M_o|), |P & (M_s - M_o)|)
    m_r, m_s = keep_ratio_mask(u_r, d_r), keep_ratio_mask(u_s.expand_as(u_r), d_s)
    m_o = m_r & m_s
    n_r = torch.floor(rate * (m_r & ~m_o).sum(-1) + 1e-6)
    n_s = torch.floor((1 - rate) * (m_s & ~m_o).sum(-1) + 1e-6)
    extra_p = (perm & m_s & ~m_o).sum(-1)
    assert torch.equal(mask.sum(-1), (m_o.sum(-1) + n_r + torch.maximum(n_s, extra_p)).long())
    assert (mask.sum(-1) < channels).all()  # at least one channel kept
    if rate == 1.0:
        assert torch.equal(mask, m_r)
    if rate == 0.0:
        assert torch.equal(mask, m_s)
