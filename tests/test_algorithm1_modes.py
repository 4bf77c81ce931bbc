"""benchmarks/algorithm1_modes.py: joint against alternating, a run per setting, resumable, a table and a figure."""

import json
import sys
from pathlib import Path

import pytest

from prune_env.assets import default_checkpoint_path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import algorithm1_modes  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_modes_sweep_runs_both_updates_and_reads_finished_runs_back(tmp_path):
    out = tmp_path / "modes"
    argv = ["--checkpoint", str(default_checkpoint_path()), "--iterations", "1", "--agent-batches", "1",
            "--cnn-batches", "2", "--batch-size", "16", "--static-episodes", "2", "--n-envs", "8", "--algo", "ppo",
            "--seeds", "0", "--budget-modes", "per_input", "--out", str(out)]
    rows = algorithm1_modes.main(argv)
    assert sorted(r["agent_update"] for r in rows) == ["alternating", "joint"]
    for r in rows:
        assert [h["iteration"] for h in r["history"]] == [1]
        assert 0 < r["macs_ratio"] <= 1 and 0 < r["params_ratio"] <= 1
        state = json.loads((Path(r["run_dir"]) / "algorithm1_state.json").read_text())
        assert state["config"]["agent_update"] == r["agent_update"]
    table = (out / "modes.md").read_text()
    assert "| per_input | joint | 0 |" in table and "| per_input | alternating | 0 |" in table
    assert (out / "algorithm1_modes.png").stat().st_size > 10_000
    again = algorithm1_modes.main(argv)  # finished runs are read back, not rerun
    assert [r["seconds"] for r in again] == [r["seconds"] for r in rows]


def _row(update, seed, accuracy, macs, params=0.4):
    return {"budget_mode": "per_input", "agent_update": update, "seed": seed, "accuracy": accuracy, "macs_ratio": macs,
            "budget": 0.25, "params_ratio": params, "params_budget": 0.5, "within_budget": 1.0, "dense_accuracy": 0.9,
            "history": [{"iteration": 1, "macs_ratio": macs}]}


def test_paired_differences_pair_joint_and_alternating_by_seed():
    rows = [_row("joint", 0, 0.80, 0.25), _row("alternating", 0, 0.79, 0.20),
            _row("joint", 1, 0.78, 0.20), _row("alternating", 1, 0.78, 0.20),
            _row("joint", 2, 0.10, 0.01)]  # seed 2 has no alternating run: not paired
    cells = algorithm1_modes.paired_differences(rows)["per_input"]
    assert cells["seeds"] == 2
    # +1.00 and 0.00 points: mean +0.50, t(0.975, 1) x 0.7071 / sqrt(2) = 6.353, paired t = 1 on 1 df: p = 0.5
    assert cells["accuracy"] == "+0.50 [-5.85, +6.85], p = 0.50"
    assert cells["macs"].startswith("+0.100 ")  # (0.25 - 0.20) / 0.25 = 0.2 on seed 0, 0 on seed 1
    assert cells["params"] == "+0.000 [+0.000, +0.000], p = 1.00"
    table = algorithm1_modes.summarize(rows)
    assert "| per_input | 2 | +0.50 [-5.85, +6.85], p = 0.50 |" in table
