"""Algorithm 1 with one runtime agent for a range of budgets: the CNN fine-tunes under a mix
of budgets (the sandwich rule), the static agent at the range's middle, every iteration evaluated at
each budget, and the final sweep on the fine-tuned network."""

import json

import numpy as np
import pytest
import torch

import evaluate_run
import finetune_cnn
from agents.algorithm1 import Algorithm1Config, agent_ratio_fn, check_reachable, mixed_budgets, run_algorithm1
from prune_env.assets import default_checkpoint_path
from prune_env.envs.budgets import BudgetRange
from prune_env.envs.task import PruningTask, TaskConfig
from prune_env.policies import CallablePolicy, ConstantPolicy

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TINY = dict(iterations=1, agent_batches=2, cnn_batches=2, batch_size=16, n_envs=8, static_episodes=2, progress=False)


def test_mixed_budgets_follow_the_sandwich_rule():
    rng = np.random.default_rng(0)
    budgets = mixed_budgets(BudgetRange.between(0.3, 0.7), 4, rng)
    assert budgets[:2] == [0.3, 0.7] and len(budgets) == 4 and all(0.3 <= b <= 0.7 for b in budgets[2:])
    assert budgets[2] != budgets[3]  # drawn, not repeated
    one = mixed_budgets(BudgetRange.between(0.3, 0.7), 1, rng)
    assert len(one) == 1 and 0.3 <= one[0] <= 0.7
    values = BudgetRange.of([0.3, 0.5, 0.7])
    assert set(mixed_budgets(values, 6, rng)) <= {0.3, 0.5, 0.7}


def test_each_group_of_a_cnn_batch_is_pruned_at_its_own_budget():
    """Relative actions: a policy that always answers the range's reference keep ratio (0.5) keeps
    exactly each group's budget (sparsity units); groups 1 and 2 are the lowest and highest budgets."""
    task = PruningTask(TaskConfig(budget="0.3:0.7", tradeoff_rate=0.5))
    fn = agent_ratio_fn(task, ConstantPolicy(0.5), np.ones(4), budget_mix=4, seed=3)
    images = task.calibration_images[:8]
    runtime, static = fn(task.net, images)
    assert runtime.shape == (8, 4) and static == [1.0, 1.0, 1.0, 1.0]
    assert torch.allclose(runtime[:2], torch.full((2, 4), 0.3))
    assert torch.allclose(runtime[2:4], torch.full((2, 4), 0.7))
    drawn = [float(runtime[4, 0]), float(runtime[6, 0])]
    for row, b in ((4, drawn[0]), (6, drawn[1])):  # one budget per group, inside the range
        assert 0.3 <= b <= 0.7 and torch.allclose(runtime[row:row + 2], torch.full((2, 4), b))
    again, _ = fn(task.net, images)  # the next batch: same sandwich ends, new draws
    assert torch.allclose(again[:4], runtime[:4]) and not torch.allclose(again[4:], runtime[4:])
    assert task.budget_range is not None  # left as it was


def test_the_groups_observations_carry_their_budget():
    """The last observation entry is the group's MAC budget; the action is shifted by b - 0.5."""
    task = PruningTask(TaskConfig(budget="0.3:0.7", tradeoff_rate=0.5))
    fn = agent_ratio_fn(task, CallablePolicy(lambda obs: obs[:, -1]), np.ones(4), budget_mix=2)
    runtime, _ = fn(task.net, task.calibration_images[:4])
    macs_07 = float(task.costs_of(np.array([0.7]), params=False)[0][0])
    assert torch.allclose(runtime[2:], torch.full((2, 4), macs_07 + 0.2))
    assert torch.allclose(runtime[:2], torch.full((2, 4), task.cfg.alpha))  # 0.1 MACs - 0.2: clipped to alpha


def test_config_checks_a_budget_range():
    ckpt = str(default_checkpoint_path())
    assert Algorithm1Config(checkpoint=ckpt, budget="0.3:0.7").agent_update == "alternating"
    assert Algorithm1Config(checkpoint=ckpt, budget=(0.3, 0.7)).budget == "0.3:0.7"
    assert Algorithm1Config(checkpoint=ckpt, budget=0.5).agent_update == "joint"
    with pytest.raises(ValueError, match="agent_update='joint' takes one budget"):
        Algorithm1Config(checkpoint=ckpt, budget="0.3:0.7", agent_update="joint")
    with pytest.raises(ValueError, match=r"eval_budgets=0.8 is outside the range"):
        Algorithm1Config(checkpoint=ckpt, budget="0.3:0.7", eval_budgets=[0.5, 0.8])
    with pytest.raises(ValueError, match="eval_budgets is for a budget range"):
        Algorithm1Config(checkpoint=ckpt, budget=0.5, eval_budgets=[0.5])
    with pytest.raises(ValueError, match="budget_mix must be an integer >= 1"):
        Algorithm1Config(checkpoint=ckpt, budget="0.3:0.7", budget_mix=0)


