"""train_agents.py --joint: four rounds of alternation by default, Algorithm 1's joint update (lines 12-15) on request.

Tiny runs on the embedded digits data: 8 images a joint batch, 4 layers, rollouts of 8 steps.
"""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import agents.joint
import agents.saved
import agents.training
import train_agents
from agents.config import RunConfig
from agents.registry import RUNTIME, STATIC
from agents.training import joint_agent_update, joint_plan, run

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

#: 8 images a joint batch (one static episode of 8), each agent's rollout 8 steps x 8 environments = 64 steps,
#: i.e. 2 joint batches of 8 images x 4 layers per update; 256 runtime steps = 4 updates = 8 batches
TINY = ["--timesteps", "256", "--n-envs", "8", "--hyperparams", "n_steps=8", "batch_size=64"]
RUNTIME_STEPS, STATIC_STEPS = 256, 8 * 1 * 4  # 8 batches x 8 images x 4 layers; 8 batches x 1 group x 4 layers


def _steps(out, sub):
    return json.loads((out / sub / "checkpoint_state.json").read_text())["num_timesteps"]


def _params(model):
    return {k: v.detach().clone() for k, v in model.policy.state_dict().items()}


@pytest.mark.parametrize("algo", ["ppo", "recurrent_ppo"])
def test_joint_update_trains_both_agents(tmp_path, monkeypatch, capsys, algo):
    initial = {}
    prepare = agents.training.prepare_agent

    def recording_prepare(cfg, env_id, out, env_kwargs):  # each agent's parameters as built
        model, venv, fresh = prepare(cfg, env_id, out, env_kwargs)
        initial[env_id] = _params(model)
        return model, venv, fresh

    monkeypatch.setattr(agents.training, "prepare_agent", recording_prepare)
    out = tmp_path / "joint"
    metrics = train_agents.main(["--joint", "--agent-update", "joint", "--algo", algo, *TINY, "--out", str(out)])
    assert "joint update (1 static episodes of 8 images a batch)" in capsys.readouterr().err  # the progress bar
    assert metrics["agent_update"] == "joint"
    assert (metrics["runtime_timesteps"], metrics["static_timesteps"]) == (RUNTIME_STEPS, STATIC_STEPS)
    assert (_steps(out, "runtime"), _steps(out, "static")) == (RUNTIME_STEPS, STATIC_STEPS)
    record = json.loads((out / "run.json").read_text())
    assert record["agent_update"] == "joint" and record["status"] == "trained"
    assert record["joint_plan"] == {"groups": 1, "images": 8, "num_layers": 4, "batches_per_update": 2, "batches": 8,
                                    "runtime_steps": RUNTIME_STEPS, "static_steps": STATIC_STEPS}
    for sub in ("runtime", "static"):
        assert json.loads((out / sub / "run.json").read_text())["agent_update"] == "joint"
    for env_id, sub in ((RUNTIME, "runtime"), (STATIC, "static")):
        model, _ = agents.saved.load_agent(out / sub)
        assert model.num_timesteps == (RUNTIME_STEPS if env_id == RUNTIME else STATIC_STEPS)
        trained = _params(model)
        moved = [k for k, v in initial[env_id].items() if not torch.equal(v, trained[k])]
        assert any("mlp_extractor" in k or "lstm" in k or "features_extractor" in k for k in moved), (sub, moved)
        assert any(k.startswith("action_net") for k in moved), (sub, moved)
        assert (out / sub / "tb").is_dir()  # logged through each agent's PruningLogCallback
    assert 0 < metrics["macs_ratio"] <= 1 and 0 < metrics["params_ratio"] <= 1


def test_joint_plan_on_the_defaults():
    """The docstring's arithmetic (64 images, 4 layers, the registry's rollouts and timesteps)."""
    runtime_model = SimpleNamespace(n_steps=32, n_envs=64)
    plan = joint_plan(RunConfig(algo="recurrent_ppo", joint=True), runtime_model, 4)
    assert (plan.groups, plan.images, plan.batches_per_update, plan.batches) == (2, 32, 8, 1176)
    assert (plan.runtime_steps, plan.static_steps) == (301_056, 9_408)  # the alternation: 301,056 and 8,192
    plan = joint_plan(RunConfig(algo="ppo", joint=True), runtime_model, 4)
    assert (plan.groups, plan.images, plan.batches) == (8, 8, 392)
    assert (plan.runtime_steps, plan.static_steps) == (100_352, 12_544)  # the alternation: 100,352 and 8,192
    plan = joint_plan(RunConfig(algo="ppo", joint=True, timesteps=20_000), runtime_model, 4)
    assert plan.groups == 8 and plan.runtime_steps >= 20_000 and plan.static_steps == plan.runtime_steps // 8
    plan = joint_plan(RunConfig(algo="ppo", joint=True, joint_groups=4), runtime_model, 4)
    assert (plan.groups, plan.images) == (4, 16)
    with pytest.raises(ValueError, match="joint_groups"):
        joint_plan(RunConfig(algo="ppo", joint=True, joint_groups=65), runtime_model, 4)


