"""The slicing channel order (``runtime_order="static"``), keep-count rounding and the batch grouping.

Equivalence on tiny batches: the executor and the exported network against the masked network,
for both orders, batch sizes 1 and several, every grouping policy; no timing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from prune_env.deploy import RuntimeExecutor, export_static, load_deployed, save_deployed
from prune_env.deploy.sliced import SliceCost, plan_groups
from prune_env.nets import build_net
from prune_env.nets.gated import GateConfig
from prune_env.nets.masks import keep_count, static_order, tradeoff_mask

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from latency import images  # noqa: E402
from latency import randomize as benchmark_randomize  # noqa: E402

NETS = [
    ("digitnet", (1, 8, 8), {}),
    ("mcifarnet", (3, 32, 32), {"width": 0.25}),
    ("resnet20", (3, 32, 32), {"width": 0.5}),
]


def randomize(net: nn.Module, seed: int = 0) -> nn.Module:
    """The latency benchmark's random importances, with logits of order 1 so that the tolerance means something."""
    net = benchmark_randomize(net, seed)
    with torch.no_grad():
        head = [m for m in net.head.modules() if isinstance(m, nn.Linear)][-1]
        head.weight.mul_(10.0)
    return net


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------- masks
def test_static_order_masks_are_prefixes_of_the_descending_u_s_order():
    g = torch.Generator().manual_seed(0)
    u_s = torch.rand(24, generator=g)
    u_s[3] = u_s[7]  # a tie: the higher index is kept first
    order = static_order(u_s)
    u_r = torch.rand(5, 24, generator=g)
    for rate in (1.0, 0.5, 0.0):
        for d_r in (0.2, 0.5, 0.9):
            mask = tradeoff_mask(u_s.expand_as(u_r), u_s, d_r, 0.6, rate)
            assert (mask == mask[:1]).all()  # no input dependence
            kept = ~mask[0][order]
            k = int(kept.sum())
            assert kept[:k].all() and not kept[k:].any()
    assert list(order[:0]) == [] and int(torch.nonzero(order == 7)) < int(torch.nonzero(order == 3))


def test_keep_count_rounding_and_bad_multiples():
    assert keep_count(0.3, 64, 8).item() == 24  # ceil(19.2) = 20 -> 24
    assert keep_count(0.99, 60, 8).item() == 60  # never more than C
    assert keep_count(0.01, 64, 4).item() == 4
    assert torch.equal(keep_count(torch.tensor([0.3, 0.5]), 64, 1), torch.tensor([20, 32]))
    for bad in (0, -4, 2.5, True):
        with pytest.raises(ValueError, match="count_multiple"):
            keep_count(0.5, 64, bad)
    with pytest.raises(ValueError, match="runtime_order"):
        GateConfig(runtime_order="random")
    u = torch.rand(3, 64)
    assert ((~tradeoff_mask(u, u[0], 0.3, 1.0, 1.0, count_multiple=8)).sum(1) == 24).all()


# ---------------------------------------------------------------------------------- executor
@pytest.mark.parametrize("name, shape, kwargs", NETS)
@pytest.mark.parametrize("order, multiple", [("static", 1), ("static", 4), ("importance", 4)])
def test_executor_and_export_equal_the_masked_network(name, shape, kwargs, order, multiple):
    torch.manual_seed(0)
    net = randomize(build_net(name, in_channels=shape[0], **kwargs), seed=1)
    L = net.num_layers
    for rate, d_s in ((1.0, 1.0), (0.5, 0.6)):
        net.configure(tradeoff_rate=rate, runtime_order=order, count_multiple=multiple)
        deployed = export_static(net, d_s)
        executor = RuntimeExecutor(deployed)
        assert executor.sliced == (order == "static")
        x = images(5, shape, seed=2)
        g = torch.Generator().manual_seed(3)
        varied = 0.2 + 0.8 * torch.rand(5, L, generator=g, dtype=torch.float64)
        varied[1] = varied[0]  # two inputs with the same counts share a group
        with torch.no_grad():
            for d_r in (0.5, varied):
                ref = net.run(x, d_r, d_s)
                assert close(deployed(x, d_r), ref.logits)
                for policy in ("auto", "split", "union"):
                    executor.group_policy = policy
                    logits, kept = executor.run(x, d_r)
                    assert close(logits, ref.logits) and torch.equal(kept, ref.kept)
                rows = d_r if isinstance(d_r, float) else d_r[2:3]
                logits, kept = executor.run(x[2:3], rows)  # batch 1
                assert close(logits, ref.logits[2:3]) and torch.equal(kept, ref.kept[2:3])
        if multiple > 1 and rate == 1.0:  # runtime counts are multiples (or C)
            assert all(int(k) % multiple == 0 or int(k) == c for row in ref.kept for k, c in zip(row, net.channels))


