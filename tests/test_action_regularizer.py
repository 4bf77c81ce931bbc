"""Eq. 13 two ways: the optimizer hook of agents/policies.py adds exactly the gradient of the explicit loss term.

``benchmarks/cleanrl_ppo.py`` states the action regulariser ``0.5 * ||a - clip(a, alpha, 1)||^2`` as a
term of its loss sum; SB3's algorithms get it from :class:`agents.policies._ActionRegularizerMixin`, which
back-propagates it when the optimizer's gradients are zeroed. Same policy, same minibatch: the
gradients must agree.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents import policies
from agents.policies import RegularizedMlpPolicy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from cleanrl_ppo import action_regularizer  # noqa: E402

LOW, HIGH = 0.2, 1.0


def tiny_policy(coef: float) -> RegularizedMlpPolicy:
    torch.manual_seed(0)
    obs_space = gym.spaces.Box(-1.0, 1.0, (5,), np.float32)
    act_space = gym.spaces.Box(LOW, HIGH, (1,), np.float32)
    # initial mean 1.3 plus noise: most of the batch lies above the action range, so Eq. 13 is active
    policy = RegularizedMlpPolicy(obs_space, act_space, lambda _: 1e-3, net_arch=[8], action_reg_coef=coef,
                                  initial_action=1.3)
    with torch.no_grad():
        policy.action_net.weight.normal_(0.0, 0.5)
    return policy


def algorithm_loss(policy, obs, actions):
    """A stand-in for the algorithm's own loss (any differentiable function of the evaluated minibatch)."""
    values, log_prob, entropy = policy.evaluate_actions(obs, actions)
    return -log_prob.mean() + 0.5 * values.pow(2).mean() - 0.01 * entropy.mean()


def grads(policy):
    return [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in policy.parameters()]


@pytest.mark.parametrize("coef", [1.0, 0.3])
def test_hooked_gradient_equals_the_explicit_eq13_term(coef):
    hooked = tiny_policy(coef)
    explicit = copy.deepcopy(hooked)
    g = torch.Generator().manual_seed(1)
    obs = torch.rand(16, 5, generator=g) * 2 - 1
    actions = torch.rand(16, 1, generator=g) * 1.5

    # SB3's order: evaluate the minibatch, zero_grad (the hook back-propagates coef * L_a), backward the loss
    loss = algorithm_loss(hooked, obs, actions)
    hooked.optimizer.zero_grad()
    loss.backward()
    with_hook = grads(hooked)

    # CleanRL's: one explicit sum, gradients zeroed without the hook
    loss = algorithm_loss(explicit, obs, actions)
    explicit._pending_penalty = None  # the recorded term is written out below instead
    for p in explicit.parameters():
        p.grad = None
    mean = explicit.get_distribution(obs).distribution.mean
    (loss + coef * action_regularizer(mean, LOW, HIGH)).backward()
    written_out = grads(explicit)

    for a, b in zip(with_hook, written_out):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)
    # the term is really there: without it the gradient differs
    for p in explicit.parameters():
        p.grad = None
    algorithm_loss(explicit, obs, actions).backward()
    explicit._pending_penalty = None
    assert not all(torch.allclose(a, p.grad) for a, p in zip(with_hook, explicit.parameters()) if p.grad is not None)
    assert hooked.last_action_penalty == pytest.approx(float(action_regularizer(mean, LOW, HIGH).detach()), rel=1e-6)


@pytest.mark.parametrize("regularizer", [action_regularizer, policies.action_regularizer], ids=["cleanrl", "policies"])
def test_eq13_gradient_is_the_overshoot_and_zero_inside_the_range(regularizer):
    """dL_a/dmean = (mean - clip(mean, alpha, 1)) / N: the overshoot below alpha or above 1, nothing inside."""
    mean = torch.tensor([[-0.5], [0.05], [0.3], [1.0], [2.0]], requires_grad=True)
    regularizer(mean, 0.1, 1.0).backward()
    expected = torch.tensor([[-0.6], [-0.05], [0.0], [0.0], [1.0]]) / 5
    torch.testing.assert_close(mean.grad, expected)
    inside = torch.tensor([[0.1], [0.5], [1.0]], requires_grad=True)
    regularizer(inside, 0.1, 1.0).backward()
    assert torch.equal(inside.grad, torch.zeros_like(inside))


@pytest.mark.parametrize("start, direction", [(1.6, -1), (-0.4, +1), (0.6, 0)])
def test_one_optimizer_step_on_eq13_moves_the_mean_toward_the_range(start, direction):
    """The policy's optimizer hook alone (no other loss): one SGD step moves a mean above 1 down, one below
    alpha up, and leaves a mean inside [alpha, 1] where it is (a zero gradient)."""
    policy = tiny_policy(1.0)
    with torch.no_grad():
        policy.action_net.weight.mul_(0.01)  # every mean close to the start
        policy.action_net.bias.fill_(start)
    policy.optimizer = torch.optim.SGD(policy.parameters(), lr=0.05)
    obs = torch.rand(16, 5, generator=torch.Generator().manual_seed(2)) * 2 - 1

    def means():
        with torch.no_grad():
            return policy.get_distribution(obs).distribution.mean.clone()

    before = means()
    policy.evaluate_actions(obs, before)  # records the Eq. 13 term, as the algorithm's loss evaluation does
    policy.optimizer.zero_grad()  # the hook back-propagates coef * L_a, and only that
    policy.optimizer.step()
    after = means()
    if direction == 0:
        assert policy.last_action_penalty == 0.0 and torch.equal(after, before)
        return
    assert policy.last_action_penalty > 0.0
    assert bool((direction * (after - before) > 0).all())  # every mean moved toward the range
    assert float(action_regularizer(after, LOW, HIGH)) < float(action_regularizer(before, LOW, HIGH))
