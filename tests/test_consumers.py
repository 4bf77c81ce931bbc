"""Channel consumers declared once, by the stages: who reads which channels, and a new block type in one class.

A stage class states which of its modules read its input and its gate's channels
(:class:`~prune_env.nets.gated.Stage`); costs, static export, the runtime executor, the ONNX
graph and the re-ranked static baselines all ask it. The block type below exists only in this
file, and every one of them handles it.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prune_env.costs import CostModel
from prune_env.deploy import RuntimeExecutor, StaticGraph, export_static
from prune_env.evaluation.baselines import rerank_static
from prune_env.nets import build_net
from prune_env.nets.gated import GatedConv, GatedNet, SequentialStage, Stage

ATOL = 1e-5


def test_sequential_and_residual_nets_name_their_consumers():
    seq = build_net("digitnet")
    L = seq.num_layers
    assert [name for name, _ in seq.channel_consumers(0)] == ["stages.1.gated.conv", "stages.1.gated.predictor"]
    assert [name for name, _ in seq.channel_consumers(L - 1)] == [seq.head_consumer()[0]]
    assert all(seq.reads_previous(t) == (t > 0) for t in range(L))
    res = build_net("resnet20", width=0.25)
    assert [name for name, _ in res.channel_consumers(3)] == ["stages.3.conv2"]
    assert not any(res.reads_previous(t) for t in range(res.num_layers))


class ProjectionStage(Stage):
    """A gated conv whose channels a 1x1 conv (+ BN, ReLU) projects to a fixed width: a block type of the test's own."""

    gated_output = False
    input_consumers = ("gated.conv", "gated.predictor")  # its input may shrink with the previous gate
    gate_consumers = (("project", "project_bn"),)
    gate_path = ()

    def __init__(self, gated: GatedConv, width: int):
        super().__init__()
        self.gated = gated
        self.project = nn.Conv2d(gated.out_channels, width, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(width)

    def tail(self, x, h, read=None):
        z = self.project_bn(self.project(h)) if read is None else read(h)
        return torch.relu(z)


def gated(c_in, c_out, stride=1):
    return GatedConv(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out))


def custom_net(seed=0):
    """sequential -> projection (reads the gated channels) -> sequential (reads the fixed projection) -> head."""
    torch.manual_seed(seed)
    stages = [SequentialStage(gated(3, 8)), ProjectionStage(gated(8, 12, stride=2), 10), SequentialStage(gated(10, 16))]
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))
    net = GatedNet(nn.Identity(), stages, head)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in net.layers:
            layer.predictor.weight.copy_(0.5 * torch.randn(layer.predictor.weight.shape, generator=g) / layer.in_channels**0.5)
            layer.predictor.bias.copy_(1.0 + 0.05 * torch.randn(layer.predictor.bias.shape, generator=g))
            layer.static_importance.copy_(torch.rand(layer.static_importance.shape, generator=g) + 0.5)
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
        head[-1].weight.mul_(10.0)
    return net.eval()


def test_a_new_block_type_declares_its_consumers_and_everything_follows():
    net = custom_net()
    assert [name for name, _ in net.channel_consumers(0)] == ["stages.1.gated.conv", "stages.1.gated.predictor"]
    assert [name for name, _ in net.channel_consumers(1)] == ["stages.1.project"]
    assert [net.reads_previous(t) for t in range(3)] == [False, True, False]
    costs = CostModel(net, (3, 12, 12))
    proj = next(e for e in costs.entries if e.name == "stages.1.project")
    assert (proj.in_layer, proj.out_layer) == (1, -1)  # MACs follow layer 1's kept channels
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, 12, 12, generator=g) + torch.randn(6, 3, 1, 1, generator=g)
    for rate in (0.0, 0.5):
        net.configure(tradeoff_rate=rate)
        d_s = [0.5, 0.4, 0.6]
        deployed = export_static(net, d_s)
        assert deployed.stored_channels == [c - int(p.sum()) for c, p in zip(net.channels, net.permanent_masks(d_s))]
        assert deployed.backbone_param_count() == costs.params(torch.tensor(deployed.stored_channels))
        executor = RuntimeExecutor(deployed)
        for d_r in (1.0, 0.2 + 0.8 * torch.rand(6, 3, generator=g)):
            with torch.no_grad():
                ref = net.run(x, d_r, d_s)
                out = deployed.run(x, d_r)
            assert torch.allclose(out.logits, ref.logits, atol=ATOL), (out.logits - ref.logits).abs().max()
            assert torch.equal(out.kept, ref.kept)
            logits, kept = executor.run(x, d_r)
            assert torch.allclose(logits, ref.logits, atol=1e-4) and torch.equal(kept, ref.kept)
            single, _ = executor.run(x[:1], d_r if isinstance(d_r, float) else d_r[:1])
            assert torch.allclose(single, ref.logits[:1], atol=1e-4)
        with torch.no_grad():
            assert torch.allclose(StaticGraph(deployed).eval()(x), deployed(x, 1.0), atol=ATOL)


def test_rerank_static_folds_into_a_new_block_types_consumers():
    net = custom_net(seed=2)
    scores = [torch.rand(c, generator=torch.Generator().manual_seed(t)) + 0.1 for t, c in enumerate(net.channels)]
    reranked = rerank_static(net, scores)
    x = torch.randn(4, 3, 12, 12)
    with torch.no_grad():
        assert torch.allclose(reranked(x), net(x), atol=1e-4)  # nothing pruned: the trained function
    for layer, n in zip(reranked.layers, scores):
        assert torch.equal(layer.static_importance, n)


def test_a_gate_feeding_a_block_whose_input_cannot_shrink_is_refused():
    from prune_env.nets.gated import ResidualStage

    block = ResidualStage(gated(8, 8), nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
    net = GatedNet(nn.Identity(), [SequentialStage(gated(3, 8)), block],
                   nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))).eval()
    with pytest.raises(NotImplementedError, match="cannot shrink"):
        net.channel_consumers(0)
    with pytest.raises(NotImplementedError, match="cannot shrink"):
        export_static(net, 0.5)
