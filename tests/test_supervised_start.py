"""The supervised start (agents/supervised_start.py): oracle targets on the training split, the
observations under the policy's own keep ratios, and behaviour cloning that makes a fresh policy adapt."""

import json

import numpy as np
import pytest
import torch

from agents.config import RunConfig
from agents.supervised_start import clone, level_allocations, observations_under, oracle_targets, supervised_start
from agents.training import build_model, make_env
from prune_env.envs.task import PruningTask, TaskConfig
from prune_env.evaluation.references import level_results


@pytest.fixture(scope="module")
def fresh_agent():
    torch.set_num_threads(1)
    cfg = RunConfig(env_kwargs={"observation": "raw", "split": "train"}, seed=0)
    venv = make_env("RuntimePrune-v0", cfg.spec, 8, 0, cfg.env_kwargs)
    yield build_model(cfg, "RuntimePrune-v0", venv, None), venv.unwrapped.task, venv.unwrapped.env.static_ratios
    venv.close()


def test_oracle_targets_meet_the_budget_with_the_labels_of_the_training_split(fresh_agent):
    _, task, _ = fresh_agent
    levels = (0.25, 0.5, 1.0)
    targets = oracle_targets(task, levels=levels, max_images=300, seed=1)
    assert len(targets.indices) == 300 and np.all(np.diff(targets.indices) > 0)
    assert targets.keep.shape == (300, task.num_layers) and np.all(targets.keep == targets.keep[:, :1])  # uniform rows
    assert set(np.unique(targets.keep)) <= set(levels)
    per_level = level_results(task, levels, indices=targets.indices)
    chosen = np.searchsorted(np.asarray(levels), targets.keep[:, 0])
    macs = per_level["macs"][np.arange(300), chosen]
    assert macs.mean() == pytest.approx(targets.macs_ratio) and targets.macs_ratio <= task.macs_budget + 1e-9
    assert targets.accuracy == pytest.approx(per_level["correct"][np.arange(300), chosen].mean())
    # the oracle is not uniform: it spends more on some images than on others
    assert len(np.unique(targets.keep)) > 1


def test_level_allocations_scale_the_base_to_each_level(fresh_agent):
    _, task, _ = fresh_agent
    uniform = task.uniform_keep_ratio()
    np.testing.assert_array_equal(level_allocations(task, (0.25, 1.0)), [[0.25] * 4, [1.0] * 4])
    base = [uniform * 2, uniform, uniform / 2, uniform]
    rows = level_allocations(task, (uniform, uniform / 2, 1.0), base)
    np.testing.assert_allclose(rows[0], base)  # the budget's level: the base itself
    np.testing.assert_allclose(rows[1], np.maximum(task.cfg.alpha, np.array(base) / 2))
    np.testing.assert_allclose(rows[2], np.minimum(1.0, np.array(base) / uniform))


def test_oracle_targets_around_a_base_allocation_are_its_scaled_rows(fresh_agent):
    _, task, _ = fresh_agent
    base = [0.9, 0.5, 0.3, 0.3]
    targets = oracle_targets(task, levels=(0.25, 0.5, 1.0), base=base, max_images=200, seed=2)
    rows = level_allocations(task, (0.25, 0.5, 1.0), base)
    assert targets.keep.shape == (200, task.num_layers)
    assert all(any(np.allclose(k, r) for r in rows) for k in targets.keep)
    assert targets.macs_ratio <= task.macs_budget + 1e-9


def test_oracle_targets_refuse_the_test_split():
    task = PruningTask(TaskConfig(split="test"))
    with pytest.raises(ValueError, match="not on the test split"):
        oracle_targets(task, max_images=16)
    with pytest.raises(ValueError, match="objective must be one of"):
        oracle_targets(PruningTask(TaskConfig(split="train")), objective="top1")


def test_observations_under_a_policy_are_the_rollouts_observations(fresh_agent):
    _, task, static = fresh_agent
    indices = np.array([3, 7, 11, 40, 41])
    obs, keep = observations_under(task, 0.5, static, indices, batch_size=2)  # batches of 2, 2 and 1
    assert obs.shape == (5, task.num_layers, task.runtime_obs_dim) and keep.shape == (5, task.num_layers)
    images, _ = task.source.get(indices)
    seen = []
    task.rollout(images, lambda o: (seen.append(np.asarray(o).copy()), np.full(len(o), 0.5))[1], static)
    np.testing.assert_allclose(obs, np.stack(seen, 1), rtol=0, atol=1e-6)
    one_hot = obs[:, :, task.feature_width:task.feature_width + task.num_layers]
    np.testing.assert_array_equal(one_hot, np.broadcast_to(np.eye(task.num_layers), one_hot.shape))


