"""Algorithm 1 end to end: alternation and the joint update, resume, frozen-agent masks, the CIFAR-10 command on a fixture."""

import json
import pickle

import numpy as np
import pytest
import torch

import finetune_cnn
from agents.algorithm1 import Algorithm1Config, agent_ratio_fn, run_algorithm1
from prune_env.assets import default_checkpoint_path
from prune_env.checkpoint import save_checkpoint
from prune_env.cnn import epochs_for_batches, train_stage
from prune_env.envs.task import PruningTask, TaskConfig
from prune_env.nets import build_net
from prune_env.policies import PerLayerPolicy

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TINY = dict(iterations=2, agent_batches=2, cnn_batches=2, batch_size=16, n_envs=8, static_episodes=2, progress=False)


def test_agent_ratio_fn_gives_the_agents_deterministic_ratios():
    task = PruningTask(TaskConfig(tradeoff_rate=0.5))
    fn = agent_ratio_fn(task, PerLayerPolicy([0.3, 0.05, 2.0, 0.6]), [0.5, 0.5, 1.0, 1.0])
    net = task.net
    runtime, static = fn(net, task.calibration_images[:5])
    expected = torch.tensor([0.3, 0.1, 1.0, 0.6]).expand(5, 4)  # clipped to [alpha, 1]
    assert torch.allclose(runtime, expected.float())
    assert static == [0.5, 0.5, 1.0, 1.0]
    assert task.net is net


def test_algorithm1_alternates_records_and_resumes(tmp_path):
    out = tmp_path / "a1"
    cfg = Algorithm1Config(checkpoint=str(default_checkpoint_path()), out=str(out), algo="ppo", agent_update="alternating",
                           **TINY)
    first = run_algorithm1(cfg)
    rows = json.loads((out / "history.json").read_text())
    assert [r["iteration"] for r in rows] == [1, 2]
    for key in ("train_accuracy", "test_accuracy", "macs_ratio", "params_ratio"):
        assert all(0.0 <= r[key] <= 1.0 for r in rows)
    assert rows[-1]["params_ratio"] < 1.0  # R_r = 0.5 and a static agent: channels removed for good
    assert (out / "history.csv").read_text().startswith("iteration,")
    assert (out / "history.png").stat().st_size > 1000 and (out / "keep_ratios.png").is_file()
    assert {"accuracy", "dense_accuracy", "macs_ratio", "params_ratio", "budget", "within_budget"} <= set(first)
    cnn_before = torch.load(out / "cnn.pt", weights_only=False)["state_dict"]
    # the CNN really changed from the starting checkpoint
    start = torch.load(default_checkpoint_path(), weights_only=False)["state_dict"]
    assert any(not torch.equal(cnn_before[k], start[k]) for k in start if k.endswith("weight"))
    # resume: one more iteration continues from the second
    cfg.iterations, cfg.resume = 3, True
    resumed = run_algorithm1(cfg)
    rows = json.loads((out / "history.json").read_text())
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    assert resumed["iterations"] == 3


def test_algorithm1_fine_tunes_for_all_n2_batches_even_beyond_an_epoch(tmp_path, monkeypatch):
    """N2 longer than an epoch of the training split is spread over epochs, not cut at one."""
    import agents.algorithm1 as alg1

    seen = []

    def counting_train_stage(net, stage, splits, **kwargs):
        history = train_stage(net, stage, splits, **kwargs)
        per_epoch = -(-len(splits.train) // kwargs["batch_size"])
        seen.append(len(history) * min(per_epoch, kwargs["steps_per_epoch"]))
        return history

    monkeypatch.setattr(alg1, "train_stage", counting_train_stage)
    settings = {**TINY, "iterations": 1, "cnn_batches": 30, "batch_size": 64}  # digits: 21 batches of 64 per epoch
    run_algorithm1(Algorithm1Config(checkpoint=str(default_checkpoint_path()), out=str(tmp_path / "a1"), algo="ppo",
                                    agent_update="alternating", **settings))
    assert seen and 30 <= seen[0] < 32


def test_epochs_for_batches_spreads_a_schedule_over_epochs():
    assert epochs_for_batches(400, 54_000, 128) == (1, 400)
    assert epochs_for_batches(2_000, 54_000, 128) == (5, 400)
    assert epochs_for_batches(780, 45_000, 128) == (3, 260)  # the CIFAR-10 preset's N2: three epochs of 352
    epochs, steps = epochs_for_batches(423, 54_000, 128)
    assert (epochs, steps) == (2, 212) and steps <= 422
    with pytest.raises(ValueError, match="batches"):
        epochs_for_batches(0, 100, 10)


def _cifar_fixture(root, n_train=8, n_test=8):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [*[(f"data_batch_{i}", n_train) for i in range(1, 6)], ("test_batch", n_test)]:
        data = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, n))}
        with open(base / name, "wb") as f:
            pickle.dump(data, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    return root


def test_paper_cifar10_command_runs_its_first_iteration_on_a_fixture(tmp_path, monkeypatch):
    """The documented CIFAR-10 command (Table 1) on a generated CIFAR-10-format fixture."""
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)  # fixture files have other checksums
    root = _cifar_fixture(tmp_path / "cifar")
    net = build_net("mcifarnet", width=0.125)
    ckpt = save_checkpoint(tmp_path / "imp.pt", net, dataset="cifar10", input_shape=(3, 32, 32), stage="importance")
    out = tmp_path / "run"
    metrics = finetune_cnn.main([
        "algorithm1", "--checkpoint", str(ckpt), "--data-root", str(root), "--schedule", "cifar10",
        "--iterations", "1", "--agent-batches", "1", "--cnn-batches", "1", "--batch-size", "4", "--n-envs", "4",
        "--out", str(out), "--no-progress",
    ])
    state = json.loads((out / "algorithm1_state.json").read_text())
    assert state["iterations_done"] == 1
    assert state["config"]["lr"] == 1e-3  # the CIFAR-10 schedule's CNN learning rate
    assert metrics["num_images"] == 8


