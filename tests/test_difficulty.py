"""The confidence probes (prune_env/envs/difficulty.py) and the ``observation="...+confidence"`` modes."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import prune_env  # noqa: F401
from prune_env.envs.difficulty import CONFIDENCE_FEATURES, ConfidenceProbes
from prune_env.envs.task import PruningTask, TaskConfig


def hand_probes(weight: torch.Tensor, bias: torch.Tensor) -> ConfidenceProbes:
    c = weight.shape[0]
    return ConfidenceProbes(mean=[torch.zeros(c)], std=[torch.ones(c)], weight=[weight], bias=[bias])


def test_features_of_hand_built_probes():
    # logits = pooled @ I + 0: a certain input, an undecided one
    probes = hand_probes(torch.eye(3), torch.zeros(3))
    pooled = torch.tensor([[100.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    feats = probes.features(pooled, 0)
    assert feats.shape == (2, len(CONFIDENCE_FEATURES))
    assert feats[0].tolist() == pytest.approx([1.0, 1.0, 0.0], abs=1e-6)  # top 1, margin 1, no entropy
    assert feats[1].tolist() == pytest.approx([1 / 3, 0.0, 1.0], abs=1e-6)  # uniform: margin 0, entropy log 3 / log 3
    assert probes.macs == 9 and probes.num_classes == 3


def test_probes_standardise_before_the_linear_map():
    probes = ConfidenceProbes(mean=[torch.tensor([1.0, 1.0])], std=[torch.tensor([2.0, 2.0])],
                              weight=[torch.eye(2)], bias=[torch.tensor([0.0, math.log(3.0)])])
    logits = probes.logits(torch.tensor([[3.0, 1.0]]), 0)
    assert logits[0].tolist() == pytest.approx([1.0, math.log(3.0)])


@pytest.fixture(scope="module")
def confident_task():
    torch.set_num_threads(1)
    return PruningTask(TaskConfig(split="test", observation="raw+confidence", budget=0.3, budget_mode="average"))


def test_probes_fit_deterministically_and_deeper_layers_know_more(confident_task):
    task = confident_task
    images, labels = task.source.get(np.arange(len(task.source)))
    state = task.net.begin(images)
    accuracy = []
    for t in range(task.num_layers):
        accuracy.append(float((task.probes.logits(state.pooled, t).argmax(1) == labels).float().mean()))
        state = task.net.step(state, 1.0, 1.0)
    # the last layer's pooled input classifies digits almost as well as the network; the first (a grey level) cannot
    assert accuracy[-1] > 0.9 and accuracy[0] < 0.5 and accuracy[-1] > accuracy[0] + 0.4
    again = PruningTask(TaskConfig(split="val", observation="encoded+confidence"))
    for a, b in zip(task.probes.weight, again.probes.weight):
        assert torch.equal(a, b)  # fitted on the training split: the same probes whatever split the env serves


def test_observation_layout_carries_the_probe_features_before_the_progress_entries(confident_task):
    task = confident_task
    raw_width = max(task.in_channels)
    assert task.runtime_obs_dim == raw_width + task.num_layers + 3 + 2
    images, _ = task.source.get(np.arange(5))
    state = task.net.begin(images)
    state = task.net.step(state, 1.0, 1.0)  # before layer 1
    obs = task.runtime_observation(state)
    conf = obs[:, raw_width + task.num_layers: raw_width + task.num_layers + 3]
    assert np.allclose(conf, task.probes.features(state.pooled, 1).numpy(), atol=1e-6)
    assert np.all((conf >= 0) & (conf <= 1 + 1e-6)) and np.all(conf[:, 0] >= 1 / task.num_classes - 1e-6)
    assert obs[:, raw_width + 1].tolist() == [1.0] * 5 and np.allclose(obs[:, -1], task.macs_budget)


@pytest.mark.parametrize("mode", ["raw+confidence", "encoded+confidence"])
def test_both_confidence_modes_pass_the_checkers(mode):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("RuntimePrune-v0", observation=mode)
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=False)
    assert env.observation_space.shape == (env.unwrapped.task.runtime_obs_dim,)


def test_the_paper_encoders_take_the_confidence_entries(confident_task):
    from agents.policies import LayerEncoderExtractor

    task = confident_task
    space = gym.spaces.Box(-np.inf, np.inf, (task.runtime_obs_dim,), np.float32)
    extractor = LayerEncoderExtractor(space, task.in_channels, features_dim=16)
    assert extractor.features_dim == 16 + 3 + 2
    images, _ = task.source.get(np.arange(4))
    obs = torch.as_tensor(task.runtime_observation(task.net.begin(images)))
    out = extractor(obs)
    assert torch.equal(out[:, 16:], obs[:, -5:])  # confidence and progress passed through unchanged


def test_probe_macs_count_as_overhead(confident_task):
    from prune_env.evaluation.split import rollout_split, summarize

    task = confident_task
    ones = np.ones(task.num_layers)
    results = rollout_split(task, 1.0, ones, indices=np.arange(8))
    with_probes = summarize(task, results, ones)["overhead_macs_ratio_max"]
    probes, task.probes = task.probes, None
    try:
        without = summarize(task, results, ones)["overhead_macs_ratio_max"]
    finally:
        task.probes = probes
    assert with_probes - without == pytest.approx(probes.macs / task.costs.dense_macs)
