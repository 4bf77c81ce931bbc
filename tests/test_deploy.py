"""Deployment: static export (Sec. 3.4), save/load, rounding, ONNX, and the runtime executor.

Every check compares against the masked network ``net(x, d_r, d_s)`` (Eq. 2 with the trade-off
mask of Eq. 3-5), the function the agents were trained and evaluated on.
"""

import subprocess
import sys

import pytest
import torch
from torch import nn

from prune_env.checkpoint import CheckpointError
from prune_env.costs import CostModel
from prune_env.deploy import (
    DeployedNet,
    RuntimeExecutor,
    StaticGraph,
    export_onnx,
    export_static,
    load_deployed,
    save_deployed,
)
from prune_env.nets import build_net
from prune_env.nets.backbones import sequential_net

ATOL = 1e-5

NETS = [
    ("digitnet", (1, 8, 8), {}),
    ("mcifarnet", (3, 32, 32), {"width": 0.25}),
    ("resnet20", (3, 32, 32), {"width": 0.5}),
]


def randomize(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random importances and non-trivial BN statistics.

    ``u_r`` stays near 1 (bounded activations over many layers) but its ranking follows the
    input, so that samples get different masks; ``u_s`` values are distinct.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in net.layers:
            c_in = layer.predictor.in_features
            layer.predictor.weight.copy_(0.5 * torch.randn(layer.predictor.weight.shape, generator=g) / c_in**0.5)
            layer.predictor.bias.copy_(1.0 + 0.05 * torch.randn(layer.predictor.bias.shape, generator=g))
            layer.static_importance.copy_(torch.rand(layer.static_importance.shape, generator=g) + 0.5)
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))
        head = [m for m in net.head.modules() if isinstance(m, nn.Linear)][-1]
        head.weight.mul_(10.0)  # logits of order 1, so that the absolute tolerance means something
    return net


def images(batch, shape, generator=None):
    """Random images whose channel means differ per sample, so that the runtime masks do too."""
    x = torch.randn(batch, *shape, generator=generator)
    return x + torch.randn(batch, shape[0], 1, 1, generator=generator)


def make(name, shape, kwargs, rate, seed=0):
    torch.manual_seed(seed)
    net = build_net(name, in_channels=shape[0], **kwargs)
    return randomize(net, seed).eval().configure(tradeoff_rate=rate)


def close(a, b):
    return torch.allclose(a, b, atol=ATOL, rtol=1e-5)


def static_ratio_sets(num_layers, seed):
    g = torch.Generator().manual_seed(seed)
    return [0.5, (0.3 + 0.7 * torch.rand(num_layers, generator=g)).tolist()]


# ---------------------------------------------------------------------------------- export
@pytest.mark.parametrize("name, shape, kwargs", NETS)
@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_export_equals_masked_network_and_stores_what_costs_predict(name, shape, kwargs, rate):
    net = make(name, shape, kwargs, rate)
    costs = CostModel(net, shape)
    L = net.num_layers
    g = torch.Generator().manual_seed(3)
    x = images(5, shape, g)
    for d_s in static_ratio_sets(L, seed=7):
        deployed = export_static(net, d_s)
        permanent = net.permanent_masks(d_s)
        stored = [c - int(p.sum()) for c, p in zip(net.channels, permanent)]
        assert deployed.stored_channels == stored
        assert any(s < c for s, c in zip(stored, net.channels))
        for gate, p in zip(deployed.layers, permanent):  # survivors are exactly the complement of P
            assert torch.equal(gate.survivors, torch.nonzero(~p).flatten())
        # storage: exactly the cost model's prediction, fewer than dense
        assert deployed.backbone_param_count() == costs.params(torch.tensor(stored))
        assert deployed.backbone_param_count() < costs.dense_params
        expected_overhead = sum(gate.predictor.in_features * c + 2 * c for gate, c in zip(deployed.layers, net.channels))
        assert deployed.overhead_param_count() == expected_overhead
        for d_r in (1.0, 0.2 + 0.8 * torch.rand(5, L, generator=g), 0.35):
            with torch.no_grad():
                ref = net.run(x, d_r, d_s)
                out = deployed.run(x, d_r)
            assert close(out.logits, ref.logits), (out.logits - ref.logits).abs().max()
            for t, (gate, p) in enumerate(zip(deployed.layers, permanent)):
                assert ref.masks[t][:, p].all()  # the removed channels are pruned in every mask
                assert torch.equal(out.masks[t], ref.masks[t][:, gate.survivors])
            assert torch.equal(out.kept, ref.kept)
    # the masks do matter: runtime pruning changes the output
    with torch.no_grad():
        assert not close(net(x, 0.3, 0.5), net(x, 1.0, 1.0))