def test_finetune_cli_uses_frozen_agents(tmp_path):
    import train_agents

    agent = tmp_path / "rt"
    train_agents.main(["--timesteps", "256", "--n-envs", "8", "--algo", "ppo", "--out", str(agent), "--no-progress",
                       "--hyperparams", "n_steps=8", "batch_size=64"])
    result = finetune_cnn.main(["finetune", "--checkpoint", str(default_checkpoint_path()), "--runtime-agent", str(agent),
                                "--epochs", "1", "--steps-per-epoch", "3", "--out", str(tmp_path / "ft.pt"), "--no-progress",
                                "--threads", "1"])
    assert result["test"]["accuracy"] > 0.5
    kept = result["test"]["kept_fraction"]
    assert len(kept) == 4 and min(kept) < 1.0  # the agent's masks were applied


def test_finetune_cli_random_keep_warmup(tmp_path):
    result = finetune_cnn.main(["finetune", "--checkpoint", str(default_checkpoint_path()), "--random-keep", "0.3",
                                "--epochs", "1", "--steps-per-epoch", "3", "--tradeoff-rate", "1.0",
                                "--out", str(tmp_path / "warm.pt"), "--no-progress", "--threads", "1"])
    kept = result["test"]["kept_fraction"]
    assert len(kept) == 4 and 0.3 < min(kept) and max(kept) < 1.0  # random ratios in [0.3, 1] were applied
    with pytest.raises(SystemExit):
        finetune_cnn.main(["finetune", "--checkpoint", str(default_checkpoint_path()), "--random-keep", "0.3",
                           "--runtime-agent", str(tmp_path), "--out", str(tmp_path / "x.pt"), "--no-progress"])


def test_algorithm1_cli_passes_env_kwargs_to_both_environments(tmp_path, monkeypatch):
    import agents.algorithm1 as alg1

    seen = {}

    def fake_run(cfg):
        seen["cfg"] = cfg
        return {}

    monkeypatch.setattr(alg1, "run_algorithm1", fake_run)
    finetune_cnn.main(["algorithm1", "--checkpoint", str(default_checkpoint_path()), "--env-kwargs", "alpha_budget=30",
                       "loss_batch=32", "--out", str(tmp_path / "a1"), "--no-progress"])
    assert seen["cfg"].env_kwargs == {"alpha_budget": 30, "loss_batch": 32}
    with pytest.raises(SystemExit):
        finetune_cnn.main(["algorithm1", "--checkpoint", str(default_checkpoint_path()), "--env-kwargs", "oops",
                           "--out", str(tmp_path / "a2"), "--no-progress"])


def test_algorithm1_cli_names_a_missing_checkpoint(tmp_path, capsys):
    with pytest.raises(SystemExit):
        finetune_cnn.main(["algorithm1", "--checkpoint", str(tmp_path / "nothing.pt"), "--out", str(tmp_path / "a1")])
    assert "--checkpoint" in capsys.readouterr().err


def _agent_state(out, sub):
    return json.loads((out / sub / "checkpoint_state.json").read_text())


