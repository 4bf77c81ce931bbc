"""Baselines under the budget (uniform, L1 / BN static, random) and the AMC state and clamping wrappers
(prune_env.envs.wrappers)."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from prune_env.envs.task import PruningTask, TaskConfig
from prune_env.envs.vec_env import BatchedPruneVecEnv
from prune_env.envs.wrappers import AMC_FEATURES, AMCFeatures, AMCWrapper, VecAMCWrapper
from prune_env.evaluation.baselines import (
    RandomKeepRatioPolicy,
    bn_static_baseline,
    l1_filter_norms,
    l1_static_baseline,
    make_baseline,
    rank_by_l1,
    rerank_static,
    static_uniform_baseline,
    uniform_baseline,
    uniform_static_ratio,
)
from prune_env.nets.backbones import sequential_net

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def task():
    return PruningTask(TaskConfig(split="test"))


def test_uniform_baseline_meets_the_mac_budget(task):
    b = uniform_baseline(task)
    assert b.constraint == "macs" and b.env_kwargs == {}
    m = b.evaluate()
    assert m["macs_ratio"] <= m["budget"] + 1e-9
    assert m["within_budget"] == 1.0  # a uniform ratio costs the same for every input
    assert m["uniform_keep_ratio"] == pytest.approx(0.5, abs=1e-6)  # the default budget is "keep 0.5"
    assert m["keep_ratio_mean"] == [0.5] * 4 and m["params_ratio"] == 1.0
    assert m["accuracy"] > 0.9


def test_static_baselines_meet_the_parameter_budget_and_leave_the_task_alone(task):
    before = [layer.static_importance.detach().clone() for layer in task.net.layers]
    for build in (l1_static_baseline, bn_static_baseline, static_uniform_baseline):
        b = build(task)
        m = b.evaluate()
        assert m["params_ratio"] <= m["params_budget"] + 1e-9 and m["params_within_budget"] == 1.0
        assert m["static_keep_ratios"] == pytest.approx([m["uniform_static_ratio"]] * 4)
        assert b.task.cfg.tradeoff_rate == 0.0 and b.runtime_policy == 1.0 and b.constraint == "params"
        assert 0.0 <= m["accuracy"] <= 1.0
    for layer, u_s in zip(task.net.layers, before):
        assert torch.equal(layer.static_importance.detach(), u_s)
    assert task.cfg.tradeoff_rate == 1.0 and task.net.gate_config.tradeoff_rate == 1.0


def test_uniform_static_ratio_is_the_largest_meeting_the_budget(task):
    variant = static_uniform_baseline(task).task
    r = uniform_static_ratio(variant)

    def params(x):
        return float(variant.costs.params_ratio(variant.stored_counts(np.full((1, 4), x)))[0])

    assert params(r) <= variant.params_budget + 1e-12
    assert params(r + 1.0 / 64 + 1e-6) > variant.params_budget  # one more channel in the widest layer is over


def hand_built_net():
    """Two conv layers (4 and 6 channels) whose filter L1 norms and u_s rank channels differently."""
    torch.manual_seed(0)
    net = sequential_net([(4, 1, 1, 0.0), (6, 1, 1, 0.0)], num_classes=3, in_channels=1, width=1.0, config={"name": "hand"})
    l1_scales = [torch.tensor([0.3, 0.1, 0.4, 0.2]), torch.tensor([0.5, 0.05, 0.6, 0.2, 0.1, 0.9])]
    u_s = [torch.tensor([0.5, 2.0, 0.7, 1.5]), torch.tensor([0.3, 1.9, 0.2, 1.0, 1.2, 0.4])]  # about the reverse order
    with torch.no_grad():
        for layer, scale, importance in zip(net.layers, l1_scales, u_s):
            w = layer.conv.weight
            signs = torch.sign(torch.randn_like(w))
            w.copy_(signs * scale[:, None, None, None] / w[0].numel())  # L1 norm of filter c = scale[c]
            layer.static_importance.copy_(importance)
            layer.predictor.weight.normal_(0, 0.3)
            layer.predictor.bias.uniform_(0.5, 1.5)
            layer.bn.running_mean.normal_(0, 0.1)
            layer.bn.running_var.uniform_(0.5, 2.0)
            layer.bn.weight.uniform_(0.5, 1.5)
            layer.bn.bias.uniform_(0.0, 0.5)
    net.eval().configure(gating=True, tradeoff_rate=0.0)
    return net, l1_scales


def test_l1_ranking_prunes_exactly_the_smallest_l1_filters_and_keeps_the_trained_scaling():
    net, l1_scales = hand_built_net()
    for layer, scale in zip(net.layers, l1_scales):
        np.testing.assert_allclose(l1_filter_norms(layer).numpy(), (scale / scale.max()).numpy(), rtol=1e-5)
    ranked = rank_by_l1(net)
    x = torch.randn(5, 1, 6, 6)
    # nothing pruned: the same function
    torch.testing.assert_close(ranked(x), net(x), rtol=1e-5, atol=1e-6)
    # keep 0.5 statically (R_r = 0): the masks prune exactly the smallest-L1 filters in every input
    state = ranked.run(x, 1.0, 0.5)
    expected = [{1, 3}, {1, 4, 3}]  # 2 of 4 and 3 of 6 smallest L1 norms
    for mask, pruned in zip(state.masks, expected):
        for row in mask:
            assert set(torch.nonzero(row).flatten().tolist()) == pruned
    assert [set(torch.nonzero(m).flatten().tolist()) for m in ranked.permanent_masks(0.5)] == expected
    # ... while the kept channels are scaled by the trained u_r * u_s: the original network with the
    # L1-pruned channels' u_s set to 0 (their output zero, nothing else changed) computes the same logits
    oracle = copy.deepcopy(net)
    with torch.no_grad():
        for layer, pruned in zip(oracle.layers, expected):
            layer.static_importance[list(pruned)] = 0.0
    torch.testing.assert_close(state.logits, oracle(x), rtol=1e-5, atol=1e-6)
    # the u_s ranking of the original network prunes other channels
    assert set(torch.nonzero(net.run(x, 1.0, 0.5).masks[0][0]).flatten().tolist()) == {0, 2}


def test_rerank_static_checks_its_scores():
    net, _ = hand_built_net()
    with pytest.raises(ValueError, match="positive"):
        rerank_static(net, [torch.zeros(4), torch.ones(6)])
    with pytest.raises(ValueError, match="2 score vectors"):
        rerank_static(net, [torch.ones(4)])


def test_random_baseline_meets_the_budget_in_expectation(task):
    policy = RandomKeepRatioPolicy.for_budget(task, seed=3)
    assert policy.expected_macs_ratio == pytest.approx(task.macs_budget, abs=2e-3)
    lo, hi = policy.bounds
    assert task.cfg.alpha <= lo < hi <= 1.0 and hi - lo == pytest.approx(0.5)
    m = make_baseline("random", task, seed=3).evaluate()
    assert m["macs_ratio"] == pytest.approx(task.macs_budget, abs=0.02)
    assert 0.25 < m["within_budget"] < 0.75  # on average, not per input
    assert min(m["keep_ratio_std"]) > 0.05
    again = make_baseline("random", task, seed=3).evaluate()
    assert again["accuracy"] == m["accuracy"] and again["macs_ratio"] == m["macs_ratio"]  # seeded
    assert make_baseline("random", task, seed=4).evaluate()["macs_ratio"] != m["macs_ratio"]


def test_make_baseline_rejects_unknown_names(task):
    with pytest.raises(ValueError, match="baseline must be one of"):
        make_baseline("oracle", task)


# --------------------------------------------------------------------------- AMC
def play(env, actions, seed=0):
    obs, _ = env.reset(seed=seed)
    observations, info = [obs], {}
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(np.array([a], dtype=np.float32))
        observations.append(obs)
    assert terminated
    return observations, info


def test_amc_features_are_amcs_layer_embedding():
    env = AMCWrapper(gym.make("StaticPrune-v0", eval_batch=8), clamp=False)
    assert len(AMC_FEATURES) == 11 and env.observation_space.shape == (11,)
    task = env.unwrapped.task
    observations, info = play(env, [0.5, 0.75, 1.0, 0.25])
    first = observations[0]
    assert first[0] == 0.0 and first[8] == 0.0 and first[10] == 0.0  # layer 0, nothing reduced, no previous action
    assert first[1] == 0.0 and first[2] == 0.0  # 16 output / 1 input channels: the smallest (min-max scaled)
    assert first[3] == 1.0 and first[4] == 1.0  # 8x8 input: the largest
    convs = {e.out_layer: e for e in task.costs.entries if e.kind == "conv" and e.out_layer >= 0}
    share = [float(convs[t].params(torch.tensor(convs[t].in_channels), torch.tensor(convs[t].out_channels)))
             / task.costs.dense_params for t in range(4)]
    assert first[9] == pytest.approx(sum(share[1:]), rel=1e-5)  # rest: the dense share of layers 1..3
    assert observations[3][9] == 0.0 and observations[3][7] == pytest.approx(1.0)  # last layer: nothing after; the largest
    assert observations[2][0] == pytest.approx(2 / 3) and observations[2][10] == pytest.approx(0.75)  # layer 2, a_1
    reduced = [o[8] for o in observations]
    assert reduced == sorted(reduced) and reduced[-1] == pytest.approx(1.0 - info["params_ratio"], abs=1e-6)
    for o in observations:
        assert np.all((o >= 0) & (o <= 1))


@pytest.mark.parametrize("resource", ["params", "macs"])
def test_amc_clamping_meets_the_budget_even_for_all_ones(resource):
    kwargs = dict(eval_batch=8, tradeoff_rate=0.0)
    clamped = AMCWrapper(gym.make("StaticPrune-v0", **kwargs), resource=resource, clamp=True)
    _, info = play(clamped, [1.0] * 4)
    task = clamped.unwrapped.task
    if resource == "params":
        assert info["params_ratio"] <= task.params_budget + 1e-9
    else:
        assert info["macs_ratio"] <= task.macs_budget + 1e-9
    if resource == "params":
        assert info["within_budget"] and info["reward_budget"] == 0.0
    assert info["keep_ratios"][0] == 1.0  # early layers may stay whole; the later ones pay
    free = AMCWrapper(gym.make("StaticPrune-v0", **kwargs), resource=resource, clamp=False)
    _, info_free = play(free, [1.0] * 4)
    assert info_free["params_ratio"] == 1.0 and not info_free["within_budget"]
    # clamping never raises an action, and leaves alone what meets the budget anyway
    _, info_low = play(clamped, [0.3] * 4)
    assert info_low["keep_ratios"] == pytest.approx([0.3] * 4)


def test_max_keep_ratio_is_the_largest_feasible_keep_ratio():
    env = gym.make("StaticPrune-v0", eval_batch=8)
    features = AMCFeatures(env.unwrapped.task)
    ratios = np.ones((1, 4))
    bound = float(features.max_keep_ratio(ratios, 1)[0])
    alpha = env.unwrapped.task.cfg.alpha

    def cost(r1):
        trial = np.array([[1.0, r1, alpha, alpha]])
        return features.cost_ratio(trial)[0]

    assert cost(bound) <= features.budget + 1e-9
    assert bound == 1.0 or cost(bound + 1 / 32) > features.budget


def test_vec_amc_wrapper_matches_the_single_env_wrapper():
    kwargs = dict(eval_batch=8, loss_batch=2)
    venv = VecAMCWrapper(BatchedPruneVecEnv("StaticPrune-v0", 2, kwargs), clamp=True)
    single = AMCWrapper(gym.make("StaticPrune-v0", **kwargs), clamp=True)
    venv.seed(5)
    obs = venv.reset()
    s_obs, _ = single.reset(seed=5)
    np.testing.assert_allclose(obs[0], s_obs, atol=1e-6)
    actions = [0.9, 1.0, 0.6, 1.0]
    for t, a in enumerate(actions):
        obs, rewards, dones, infos = venv.step(np.array([[a], [a]], dtype=np.float32))
        s_obs, s_reward, *_ , s_info = single.step(np.array([a], dtype=np.float32))
        assert infos[0]["applied_action"] == pytest.approx(s_info["applied_action"])
        if t < 3:
            np.testing.assert_allclose(obs[0], s_obs, atol=1e-6)
    assert dones.all()
    np.testing.assert_allclose(infos[0]["terminal_observation"], s_obs, atol=1e-6)
    assert infos[0]["keep_ratios"] == pytest.approx(s_info["keep_ratios"]) and s_info["within_budget"]
    assert obs[0][0] == 0.0 and obs[0][8] == 0.0  # auto-reset to layer 0
