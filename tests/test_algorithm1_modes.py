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
