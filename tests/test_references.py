"""The references beside a runtime agent: oracle knapsack, static search, controls, calibration, cascade,
paired test, cost breakdown."""

import contextlib
import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from prune_env.envs.task import PruningTask, TaskConfig
from prune_env.evaluation.references import (
    OffsetPolicy,
    adaptation_controls,
    calibrate_offset,
    confidence_cascade,
    cost_breakdown,
    headroom_captured,
    level_results,
    mcnemar_p_value,
    multiple_choice_knapsack,
    oracle_choice,
    search_static_allocation,
)
from prune_env.evaluation.split import SplitResults, rollout_split


def brute_force(values, costs, capacity):
    best, best_value = None, -np.inf
    for combo in itertools.product(range(values.shape[1]), repeat=values.shape[0]):
        rows = np.arange(values.shape[0])
        if costs[rows, combo].sum() <= capacity + 1e-9 and values[rows, combo].sum() > best_value:
            best, best_value = combo, values[rows, combo].sum()
    return np.array(best), best_value


def test_knapsack_hand_built():
    # two inputs, levels of cost 1, 2, 3: input A is right from level 2 on, input B only at level 3
    costs = np.array([[1.0, 2, 3], [1, 2, 3]])
    values = np.array([[0.0, 1, 1], [0, 0, 1]])
    # mean budget 2 (total 4): A at level 2 (one correct for one extra unit) beats B at level 3 (two units)
    assert multiple_choice_knapsack(values, costs, 4.0).tolist() == [1, 0]
    # total 5: both right
    assert multiple_choice_knapsack(values, costs, 5.0).tolist() == [1, 2]
    # not even the cheapest fits: the cheapest
    assert multiple_choice_knapsack(values, costs, 1.0).tolist() == [0, 0]


def test_knapsack_near_optimal_on_random_concave_cases():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n, k = 4, 3
        costs = np.sort(rng.uniform(0.1, 1.0, (n, k)), axis=1)
        gains = rng.uniform(0, 1, (n, k))
        gains[:, 0] = 0
        values = np.cumsum(gains * np.array([1, 0.6, 0.3]), axis=1)  # concave increments
        capacity = rng.uniform(costs[:, 0].sum(), costs[:, -1].sum())
        choice = multiple_choice_knapsack(values, costs, capacity)
        rows = np.arange(n)
        assert costs[rows, choice].sum() <= capacity + 1e-9
        _, optimum = brute_force(values, costs, capacity)
        largest_step = np.max(np.diff(values, axis=1))
        assert values[rows, choice].sum() >= optimum - largest_step - 1e-9


def test_oracle_choice_accuracy_and_loss():
    per_level = {  # 3 inputs, 2 levels (cost 0.2 and 0.6)
        "losses": np.array([[0.1, 0.05], [2.0, 0.1], [3.0, 2.5]]),
        "correct": np.array([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]),
        "macs": np.array([[0.2, 0.6], [0.2, 0.6], [0.2, 0.6]]),
    }
    # mean budget 1/3 (one input may take level 2): the accuracy oracle gives it to input 1 (made right)
    acc = oracle_choice(per_level, 1.0 / 3.0, "accuracy")
    assert acc["choice"] == [0, 1, 0] and acc["accuracy"] == pytest.approx(2 / 3)
    assert acc["macs_ratio"] <= 1 / 3 + 1e-12
    # the loss oracle too: input 1's loss falls by 1.9, input 2's by 0.5
    assert oracle_choice(per_level, 1.0 / 3.0, "loss")["choice"] == [0, 1, 0]


def fake_task(channels=(8, 8)):
    """Two layers; MACs (n0 + 3 n1) / 32; the loss falls with n0 much more than with n1."""
    channels = np.array(channels)

    class Net:
        def __init__(self):
            self.channels = list(channels)

        def __call__(self, images, ratios, static):
            n = torch.round(torch.as_tensor(ratios, dtype=torch.float64) * torch.as_tensor(channels))
            s = float(n[0] + 0.1 * n[1])
            return torch.tensor([[s, 0.0]]).repeat(images.shape[0], 1)

    macs = lambda counts: (counts[:, 0].double() + 3 * counts[:, 1].double()) / 32.0  # noqa: E731
    task = SimpleNamespace(
        net=Net(), num_layers=2, macs_budget=0.5, cfg=SimpleNamespace(alpha=0.1),
        costs=SimpleNamespace(macs_ratio=macs),
        losses=lambda logits, labels: torch.nn.functional.cross_entropy(logits, labels, reduction="none"),
        at_tradeoff_rate=lambda rate: contextlib.nullcontext(),
        uniform_keep_ratio=lambda budget: 0.5,
    )

    class Source:  # four images of class 0
        def __len__(self):
            return 4

        def get(self, idx):
            return torch.zeros(len(idx), 1), torch.zeros(len(idx), dtype=torch.long)

    task.source = Source()
    return task