def test_alternating_update_keeps_the_four_rounds(tmp_path):
    out = tmp_path / "alt"
    metrics = train_agents.main(["--joint", "--algo", "ppo", *TINY, "--agent-update", "alternating", "--no-progress",
                                 "--out", str(out)])
    # four rounds to 64, 128, 192, 256 steps each: whole rollouts of 64, each agent its default (here --timesteps)
    assert (_steps(out, "runtime"), _steps(out, "static")) == (256, 256)
    assert metrics["agent_update"] == "alternating"
    record = json.loads((out / "run.json").read_text())
    assert record["agent_update"] == "alternating" and "joint_plan" not in record
    assert (record["runtime_timesteps"], record["static_timesteps"]) == (256, 256)


def test_agent_update_defaults_and_refusals(tmp_path, capsys):
    for algo in ("recurrent_ppo", "ppo", "a2c", "trpo"):
        assert joint_agent_update(RunConfig(algo=algo, joint=True)) == "alternating"  # measured to hold the budget
        assert joint_agent_update(RunConfig(algo=algo, joint=True, agent_update="joint")) == "joint"
    for algo in ("sac", "td3", "dqn", "ars"):
        assert joint_agent_update(RunConfig(algo=algo, joint=True)) == "alternating"
    ranged = RunConfig(algo="ppo", joint=True, env_kwargs={"budget": "0.3:0.7"})
    assert joint_agent_update(ranged) == "alternating"
    with pytest.raises(ValueError, match="agent_update='joint' takes one budget.*agent_update='alternating'"):
        joint_agent_update(RunConfig(algo="ppo", joint=True, env_kwargs={"budget": "0.3:0.7"}, agent_update="joint"))
    with pytest.raises(ValueError, match="agent_update must be one of"):
        joint_agent_update(RunConfig(algo="ppo", joint=True, agent_update="both"))
    with pytest.raises(ValueError, match=r"agent_update='joint' trains on-policy algorithms .* not 'sac'; "
                                         r"use agent_update='alternating'"):
        run(RunConfig(algo="sac", joint=True, agent_update="joint", out=str(tmp_path / "sac")))
    assert not (tmp_path / "sac").exists()

    def usage_error(argv):
        with pytest.raises(SystemExit) as exc:
            train_agents.main(argv)
        assert exc.value.code == 2
        return capsys.readouterr().err

    err = usage_error(["--joint", "--algo", "sac", "--agent-update", "joint", "--out", str(tmp_path / "a")])
    assert "--agent-update joint trains on-policy algorithms" in err and "use --agent-update alternating" in err
    err = usage_error(["--agent-update", "joint", "--out", str(tmp_path / "b")])
    assert "--agent-update joint" in err and "--joint" in err
    err = usage_error(["--joint", "--algo", "sac", "--joint-groups", "2", "--out", str(tmp_path / "c")])
    assert "--joint-groups" in err
    err = usage_error(["--joint", "--env-kwargs", "budget=0.3:0.7", "--out", str(tmp_path / "d")])
    assert "--joint takes one budget" in err
    assert not any((tmp_path / d).exists() for d in "abcd")  # refused before anything was written


def test_interrupted_joint_run_resumes_to_the_same_counts(tmp_path, monkeypatch, capsys):
    out = tmp_path / "joint"
    argv = ["--joint", "--algo", "ppo", *TINY, "--no-progress", "--out", str(out)]
    original, calls = agents.joint.JointEpisodes.step, {"n": 0}

    def step(self, static_actions, runtime_actions):  # Ctrl-C in the first batch of the third update
        calls["n"] += 1
        if calls["n"] == 2 * 2 * 4 + 2:
            raise KeyboardInterrupt
        return original(self, static_actions, runtime_actions)

    with monkeypatch.context() as patch:
        patch.setattr(agents.joint.JointEpisodes, "step", step)
        with pytest.raises(SystemExit) as exc:
            train_agents.main([*argv, "--agent-update", "joint"])
    assert exc.value.code == 130
    assert "interrupted at 128 runtime / 16 static steps" in capsys.readouterr().err
    # two finished updates saved; the rollout in progress was not trained on
    assert (_steps(out, "runtime"), _steps(out, "static")) == (128, 16)
    assert not (out / "metrics.json").exists()
    with pytest.raises(SystemExit):  # a run continues with the update it started with
        train_agents.main([*argv, "--resume", "--agent-update", "alternating"])
    assert "started with --agent-update joint" in capsys.readouterr().err
    metrics = train_agents.main([*argv, "--resume"])  # without --agent-update: the one it started with
    assert metrics["agent_update"] == "joint"
    assert (metrics["runtime_timesteps"], metrics["static_timesteps"]) == (RUNTIME_STEPS, STATIC_STEPS)
    assert (_steps(out, "runtime"), _steps(out, "static")) == (RUNTIME_STEPS, STATIC_STEPS)
    assert np.isfinite(metrics["accuracy"])


def test_joint_batch_larger_than_the_split_names_n_envs(tmp_path):
    # PPO's runtime agent learns on the validation split (144 images): 160 images cannot form one static episode
    with pytest.raises(ValueError, match=r"n_envs=160 with joint_groups=1.*144.*--n-envs"):
        run(RunConfig(algo="ppo", joint=True, agent_update="joint", joint_groups=1, n_envs=160, timesteps=640,
                      progress=False, out=str(tmp_path / "big")))