def test_static_order_export_stores_channels_by_u_s_and_survives_save_load(tmp_path):
    net = randomize(build_net("mcifarnet", width=0.25), seed=4).configure(tradeoff_rate=0.5, runtime_order="static",
                                                                          count_multiple=2)
    deployed = export_static(net, 0.5)
    for gate, layer in zip(deployed.layers, net.layers):
        u_s = layer.static_importance.detach()[gate.survivors]
        assert bool((u_s[:-1] >= u_s[1:]).all())  # descending
    assert export_static(net, 0.5, runtime_order="importance").survivors()[0].diff().gt(0).all()  # ascending
    loaded = load_deployed(save_deployed(deployed, tmp_path / "m.pt"))
    assert (loaded.runtime_order, loaded.count_multiple) == ("static", 2)
    x = images(3, (3, 32, 32), seed=5)
    d_r = torch.tensor([[0.3] * 8, [0.6] * 8, [0.9] * 8], dtype=torch.float64)
    with torch.no_grad():
        assert close(RuntimeExecutor(loaded)(x, d_r), net(x, d_r, 0.5))


def test_sliced_executor_runs_prefix_slices_without_gathers(monkeypatch):
    net = randomize(build_net("digitnet"), seed=6).configure(tradeoff_rate=1.0, runtime_order="static")
    executor = RuntimeExecutor(net)
    x = images(4, (1, 8, 8), seed=7)
    with torch.no_grad():
        executor(x, 0.5)  # the first call finds the counts (and caches them with the slices)
    calls = []
    original = torch.Tensor.index_select
    monkeypatch.setattr(torch.Tensor, "index_select", lambda self, *a: calls.append(a) or original(self, *a))
    with torch.no_grad():
        executor(x, 0.5)  # one group: equal counts
    assert calls == []
    layer = executor.layers[1].slices
    k = layer.count(0.5)
    weight, _ = layer.weights(k, executor.layers[0].slices.count(0.5))
    assert weight.is_contiguous() and weight.shape[:2] == (k, executor.layers[0].slices.count(0.5))


# ---------------------------------------------------------------------------------- grouping
def test_plan_groups_covers_every_input_once_at_counts_it_can_run():
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 9, size=(40, 3)) * 4

    def macs(rows):
        return rows.astype(float).sum(1) * 1e6

    for policy in ("auto", "split", "union"):
        groups = plan_groups(counts, macs, 3, SliceCost(), policy)
        members = np.sort(np.concatenate([m for m, _ in groups]))
        assert np.array_equal(members, np.arange(40))
        for m, top in groups:
            assert (counts[m] <= top).all()  # every input's channels lie in its group's slice
    assert len(plan_groups(counts, macs, 3, SliceCost(), "union")) == 1
    assert len(plan_groups(counts, macs, 3, SliceCost(), "split")) == len(np.unique(counts, axis=0))
    cheap_calls = SliceCost(overhead=1e-9, planning=0.0, max_groups=64)
    assert len(plan_groups(counts, macs, 3, cheap_calls, "auto")) > 1  # free calls: split
    costly_calls = SliceCost(overhead=1.0)
    assert len(plan_groups(counts, macs, 3, costly_calls, "auto")) == 1  # costly calls: one group


# ---------------------------------------------------------------------------------- environment
def test_environment_keywords_configure_the_masks_and_reject_bad_values():
    import gymnasium as gym

    env = gym.make("RuntimePrune-v0", runtime_order="static", count_multiple=8)
    cfg = env.unwrapped.task.net.gate_config
    assert (cfg.runtime_order, cfg.count_multiple) == ("static", 8)
    task = env.unwrapped.task
    images, _ = task.source.get(np.arange(4))
    with torch.no_grad():
        kept = task.net.run(images, 0.3).kept
    assert bool((kept % 8 == 0).all()) and bool((kept == kept[:1]).all())  # multiples; the same for every input
    env.close()
    with pytest.raises(ValueError, match="runtime_order"):
        gym.make("RuntimePrune-v0", runtime_order="u_r")
    with pytest.raises(ValueError, match="count_multiple"):
        gym.make("RuntimePrune-v0", count_multiple=0)