def test_clone_fits_the_action_mean_and_leaves_the_exploration_noise(fresh_agent):
    model, task, static = fresh_agent
    torch.manual_seed(0)
    obs, _ = observations_under(task, model, static, np.arange(64))
    # a target the observation determines: the first pooled feature of the first layer, squashed into [0.3, 0.9]
    keep = 0.3 + 0.6 * (obs[:, 0, 0] - obs[:, 0, 0].min()) / np.ptp(obs[:, 0, 0])
    log_std = model.policy.log_std.detach().clone()
    fit = clone(model.policy, obs, keep, epochs=60, batch_size=16, seed=0)
    assert fit["mse_after"] < 0.25 * fit["mse_before"]
    assert torch.equal(model.policy.log_std.detach(), log_std)


def test_supervised_start_makes_a_constant_policy_follow_the_oracle():
    torch.set_num_threads(1)
    cfg = RunConfig(env_kwargs={"observation": "raw", "split": "train"}, seed=0)
    venv = make_env("RuntimePrune-v0", cfg.spec, 8, 0, cfg.env_kwargs)
    model = build_model(cfg, "RuntimePrune-v0", venv, None)
    figures = supervised_start(model, venv.unwrapped.task, venv.unwrapped.env.static_ratios, max_images=384,
                               rounds=3, epochs=12, seed=0)
    venv.close()
    first, last = figures["history"][0], figures["history"][-1]
    assert first["keep_std_over_inputs"] < 0.01  # a fresh policy: the same keep ratio for every input
    assert last["keep_std_over_inputs"] > 2 * first["keep_std_over_inputs"]
    assert figures["correlation_with_targets"] > 0.3  # 0.46-0.47 over seeds 0-2; a fresh policy's is ~0
    assert len(figures["history"]) == 4 and figures["split"] == "train"
    json.dumps(figures)  # written as supervised_start.json


def test_supervised_start_refuses_a_budget_range_and_discrete_actions():
    cfg = RunConfig(env_kwargs={"observation": "raw", "split": "train", "budget": (0.3, 0.7)}, seed=0)
    venv = make_env("RuntimePrune-v0", cfg.spec, 2, 0, cfg.env_kwargs)
    model = build_model(cfg, "RuntimePrune-v0", venv, None)
    with pytest.raises(ValueError, match="one budget"):
        supervised_start(model, venv.unwrapped.task, venv.unwrapped.env.static_ratios, max_images=16)
    venv.close()


def test_supervised_start_refuses_an_unknown_family_and_bad_levels(fresh_agent):
    model, task, static = fresh_agent
    with pytest.raises(ValueError, match="family must be one of"):
        supervised_start(model, task, static, family="oracle")
    with pytest.raises(ValueError, match="levels"):
        supervised_start(model, task, static, levels=(0.0, 0.5))
    with pytest.raises(ValueError, match="at least two"):
        supervised_start(model, task, static, levels=(0.5,))


def test_train_agents_refuses_the_option_where_it_cannot_apply(tmp_path, capsys):
    import train_agents

    with pytest.raises(SystemExit) as exc:
        train_agents.main(["--env", "StaticPrune-v0", "--supervised-start", "loss", "--out", str(tmp_path / "a")])
    assert exc.value.code == 2 and "--supervised-start applies to --env RuntimePrune-v0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        train_agents.main(["--supervised-start", "loss", "--env-kwargs", "budget=0.3:0.7", "--timesteps", "64",
                           "--n-envs", "8", "--out", str(tmp_path / "b"), "--no-progress"])
    assert exc.value.code == 2 and "--supervised-start: a supervised start needs one budget" in capsys.readouterr().err
    assert not (tmp_path / "b" / "run.json").exists()  # a failed start leaves the directory reusable


def test_run_record_names_the_supervised_start():
    from agents.config import run_record

    cfg = RunConfig(supervised_start="loss", supervised_family="best_static", supervised_levels=[0.3, 0.5])
    record = run_record(cfg, "RuntimePrune-v0", {})
    assert record["supervised_start"] == {"objective": "loss", "family": "best_static", "levels": [0.3, 0.5]}
    assert "supervised_start" not in run_record(RunConfig(), "RuntimePrune-v0", {})


def test_supervised_only_benchmark_scores_the_clone_beside_its_shuffled_allocations(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "supervised_only.py"
    spec = importlib.util.spec_from_file_location("supervised_only", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--max-images", "128", "--rounds", "1", "--epochs", "2", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "supervised_only.json").read_text())
    assert saved["supervised_start"]["images"] == 128 and len(saved["supervised_start"]["history"]) == 2
    assert saved["calibrated_macs_ratio"] <= 0.1005 * 1.05 and 0 < saved["accuracy"] <= 1
    assert result["adaptation_gain_shuffled"] == pytest.approx(result["accuracy"] - result["shuffled_accuracy"])
