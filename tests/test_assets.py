"""The networks shipped with the package: what they are, and that the environments take them."""

from __future__ import annotations

import os

import pytest
import torch

from prune_env.assets import build_fashion_mnist, default_checkpoint_path, fashion_mnist_checkpoint_path
from prune_env.checkpoint import load_checkpoint, read_checkpoint
from prune_env.data import DatasetNotFoundError, load_dataset


def test_the_fashion_mnist_network_is_the_one_its_build_script_describes():
    path = fashion_mnist_checkpoint_path()
    assert path is not None and path.stat().st_size < 1_000_000
    payload = read_checkpoint(path)
    assert payload["config"] == {"name": build_fashion_mnist.MODEL, "num_classes": 10, "in_channels": 1,
                                 "width": build_fashion_mnist.WIDTH}
    assert payload["dataset"] == build_fashion_mnist.DATASET and payload["completed"]
    assert "optimizer" not in payload and payload["builder"] == "prune_env.assets.build_fashion_mnist"
    epochs = build_fashion_mnist.EPOCHS
    assert [len(payload[k]) for k in ("pretrain_history", "importance_history", "history")] == [
        epochs["pretrain"], epochs["importance"], epochs["finetune"]]
    assert payload["hparams"]["epochs"] == epochs["finetune"] and payload["hparams"]["tradeoff_rate"] == 1.0
    assert payload["data"] == {"val_fraction": build_fashion_mnist.VAL_FRACTION, "split_seed": build_fashion_mnist.SPLIT_SEED,
                               "root": None}
    net, _ = load_checkpoint(path)
    assert net.num_layers == 8 and all(torch.isfinite(p).all() for p in net.state_dict().values() if p.is_floating_point())


def test_the_embedded_default_is_still_the_default():
    assert default_checkpoint_path().is_file()


def test_fashion_mnist_without_a_checkpoint_takes_the_shipped_network():
    try:
        load_dataset("fashion-mnist")
    except (DatasetNotFoundError, FileNotFoundError) as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"Fashion-MNIST is not installed here ({exc})")
    from prune_env.envs.task import PruningTask, TaskConfig

    task = PruningTask(TaskConfig(dataset="fashion-mnist", split="val"))
    shipped, _ = load_checkpoint(fashion_mnist_checkpoint_path())
    for (name, a), b in zip(task.net.state_dict().items(), shipped.state_dict().values()):
        assert torch.equal(a, b), name
    # the network works at narrow widths as well as dense: the warm-up's point
    ones = [1.0] * task.num_layers
    images, labels = task.source.get(torch.arange(512).numpy())
    for keep, floor in ((1.0, 0.8), (0.4, 0.65)):
        with torch.no_grad():
            logits = task.rollout(images, keep, ones).logits
        assert float((logits.argmax(1) == labels).float().mean()) > floor
