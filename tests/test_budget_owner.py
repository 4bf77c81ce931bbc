"""One owner for the budget's keep ratio and for R_r (the task), pinned with ``budget_kind="fraction"``."""

import pytest

from agents.registry import RUNTIME, STATIC, env_kwargs_for, get_spec
from prune_env.envs.runtime import RuntimePruneEnv
from prune_env.envs.static import StaticPruneEnv
from prune_env.envs.task import PruningTask, TaskConfig


@pytest.fixture(scope="module")
def sparsity_task():
    return PruningTask(TaskConfig(budget=0.5))


def test_fraction_budget_stands_for_its_uniform_keep_ratio(sparsity_task):
    fraction = PruningTask(TaskConfig(budget=sparsity_task.macs_budget, budget_kind="fraction"))
    k = fraction.budget_keep_ratio
    # the largest uniform keep ratio spending the same MACs as keep 0.5 in every layer
    assert fraction.costs.macs_budget(k) == pytest.approx(sparsity_task.macs_budget)
    assert k >= 0.5
    assert fraction.costs.macs_budget(k + 1e-3) > sparsity_task.macs_budget
    assert sparsity_task.budget_keep_ratio == 0.5


@pytest.mark.parametrize("budget", [0.3, 0.45, 0.5, 0.7])
def test_uniform_keep_ratio_keeps_the_same_channels_as_a_float32_action(budget):
    """The environments' actions are float32: the uniform keep ratio of a budget must keep the same
    channels after the cast (the bisection's edge 0.3125000156 rounds up to 0.3125000298 in float32,
    one channel more of 64), and so stay within the MAC budget."""
    import numpy as np

    from prune_env.nets.masks import keep_count

    task = PruningTask(TaskConfig(budget=budget))
    ratio = task.uniform_keep_ratio()
    assert float(np.float32(ratio)) == ratio
    counts = [int(keep_count(ratio, int(c))) for c in task.channels]
    assert counts == [int(keep_count(float(np.float32(ratio)), int(c))) for c in task.channels]
    assert task.costs.macs_budget(ratio) <= task.macs_budget + 1e-12
    assert task.costs.macs_budget(float(np.nextafter(np.float32(ratio), np.float32(2.0)))) >= task.macs_budget  # the largest
    if budget == 0.3:
        assert counts == [5, 10, 10, 20]


def test_beta_is_calibrated_at_the_budgets_keep_ratio(sparsity_task):
    """With a fraction budget, beta comes from the network at the budget's uniform keep ratio
    (it used to be calibrated at keep ratio = the MAC fraction, 0.25 here)."""
    by_sparsity = RuntimePruneEnv(budget=0.5)
    by_fraction = RuntimePruneEnv(budget=sparsity_task.macs_budget, budget_kind="fraction")
    assert by_fraction.normalizer.beta == pytest.approx(by_sparsity.normalizer.beta, rel=1e-6)
    assert by_fraction.budget_keep_ratio == pytest.approx(by_fraction.task.budget_keep_ratio)
    wrong = by_fraction.task.calibrated_normalizer(sparsity_task.macs_budget, 1.0).beta
    assert wrong > 1.05 * by_fraction.normalizer.beta


def test_static_budget_keep_ratio_meets_the_parameter_budget():
    sparsity = StaticPruneEnv(budget=0.5, eval_batch=8)
    fraction = StaticPruneEnv(budget=sparsity.task.params_budget, budget_kind="fraction", eval_batch=8)
    assert sparsity.budget_keep_ratio == 0.5
    k = fraction.budget_keep_ratio
    stored = fraction.task.stored_counts([[k] * fraction.task.num_layers])
    assert float(fraction.task.costs.params_ratio(stored)[0]) <= sparsity.task.params_budget + 1e-12
    assert fraction.normalizer.beta == pytest.approx(sparsity.normalizer.beta, rel=1e-6)


def test_tradeoff_rate_has_one_owner(sparsity_task):
    task = sparsity_task
    assert task.tradeoff_rate == task.net.gate_config.tradeoff_rate == 1.0
    ratios = [[0.5] * task.num_layers]
    full = task.stored_counts(ratios).tolist()
    with task.at_tradeoff_rate(0.0):
        assert task.net.gate_config.tradeoff_rate == 0.0 == task.cfg.tradeoff_rate
        assert task.stored_counts(ratios).tolist() != full  # the stored count follows the same R_r
    assert task.tradeoff_rate == task.net.gate_config.tradeoff_rate == 1.0
    assert task.stored_counts(ratios).tolist() == full
    with pytest.raises(ValueError, match="tradeoff_rate must be in"):
        task.tradeoff_rate = 1.5


def test_registry_env_kwargs_merge_user_last():
    merged = env_kwargs_for("recurrent_ppo", RUNTIME, {"split": "val", "budget": 0.3})
    assert merged["observation"] == get_spec("recurrent_ppo").env_kwargs[RUNTIME]["observation"]
    assert merged["split"] == "val" and merged["budget"] == 0.3
    assert env_kwargs_for("ppo", "prune_env:" + STATIC, None) == {}