def test_survivor_masks_depend_on_the_removed_channels_runtime_importance():
    """Why the exported predictor keeps all C rows: with 0 < R_r < 1 the u_r of P moves M_r."""
    from prune_env.nets.masks import permanent_mask, tradeoff_mask

    u_s = torch.tensor([0.1, 0.2, 0.3, 0.4])
    p = permanent_mask(u_s, 0.5, 0.5)[0]
    assert p.tolist() == [True, False, False, False]
    u_r = torch.tensor([[10.0, 3.0, 1.0, 2.0]])
    exact = tradeoff_mask(u_r, u_s, 0.5, 0.5, 0.5)[0]
    sentinel = tradeoff_mask(u_r.masked_fill(p, float("-inf")), u_s, 0.5, 0.5, 0.5)[0]
    assert exact[~p].tolist() == [False, True, False]
    assert sentinel[~p].tolist() == [False, False, False]  # a -inf placeholder would change the mask


def test_full_width_mcifarnet_export_and_executor():
    net = make("mcifarnet", (3, 32, 32), {}, 0.5)
    d_s = [0.5, 0.7, 0.6, 0.8, 0.5, 0.7, 0.9, 0.6]
    deployed = export_static(net, d_s)
    x = images(2, (3, 32, 32))
    d_r = torch.tensor([[0.5] * 8, [0.8, 0.3, 0.6, 0.7, 0.9, 0.4, 0.5, 0.6]])
    with torch.no_grad():
        ref = net(x, d_r, d_s)
        assert close(deployed(x, d_r), ref)
    assert close(RuntimeExecutor(deployed)(x, d_r), ref)
    costs = CostModel(net, (3, 32, 32))
    assert deployed.backbone_param_count() == costs.params(torch.tensor(deployed.stored_channels))


def test_pure_runtime_removes_nothing_and_pure_static_needs_no_runtime_mask():
    net = make("digitnet", (1, 8, 8), {}, 1.0)
    assert export_static(net, 0.3).stored_channels == net.channels  # R_r = 1: P is empty
    net.configure(tradeoff_rate=0.0)
    deployed = export_static(net, 0.5)
    assert deployed.stored_channels == [8, 16, 16, 32]  # keep(0.5, C): P = M_s
    x = images(3, (1, 8, 8))
    with torch.no_grad():
        out = deployed.run(x, torch.rand(3, 4))
        assert all(not m.any() for m in out.masks)  # every stored channel is computed
        assert close(out.logits, net(x, 0.1, 0.5))


def test_export_rejects_ungated_or_held_networks_and_bad_ratios():
    net = make("digitnet", (1, 8, 8), {}, 0.5)
    with pytest.raises(ValueError, match="gating"):
        export_static(net.configure(gating=False), 0.5)
    with pytest.raises(ValueError, match="hold_static"):
        export_static(net.configure(gating=True, hold_static=True), 0.5)
    with pytest.raises(ValueError, match="static keep ratios"):
        export_static(net.configure(hold_static=False), [0.5, 0.5])
    with pytest.raises(ValueError, match="round_to"):
        export_static(net, 0.5, round_to=0)


