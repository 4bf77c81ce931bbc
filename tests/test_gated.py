"""The gated network: Eq. 2/6 outputs, modes, the stepping API, checkpoints."""

import pytest
import torch
from torch import nn

from prune_env.checkpoint import load_checkpoint, save_checkpoint
from prune_env.nets import build_net, global_pool
from prune_env.nets.gated import GateConfig, GatedConv
from prune_env.nets.masks import tradeoff_mask


def randomize_importance(net, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in net.layers:
            layer.predictor.weight.copy_(torch.randn(layer.predictor.weight.shape, generator=g))
            layer.predictor.bias.copy_(torch.randn(layer.predictor.bias.shape, generator=g))
            layer.static_importance.copy_(torch.rand(layer.static_importance.shape, generator=g) + 0.5)
    return net


def test_gated_conv_output_is_eq2():
    torch.manual_seed(0)
    layer = GatedConv(nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)).eval()
    with torch.no_grad():
        layer.predictor.weight.normal_()
        layer.static_importance.uniform_(0.5, 1.5)
    x = torch.randn(4, 3, 5, 5)
    cfg = GateConfig(tradeoff_rate=0.5)
    out, mask = layer(x, global_pool(x), 0.5, 0.5, cfg)
    u_r = layer.predictor(global_pool(x))
    u_s = layer.static_importance
    expected_mask = tradeoff_mask(u_r, u_s, 0.5, 0.5, 0.5)
    expected = layer.features(x) * (~expected_mask).float()[:, :, None, None] * (u_r * u_s)[:, :, None, None]
    assert torch.equal(mask, expected_mask)
    assert torch.allclose(out, expected, atol=1e-6)
    assert (out[mask] == 0).all()


def test_fresh_gates_are_the_identity_of_the_backbone():
    torch.manual_seed(0)
    net = build_net("digitnet").eval()
    x = torch.randn(5, 1, 8, 8)
    plain = net.configure(gating=False)(x)
    gated = net.configure(gating=True)(x)
    assert torch.allclose(plain, gated, atol=1e-6)


@pytest.mark.parametrize("name, shape", [("digitnet", (1, 8, 8)), ("mcifarnet", (3, 32, 32)), ("resnet20", (3, 32, 32))])
def test_stepped_forward_equals_one_shot(name, shape):
    torch.manual_seed(0)
    net = randomize_importance(build_net(name, in_channels=shape[0])).eval()
    net.configure(tradeoff_rate=0.5)
    x = torch.randn(6, *shape)
    g = torch.Generator().manual_seed(1)
    d_r = 0.2 + 0.8 * torch.rand(6, net.num_layers, generator=g)
    d_s = (0.3 + 0.7 * torch.rand(net.num_layers, generator=g)).tolist()
    with torch.no_grad():
        one_shot = net(x, d_r, d_s)
        state = net.begin(x)
        observations = []
        for t in range(net.num_layers):
            observations.append(state.pooled)
            assert state.pooled.shape == (6, net.in_channels[t])
            state = net.step(state, d_r[:, t], d_s[t])
    assert state.done and state.t == net.num_layers
    assert torch.equal(state.logits, one_shot)
    # the masks keep what the ratios ask for, except where P adds channels
    for t, mask in enumerate(state.masks):
        assert torch.equal(state.kept[:, t], mask.shape[1] - mask.sum(1))
    with pytest.raises(RuntimeError, match="episode is over"):
        net.step(state, 1.0, 1.0)


def test_step_kept_counts_follow_keep_ratio_under_pure_runtime():
    net = randomize_importance(build_net("mcifarnet")).eval().configure(tradeoff_rate=1.0)
    with torch.no_grad():
        state = net.run(torch.randn(3, 3, 32, 32), torch.tensor([[0.5] * 8, [0.25] * 8, [1.0] * 8]), 0.1)
    expected = torch.tensor([[32, 32, 64, 64, 64, 96, 96, 96], [16, 16, 32, 32, 32, 48, 48, 48], net.channels])
    assert torch.equal(state.kept, expected)


def test_permanent_set_is_pruned_for_every_input():
    net = randomize_importance(build_net("digitnet"), seed=3).eval().configure(tradeoff_rate=0.5)
    d_s = [0.5, 0.25, 0.5, 0.75]
    with torch.no_grad():
        state = net.run(torch.randn(16, 1, 8, 8), 1.0, d_s)
    for mask, perm in zip(state.masks, net.permanent_masks(d_s)):
        assert perm.sum() > 0
        assert mask[:, perm].all()


def test_hold_static_uses_unit_static_importance():
    net = randomize_importance(build_net("digitnet")).eval()
    x = torch.randn(4, 1, 8, 8)
    held = net.configure(hold_static=True)(x)
    with torch.no_grad():
        for layer in net.layers:
            layer.static_importance.fill_(1.0)
    assert torch.allclose(held, net.configure(hold_static=False)(x), atol=1e-6)


def test_importance_and_backbone_parameters_partition_the_net():
    net = build_net("resnet20")
    imp = {id(p) for p in net.importance_parameters()}
    back = {id(p) for p in net.backbone_parameters()}
    assert not imp & back
    assert imp | back == {id(p) for p in net.parameters()}
    assert len(imp) == 3 * net.num_layers


def test_unknown_backbone_and_bad_width_are_clear_errors():
    with pytest.raises(ValueError, match="model must be one of"):
        build_net("vgg99")
    with pytest.raises(ValueError, match="width"):
        build_net("mcifarnet", width=0)
    with pytest.raises(ValueError, match="tradeoff_rate"):
        build_net("digitnet").configure(tradeoff_rate=2.0)


def test_width_multiplier_and_input_channels():
    net = build_net("mcifarnet", width=0.5, in_channels=1)
    assert net.channels == [32, 32, 64, 64, 64, 96, 96, 96]
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_resnet18_loads_a_torchvision_weights_file(tmp_path):
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    net = build_net("resnet18", weights=path).eval().configure(gating=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net(x), reference(x), atol=1e-5)
    assert net.num_layers == 8
    with pytest.raises(FileNotFoundError, match="weights"):
        build_net("resnet18", weights=tmp_path / "missing.pth")


def test_checkpoint_round_trip(tmp_path):
    net = randomize_importance(build_net("digitnet", width=0.5)).eval().configure(tradeoff_rate=0.25)
    path = save_checkpoint(tmp_path / "ck" / "net.pt", net, dataset="digits", input_shape=(1, 8, 8), epoch=3)
    loaded, meta = load_checkpoint(path)
    loaded.eval()
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(net(x, 0.5, 0.5), loaded(x, 0.5, 0.5))
    assert meta["epoch"] == 3 and meta["dataset"] == "digits"
    assert loaded.gate_config.tradeoff_rate == 0.25
    assert meta["costs"]["dense_macs"] > 0
    assert not list(path.parent.glob("*.tmp"))
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")