def test_a_range_the_static_ratio_cannot_serve_is_refused():
    """R_r = 0.5, static keep 0.5 (the middle of 0.3:0.7): a layer keeps 0.3-0.75 of its channels; the
    middle of 0.1:0.9 (0.5) keeps 0.3-0.75 too, so neither 0.1 nor 0.9 can be reached."""
    check_reachable(PruningTask(TaskConfig(budget="0.3:0.7", tradeoff_rate=0.5)), 0.5)
    with pytest.raises(ValueError, match=r"budget='0.1:0.9' with tradeoff_rate=0.5: .* keep 0.300-0.750 .* not 0.100-0.900"):
        check_reachable(PruningTask(TaskConfig(budget="0.1:0.9", tradeoff_rate=0.5)), 0.5)
    check_reachable(PruningTask(TaskConfig(budget="0.1:0.9", tradeoff_rate=1.0)), 0.5)  # pure runtime pruning


def test_command_line_refuses_joint_with_a_range(tmp_path, capsys):
    base = ["algorithm1", "--checkpoint", str(default_checkpoint_path()), "--out", str(tmp_path / "a")]
    with pytest.raises(SystemExit):
        finetune_cnn.main([*base, "--budget", "0.3:0.7", "--agent-update", "joint"])
    assert "--agent-update 'joint' takes one budget" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        finetune_cnn.main([*base, "--budget", "0.3:1.5"])
    assert "every budget must be in (0, 1]" in capsys.readouterr().err


def test_any_budget_algorithm1_evaluates_every_budget_and_sweeps(tmp_path):
    out = tmp_path / "a1"
    cfg = Algorithm1Config(checkpoint=str(default_checkpoint_path()), out=str(out), algo="ppo", budget="0.3:0.7",
                           eval_budgets=[0.3, 0.5, 0.7], env_kwargs={"budget_mode": "average"}, **TINY)
    metrics = run_algorithm1(cfg)
    runtime_run = json.loads((out / "runtime" / "run.json").read_text())
    static_run = json.loads((out / "static" / "run.json").read_text())
    assert runtime_run["env_kwargs"]["budget"] == "0.3:0.7" and static_run["env_kwargs"]["budget"] == 0.5
    row = json.loads((out / "history.json").read_text())[-1]
    assert row["agent_update"] == "alternating"
    budgets = [row[f"macs_budget@{b}"] for b in ("0.3", "0.5", "0.7")]
    assert budgets == sorted(budgets) and budgets[0] < 0.15 < 0.45 < budgets[2]
    assert all(0.0 <= row[f"test_accuracy@{b}"] <= 1.0 for b in ("0.3", "0.5", "0.7"))
    assert row["macs_ratio@0.3"] < row["macs_ratio@0.7"]  # the agent spends what each budget gives
    assert (out / "history_budgets.png").stat().st_size > 5_000
    sweep = json.loads((out / "any_budget.json").read_text())
    assert [p["budget"] for p in sweep["points"]] == [0.3, 0.5, 0.7] and sweep["split"] == "test"
    assert {"agent", "uniform", "best_static", "dense"} <= set(sweep["points"][0]["rows"])
    assert metrics["any_budget"] is True and metrics["iterations"] == 1 and 0 < metrics["params_ratio"] < 1
    saved = json.loads((out / "metrics.json").read_text())
    assert [p["budget"] for p in saved["sweep"]] == [0.3, 0.5, 0.7]
    # evaluate_run.py --budget on the saved run: the fine-tuned network, the agents as deployed
    evaluate_run.main([str(out), "--budget", "0.5", "--no-calibrate"])
    again = json.loads((out / "sweep" / "any_budget.json").read_text())["points"]
    assert [p["budget"] for p in again] == [0.5]
    assert again[0]["rows"]["agent"]["accuracy"] == pytest.approx(row["test_accuracy@0.5"], abs=1e-12)
    assert again[0]["rows"]["agent"]["macs_ratio"] == pytest.approx(row["macs_ratio@0.5"], abs=1e-12)
    assert "best_static" in again[0]["rows"]
    with pytest.raises(SystemExit):
        evaluate_run.main([str(out)])  # an any-budget run needs --budget
    with pytest.raises(SystemExit):
        evaluate_run.main([str(out), "--budget", "0.8", "--out", str(tmp_path / "o")])  # outside 0.3:0.7
