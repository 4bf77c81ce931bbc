"""Your own CNN through the whole method: pretrain -> importance -> agents -> export, in a couple of minutes on CPU.

Two networks, both with random initial weights (nothing is downloaded): a torchvision ResNet-34 with a
one-channel first conv, and a small ``nn.Sequential`` written here. Each is converted to a gated network
(``prune_env.nets.gate``), pre-trained and given its importance predictors for a few batches, pruned by
a briefly trained runtime and static agent, then exported with its permanent channels removed and
written as ONNX. The data are 1000 images of Fashion-MNIST when it is installed
(``/usr/share/datasets/fashion-mnist``), else of the bundled digits, given as a plain torch ``Dataset``.
The settings are tiny: the accuracies mean nothing, the plumbing is the point.

    python examples/own_cnn.py [--out runs/own_cnn]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torchvision
from stable_baselines3 import PPO
from torch import nn

import prune_env  # noqa: F401 - registers the environments
from agents.cnn_stages import StageJob, run_stage
from prune_env.checkpoint import load_checkpoint
from prune_env.data import DEBIAN_FASHION_MNIST_DIR, load_dataset
from prune_env.deploy.export import export_static
from prune_env.deploy.onnx_export import export_onnx
from prune_env.nets.convert import layer_reports


def resnet34_gray(num_classes: int = 10) -> nn.Module:
    """torchvision's ResNet-34 (random weights) reading one-channel images."""
    model = torchvision.models.resnet34(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
    return model


def small_cnn(num_classes: int = 10) -> nn.Sequential:
    """A user's own small network."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes),
    )


def episode_actions(model: PPO, env: gym.Env) -> list[float]:
    """The agent's keep ratios over one deterministic episode."""
    obs, _ = env.reset(seed=0)
    actions, done = [], False
    while not done:
        action, _ = model.predict(obs, deterministic=True)
        actions.append(float(np.clip(action, 0.0, 1.0).flatten()[0]))
        obs, _, done, _, info = env.step(action)
    return actions


def run(builder, dataset, out: Path, steps: int) -> None:
    name = builder.__name__
    hp = {"epochs": 1, "steps_per_epoch": steps, "batch_size": 32}
    pre, imp = out / f"{name}_pre.pt", out / f"{name}_imp.pt"
    common = dict(model=builder, dataset=dataset, hparams=hp, device="cpu", progress=False, overwrite=True)
    run_stage(StageJob("pretrain", out=pre, **common))
    run_stage(StageJob("importance", checkpoint=pre, out=imp, **common))
    net, _ = load_checkpoint(imp, models=(builder,))  # the builder must be named to rebuild the network
    print(f"{name}: {net.num_layers} prunable layers;", "; ".join(str(r) for r in layer_reports(net)[:2]), "...")

    kw = dict(model=builder, checkpoint=str(imp), dataset=dataset, loss_batch=16, budget=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runtime_env = gym.make("RuntimePrune-v0", **kw)
        static_env = gym.make("StaticPrune-v0", eval_batch=16, **kw)
    agents = {}
    for label, env in (("runtime", runtime_env), ("static", static_env)):
        agents[label] = PPO("MlpPolicy", env, n_steps=32, batch_size=16, n_epochs=1, seed=0, device="cpu").learn(64)
    print(f"{name}: runtime agent keep ratios {np.round(episode_actions(agents['runtime'], runtime_env), 2).tolist()}")
    static_keep = episode_actions(agents["static"], static_env)

    trained = static_env.unwrapped.task.net
    deployed = export_static(trained.configure(tradeoff_rate=0.5), static_keep)
    shape = tuple(static_env.unwrapped.task.input_shape)
    path = export_onnx(deployed, out / f"{name}.onnx", shape)
    print(f"{name}: static keep {np.round(static_keep, 2).tolist()} -> stored channels {deployed.stored_channels} "
          f"of {deployed.channels}; ONNX at {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/own_cnn"))
    parser.add_argument("--steps", type=int, default=4, help="batches per CNN stage (default 4)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "fashion-mnist" if DEBIAN_FASHION_MNIST_DIR.is_dir() else "digits"
    # data of one's own: any torch Dataset of (image, label) works; here 1000 training images of a named set,
    # which get their own deterministic train / validation / test splits (prune_env.own_data)
    source = load_dataset(name).train_plain
    dataset = torch.utils.data.Subset(source, range(min(1000, len(source))))
    torch.manual_seed(0)
    for builder in (small_cnn, resnet34_gray):
        run(builder, dataset, args.out, args.steps)


if __name__ == "__main__":
    main()
