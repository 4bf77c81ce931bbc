"""The CNN training stages (paper Sec. 4.1, Algorithm 1), evaluation, checkpoints and the CLI."""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import pytest
import torch

from prune_env.assets import default_checkpoint_path
from prune_env.checkpoint import load_checkpoint, read_checkpoint
from prune_env.cnn import (
    PRESETS,
    STAGES,
    evaluate,
    stage_hparams,
    train_stage,
    uniform_ratio_fn,
)
from prune_env.data import load_dataset
from prune_env.nets import build_net

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import finetune_cnn  # noqa: E402

FAST = dict(batch_size=64, device="cpu", progress=False)


@pytest.fixture(scope="module")
def splits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def pretrained(splits):
    torch.manual_seed(0)
    net = build_net("digitnet")
    history = train_stage(net, "pretrain", splits, epochs=2, lr=3e-3, seed=0, **FAST)
    return net, history


@pytest.fixture(scope="module")
def importance_net(pretrained, splits):
    net = copy.deepcopy(pretrained[0])
    history = train_stage(net, "importance", splits, epochs=2, lr=1e-3, seed=0, **FAST)
    return net, history


def state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------- presets


def test_presets_hold_the_paper_values_and_overrides_win():
    assert STAGES == ("pretrain", "importance", "finetune")
    cifar = stage_hparams("cifar10", "finetune")
    assert (cifar["batch_size"], cifar["lr"], cifar["epochs"]) == (128, 1e-3, 2)  # N2 = 780 batches = 2 epochs
    imagenet = stage_hparams("imagenet", "finetune")
    assert (imagenet["batch_size"], imagenet["lr"], imagenet["steps_per_epoch"]) == (128, 1e-4, 600)
    assert imagenet["lr_decay_every"] and imagenet["lr_decay_factor"] == 0.1
    assert set(PRESETS) >= {"digits", "fashion-mnist", "cifar10", "imagenet"}
    custom = stage_hparams("digits", "pretrain", lr=0.5, epochs=None)
    assert custom["lr"] == 0.5 and custom["epochs"] == PRESETS["digits"]["stages"]["pretrain"]["epochs"]
    assert custom["keep"] is None and stage_hparams("digits", "finetune")["keep"] == 0.5
    assert stage_hparams("mnist", "pretrain") == stage_hparams("default", "pretrain")  # no preset of its own
    with pytest.raises(ValueError, match="stage"):
        stage_hparams("digits", "warmup")
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        stage_hparams("digits", "pretrain", momentum=0.9)


def test_bad_arguments_are_rejected(splits):
    net = build_net("digitnet")
    with pytest.raises(ValueError, match="lr"):
        train_stage(net, "pretrain", splits, epochs=1, lr=0.0, **FAST)
    with pytest.raises(ValueError, match="stage"):
        train_stage(net, "warmup", splits, epochs=1, lr=1e-3, **FAST)
    with pytest.raises(ValueError, match="ratio_fn"):
        train_stage(net, "pretrain", splits, epochs=1, lr=1e-3, ratio_fn=uniform_ratio_fn(0.5), **FAST)
    with pytest.raises(ValueError, match="keep"):
        uniform_ratio_fn(1.5)


# --------------------------------------------------------------------------- stages


def test_pretrain_learns(pretrained):
    net, history = pretrained
    assert [r["epoch"] for r in history] == [1, 2]
    assert set(history[0]) >= {"epoch", "train_loss", "train_acc", "val_acc", "lr", "seconds"}
    assert history[-1]["val_acc"] > 0.5  # chance is 0.1
    assert net.gate_config.gating is False
    assert all(torch.equal(g.static_importance, torch.ones_like(g.static_importance)) for g in net.layers)
    assert all(p.requires_grad for p in net.parameters())  # restored after the stage


