"""Nothing trained is ever lost: outputs are not overwritten by mistake, and injected faults are survived.

Faults: SIGKILL in the middle of writing a checkpoint, a write that fails (disk full), Ctrl-C in a
CNN stage and in Algorithm 1; each leaves the previous file loadable or saves and resumes.
"""

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import finetune_cnn
import train_agents
from prune_env.assets import default_checkpoint_path
from prune_env.checkpoint import atomic_save, load_checkpoint, read_checkpoint, save_checkpoint
from prune_env.cli import ALGORITHM1_FILES, RUN_FILES, refuse_overwrite
from prune_env.nets import build_net

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------ refusing to overwrite
@pytest.mark.parametrize("marker", RUN_FILES)
def test_a_run_directory_is_refused_without_resume_or_overwrite(tmp_path, marker):
    (tmp_path / marker).write_text("{}")
    message = refuse_overwrite(tmp_path)
    assert message and marker in message
    assert "--resume" in message and "a new directory" in message and "--overwrite" in message
    assert refuse_overwrite(tmp_path, resume=True) is None and refuse_overwrite(tmp_path, overwrite=True) is None


def test_empty_or_unrelated_directories_and_new_paths_are_fine(tmp_path):
    assert refuse_overwrite(tmp_path / "new") is None
    (tmp_path / "notes.txt").write_text("mine")
    assert refuse_overwrite(tmp_path) is None


def test_files_and_directories_in_the_wrong_place(tmp_path):
    (tmp_path / "f").write_text("x")
    assert "is a file" in refuse_overwrite(tmp_path / "f", overwrite=True)
    assert "is a directory" in refuse_overwrite(tmp_path, kind="file", overwrite=True)
    message = refuse_overwrite(tmp_path / "f", kind="file")
    assert "--resume" in message and "a new file" in message and "--overwrite" in message


def test_algorithm1_markers_reach_into_the_agent_directories(tmp_path):
    (tmp_path / "runtime").mkdir()
    (tmp_path / "runtime" / "checkpoint.zip").write_bytes(b"")
    assert "runtime/checkpoint.zip" in refuse_overwrite(tmp_path, markers=ALGORITHM1_FILES)


def test_train_agents_refuses_a_finished_run_and_an_out_file(tmp_path, capsys, monkeypatch):
    import agents.training

    out = tmp_path / "run"
    out.mkdir()
    (out / "model.zip").write_bytes(b"trained")
    with pytest.raises(SystemExit) as done:
        train_agents.main(["--out", str(out)])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "new directory" in err and "--overwrite" in err
    assert (out / "model.zip").read_bytes() == b"trained"
    with pytest.raises(SystemExit) as done:
        train_agents.main(["--out", str(out / "model.zip")])
    assert done.value.code == 2 and "is a file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        train_agents.main(["--out", str(out), "--resume", "--overwrite"])
    assert done.value.code == 2 and "not allowed with" in capsys.readouterr().err
    seen = []
    monkeypatch.setattr(agents.training, "run", lambda cfg: seen.append(cfg) or {})
    train_agents.main(["--out", str(out), "--overwrite"])  # explicit: goes ahead
    (out / "checkpoint.zip").write_bytes(b"checkpoint")  # --resume needs a checkpoint to continue
    train_agents.main(["--out", str(out), "--resume"])
    assert [c.resume for c in seen] == [False, True]


def test_finetune_cnn_stages_refuse_an_existing_checkpoint(tmp_path, capsys):
    out = tmp_path / "pre.pt"
    argv = ["pretrain", "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "16", "--no-progress", "--threads", "1",
            "--out", str(out)]
    finetune_cnn.main(argv)
    before = out.read_bytes()
    with pytest.raises(SystemExit) as done:
        finetune_cnn.main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "a new file" in err and "--overwrite" in err
    assert out.read_bytes() == before
    finetune_cnn.main(argv + ["--overwrite"])
    assert read_checkpoint(out)["completed"]
    with pytest.raises(SystemExit) as done:
        finetune_cnn.main([*argv[:-1], str(tmp_path)])  # a directory
    assert done.value.code == 2 and "is a directory" in capsys.readouterr().err


@pytest.mark.parametrize("stage", ["algorithm1", "method"])
def test_algorithm1_and_method_refuse_a_started_run(tmp_path, capsys, stage):
    (tmp_path / "algorithm1_state.json").write_text("{}")
    argv = [stage, "--out", str(tmp_path), "--no-progress"]
    if stage == "algorithm1":
        argv += ["--checkpoint", str(default_checkpoint_path())]
    with pytest.raises(SystemExit) as done:
        finetune_cnn.main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "algorithm1_state.json" in err and "--resume" in err and "--overwrite" in err