# ---------------------------------------------------------------------------------- rounding
@pytest.mark.parametrize("name, shape, kwargs", [NETS[0], NETS[2]])
def test_round_to_keeps_multiples_and_still_equals_the_masked_network(name, shape, kwargs):
    net = make(name, shape, kwargs, 0.5)
    d_s = static_ratio_sets(net.num_layers, seed=11)[1]
    exact = export_static(net, d_s)
    rounded = export_static(net, d_s, round_to=8)
    for c, s, s_exact in zip(net.channels, rounded.stored_channels, exact.stored_channels):
        assert s % 8 == 0 or s == c
        assert s_exact <= s <= c and s - s_exact < 8
    assert rounded.stored_channels != exact.stored_channels  # the test exercises the rounding
    costs = CostModel(net, shape)
    assert rounded.backbone_param_count() == costs.params(torch.tensor(rounded.stored_channels))
    # the extra stored channels are the largest-u_s members of P: always masked at run time
    x = images(4, shape)
    d_r = 0.2 + 0.8 * torch.rand(4, net.num_layers)
    with torch.no_grad():
        ref = net.run(x, d_r, d_s)
        out = rounded.run(x, d_r)
    assert close(out.logits, ref.logits)
    for t, (gate, p) in enumerate(zip(rounded.layers, net.permanent_masks(d_s))):
        extra = p[gate.survivors]  # stored members of P
        assert out.masks[t][:, extra].all()
    assert close(RuntimeExecutor(rounded)(x, d_r), ref.logits)


# ---------------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("name, shape, kwargs", [NETS[1], NETS[2]])
def test_save_load_round_trip_needs_no_original_network(tmp_path, name, shape, kwargs):
    net = make(name, shape, kwargs, 0.5)
    d_s = static_ratio_sets(net.num_layers, seed=5)[1]
    deployed = export_static(net, d_s, round_to=4)
    x = images(3, shape)
    d_r = 0.3 + 0.7 * torch.rand(3, net.num_layers)
    with torch.no_grad():
        expected = deployed(x, d_r)
    path = save_deployed(deployed, tmp_path / "sub" / "model.pt")
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    del net, deployed
    loaded = load_deployed(path)
    assert isinstance(loaded, DeployedNet) and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(x, d_r), expected)
    assert loaded.round_to == 4 and loaded.static_keep_ratios == pytest.approx(d_s)


