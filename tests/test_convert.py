"""The converter: any traced CNN becomes a GatedNet that computes the same, costs what FlopCounterMode counts,
runs in both environments, exports, and refuses what it cannot gate by naming the module."""

import warnings

import gymnasium as gym
import numpy as np
import onnxruntime as ort
import pytest
import torch
import torchvision
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from torch import nn
from torch.utils.data import TensorDataset
from torch.utils.flop_counter import FlopCounterMode

import prune_env  # noqa: F401 - registers the environments
from prune_env.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from prune_env.costs import CostModel
from prune_env.data import load_dataset
from prune_env.deploy.export import export_static, load_deployed, save_deployed
from prune_env.deploy.onnx_export import export_onnx
from prune_env.nets import BACKBONES, build_net
from prune_env.nets.convert import ConversionError, explain, gate
from prune_env.nets.gated import GatedConv, GatedNet, ResidualStage, SequentialStage
from prune_env.nets.models import build_model
from prune_env.nets.plain import plain_module

SHAPE = (3, 32, 32)


class UserResNet(nn.Module):
    """A user-defined residual network with functional ReLUs, an identity and a projection shortcut."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.a1, self.a_bn1 = nn.Conv2d(8, 12, 3, padding=1, bias=False), nn.BatchNorm2d(12)
        self.a2, self.a_bn2 = nn.Conv2d(12, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.b1, self.b_bn1 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16)
        self.b2, self.b_bn2 = nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.proj = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(self.a_bn2(self.a2(torch.relu(self.a_bn1(self.a1(x))))) + x)
        x = torch.relu(self.b_bn2(self.b2(torch.relu(self.b_bn1(self.b1(x))))) + self.proj(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def user_sequential(num_classes: int = 4) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU6(), nn.Dropout(0.2),
                         nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes))


#: name -> (builder, prunable layers expected)
MODELS = {
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=4), 8),
    "resnet34": (lambda: torchvision.models.resnet34(num_classes=4), 16),
    "vgg11_bn": (lambda: torchvision.models.vgg11_bn(num_classes=4), 7),  # the 8th conv feeds the flattened classifier
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(num_classes=4), 2),  # depthwise-tied convs stay dense
    "user_sequential": (user_sequential, 3),
    "user_resnet": (UserResNet, 2),
}


def randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN statistics and affine parameters, so that the dense comparison means something."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def converted():
    """name -> (original in eval mode, converted network)."""
    out = {}
    for name, (builder, _) in MODELS.items():
        torch.manual_seed(0)
        model = randomized(builder())
        out[name] = (model, gate(model, torch.zeros(2, *SHAPE)).eval())
    return out


@pytest.mark.parametrize("name", list(MODELS))
def test_dense_converted_net_computes_what_the_original_does(converted, name):
    model, net = converted[name]
    assert isinstance(net, GatedNet) and net.num_layers == MODELS[name][1]
    x = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), rtol=1e-5, atol=1e-5)
        gated = net(x, 0.5)
    assert not torch.allclose(gated, model(x))  # the gates act


@pytest.mark.parametrize("name", list(MODELS))
def test_macs_and_params_equal_flop_counter(converted, name):
    model, net = converted[name]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *SHAPE))
    costs = CostModel(net, SHAPE)
    assert costs.dense_macs == counter.get_total_flops() // 2
    assert costs.dense_params == sum(p.numel() for p in model.parameters())


def test_depthwise_convs_stay_dense_with_the_reason_and_strict_refuses(converted):
    model, net = converted["mobilenet_v2"]
    reports = {r.module: r for r in net.conversion_report}
    assert "depthwise conv 'features.1.conv.0.0' (groups=32)" in reports["features.1.conv.0.0"].reason
    assert "depthwise conv 'features.2.conv.1.0'" in reports["features.2.conv.0.0"].reason  # expand conv: tied to it
    assert [r.module for r in net.conversion_report if r.layer is not None] == ["features.17.conv.2", "features.18.0"]
    with pytest.raises(ConversionError, match=r"features\.1\.conv\.0\.0.*depthwise"):
        gate(model, torch.zeros(2, *SHAPE), strict=True)


def test_vgg_last_conv_stays_dense_because_the_classifier_reads_positions(converted):
    _, net = converted["vgg11_bn"]
    last = [r for r in net.conversion_report if r.module == "features.25"][0]
    assert last.layer is None and "Linear 'classifier.0'" in last.reason and "in_features=25088" in last.reason


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x):
        h = self.conv(x).flatten(2).transpose(1, 2)
        return self.attn(h, h, h)[0].mean(1)


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.b = nn.Conv2d(3, 8, 1)
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        return self.fc(torch.cat([self.a(x), self.b(x)], 1).mean((2, 3)))


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = nn.Conv2d(3, 8, 1)

    def forward(self, x):
        q = self.q(x).flatten(2)
        return torch.matmul(q.transpose(1, 2), q).mean((1, 2))


@pytest.mark.parametrize("model, pattern", [
    (Attention(), r"module 'attn' \(MultiheadAttention\) is attention"),
    (SelfAttention(), r"matmul at node .*matrix product"),
    (Concat(), r"no conv can be gated: a\.0: dense \(its channels are concatenated.*b: dense"),
    (nn.Sequential(nn.Conv2d(3, 6, 3, groups=3), nn.ReLU(), nn.Flatten()), r"'0' \(groups=3\) ties"),
])
def test_unsupported_models_are_refused_naming_the_module(model, pattern):
    with pytest.raises(ConversionError, match=pattern):
        gate(model, torch.zeros(2, *SHAPE))


def test_masks_at_keep_half_equal_a_hand_built_gated_version():
    torch.manual_seed(0)
    model = randomized(user_sequential())
    net = gate(model, torch.zeros(2, *SHAPE)).eval()
    f = model  # the hand-built version of the same network, written as the backbones are
    stages = [SequentialStage(GatedConv(f[0], f[1], f[2]), f[3]), SequentialStage(GatedConv(f[4], f[5], f[6]), f[7]),
              SequentialStage(GatedConv(f[8], f[9], f[10]))]
    hand = GatedNet(nn.Identity(), stages, nn.Sequential(f[11], f[12], f[13])).eval()
    gen = torch.Generator().manual_seed(2)
    for g in hand.layers:  # importance that is not uniform, so the masks rank something
        with torch.no_grad():
            g.predictor.weight.normal_(generator=gen)
            g.static_importance.uniform_(0.5, 1.5, generator=gen)
    assert list(hand.state_dict()) == list(net.state_dict())
    net.load_state_dict(hand.state_dict())
    x = torch.randn(4, *SHAPE, generator=gen)
    a, b = hand.run(x, 0.5, 0.5), net.run(x, 0.5, 0.5)
    assert all(torch.equal(m1, m2) for m1, m2 in zip(a.masks, b.masks))
    assert any(bool(m.any()) for m in a.masks)
    assert torch.equal(a.logits, b.logits)
    assert torch.equal(CostModel(hand, SHAPE)._macs_q, CostModel(net, SHAPE)._macs_q)


@pytest.mark.parametrize("name, shape", [("digitnet", (1, 8, 8)), ("mcifarnet", SHAPE), ("resnet20", SHAPE),
                                         ("resnet56", SHAPE), ("resnet18", SHAPE)])
def test_hand_written_backbones_through_the_converter_are_the_same(name, shape):
    ref = build_net(name, num_classes=10, in_channels=shape[0]).eval()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.1, generator=gen)
    net = gate(plain_module(ref), torch.zeros(2, *shape)).eval()
    assert [type(s) for s in net.stages] == [type(s) for s in ref.stages]
    a, b = ref.state_dict(), net.state_dict()
    assert list(a) == list(b)  # the same checkpoint keys
    net.load_state_dict(a)
    x = torch.randn(2, *shape, generator=gen)
    ra, rb = ref.run(x, 0.5, 0.5), net.run(x, 0.5, 0.5)
    assert all(torch.equal(m1, m2) for m1, m2 in zip(ra.masks, rb.masks)) and torch.equal(ra.logits, rb.logits)
    ca, cb = CostModel(ref, shape), CostModel(net, shape)
    assert ca.summary() == cb.summary() and torch.equal(ca._macs_q, cb._macs_q)
    assert set(BACKBONES) == {"digitnet", "mcifarnet", "resnet18", "resnet20", "resnet56"}


def test_torchvision_resnet18_converts_to_the_hand_written_resnet18():
    ref = build_net("resnet18", num_classes=10)
    net = gate(torchvision.models.resnet18(num_classes=10), torch.zeros(2, *SHAPE))
    assert list(ref.state_dict()) == list(net.state_dict())
    assert all(isinstance(s, ResidualStage) for s in net.stages)


def test_shipped_asset_runs_in_the_converted_digitnet():
    from prune_env.assets import default_checkpoint_path

    ref, _ = load_checkpoint(default_checkpoint_path())
    net = gate(plain_module(ref), torch.zeros(2, 1, 8, 8))
    net.load_state_dict(ref.state_dict())
    net.gate_config = ref.gate_config
    x = load_dataset("digits").test[0][0][None]
    assert torch.equal(ref.eval()(x, 0.4, 0.6), net.eval()(x, 0.4, 0.6))


def test_explain_lists_every_conv():
    reports = explain(UserResNet(), torch.zeros(2, *SHAPE))
    assert [r.module for r in reports] == ["stem.0", "a1", "a2", "b1", "b2", "proj.0"]
    assert [r.layer for r in reports] == [None, 0, None, 1, None, None]


# ---------------------------------------------------------------------------------- environments
@pytest.fixture(scope="module")
def tiny_data():
    gen = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(60, *SHAPE, generator=gen), torch.arange(60) % 4)


@pytest.mark.parametrize("name", list(MODELS))
def test_both_envs_pass_check_env_on_every_converted_net(converted, tiny_data, name):
    _, net = converted[name]
    for env_id, extra in (("RuntimePrune-v0", {}), ("StaticPrune-v0", {"eval_batch": 4})):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env = gym.make(env_id, model=net, dataset=tiny_data, loss_batch=2, **extra).unwrapped
            check_env(env, skip_render_check=True)
            sb3_check_env(env)
        assert env.task.num_layers == net.num_layers


def test_gym_make_takes_an_import_path_and_a_callable(tiny_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = gym.make("RuntimePrune-v0", model="torchvision.models:resnet18", dataset=tiny_data).unwrapped
        assert env.task.net.config["builder"] == "torchvision.models:resnet18" and env.task.num_layers == 8
        env = gym.make("StaticPrune-v0", model=user_sequential, dataset=tiny_data, eval_batch=4).unwrapped
        assert env.task.net.config["builder"].endswith(":user_sequential") and env.task.num_layers == 3
    with pytest.raises(ValueError, match="width applies to the built-in backbones"):
        build_model(user_sequential, num_classes=4, input_shape=SHAPE, width=0.5)


def test_imagefolder_dataset_has_deterministic_splits(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(3):
        (tmp_path / f"class{c}").mkdir()
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / f"class{c}" / f"{i}.png")
    a, b = load_dataset(f"imagefolder:{tmp_path}"), load_dataset(f"imagefolder:{tmp_path}")
    assert a.num_classes == 3 and a.input_shape == (3, 8, 8)
    assert (len(a.train), len(a.val), len(a.test)) == (22, 2, 6)
    assert a.test.indices == b.test.indices and a.val.indices == b.val.indices
    assert not set(a.test.indices) & set(a.train.dataset.indices[i] for i in a.train.indices)
    with pytest.raises(FileNotFoundError, match="imagefolder"):
        load_dataset(f"imagefolder:{tmp_path / 'missing'}")


# ---------------------------------------------------------------------------------- files
def test_checkpoint_records_the_builder_and_refuses_what_the_caller_did_not_name(tmp_path):
    net = build_model(user_sequential, num_classes=4, input_shape=SHAPE)
    path = save_checkpoint(tmp_path / "net.pt", net, dataset="dataset:TensorDataset", input_shape=SHAPE)
    with pytest.raises(CheckpointError, match="did not allow"):
        load_checkpoint(path)
    loaded, _ = load_checkpoint(path, models=(user_sequential,))
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in net.state_dict().items())
    payload = torch.load(path, weights_only=True)
    payload["config"]["builder"] = "os:system"  # a forged file naming something to run
    torch.save(payload, tmp_path / "forged.pt")
    with pytest.raises(CheckpointError, match="'os:system', which the caller did not allow"):
        load_checkpoint(tmp_path / "forged.pt", models=(user_sequential, "torchvision.models:resnet18"))


def test_export_and_onnx_round_trip_on_a_converted_resnet(converted, tmp_path):
    _, net = converted["user_resnet"]
    net = build_model(UserResNet, num_classes=4, input_shape=SHAPE).eval()
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for g in net.layers:
            g.static_importance.uniform_(0.5, 1.5, generator=gen)
    net.configure(tradeoff_rate=0.0)
    deployed = export_static(net, 0.5)
    x = torch.randn(3, *SHAPE, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), net(x, 1.0, 0.5), rtol=1e-5, atol=1e-5)
    assert deployed.stored_channels == [6, 8]
    path = save_deployed(deployed, tmp_path / "deployed.pt")
    with pytest.raises(CheckpointError, match="did not allow"):
        load_deployed(path)
    again = load_deployed(path, models=(UserResNet,))
    onnx_path = export_onnx(again, tmp_path / "net.onnx", SHAPE)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"images": x.numpy()})[0]
    np.testing.assert_allclose(out, deployed(x).detach().numpy(), rtol=1e-4, atol=1e-4)