def test_importance_frees_static_importance_and_keeps_accuracy(pretrained, importance_net, splits):
    net, history = importance_net
    assert [r["phase"] for r in history] == ["hold_static", "free_static"]
    assert any(not torch.allclose(g.static_importance, torch.ones_like(g.static_importance)) for g in net.layers)
    assert any(g.predictor.weight.abs().sum() > 0 for g in net.layers)  # f was trained
    assert net.gate_config.gating and not net.gate_config.hold_static
    dense = evaluate(pretrained[0], splits.val)["accuracy"]
    assert history[-1]["val_acc"] >= dense - 0.1


def test_importance_holds_static_at_one_in_its_first_step(pretrained, splits):
    net = copy.deepcopy(pretrained[0])
    history = train_stage(net, "importance", splits, epochs=1, lr=1e-3, importance_split=1.0, steps_per_epoch=5, **FAST)
    assert history[0]["phase"] == "hold_static"
    assert all(torch.equal(g.static_importance, torch.ones_like(g.static_importance)) for g in net.layers)
    assert any(g.predictor.weight.abs().sum() > 0 for g in net.layers)


def test_finetune_applies_the_masks(importance_net, splits):
    net = copy.deepcopy(importance_net[0])
    history = train_stage(net, "finetune", splits, epochs=1, lr=1e-3, keep=0.5, tradeoff_rate=1.0, **FAST)
    # R_r = 1: the mask is M_r, which keeps exactly ceil(0.5 * C) channels per layer and sample.
    expected = [math.ceil(0.5 * c) / c for c in net.channels]
    assert history[0]["val_kept_fraction"] == pytest.approx(expected)
    images = torch.stack([splits.val[i][0] for i in range(8)])
    kept = net.eval().run(images, 0.5, 0.5).kept
    assert kept.tolist() == [[math.ceil(0.5 * c) for c in net.channels]] * 8
    result = evaluate(net, splits.test, ratio_fn=uniform_ratio_fn(0.5))
    assert result["kept_fraction"] == pytest.approx(expected)
    assert result["accuracy"] > 0.3


def test_finetune_uses_the_given_ratio_fn(importance_net, splits):
    net = copy.deepcopy(importance_net[0])
    calls = []
    layer_keep = [1.0, 0.5, 0.25, 0.75]

    def ratio_fn(n, images):
        assert not torch.is_grad_enabled() and not n.training  # frozen agents: eval mode, no grad
        calls.append(images.shape[0])
        return torch.tensor(layer_keep).expand(images.shape[0], -1), layer_keep

    before = [g.static_importance.detach().clone() for g in net.layers]
    history = train_stage(net, "finetune", splits, epochs=1, lr=1e-3, ratio_fn=ratio_fn, tradeoff_rate=1.0,
                          steps_per_epoch=3, **FAST)
    assert calls[:3] == [64, 64, 64] and len(calls) > 3  # 3 training batches, then validation
    expected = [math.ceil(k * c) / c for k, c in zip(layer_keep, net.channels)]
    assert history[0]["val_kept_fraction"] == pytest.approx(expected)
    assert net.training  # the stage leaves the net in train mode
    # u_s trains in finetune (through u_r * u_s of the kept channels)
    assert any(not torch.equal(b, g.static_importance) for b, g in zip(before, net.layers))


def test_default_tradeoff_prunes_about_half(importance_net, splits):
    net = copy.deepcopy(importance_net[0]).configure(tradeoff_rate=0.5)
    history = train_stage(net, "finetune", splits, epochs=1, lr=1e-3, keep=0.5, steps_per_epoch=2, **FAST)
    assert all(0.3 < k < 0.7 for k in history[0]["val_kept_fraction"])


def test_lr_step_decay(splits):
    net = build_net("digitnet")
    history = train_stage(net, "pretrain", splits, epochs=2, lr=1e-3, lr_decay_every=3, lr_decay_factor=0.1,
                          steps_per_epoch=3, **FAST)
    assert [r["lr"] for r in history] == pytest.approx([1e-4, 1e-5])


# --------------------------------------------------------------------------- determinism, checkpoints