def test_load_in_a_fresh_process(tmp_path):
    net = make("digitnet", (1, 8, 8), {}, 0.5)
    deployed = export_static(net, 0.6)
    x = images(2, (1, 8, 8))
    torch.save({"x": x, "y": deployed(x, 0.5).detach()}, tmp_path / "io.pt")
    save_deployed(deployed, tmp_path / "model.pt")
    code = (
        "import sys, torch\n"
        "from prune_env.deploy import load_deployed\n"
        "io = torch.load(sys.argv[2])\n"
        "m = load_deployed(sys.argv[1])\n"
        "with torch.no_grad():\n"
        "    assert torch.equal(m(io['x'], 0.5), io['y'])\n"
        "print(m.stored_channels)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "model.pt"), str(tmp_path / "io.pt")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(deployed.stored_channels)


def test_network_without_backbone_name_is_saved_whole(tmp_path):
    torch.manual_seed(0)
    net = sequential_net([(6, 1, 1, 0.0), (8, 2, 1, 0.5)], num_classes=3, in_channels=2, width=1.0, config={})
    net = randomize(net).eval().configure(tradeoff_rate=0.5)
    deployed = export_static(net, 0.5)
    x = torch.randn(2, 2, 6, 6)
    path = save_deployed(deployed, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="trusted=True"):  # a pickled module: unpickled only when trusted
        load_deployed(path)
    loaded = load_deployed(path, trusted=True)
    with torch.no_grad():
        assert torch.equal(loaded(x, 0.7), deployed(x, 0.7))
    with pytest.raises(FileNotFoundError):
        load_deployed(tmp_path / "missing.pt")


# ---------------------------------------------------------------------------------- ONNX
def _onnx_outputs(path, x):
    try:
        import onnxruntime as ort
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        return ReferenceEvaluator(str(path)).run(None, {"images": x.numpy()})[0]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": x.numpy()})[0]


@pytest.mark.parametrize("name, shape, kwargs", [NETS[0], NETS[2]])
def test_onnx_export_of_the_static_part(tmp_path, name, shape, kwargs):
    onnx = pytest.importorskip("onnx")
    if name != "digitnet":
        pytest.importorskip("onnxruntime")  # the reference evaluator is too slow for ResNets
    net = make(name, shape, kwargs, 0.5)
    d_s = static_ratio_sets(net.num_layers, seed=2)[1]
    deployed = export_static(net, d_s, round_to=4)
    x = images(3, shape)
    with torch.no_grad():
        expected = net(x, 1.0, d_s)
        assert close(StaticGraph(deployed)(x), expected)
    path = export_onnx(deployed, tmp_path / "static.onnx", shape)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["images"]
    got = torch.from_numpy(_onnx_outputs(path, x))
    assert got.shape == expected.shape  # dynamic batch
    assert close(got, expected), (got - expected).abs().max()


# ---------------------------------------------------------------------------------- executor
@pytest.mark.parametrize("name, shape, kwargs", NETS)
@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0])
def test_executor_equals_masked_network_at_batch_1_and_4(name, shape, kwargs, rate):
    net = make(name, shape, kwargs, rate, seed=1)
    L = net.num_layers
    d_s = static_ratio_sets(L, seed=9)[1]
    deployed = export_static(net, d_s)
    executor = RuntimeExecutor(deployed)
    g = torch.Generator().manual_seed(4)
    x = images(4, shape, g)
    d_r = 0.2 + 0.8 * torch.rand(4, L, generator=g)
    with torch.no_grad():
        ref = net.run(x, d_r, d_s)
    for i in range(4):  # batch 1, each with its own ratios
        logits, kept = executor.run(x[i : i + 1], d_r[i : i + 1])
        assert close(logits, ref.logits[i : i + 1])
        assert torch.equal(kept, ref.kept[i : i + 1])
    for policy in ("auto", "split", "union"):  # batch 4, different per-sample ratios
        logits, kept = RuntimeExecutor(deployed, group_policy=policy).run(x, d_r)
        assert close(logits, ref.logits)
        assert torch.equal(kept, ref.kept)
    # the computed channels are what the cost model charges
    costs = CostModel(net, shape)
    assert torch.equal(costs.macs(kept), costs.macs(ref.kept))
    with torch.no_grad():  # shared ratios (scalar, per layer) and the dense setting
        for d in (0.6, d_r[0].tolist(), 1.0):
            assert close(executor(x, d), net(x, d, d_s))


def test_executor_from_gated_net_and_identical_masks_run_as_one_group():
    net = make("mcifarnet", (3, 32, 32), {"width": 0.25}, 1.0)
    executor = RuntimeExecutor(net, group_policy="split")  # d_s = 1
    x = images(6, (3, 32, 32))
    with torch.no_grad():
        assert close(executor(x, 1.0), net(x, 1.0, 1.0))
        assert close(executor(x, 0.4), net(x, 0.4, 1.0))
    calls = []
    original = executor._split
    executor._split = lambda *a: calls.append(1) or original(*a)
    executor(x, 1.0)  # every sample keeps every channel: no split
    assert not calls
    d_r = torch.linspace(0.3, 0.8, 6)[:, None].expand(6, net.num_layers)
    logits = executor(x, d_r)  # different counts per sample: split into groups
    assert calls
    with torch.no_grad():
        assert close(logits, net(x, d_r, 1.0))


def test_executor_breaks_ties_like_the_masked_network():
    net = make("digitnet", (1, 8, 8), {}, 1.0)
    with torch.no_grad():
        for layer in net.layers:  # u_r with many exact ties
            layer.predictor.weight.zero_()
            layer.predictor.bias.copy_(torch.arange(layer.out_channels) % 3 + 1.0)
    x = torch.randn(2, 1, 8, 8)
    for d in (0.5, 0.3):
        with torch.no_grad():
            ref = net.run(x, d, 1.0)
        logits, kept = RuntimeExecutor(net).run(x[:1], d)
        assert close(logits, ref.logits[:1])
        assert torch.equal(kept, ref.kept[:1])


