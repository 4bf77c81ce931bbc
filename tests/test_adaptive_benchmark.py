"""benchmarks/adaptive_agents.py: seeds, references, summary files and the target checks."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "adaptive_agents.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("adaptive_agents", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summary_checks_follow_the_rows(bench):
    rows = [dict(seed=s, agent=a, agent_macs=m, calibrated=None, calibrated_macs=None, uniform=0.90, uniform_iso_mac=0.9,
                 best_static=0.93, shuffled=0.91, layer_mean=0.92, oracle=1.0, dense=0.99, headroom_captured=0.3,
                 train_seconds=60.0, budget=0.1)
            for s, a, m in ((0, 0.95, 0.100), (1, 0.93, 0.1015))]
    summary = bench.summarize(rows)
    checks = summary["agent_checks"]
    assert summary["agent"]["mean"] == pytest.approx(0.94)
    assert checks["mean_gain_over_uniform_points"] == pytest.approx(4.0)
    assert checks["mean_gain_over_best_static_points"] == pytest.approx(1.0)
    assert checks["mean_adaptation_gain_shuffled_points"] == pytest.approx(3.0)
    assert checks["no_seed_below_uniform"] is True
    assert checks["every_seed_within_1pct_of_budget"] is False  # seed 1 is 1.5% over
    assert "calibrated_checks" not in summary
    assert checks["least_adaptation_gain_shuffled_points"] == pytest.approx(2.0)  # seed 1: 93 against 91
    assert checks["mean_gain_over_cascade_points"] is None  # no cascade row in these records
    assert checks["p_value_over_seeds_vs_best_static"] is None  # two seeds: no test


def test_the_seeds_test_against_the_best_static_allocation(bench):
    best = bench.np.array([0.90, 0.91, 0.92, 0.93])
    assert bench.over_seeds_p_value(best + bench.np.array([0.010, 0.012, 0.009, 0.011]), best) < 0.001
    assert bench.over_seeds_p_value(best + bench.np.array([0.02, -0.02, 0.01, -0.01]), best) > 0.4
    assert bench.over_seeds_p_value(best - 0.01 + bench.np.array([0.0, 0.001, 0.0, 0.0]), best) > 0.99


def test_one_tiny_seed_end_to_end(bench, tmp_path):
    out = tmp_path / "bench"
    argv = ["--seeds", "0", "--timesteps", "512", "--out", str(out), "--env-kwargs", "dual_batch=16",
            "--hyperparams", "n_steps=8", "batch_size=128", "n_epochs=1"]
    summary = bench.main(argv)
    for name in ("summary.json", "seeds.csv", "summary.md", "summary.png"):
        assert (out / name).stat().st_size > 100
    saved = json.loads((out / "summary.json").read_text())
    assert saved["seeds"][0]["best_static"] is not None and saved["seeds"][0]["oracle"] >= saved["seeds"][0]["uniform"]
    assert summary["budget"] == pytest.approx(0.1005, abs=1e-3)  # the main job's default: sparsity 0.3
    run = json.loads((out / "seed0" / "run.json").read_text())
    assert run["env_kwargs"]["budget_mode"] == "average"
    # a rerun keeps the finished seed and only rewrites the summary
    stamp = (out / "seed0" / "metrics.json").stat().st_mtime
    bench.main(argv)
    assert (out / "seed0" / "metrics.json").stat().st_mtime == stamp
    # --rescore scores the saved agent again, keeping its training figures
    before = json.loads((out / "seed0" / "metrics.json").read_text())
    bench.main([*argv, "--rescore"])
    after = json.loads((out / "seed0" / "metrics.json").read_text())
    assert after["train_seconds"] == before["train_seconds"] and after["accuracy"] == before["accuracy"]
    assert "calibrated_accuracy" in after
