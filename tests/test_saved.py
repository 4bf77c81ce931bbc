"""A saved agent runs where a user expects it to: the README's plain SB3 loop on the
environment recovered from ``env_spec.json``, ``load_agent_and_env``, and an agent given another
network's observations refused with a message naming where it was trained."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest

import prune_env  # noqa: F401
from agents.saved import ENV_SPEC_FILE, env_spec_of, load_agent_and_env, read_env_spec, record_joint_envs
from prune_env.envs import RuntimePruneEnv, StaticPruneEnv
from prune_env.policies import as_policy

ROOT = Path(__file__).resolve().parents[1]
README_RUN = "runs/runtimeprune-recurrent_ppo-s0"


@pytest.fixture(scope="module")
def main_job_run(tmp_path_factory):
    """The main job's command at a tiny size: recurrent PPO on RuntimePrune-v0 with the main job's keywords."""
    out = tmp_path_factory.mktemp("saved") / "run"
    cmd = [sys.executable, str(ROOT / "train_agents.py"), "--env", "RuntimePrune-v0", "--timesteps", "512", "--hyperparams",
           "n_steps=8", "batch_size=128", "n_epochs=1", "--out", str(out), "--no-progress", "--threads", "1"]
    proc = subprocess.run(cmd, cwd=out.parent, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return out


def readme_loop() -> str:
    """The README's plain SB3 loop (the python block that reads env_spec.json)."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    loops = [b for b in blocks if ENV_SPEC_FILE in b and "model.predict" in b]
    assert len(loops) == 1, "the README shows one SB3 loop over env_spec.json"
    assert README_RUN in loops[0]
    return loops[0]


def test_the_readme_loop_runs_the_main_jobs_agent(main_job_run, capsys):
    spec = json.loads((main_job_run / ENV_SPEC_FILE).read_text())
    assert spec["id"] == "RuntimePrune-v0"
    assert spec["kwargs"] == {"observation": "raw", "split": "train", "budget": 0.3, "budget_mode": "average"}
    namespace: dict = {}
    exec(compile(readme_loop().replace(README_RUN, str(main_job_run)), "README.md", "exec"), namespace)
    info = namespace["info"]
    assert namespace["done"] and {"macs_ratio", "correct", "loss"} <= set(info)
    assert namespace["model"].trained_on == {
        "env_id": "RuntimePrune-v0", "network": "digitnet", "dataset": "digits", "checkpoint": None, "observation": "raw",
        "observation_shape": [38], "partner": None,
    }
    printed = capsys.readouterr().out.split()
    assert float(printed[0]) == pytest.approx(namespace["reward"]) and int(printed[2]) == info["correct"]


def test_load_agent_and_env_gives_the_matching_env(main_job_run):
    model, env = load_agent_and_env(main_job_run, split="test")
    assert env.observation_space.shape == model.observation_space.shape == (38,)
    assert env.unwrapped.task.cfg.split == "test" and env.unwrapped.task.cfg.budget_mode == "average"
    obs, _ = env.reset(seed=1)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.shape == np.shape(action)
    model2, _ = load_agent_and_env(main_job_run / "checkpoint.zip")  # a zip in the run directory works too
    assert model2.trained_on == model.trained_on


def test_an_agent_on_another_networks_observations_names_where_it_was_trained(main_job_run):
    model, _ = load_agent_and_env(main_job_run)
    # as finetune --runtime-agent / train_agents --runtime-agent use it: the policy of another env
    other = StaticPruneEnv(runtime_policy=model, observation="encoded", eval_batch=4)
    other.reset(seed=0)
    with pytest.raises(ValueError, match=r"digitnet.*digits.*shape \(38,\).*shape \(70,\)"):
        for _ in range(other.num_layers):
            other.step(np.array([0.5], dtype=np.float32))
    policy = as_policy(model)
    policy.reset(2)
    del model.trained_on  # an agent saved before runs recorded it: the shapes still say what is wrong
    with pytest.raises(ValueError, match=r"without a record.*\(38,\).*\(70,\)"):
        policy(np.zeros((2, 70), dtype=np.float32))


def test_a_missing_agents_package_is_named(main_job_run, monkeypatch):
    import agents.saved

    def fail(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'agents.policies'")

    monkeypatch.setattr(agents.saved, "load_agent", fail)
    with pytest.raises(ImportError, match=r"agents\.policies.*pip install -e \."):
        load_agent_and_env(main_job_run)


def test_runs_without_env_spec_fall_back_to_run_json(main_job_run, tmp_path):
    (tmp_path / "run.json").write_text((main_job_run / "run.json").read_text())
    assert read_env_spec(tmp_path).kwargs == read_env_spec(main_job_run).kwargs


def test_discrete_agents_get_their_level_wrapper_in_the_spec():
    written = env_spec_of("RuntimePrune-v0", {"budget": 0.5}, levels=[0.25, 0.5, 1.0]).to_json()
    spec = gym.envs.registration.EnvSpec.from_json(written)
    env = gym.make(spec)
    assert env.action_space == gym.spaces.Discrete(3)
    with pytest.warns(UserWarning, match="static_policy"):
        assert "static_policy" not in env_spec_of("RuntimePrune-v0", {"static_policy": lambda obs: obs[:, 0]}).kwargs


def test_joint_runs_record_each_agent_with_the_other(tmp_path):
    envs = {"RuntimePrune-v0": RuntimePruneEnv, "StaticPrune-v0": StaticPruneEnv}
    kwargs = {"RuntimePrune-v0": {"tradeoff_rate": 0.5}, "StaticPrune-v0": {"tradeoff_rate": 0.5, "eval_batch": 4}}
    models, venvs = {}, {}
    for env_id, cls in envs.items():
        env = cls(**kwargs[env_id])
        venvs[env_id] = SimpleNamespace(unwrapped=SimpleNamespace(task=env.task), observation_space=env.observation_space)
        models[env_id] = SimpleNamespace()
    record_joint_envs(models, venvs, tmp_path, kwargs)
    assert read_env_spec(tmp_path / "runtime").kwargs == {"tradeoff_rate": 0.5}
    assert read_env_spec(tmp_path / "static").id == "StaticPrune-v0"
    assert models["RuntimePrune-v0"].trained_on["partner"] == {"keyword": "static_policy", "path": "../static"}
    assert models["StaticPrune-v0"].trained_on["partner"] == {"keyword": "runtime_policy", "path": "../runtime"}