def test_same_seed_same_result(splits):
    nets = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        net = build_net("digitnet")
        train_stage(net, "pretrain", splits, epochs=1, lr=3e-3, seed=seed, steps_per_epoch=8, **FAST)
        train_stage(net, "importance", splits, epochs=2, lr=1e-3, seed=seed, steps_per_epoch=4, **FAST)
        nets.append(net)
    assert state_equal(nets[0], nets[1])
    assert not state_equal(nets[0], nets[2])


def test_checkpoint_resume_continues_the_epoch_count(splits, tmp_path):
    path = tmp_path / "stage.pt"
    torch.manual_seed(0)
    start = build_net("digitnet")
    interrupted = copy.deepcopy(start)
    first = train_stage(interrupted, "pretrain", splits, epochs=1, lr=3e-3, checkpoint_path=path, **FAST)
    payload = read_checkpoint(path)
    assert (payload["stage"], payload["epoch"], payload["epochs"]) == ("pretrain", 1, 1)
    assert "optimizer" in payload and payload["history"] == first

    resumed = build_net("digitnet")  # a fresh process: the weights come from the checkpoint
    history = train_stage(resumed, "pretrain", splits, epochs=3, lr=3e-3, checkpoint_path=path, resume=True, **FAST)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert read_checkpoint(path)["epoch"] == 3 and read_checkpoint(path)["completed"]

    straight = copy.deepcopy(start)
    train_stage(straight, "pretrain", splits, epochs=3, lr=3e-3, **FAST)
    for (name, a), b in zip(resumed.state_dict().items(), straight.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name

    net, payload = load_checkpoint(path)  # loadable with nothing else
    assert payload["dataset"] == "digits" and payload["input_shape"] == [1, 8, 8]
    assert payload["costs"]["dense_macs"] > 0
    with pytest.raises(ValueError, match="stage"):
        train_stage(net, "importance", splits, epochs=1, lr=1e-3, checkpoint_path=path, resume=True, **FAST)


def test_shipped_default_checkpoint():
    path = default_checkpoint_path()
    assert path.is_file() and path.stat().st_size < 400_000
    net, payload = load_checkpoint(path)
    assert payload["config"]["name"] == "digitnet" and payload["dataset"] == "digits"
    assert payload["stage"] == "finetune" and payload["test"]["accuracy"] >= 0.95
    splits = load_dataset("digits", val_fraction=payload["data"]["val_fraction"], seed=payload["data"]["split_seed"])
    assert evaluate(net, splits.test)["accuracy"] == pytest.approx(payload["test"]["accuracy"])
    assert any(not torch.allclose(g.static_importance, torch.ones_like(g.static_importance)) for g in net.layers)
    # fine-tuned under random keep ratios: pruning half of every layer costs little
    net.configure(tradeoff_rate=1.0)
    assert evaluate(net, splits.test, runtime_keep_ratios=0.5)["accuracy"] >= 0.95


# --------------------------------------------------------------------------- command line


def test_cli_round_trip(tmp_path, capsys):
    pre, imp, ft = tmp_path / "pre.pt", tmp_path / "imp.pt", tmp_path / "ft.pt"
    result = finetune_cnn.main(["pretrain", "--epochs", "2", "--out", str(pre), "--no-progress", "--seed", "1"])
    out = capsys.readouterr().out
    assert "val_acc" in out and "test_acc" in out and result["test"]["accuracy"] > 0.5
    finetune_cnn.main(["importance", "--checkpoint", str(pre), "--epochs", "2", "--out", str(imp), "--no-progress"])
    result = finetune_cnn.main(["finetune", "--checkpoint", str(imp), "--epochs", "1", "--keep", "0.5",
                                "--tradeoff-rate", "1.0", "--out", str(ft), "--no-progress"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("done: finetune digitnet on digits") and "test_acc" in last
    net, payload = load_checkpoint(ft)
    assert payload["stage"] == "finetune" and payload["parent"] == str(imp)
    assert payload["config"] == {"name": "digitnet", "num_classes": 10, "in_channels": 1, "width": 1.0}
    assert payload["input_shape"] == [1, 8, 8] and payload["costs"]["dense_macs"] > 0
    assert payload["gate_config"]["tradeoff_rate"] == 1.0
    assert payload["test"]["accuracy"] == pytest.approx(result["test"]["accuracy"])
    assert payload["hparams"]["keep"] == 0.5

    # --resume continues an interrupted stage's epoch count
    finetune_cnn.main(["pretrain", "--epochs", "3", "--out", str(pre), "--resume", "--no-progress", "--seed", "1"])
    assert "resuming" in capsys.readouterr().out
    assert [r["epoch"] for r in read_checkpoint(pre)["history"]] == [1, 2, 3]


@pytest.mark.parametrize(
    "argv, option",
    [
        (["pretrain", "--lr", "0"], "--lr"),
        (["pretrain", "--lr", "-1e-3"], "--lr"),
        (["pretrain", "--epochs", "0"], "--epochs"),
        (["finetune", "--model", "digitnet", "--keep", "1.5"], "--keep"),
        (["finetune", "--model", "digitnet", "--keep", "0"], "--keep"),
        (["pretrain", "--tradeoff-rate", "2"], "--tradeoff-rate"),
        (["pretrain", "--batch-size", "abc"], "--batch-size"),
        (["importance"], "--checkpoint"),
        (["pretrain", "--weights", "w.pth"], "--weights"),
        (["importance", "--checkpoint", "no/such/file.pt"], "--checkpoint"),
    ],
)
def test_cli_errors_name_the_option(argv, option, capsys):
    with pytest.raises(SystemExit) as exc:
        finetune_cnn.main(argv)
    assert exc.value.code == 2
    assert option in capsys.readouterr().err


def test_data_on_device_trains_exactly_as_the_data_loader(splits):
    """Digits have no augmentation: indexing the split on the device gives the very same batches."""
    nets, histories = [], []
    for on_device in (False, True):
        torch.manual_seed(0)
        net = build_net("digitnet")
        histories.append(train_stage(net, "pretrain", splits, epochs=2, lr=3e-3, seed=0, steps_per_epoch=6,
                                     data_on_device=on_device, **FAST))
        nets.append(net)
    assert state_equal(nets[0], nets[1])
    assert [h["train_loss"] for h in histories[0]] == [h["train_loss"] for h in histories[1]]
    assert [h["val_acc"] for h in histories[0]] == [h["val_acc"] for h in histories[1]]
    plain = evaluate(nets[0], splits.test, device="cpu")
    fast = evaluate(nets[0], splits.test, device="cpu", data_on_device=True)
    assert fast["accuracy"] == plain["accuracy"] and fast["loss"] == pytest.approx(plain["loss"], rel=1e-6)


def test_method_runs_its_stages_by_calling_functions(tmp_path, monkeypatch):
    """``method`` builds each stage's job and calls :func:`agents.cnn_stages.run_stage`, no argument strings."""
    import agents.algorithm1 as alg1
    import agents.cnn_stages

    jobs, seen = [], {}
    monkeypatch.setattr(agents.cnn_stages, "run_stage", lambda job: jobs.append(job) or {})
    monkeypatch.setattr(alg1, "run_algorithm1", lambda cfg: seen.setdefault("cfg", cfg) and {})
    out = tmp_path / "m"
    finetune_cnn.main(["method", "--out", str(out), "--warmup-epochs", "3", "--seed", "2", "--width", "0.5", "--no-progress"])
    assert [j.stage for j in jobs] == ["pretrain", "importance", "finetune"]
    assert (jobs[0].model, jobs[0].width, jobs[0].out) == ("digitnet", 0.5, out / "pretrain.pt")
    assert (jobs[1].checkpoint, jobs[1].out) == (out / "pretrain.pt", out / "importance.pt")
    assert (jobs[2].checkpoint, jobs[2].random_keep, jobs[2].hparams, jobs[2].tradeoff_rate) == (
        out / "importance.pt", 0.2, {"epochs": 3}, 1.0)
    assert all(j.dataset == "digits" and j.seed == 2 and j.threads == 1 and not j.progress and not j.resume for j in jobs)
    assert seen["cfg"].checkpoint == str(out / "warmup.pt")