def test_static_search_finds_the_known_optimum():
    found = search_static_allocation(fake_task(), 0.5)
    # the budget (16 units) buys n0 = 8 (the layer that matters) and then n1 = floor(8 / 3) = 2
    assert found["counts"] == [8, 2]
    assert found["macs_ratio"] <= 0.5


@pytest.fixture(scope="module")
def train_task():
    return PruningTask(TaskConfig(budget=0.3, split="train"))


def test_static_search_on_the_default_network_beats_its_uniform_start(train_task):
    found = search_static_allocation(train_task, criterion="loss", max_rounds=3, max_images=256)
    assert found["macs_ratio"] <= train_task.macs_budget + 1e-12
    uniform = search_static_allocation(train_task, criterion="loss", max_rounds=0, max_images=256)
    assert found["score"] <= uniform["score"]
    assert found["evaluations"] > uniform["evaluations"] == 1


def test_controls_keep_the_agents_mean_macs(train_task):
    rng = np.random.default_rng(1)
    n = len(train_task.source)
    per_input = rng.uniform(0.2, 0.6, (n, train_task.num_layers))
    agent = rollout_split(train_task, None, 1.0, per_input=per_input)
    assert np.allclose(agent.actions, per_input)
    some = rollout_split(train_task, None, 1.0, per_input=per_input[[7, 2]], indices=[7, 2])  # a subset, in its order
    np.testing.assert_allclose(some.losses, agent.losses[[7, 2]], rtol=1e-5)
    controls = adaptation_controls(train_task, agent, 1.0)
    # a permutation of the rows: the very same MAC ratios, reordered
    assert controls["shuffled"]["macs_ratio"] == pytest.approx(agent.macs.mean())
    assert controls["layer_mean"]["keep_ratio_std"] == pytest.approx([0.0] * train_task.num_layers)


def test_calibrated_offset_meets_the_budget_and_refuses_test(train_task):
    offset = calibrate_offset(train_task, 0.36, 1.0, step=0.005)
    assert -0.1 < offset < 0  # keep 0.36 everywhere is over the budget of keep 0.3
    assert rollout_split(train_task, OffsetPolicy(0.36, offset), 1.0).macs.mean() <= train_task.macs_budget + 1e-12
    assert rollout_split(train_task, OffsetPolicy(0.36, offset + 0.005), 1.0).macs.mean() > train_task.macs_budget
    assert calibrate_offset(train_task, 0.9, 1.0, step=0.05) == -0.1  # out of reach: the largest correction down
    test = PruningTask(TaskConfig(budget=0.3, split="test"))
    with pytest.raises(ValueError, match="not on the test split"):
        calibrate_offset(test, 0.5, 1.0)


def test_calibration_out_of_reach_takes_the_cheapest_offset(train_task, monkeypatch):
    """A recurrent agent may answer a lower keep ratio in one layer with higher ones after: when no
    offset meets the budget, the one that spends least, not the most negative one."""
    import prune_env.evaluation.references as references

    budget = train_task.macs_budget

    def fake_rollout(task, policy, static_ratios, indices=None):
        return SimpleNamespace(macs=np.array([budget * 1.1 + abs(policy.offset + 0.05)]))  # least at -0.05, never within

    monkeypatch.setattr(references, "rollout_split", fake_rollout)
    assert calibrate_offset(train_task, 0.5, 1.0, step=0.01) == pytest.approx(-0.05)


def test_headroom_captured():
    assert headroom_captured(0.95, 0.90, 1.00) == pytest.approx(0.5)
    assert headroom_captured(0.30, 0.40, 0.20, lower_is_better=True) == pytest.approx(0.5)
    assert headroom_captured(0.9, 0.9, 0.9) is None


def _levels(correct, confidence, macs):
    correct, confidence = np.asarray(correct, dtype=np.float64), np.asarray(confidence, dtype=np.float64)
    return {"correct": correct, "confidence": confidence, "losses": 1.0 - correct,
            "macs": np.broadcast_to(np.asarray(macs, dtype=np.float64), correct.shape).copy()}