@pytest.mark.parametrize("rate", [0.5, 1.0])
@pytest.mark.parametrize("act", ["relu", "leaky"])
def test_executor_folds_static_importance_of_any_sign_and_keeps_other_activations(rate, act):
    """|u_s| goes into the conv after a ReLU (negative and zero u_s included); other activations keep u_s apart."""
    net = make("mcifarnet", (3, 32, 32), {"width": 0.25}, rate, seed=2)
    with torch.no_grad():
        for t, layer in enumerate(net.layers):
            sign = torch.where(torch.arange(layer.out_channels) % 3 == t % 3, -1.0, 1.0)
            layer.static_importance.mul_(sign)
            layer.static_importance[t % layer.out_channels] = 0.0
            if act == "leaky":
                layer.act = nn.LeakyReLU(0.1)
    d_s = [0.8] * net.num_layers
    executor = RuntimeExecutor(export_static(net, d_s))
    assert all((layer.scale_factor is layer.u_s) == (act == "leaky") for layer in executor.layers)
    x = images(3, (3, 32, 32), torch.Generator().manual_seed(5))
    with torch.no_grad():
        for d in (0.4, 0.7):
            ref = net.run(x, d, d_s)
            for i in range(3):
                logits, kept = executor.run(x[i : i + 1], d)
                assert close(logits, ref.logits[i : i + 1])
                assert torch.equal(kept, ref.kept[i : i + 1])
            assert close(executor(x, d), ref.logits)


@pytest.mark.parametrize("min_macs", [0, 10**12])
def test_executor_gives_the_same_outputs_through_onednn_and_plain_convs(monkeypatch, min_macs):
    """Every conv through oneDNN directly (threshold 0), or none (F.conv2d picks): same function."""
    import prune_env.deploy.executor as executor_module

    monkeypatch.setattr(executor_module, "ONEDNN_MIN_MACS", min_macs)
    net = make("mcifarnet", (3, 32, 32), {"width": 0.5}, 1.0, seed=3)
    executor = RuntimeExecutor(net)
    x = images(2, (3, 32, 32), torch.Generator().manual_seed(6))
    with torch.no_grad():
        for d in (0.5, 1.0):
            ref = net.run(x, d, 1.0)
            logits, kept = executor.run(x[:1], d)
            assert close(logits, ref.logits[:1])
            assert torch.equal(kept, ref.kept[:1])
            assert close(executor(x, d), ref.logits)


def test_executor_head_reads_only_the_kept_columns_or_falls_back_to_the_module():
    from prune_env.deploy.executor import _pool_linear

    net = make("digitnet", (1, 8, 8), {}, 1.0)
    executor = RuntimeExecutor(net)
    assert executor.pool_linear is not None
    assert _pool_linear(nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4, 2))) is None
    assert _pool_linear(nn.Linear(4, 2)) is None
    x = images(2, (1, 8, 8))
    with torch.no_grad():
        ref = net(x, 0.5, 1.0)
        assert close(executor(x[:1], 0.5), ref[:1])
        executor.pool_linear = None  # the generic path: zeros back, then the head module
        assert close(executor(x[:1], 0.5), ref[:1])
        assert close(executor(x, 0.5), ref)


def test_executor_rejects_wrong_ratio_shapes():
    executor = RuntimeExecutor(make("digitnet", (1, 8, 8), {}, 1.0))
    with pytest.raises(ValueError):
        executor(torch.randn(2, 1, 8, 8), torch.rand(3, 4))
    with pytest.raises(ValueError):
        executor(torch.randn(1, 1, 8, 8), [0.5, 0.5])
    with pytest.raises(TypeError):
        RuntimeExecutor(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="group_policy"):
        RuntimeExecutor(make("digitnet", (1, 8, 8), {}, 1.0), group_policy="loop")


def test_group_cost_prefers_the_union_for_tiny_layers_and_splits_big_ones():
    from prune_env.deploy.executor import GroupCost

    cost = GroupCost()
    assert cost.prefer_union(32, [8] * 32, 16, macs_per_channel=9 * 16 * 64)  # digitnet-sized layer
    assert not cost.prefer_union(32, [32] * 32, 64, macs_per_channel=9 * 32 * 900)  # M-CifarNet conv1
