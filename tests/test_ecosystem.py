"""The environments in the RL ecosystem: rl_zoo3's training script and a CleanRL-style single-file PPO.

The three runs are started together as subprocesses (one module fixture) so that the file's wall
time is that of the slowest, not of the sum.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def zoo_command(algo: str, log_folder: Path) -> list[str]:
    return [sys.executable, "-m", "rl_zoo3.train", "--algo", algo, "--env", "RuntimePrune-v0", "--gym-packages", "prune_env",
            "--conf-file", str(ROOT / "hyperparams" / f"{algo}.yml"), "-n", "256", "--log-folder", str(log_folder),
            "--seed", "0", "--eval-freq", "-1", "--num-threads", "1", "-params", "n_envs:2", "learning_starts:32"
            if algo == "dqn" else "n_steps:64"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ecosystem")
    commands = {
        "zoo_ppo": zoo_command("ppo", tmp / "zoo"),
        "zoo_dqn": zoo_command("dqn", tmp / "zoo"),
        "cleanrl": [sys.executable, str(ROOT / "benchmarks" / "cleanrl_ppo.py"), "--total-timesteps", "512", "--num-envs", "4",
                    "--num-steps", "32", "--seed", "3", "--save-model", str(tmp / "cleanrl.pt")],
    }
    procs = {name: subprocess.Popen(cmd, cwd=tmp, env=SMALL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name, cmd in commands.items()}
    outputs = {}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        outputs[name] = (proc.returncode, out)
    return tmp, outputs


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_rl_zoo3_trains_on_runtime_prune_with_our_hyperparams(runs, algo):
    tmp, outputs = runs
    code, out = outputs[f"zoo_{algo}"]
    assert code == 0, out[-3000:]
    saved = tmp / "zoo" / algo / "RuntimePrune-v0_1" / "RuntimePrune-v0.zip"
    assert saved.is_file() and saved.stat().st_size > 1_000, out[-3000:]
    assert "Loading hyperparameters from" in out and "hyperparams" in out


def test_rl_zoo3_model_loads_and_acts_in_range(runs):
    import gymnasium as gym
    from stable_baselines3 import PPO

    import prune_env  # noqa: F401

    tmp, _ = runs
    model = PPO.load(tmp / "zoo" / "ppo" / "RuntimePrune-v0_1" / "RuntimePrune-v0.zip", device="cpu")
    env = gym.make("RuntimePrune-v0")
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (1,) and env.action_space.contains(action.astype("float32"))


def test_cleanrl_ppo_trains_and_reports_a_mean_return(runs):
    import torch

    tmp, outputs = runs
    code, out = outputs["cleanrl"]
    assert code == 0, out[-3000:]
    iterations = re.findall(r"iteration=(\d+)/4 global_step=(\d+) mean_episodic_return=(-?[\d.]+|nan) episodes=(\d+)", out)
    assert [int(i) for i, *_ in iterations] == [1, 2, 3, 4]
    assert [int(s) for _, s, *_ in iterations] == [128, 256, 384, 512]
    assert all(int(n) == 32 for *_, n in iterations)  # 128 steps of 4-layer episodes per iteration
    final = re.search(r"mean_episodic_return \(last (\d+) episodes\) = (-?[\d.]+); 512 steps .* "
                      r"policy parameter change ([\d.]+)", out)
    assert final, out[-2000:]
    assert int(final.group(1)) == 100 and float(final.group(2)) < 0  # the reward is -L / beta (+ the budget penalty)
    assert float(final.group(3)) > 0.01  # the policy changed
    state = torch.load(tmp / "cleanrl.pt")
    assert {"actor_logstd", "actor_mean.0.weight", "critic.4.bias"} <= set(state)