def test_cascade_sends_the_unsure_inputs_to_the_wide_pass_and_counts_both_passes():
    # two levels (MACs 0.1 and 0.4); the narrow pass is wrong exactly where it is unsure (confidence 0.3)
    correct = [[1, 1], [1, 1], [0, 1], [0, 1]]
    confidence = [[0.9, 0.99], [0.8, 0.99], [0.3, 0.99], [0.3, 0.99]]
    per_level = _levels(correct, confidence, [0.1, 0.4])
    found = confidence_cascade(per_level, per_level, (0.2, 0.5), macs_budget=0.3)
    # second pass for the two unsure inputs: 0.1 + 0.5 * 0.4 = 0.3 mean MACs, every input right
    assert (found["low"], found["high"]) == (0.2, 0.5)
    assert found["accuracy"] == 1.0 and found["macs_ratio"] == pytest.approx(0.3)
    assert found["second_pass_share"] == 0.5 and 0.3 < found["threshold"] <= 0.8
    # a budget below the cost of the second pass: the narrow level alone (single pass, no threshold)
    found = confidence_cascade(per_level, per_level, (0.2, 0.5), macs_budget=0.25)
    assert (found["low"], found["high"], found["threshold"], found["accuracy"]) == (0.2, 0.2, None, 0.5)


def test_cascade_is_chosen_on_one_split_and_scored_on_another():
    train = _levels([[0, 1], [1, 1]], [[0.2, 0.9], [0.9, 0.9]], [0.1, 0.4])
    test = _levels([[1, 0], [1, 1]], [[0.2, 0.9], [0.9, 0.9]], [0.1, 0.4])  # on test the wide pass is the wrong one
    found = confidence_cascade(train, test, (0.2, 0.5), macs_budget=0.3)
    assert found["search_accuracy"] == 1.0 and found["accuracy"] == 0.5 and found["macs_ratio"] == pytest.approx(0.3)


def test_mcnemar_counts_the_disagreements_and_tests_them_exactly():
    a = np.array([1] * 10 + [0] * 0 + [1] * 5, dtype=bool)
    b = np.array([0] * 10 + [1] * 5, dtype=bool)
    found = mcnemar_p_value(a, b)
    assert (found["only_first_right"], found["only_second_right"]) == (10, 0)
    assert found["p_value"] == pytest.approx(2 * 0.5 ** 10)  # two-sided binomial, 10 of 10
    assert mcnemar_p_value(a, a)["p_value"] == 1.0
    with pytest.raises(ValueError, match="different inputs"):
        mcnemar_p_value(a, a[:3])


def test_cost_breakdown_by_class_and_difficulty():
    n = 10
    results = SplitResults(correct=np.array([1] * 8 + [0] * 2, dtype=bool), losses=np.zeros(n),
                           macs=np.linspace(0.1, 1.0, n), keep=np.zeros((n, 2)), actions=np.zeros((n, 2)),
                           labels=np.array([0, 1] * 5))
    difficulty = np.arange(n, dtype=np.float64)  # the costlier, the harder
    found = cost_breakdown(results, difficulty, bins=2)
    easy, hard = found["by_difficulty"]
    assert (easy["images"], hard["images"]) == (5, 5)
    assert easy["macs_ratio"] == pytest.approx(0.3) and hard["macs_ratio"] == pytest.approx(0.8)
    assert (easy["accuracy"], hard["accuracy"]) == (1.0, 0.6)
    assert [c["class"] for c in found["by_class"]] == [0, 1] and found["by_class"][0]["macs_ratio"] == pytest.approx(0.5)
    assert found["difficulty_macs_correlation"] == pytest.approx(1.0)


def test_agent_independent_references_are_computed_once_per_network(train_task, monkeypatch):
    from prune_env.evaluation import references

    calls = []
    real = references._level_results
    monkeypatch.setattr(references, "_level_results", lambda *a: (calls.append(1), real(*a))[1])
    first = level_results(train_task, (0.5, 1.0), indices=np.arange(32))
    first["losses"][:] = -1.0  # what a caller does to its copy stays with it
    again = level_results(train_task, (0.5, 1.0), indices=np.arange(32))
    assert len(calls) == 1 and np.all(again["losses"] >= 0)
    level_results(train_task, (0.5, 1.0), indices=np.arange(1, 33))  # other images: computed
    assert len(calls) == 2
    layer = next(m for m in train_task.net.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        layer.weight.mul_(0.5)  # other weights (a fine-tuned network): computed again
    try:
        halved = level_results(train_task, (0.5, 1.0), indices=np.arange(32))
        assert len(calls) == 3 and not np.allclose(halved["losses"], again["losses"])
    finally:
        with torch.no_grad():
            layer.weight.mul_(2.0)
