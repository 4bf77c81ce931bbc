"""One set of flags: --timesteps honoured, progress totals that say where a run ends, TensorBoard
continued by --resume, and the same options across the scripts."""

from __future__ import annotations

import json

import pytest
from sb3_contrib import TRPO
from stable_baselines3 import PPO, SAC

import train_agents
from agents.steps import fit_rollout


def test_short_runs_get_short_rollouts():
    params = fit_rollout({"n_steps": 2048, "batch_size": 4096}, TRPO, 2000, 64)
    assert 2000 <= params["n_steps"] * 64 < 2000 + 64 and params["batch_size"] <= params["n_steps"] * 64
    assert fit_rollout({}, PPO, 100_000, 8) == {}  # PPO's default 2048 x 8 fits: left alone
    assert fit_rollout({"learning_rate": 1e-3}, SAC, 10, 64) == {"learning_rate": 1e-3}  # off-policy: nothing to fit


def test_trpo_trains_the_steps_asked_for(tmp_path, capsys):
    out = tmp_path / "trpo"
    metrics = train_agents.main(["--algo", "sb3_contrib:TRPO", "--timesteps", "203", "--n-envs", "8", "--out", str(out)])
    assert metrics["timesteps"] == 208  # 203 rounded up to the 8 environments, not 2048 x 8
    err = capsys.readouterr().err
    assert "/208 steps" in err and "asked 203" in err  # the bar's total is where the run ends, and says why
    assert "/203 steps" not in err


def test_joint_timesteps_apply_to_both_agents(tmp_path):
    # the alternation: each agent its --timesteps (the joint update, the default, gives the runtime agent
    # --timesteps and the static agent its share of the same batches: tests/test_train_joint.py)
    out = tmp_path / "joint"
    train_agents.main(["--joint", "--agent-update", "alternating", "--algo", "ppo", "--timesteps", "96", "--n-envs", "8",
                       "--no-progress", "--out", str(out)])
    for sub in ("runtime", "static"):
        steps = json.loads((out / sub / "checkpoint_state.json").read_text())["num_timesteps"]
        assert 96 <= steps <= 96 + 4 * 8 * 2  # four alternating rounds, each rounded up to a rollout


def test_resume_continues_the_same_tensorboard_run(tmp_path):
    out = tmp_path / "run"
    common = ["--algo", "ppo", "--n-envs", "8", "--no-progress", "--hyperparams", "n_steps=8", "batch_size=64",
              "--out", str(out)]
    train_agents.main([*common, "--timesteps", "64"])
    train_agents.main([*common, "--timesteps", "128", "--resume"])
    tb = out / "tb"
    assert sorted(p.name for p in tb.iterdir()) == ["RuntimePrune_1"]  # no tb/ events of their own, no _2
    assert len(list((tb / "RuntimePrune_1").glob("events.out.tfevents*"))) >= 1


SCRIPTS = ["train_agents.py", "finetune_cnn.py", "evaluate_run.py", "agents.benchmark", "benchmarks/latency.py",
           "benchmarks/env_throughput.py", "benchmarks/gym_vector_throughput.py", "benchmarks/paper_tables.py",
           "benchmarks/tradeoff_sweep.py", "benchmarks/cleanrl_ppo.py"]
#: the subcommand whose options carry --threads
SUBCOMMAND = {"finetune_cnn.py": "pretrain", "agents.benchmark": "run"}

#: every script's ``--help`` as its command line prints it, all in one child process: one start-up of
#: torch and friends instead of ten (each script runs as ``__main__``, with its own sys.argv and sys.path[0])
_ALL_HELPS = """
import contextlib, io, json, os, runpy, sys
helps = {}
for script, sub in json.loads(sys.argv[1]):
    sys.argv = [script, *sub, "--help"]
    buffer, path = io.StringIO(), list(sys.path)
    if script.endswith(".py"):
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    with contextlib.redirect_stdout(buffer):
        try:
            if script.endswith(".py"):
                runpy.run_path(script, run_name="__main__")
            else:
                runpy.run_module(script, run_name="__main__", alter_sys=True)
        except SystemExit:
            pass
        except Exception:  # this script's test fails with the traceback; the others still run
            import traceback
            traceback.print_exc(file=buffer)
    sys.path[:] = path
    helps[script] = buffer.getvalue()
print(json.dumps(helps))
"""


@pytest.fixture(scope="module")
def helps():
    import subprocess
    import sys
    from pathlib import Path

    scripts = json.dumps([(s, [SUBCOMMAND[s]] if s in SUBCOMMAND else []) for s in SCRIPTS])
    proc = subprocess.run([sys.executable, "-c", _ALL_HELPS, scripts], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("script", SCRIPTS)
def test_threads_has_one_meaning(script, helps):
    text = helps[script]
    assert "--threads" in text and "default 1" in " ".join(text.split()), text[-800:]