def test_algorithm1_names_an_algo_that_is_not_a_class(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        finetune_cnn.main(["algorithm1", "--checkpoint", str(default_checkpoint_path()), "--out", str(tmp_path / "a"),
                           "--algo", "os:path"])
    assert done.value.code == 2 and "not an algorithm class" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ faults while writing
def small_checkpoint(path: Path, seed: int) -> dict:
    torch.manual_seed(seed)
    net = build_net("digitnet", num_classes=10, in_channels=1)
    save_checkpoint(path, net, dataset="digits", input_shape=(1, 8, 8), marker=seed)
    return {k: v.clone() for k, v in net.state_dict().items()}


KILLED_WRITER = r"""
import sys, time, torch
import prune_env.checkpoint as ck
from prune_env.nets import build_net

real_save = torch.save


def slow_save(obj, f):  # half the real bytes, then hang: the parent kills us mid-write
    import io
    buffer = io.BytesIO()
    real_save(obj, buffer)
    data = buffer.getvalue()
    f.write(data[: len(data) // 2])
    f.flush()
    print("mid-write", flush=True)
    time.sleep(120)

torch.save = slow_save
ck.save_checkpoint(sys.argv[1], build_net("digitnet", num_classes=10, in_channels=1), dataset="digits",
                   input_shape=(1, 8, 8), marker=2)
"""


def test_sigkill_in_the_middle_of_writing_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "ckpt.pt"
    weights = small_checkpoint(path, seed=1)
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout.readline().strip() == "mid-write"
        temporaries = list(tmp_path.glob(".ckpt.pt.*.tmp"))
        assert len(temporaries) == 1 and temporaries[0].stat().st_size > 0  # it really was writing
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    net, payload = load_checkpoint(path)
    assert payload["marker"] == 1
    assert all(torch.equal(net.state_dict()[k], v) for k, v in weights.items())


def test_a_failed_write_leaves_the_previous_checkpoint_intact_and_says_so(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    small_checkpoint(path, seed=1)
    before = path.read_bytes()

    def disk_full(obj, f):
        f.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left on device") as err:
        save_checkpoint(path, build_net("digitnet", num_classes=10, in_channels=1), dataset="digits", input_shape=(1, 8, 8))
    assert err.value.errno == errno.ENOSPC
    assert str(path) in str(err.value) and "the previous file there is unchanged" in str(err.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no temporary left behind
    with pytest.raises(OSError, match="no file was written there"):
        atomic_save({"a": 1}, tmp_path / "new.pt")


def test_a_failed_agent_save_leaves_the_previous_agent_intact(tmp_path, monkeypatch):
    from stable_baselines3 import PPO

    from agents.saved import atomic_model_save

    model = PPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=64, device="cpu")
    path = atomic_model_save(model, tmp_path / "checkpoint.zip")
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model, "save", disk_full)
    with pytest.raises(OSError, match="the previous file there is unchanged"):
        atomic_model_save(model, path)
    assert path.read_bytes() == before and PPO.load(path).num_timesteps == 0


# ------------------------------------------------------------------------------------ Ctrl-C
def sigint_at_training_step(monkeypatch, step: int) -> None:
    """Deliver a real SIGINT in the middle of the ``step``-th training forward pass (1-based)."""
    original, calls = F.cross_entropy, {"n": 0}

    def loss(logits, *args, **kwargs):
        if logits.requires_grad:
            calls["n"] += 1
            if calls["n"] == step:
                os.kill(os.getpid(), signal.SIGINT)
        return original(logits, *args, **kwargs)

    monkeypatch.setattr(F, "cross_entropy", loss)


def test_ctrl_c_in_a_cnn_stage_saves_the_step_and_resumes_to_the_same_weights(tmp_path, monkeypatch, capsys):
    args = ["pretrain", "--epochs", "2", "--steps-per-epoch", "4", "--batch-size", "32", "--no-progress", "--threads", "1"]
    finetune_cnn.main([*args, "--out", str(tmp_path / "reference.pt")])
    out = tmp_path / "pre.pt"
    with monkeypatch.context() as patch:
        sigint_at_training_step(patch, 7)  # epoch 2, third batch
        with pytest.raises(SystemExit) as done:
            finetune_cnn.main([*args, "--out", str(out)])
    assert done.value.code == 130
    assert "interrupted in epoch 2/2 after 3/4 batches" in capsys.readouterr().err
    saved = read_checkpoint(out)
    assert saved["epoch"] == 1 and saved["interrupted"]["batches"] == 3 and not saved["completed"]
    finetune_cnn.main([*args, "--out", str(out), "--resume"])
    resumed, reference = read_checkpoint(out), read_checkpoint(tmp_path / "reference.pt")
    assert resumed["completed"] and len(resumed["history"]) == 2
    for key, value in reference["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key  # as if never interrupted
    assert resumed["history"][1]["train_loss"] == pytest.approx(reference["history"][1]["train_loss"])


ALG1 = dict(iterations=2, agent_batches=2, cnn_batches=3, batch_size=16, n_envs=8, static_episodes=2, progress=False)


def test_ctrl_c_in_algorithm1_saves_both_phases_and_resumes(tmp_path, monkeypatch, capsys):
    import agents.training
    from agents.algorithm1 import Algorithm1Config, run_algorithm1

    out = tmp_path / "a1"
    cfg = Algorithm1Config(checkpoint=str(default_checkpoint_path()), out=str(out), algo="ppo", agent_update="alternating",
                           **ALG1)
    # 1. Ctrl-C in the agents' phase of iteration 1: the runtime agent is saved where it is
    original_on_step, calls = agents.callbacks.PruningLogCallback._on_step, {"n": 0}

    def on_step(self):
        calls["n"] += 1
        if calls["n"] == 20:
            raise KeyboardInterrupt
        return original_on_step(self)

    with monkeypatch.context() as patch:
        patch.setattr(agents.callbacks.PruningLogCallback, "_on_step", on_step)
        with pytest.raises(KeyboardInterrupt):
            run_algorithm1(cfg)
    saved_steps = json.loads((out / "runtime" / "checkpoint_state.json").read_text())["num_timesteps"]
    assert 0 < saved_steps and not (out / "algorithm1_state.json").exists()
    assert "continue with --resume" in capsys.readouterr().err
    # 2. resumed, then Ctrl-C in the CNN phase of iteration 2 (during its second of three batches)
    cfg.resume = True
    original_loss, calls = F.cross_entropy, {"n": 0}

    def loss(logits, *args, **kwargs):  # training forward passes of the CNN once iteration 1 is saved
        if logits.requires_grad and (out / "algorithm1_state.json").exists():
            calls["n"] += 1
            if calls["n"] == 2:
                os.kill(os.getpid(), signal.SIGINT)
        return original_loss(logits, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(F, "cross_entropy", loss)
        with pytest.raises(KeyboardInterrupt):
            run_algorithm1(cfg)
    state = json.loads((out / "algorithm1_state.json").read_text())
    assert state["iterations_done"] == 1
    per_iteration = ALG1["agent_batches"] * ALG1["batch_size"] * 4  # 4 layers
    base = state["agent_timesteps"]["RuntimePrune-v0"]  # the runtime agent's steps when iteration 1 finished
    assert base >= saved_steps  # the interrupted agent was resumed, not rebuilt
    if saved_steps >= per_iteration:
        assert base == saved_steps  # and not trained again for steps it had done
    phase = read_checkpoint(out / "cnn_phase.pt")
    assert phase["iteration"] == 2 and phase["interrupted"]["batches"] == 2  # the step in progress completed
    agent_steps = {sub: json.loads((out / sub / "checkpoint_state.json").read_text())["num_timesteps"]
                   for sub in ("runtime", "static")}
    # iteration 2's agent phase had finished: resuming must not train the agents again
    final = run_algorithm1(cfg)
    assert [r["iteration"] for r in final["history"]] == [1, 2]
    for sub in ("runtime", "static"):
        assert json.loads((out / sub / "checkpoint_state.json").read_text())["num_timesteps"] == agent_steps[sub]
    assert not (out / "cnn_phase.pt").exists()
    assert agent_steps["runtime"] >= 2 * per_iteration


# ------------------------------------------------------------------------------------ SIGKILL of a training run
def test_a_run_killed_with_sigkill_resumes_losing_at_most_one_checkpoint_interval(tmp_path):
    """``benchmarks/kill_resume.py`` with one trial (about 15 s): kill, load, resume, continue."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from kill_resume import kill_and_resume
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    every = 256
    row = kill_and_resume(tmp_path / "run", every=every, kill_after=512, delay=0.3, extra=128)
    assert row["saved"] >= row["seen_before_kill"] >= 512  # the newest checkpoint survived the kill
    assert row["lost_at_least"] <= every  # the checkpoint was at most one interval behind the logged progress
    assert row["continued"]  # resumed from the checkpoint's optimizer state, not from scratch
    assert row["final"] >= row["saved"] + 128 and row["saved_state_steps"] == row["final"]


def test_ctrl_c_in_agent_training_saves_and_resumes(tmp_path, monkeypatch, capsys):
    from stable_baselines3 import PPO

    import agents.training

    out = tmp_path / "run"
    argv = ["--algo", "ppo", "--timesteps", "512", "--n-envs", "8", "--hyperparams", "n_steps=16", "batch_size=64",
            "n_epochs=1", "--checkpoint-every", "100000", "--no-progress", "--out", str(out)]
    original, calls = agents.callbacks.PruningLogCallback._on_step, {"n": 0}

    def on_step(self):
        calls["n"] += 1
        if calls["n"] == 40:  # in the third rollout of 16 steps
            raise KeyboardInterrupt
        return original(self)

    with monkeypatch.context() as patch:
        patch.setattr(agents.callbacks.PruningLogCallback, "_on_step", on_step)
        with pytest.raises(SystemExit) as done:
            train_agents.main(argv)
    assert done.value.code == 130
    assert "continue with --resume" in capsys.readouterr().err
    saved = PPO.load(out / "checkpoint.zip", device="cpu")  # saved at the interrupt, not at a checkpoint interval
    assert saved.num_timesteps == 40 * 8 and saved._n_updates == 2
    assert not (out / "model.zip").exists()
    metrics = train_agents.main([*argv, "--resume"])
    final = PPO.load(out / "model.zip", device="cpu")
    # continued from 320 steps and 2 updates: 2 more rollouts of 128 (a fresh start would end at 512)
    assert final.num_timesteps == metrics["timesteps"] == 320 + 2 * 128 and final._n_updates == saved._n_updates + 2