def test_algorithm1_joint_trains_both_agents_on_the_same_batches_and_resumes(tmp_path):
    """Joint update (lines 12-15 on shared forward passes): per iteration N1 batches of
    ``batch_size`` images shared by ``static_episodes`` static episodes; the average budget's lambda
    and beta carried across iterations and a resume."""
    out = tmp_path / "joint"
    cfg = Algorithm1Config(checkpoint=str(default_checkpoint_path()), out=str(out), algo="recurrent_ppo",
                           agent_update="joint", env_kwargs={"budget_mode": "average", "dual_batch": 2}, **TINY)
    run_algorithm1(cfg)
    rows = json.loads((out / "history.json").read_text())
    per_runtime = TINY["agent_batches"] * TINY["batch_size"] * 4  # images x 4 layers, as in alternation
    per_static = TINY["agent_batches"] * TINY["static_episodes"] * 4
    assert [(r["runtime_timesteps"], r["static_timesteps"]) for r in rows] == [(per_runtime, per_static),
                                                                               (2 * per_runtime, 2 * per_static)]
    assert all(r["agent_update"] == "joint" for r in rows)
    duals = {sub: _agent_state(out, sub)["dual"] for sub in ("runtime", "static")}
    assert duals["runtime"]["updates"] > 0 and duals["static"]["updates"] > 0  # both lambdas moved, and were saved
    cfg.iterations, cfg.resume = 3, True
    final = run_algorithm1(cfg)
    assert [r["iteration"] for r in final["history"]] == [1, 2, 3]
    assert final["history"][-1]["runtime_timesteps"] == 3 * per_runtime
    for sub in ("runtime", "static"):  # the resumed run continued lambda from where it was saved
        assert _agent_state(out, sub)["dual"]["updates"] > duals[sub]["updates"]
    state = json.loads((out / "algorithm1_state.json").read_text())
    assert state["config"]["agent_update"] == "joint"
    cfg.agent_update = "alternating"  # a run continues with the update it started with
    with pytest.raises(ValueError, match="agent_update"):
        run_algorithm1(cfg)


def test_ctrl_c_in_the_joint_update_saves_both_agents_and_resume_trains_what_was_left(tmp_path, monkeypatch):
    import agents.training

    out = tmp_path / "joint"
    settings = {**TINY, "iterations": 1, "agent_batches": 4}
    cfg = Algorithm1Config(checkpoint=str(default_checkpoint_path()), out=str(out), algo="ppo", agent_update="joint",
                           joint_update_batches=1, **settings)
    original, calls = agents.callbacks.PruningLogCallback._on_step, {"n": 0}

    def on_step(self):  # the runtime agent's callback in the third joint batch (4 layers a batch, 2 callbacks a step)
        calls["n"] += 1
        if calls["n"] == 2 * 4 * 2 + 3:
            raise KeyboardInterrupt
        return original(self)

    with monkeypatch.context() as patch:
        patch.setattr(agents.callbacks.PruningLogCallback, "_on_step", on_step)
        with pytest.raises(KeyboardInterrupt):
            run_algorithm1(cfg)
    per_batch = settings["batch_size"] * 4
    saved = _agent_state(out, "runtime")["num_timesteps"]
    assert saved == 2 * per_batch  # two finished updates; the batch in progress was not trained on
    assert _agent_state(out, "static")["num_timesteps"] == 2 * settings["static_episodes"] * 4
    cfg.resume = True
    final = run_algorithm1(cfg)
    assert final["history"][-1]["runtime_timesteps"] == 4 * per_batch  # the two batches left, no more


def test_joint_update_refuses_off_policy_algorithms(tmp_path):
    cfg = Algorithm1Config(checkpoint=str(default_checkpoint_path()), out=str(tmp_path / "j"), algo="sac",
                           agent_update="joint", **TINY)
    with pytest.raises(ValueError, match="alternating"):
        run_algorithm1(cfg)
    with pytest.raises(ValueError, match="agent_update"):
        Algorithm1Config(checkpoint="x", agent_update="both")


def test_sigint_in_the_joint_update_waits_for_the_step_and_saves_both_agents(tmp_path, monkeypatch):
    """A real Ctrl-C (SIGINT) in the middle of a joint layer step is held until the step ends
    (prune_env.interrupt), then both agents are saved with the updates that had finished."""
    import os
    import signal

    import agents.joint

    out = tmp_path / "joint"
    settings = {**TINY, "iterations": 1, "agent_batches": 3}
    cfg = Algorithm1Config(checkpoint=str(default_checkpoint_path()), out=str(out), algo="ppo", agent_update="joint",
                           joint_update_batches=1, **settings)
    original, calls = agents.joint.JointEpisodes.step, {"n": 0}

    def step(self, static_actions, runtime_actions):
        calls["n"] += 1
        if calls["n"] == 4 + 2:  # the second layer of the second joint batch
            os.kill(os.getpid(), signal.SIGINT)
        result = original(self, static_actions, runtime_actions)
        calls["completed"] = calls["n"]  # the step in progress finished before the interrupt was raised
        return result

    monkeypatch.setattr(agents.joint.JointEpisodes, "step", step)
    with pytest.raises(KeyboardInterrupt):
        run_algorithm1(cfg)
    assert calls["completed"] == 6
    assert _agent_state(out, "runtime")["num_timesteps"] == settings["batch_size"] * 4  # one finished update
    assert _agent_state(out, "static")["num_timesteps"] == settings["static_episodes"] * 4
