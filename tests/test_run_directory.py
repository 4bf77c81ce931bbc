"""A run directory is user input: every file in it is checked as it is read, a failed start or resume
changes nothing, saved agents load without unpickling, and every user error is a usage error naming
its file or option (docs/guide/reliability.md, "Run directories").

One tiny PPO run (64 steps, 4 environments) is made once and copied for each test; the readers are
called in-process, and one subprocess checks the exit code of a script.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import prune_env  # noqa: F401  (registers the ids)
from agents.callbacks import check_finite_agent
from agents.config import RunConfig
from agents.run_files import RunFileError
from agents.saved import load_agent, load_agent_and_env
from prune_env.assets import default_checkpoint_path
from prune_env.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from prune_env.errors import NonFiniteError, UsageError

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(env_id="RuntimePrune-v0", algo="ppo", timesteps=64, n_envs=4, references=False, progress=False,
            device="cpu", checkpoint_every=32, hyperparams={"n_steps": 4, "batch_size": 16, "n_epochs": 1})


class Payload:
    """Unpickling this runs code: it creates ``path`` (what a crafted file would do)."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    from agents.training import run

    out = tmp_path_factory.mktemp("tiny") / "run"
    run(RunConfig(**TINY, out=str(out)))
    return out


@pytest.fixture
def run_dir(tiny_run, tmp_path) -> Path:
    """A fresh copy of the tiny run, free to damage."""
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


def usage_exit(main, argv, capsys) -> str:
    """The one-line usage error ``main(argv)`` exits 2 with."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def hostile_zip(path: Path, marker: Path, *, entry: str = "policy.pth") -> None:
    """``path`` rewritten with ``entry`` replaced by a pickle that creates ``marker`` when unpickled."""
    with zipfile.ZipFile(path) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    buffer = __import__("io").BytesIO()
    torch.save({"weight": Payload(marker)}, buffer)
    entries[entry] = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)


# --------------------------------------------------------------------------- 1. env_spec.json names code
def test_env_spec_naming_code_is_refused_and_nothing_runs(run_dir, tmp_path):
    marker = tmp_path / "PWNED"
    spec = json.loads((run_dir / "env_spec.json").read_text())
    for field, value in (("entry_point", "os:system"), ("id", "os:system")):
        hostile = {**spec, field: value, "kwargs": {"command": f"touch {marker}"}}
        (run_dir / "env_spec.json").write_text(json.dumps(hostile))
        with pytest.raises(RunFileError, match=rf"env_spec\.json.*'{field}'"):
            load_agent_and_env(run_dir)
        assert not marker.exists()
    (run_dir / "env_spec.json").write_text(json.dumps({**spec, "kwargs": {"model": "os:getcwd"}}))
    with pytest.raises(RunFileError, match=r"env_spec\.json.*model=.*registered"):
        load_agent_and_env(run_dir)


# --------------------------------------------------------------------------- 2. a rejected keyword locks nothing
@pytest.mark.parametrize("option, words", [
    (["--env-kwargs", "budget=2"], "--env-kwargs: budget"), (["--env-kwargs", "model=foo"], "--env-kwargs: model"),
    (["--env-kwargs", "dataset=bar"], "--env-kwargs: unknown dataset"), (["--env-kwargs", "alpha=abc"], "--env-kwargs: alpha"),
    (["--hyperparams", "learning_rate=abc"], "--hyperparams: learning_rate"), (["--seed", "-1"], "--seed"),
])
def test_a_rejected_keyword_leaves_the_directory_reusable(tmp_path, capsys, option, words):
    import train_agents
    from prune_env.cli import refuse_overwrite

    out = tmp_path / "D"
    line = usage_exit(train_agents.main, ["--algo", "ppo", "--timesteps", "64", "--n-envs", "4", "--out", str(out),
                                          "--no-progress", *option], capsys)
    assert words in line
    assert not (out / "run.json").exists() and refuse_overwrite(out) is None  # the corrected command may run there


def test_a_run_failing_before_its_first_checkpoint_removes_what_it_wrote(tmp_path, monkeypatch):
    import agents.training as training

    def fail(*args, **kwargs):
        raise RuntimeError("crash in the first rollout")

    monkeypatch.setattr(training, "learn", fail)
    out = tmp_path / "D"
    with pytest.raises(RuntimeError, match="first rollout"):
        training.run(RunConfig(**TINY, out=str(out)))
    assert not (out / "run.json").exists() and not (out / "env_spec.json").exists()


# --------------------------------------------------------------------------- 3. a failed --resume changes nothing
def test_a_failed_resume_changes_nothing(run_dir, capsys):
    import train_agents

    ckpt = run_dir / "checkpoint.zip"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    line = usage_exit(train_agents.main, ["--resume", "--out", str(run_dir), "--algo", "ppo", "--timesteps", "64",
                                          "--n-envs", "4", "--no-progress"], capsys)
    assert "checkpoint.zip" in line
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


def test_resume_on_nothing_is_a_usage_error(tmp_path, capsys):
    import train_agents

    line = usage_exit(train_agents.main, ["--resume", "--out", str(tmp_path / "none"), "--algo", "ppo"], capsys)
    assert "holds no checkpoint" in line and not (tmp_path / "none").exists()


def test_resume_continues_from_the_checkpoint_without_unpickling(run_dir, tmp_path):
    from agents.training import prepare_agent

    marker = tmp_path / "PWNED"
    cfg = RunConfig(**{**TINY, "timesteps": 128}, out=str(run_dir), resume=True)
    model, venv, fresh = prepare_agent(cfg, "RuntimePrune-v0", run_dir, {"budget": 0.3, "budget_mode": "average"})
    assert not fresh and model.num_timesteps == 64
    venv.close()
    hostile_zip(run_dir / "checkpoint.zip", marker)
    with pytest.raises(RunFileError, match=r"checkpoint\.zip.*policy\.pth.*refused"):
        prepare_agent(cfg, "RuntimePrune-v0", run_dir, {})
    assert not marker.exists()


# --------------------------------------------------------------------------- 4. the benchmark's and scripts' values
@pytest.mark.parametrize("argv, words", [
    (["run", "--timesteps", "-5", "--algos", "ppo", "--seeds", "0"], "--timesteps: must be >= 1"),
    (["run", "--suite", "nosuch"], "--suite: unknown value 'nosuch'"),
    (["run", "--algos", "nosuch"], "--algos: unknown value 'nosuch'"),
])
def test_benchmark_values_are_usage_errors(tmp_path, capsys, argv, words):
    from agents.benchmark.cli import main

    line = usage_exit(main, [*argv, "--out", str(tmp_path / "B")], capsys)
    assert words in line and not (tmp_path / "B").exists()


@pytest.mark.parametrize("option", ["--static-agent", "--runtime-agent"])
def test_a_missing_agent_path_is_a_usage_error(tmp_path, capsys, option):
    import train_agents

    env = "RuntimePrune-v0" if option == "--static-agent" else "StaticPrune-v0"
    line = usage_exit(train_agents.main, ["--env", env, "--algo", "ppo", "--out", str(tmp_path / "D"), option,
                                          str(tmp_path / "gone")], capsys)
    assert str(tmp_path / "gone") in line


# --------------------------------------------------------------------------- 5. errors name the file
def test_damaged_files_are_named(run_dir, capsys):
    import evaluate_run

    zip_path = run_dir / "model.zip"
    original = zip_path.read_bytes()
    zip_path.write_bytes(original[:40])
    with pytest.raises(RunFileError, match=r"model\.zip"):
        load_agent(run_dir)
    zip_path.write_bytes(original)
    for name, text, key in (("metrics.json", "", "empty"), ("metrics.json", '{"accuracy": "high", "macs_ratio": 0.3}',
                                                                "'accuracy'"),
                            ("run.json", '{"env_id": "RuntimePrune-v0", "algo"', "not valid JSON"),
                            ("run.json", '{"env_id": "RuntimePrune-v0", "algo": 3}', "'algo'")):
        saved = (run_dir / name).read_bytes()
        (run_dir / name).write_text(text)
        line = usage_exit(evaluate_run.main, [str(run_dir), "--no-write", "--no-references", "--no-progress"], capsys)
        assert name in line and key in line, line
        (run_dir / name).write_bytes(saved)
    (run_dir / "env_spec.json").write_text("{")
    with pytest.raises(RunFileError, match=r"env_spec\.json.*not valid JSON"):
        load_agent_and_env(run_dir)


def test_crafted_weights_are_named_without_torch_advice(tmp_path):
    from agents.cnn_stages import check_weights_file

    marker, path = tmp_path / "PWNED", tmp_path / "weights.pth"
    torch.save({"fc.weight": Payload(marker)}, path)
    with pytest.raises(UsageError, match=r"weights\.pth.*refused") as exc:
        check_weights_file(path)
    assert "weights_only=False" not in str(exc.value) and not marker.exists()


# --------------------------------------------------------------------------- 6. non-finite weights and losses
@pytest.fixture
def nan_checkpoint(tmp_path) -> Path:
    net, _ = load_checkpoint(default_checkpoint_path())
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))
    return save_checkpoint(tmp_path / "nan.pt", net, dataset="digits", input_shape=(1, 8, 8))


def test_nan_weights_are_refused_naming_the_file(nan_checkpoint, tmp_path, capsys):
    import finetune_cnn

    with pytest.raises(CheckpointError, match=r"nan\.pt.*NaN or inf"):
        gym.make("RuntimePrune-v0", checkpoint=str(nan_checkpoint))
    out = tmp_path / "out.pt"
    line = usage_exit(finetune_cnn.main, ["finetune", "--checkpoint", str(nan_checkpoint), "--out", str(out),
                                          "--epochs", "1", "--no-progress"], capsys)
    assert "nan.pt" in line and "NaN" in line and not out.exists()


def test_a_non_finite_loss_stops_the_stage_and_keeps_the_last_checkpoint(tmp_path):
    from prune_env.cnn import train_stage
    from prune_env.data import load_dataset

    splits = load_dataset("digits")
    net, _ = load_checkpoint(default_checkpoint_path())
    path = tmp_path / "stage.pt"
    fast = dict(lr=1e-3, batch_size=256, device="cpu", progress=False, steps_per_epoch=2)
    train_stage(net, "finetune", splits, epochs=1, checkpoint_path=path, **fast)
    good = path.read_bytes()
    with torch.no_grad():
        next(net.parameters()).fill_(float("inf"))
    with pytest.raises(NonFiniteError, match=r"\[finetune\] stopped in epoch 1/2, batch 1/2.*stage\.pt' is kept"):
        train_stage(net, "finetune", splits, epochs=2, checkpoint_path=path, resume=False, **fast)
    assert path.read_bytes() == good


def test_an_agent_whose_weights_diverged_stops_naming_the_step(run_dir):
    model, _ = load_agent(run_dir)
    with torch.no_grad():
        next(model.policy.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteError, match=r"step 64.*checkpoint\.zip' is kept"):
        check_finite_agent(model, run_dir)
    model.save(run_dir / "model.zip")  # a diverged agent on disk is refused when loaded
    with pytest.raises(NonFiniteError, match=r"model\.zip.*policy\.pth.*NaN"):
        load_agent(run_dir)


# --------------------------------------------------------------------------- 7. what the docs claim
FORGED = ("forged", "unknown_backbone", "missing_key")


@pytest.mark.parametrize("kind", FORGED)
def test_scripts_turn_bad_checkpoints_into_usage_errors(tmp_path, capsys, kind):
    import finetune_cnn

    payload = torch.load(default_checkpoint_path(), weights_only=True)
    if kind == "forged":
        payload["state_dict"] = {k: v[:1] if v.dim() else v for k, v in payload["state_dict"].items()}
    elif kind == "unknown_backbone":
        payload["config"] = {**payload["config"], "name": "nosuchnet"}
    else:
        payload.pop("state_dict")
    path = tmp_path / f"{kind}.pt"
    torch.save(payload, path)
    line = usage_exit(finetune_cnn.main, ["finetune", "--checkpoint", str(path), "--out", str(tmp_path / "o.pt"),
                                          "--epochs", "1", "--no-progress"], capsys)
    assert f"{kind}.pt" in line


def test_the_batched_vector_env_matches_sync_as_the_docs_state():
    """With its own normaliser per environment, plain ``"sync"`` agrees with the batched env on every
    observation, end and cost, and on rewards until the shared loss scale moves; then they part."""
    n, kwargs = 3, {"loss_batch": 6}
    ours = gym.make_vec("RuntimePrune-v0", num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
    sync = gym.make_vec("RuntimePrune-v0", num_envs=n, vectorization_mode="sync", **kwargs)
    a, b = ours.reset(seed=3), sync.reset(seed=3)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-4, atol=1e-5)
    rng, parted = np.random.default_rng(0), []  # each round's largest relative reward difference
    for _ in range(10 * (ours.env.num_layers + 1)):
        actions = rng.uniform(0.2, 1.0, size=(n, 1)).astype(np.float32)
        a, b = ours.step(actions), sync.step(actions)
        np.testing.assert_allclose(a[0], b[0], rtol=1e-4, atol=1e-5)  # observations (batched vs single float rounding)
        np.testing.assert_array_equal(a[2], b[2])  # ends
        if a[2].all():
            np.testing.assert_allclose(a[4]["macs_ratio"], b[4]["macs_ratio"], rtol=1e-6)
            np.testing.assert_array_equal(a[4]["correct"], b[4]["correct"])
            parted.append(float(np.max(np.abs(a[1] - b[1]) / np.maximum(np.abs(b[1]), 1e-3))))
    assert max(parted[:2]) < 1e-4  # the first loss_batch episodes in all: one loss scale in both
    assert max(parted[2:]) > 1e-2  # then the shared normaliser has moved and the per-environment ones not yet
    text = (ROOT / "docs/guide/environments.md").read_text()
    assert "own normaliser" in text and "step for step what `\"sync\"` gives." not in text


# --------------------------------------------------------------------------- 8. weak messages
@pytest.mark.parametrize("kwargs, error, words", [
    ({"static_policy": "abc"}, TypeError, "static_policy must be None, a keep ratio in (0, 1]"),
    ({"static_policy": 2.0}, ValueError, "static_policy must hold keep ratios in (0, 1], got 2.0"),
    ({"static_policy": [0.5, 0.5, 0.5, 1.5]}, ValueError, "static_policy must hold keep ratios in (0, 1], got 1.5"),
    ({"checkpoint": 123}, TypeError, "checkpoint must be a path (a string) or None, got int 123"),
])
def test_keywords_of_the_wrong_kind_are_named(kwargs, error, words):
    with pytest.raises(error) as exc:
        gym.make("RuntimePrune-v0", **kwargs)
    assert words in str(exc.value)


# --------------------------------------------------------------------------- saved agents that can be shared
def test_load_agent_never_unpickles_and_gives_the_same_agent(run_dir, tmp_path):
    from stable_baselines3 import PPO

    safe, meta = load_agent(run_dir)
    plain = PPO.load(run_dir / "model.zip", device="cpu")  # SB3's own load keeps working for those who choose it
    trusted, _ = load_agent(run_dir, trusted=True)
    obs = np.random.default_rng(0).normal(size=(8, *safe.observation_space.shape)).astype(np.float32)
    for other in (plain, trusted):
        np.testing.assert_array_equal(safe.predict(obs, deterministic=True)[0], other.predict(obs, deterministic=True)[0])
        assert safe.num_timesteps == other.num_timesteps and safe.trained_on == other.trained_on
    marker = tmp_path / "PWNED"
    # data's cloudpickled objects are never decoded: a payload there does not run
    zip_path = run_dir / "model.zip"
    with zipfile.ZipFile(zip_path) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    data = json.loads(entries["data"])
    import base64

    data["policy_class"][":serialized:"] = base64.b64encode(pickle.dumps(Payload(marker))).decode()
    entries["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(zip_path, "w") as z:
        for name, raw in entries.items():
            z.writestr(name, raw)
    load_agent(run_dir)
    assert not marker.exists()
    record = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**record, "algo": "os:system"}))
    with pytest.raises(RunFileError, match=r"run\.json.*'algo'.*not a registered algorithm"):
        load_agent(run_dir)
    (run_dir / "run.json").write_text(json.dumps(record))
    hostile_zip(zip_path, marker)  # a payload in the weights is refused
    with pytest.raises(RunFileError, match=r"model\.zip.*'policy\.pth' refused.*trusted=True"):
        load_agent(run_dir)
    assert not marker.exists()


# --------------------------------------------------------------------------- the fuzz test
FILES = {  # each file of a run directory and the readers that read it
    "run.json": ("load_agent", "load_agent_and_env", "evaluate_run", "resume"),
    "env_spec.json": ("load_agent_and_env",),
    "metrics.json": ("evaluate_run",),
    "checkpoint_state.json": ("resume",),
    "model.zip": ("load_agent", "load_agent_and_env", "evaluate_run"),
    "checkpoint.zip": ("resume",),
}
MUTATIONS = ("empty", "truncated", "random", "wrong_type", "hostile")


def mutate(path: Path, how: str, marker: Path) -> None:
    """``path`` replaced by empty, truncated, random, wrong-type or hostile content."""
    raw, rng = path.read_bytes(), np.random.default_rng(len(path.name))
    is_zip = path.suffix == ".zip"
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "random":
        path.write_bytes(rng.integers(0, 256, size=max(len(raw), 64), dtype=np.uint8).tobytes())
    elif how == "wrong_type":
        if is_zip:  # a zip that is not an agent: a network checkpoint
            path.write_bytes(default_checkpoint_path().read_bytes())
        else:
            data = json.loads(raw)
            path.write_text(json.dumps({k: [v] if not isinstance(v, list) else {"x": v} for k, v in data.items()}))
    elif is_zip:
        hostile_zip(path, marker)
    else:
        data = json.loads(raw)
        code = {  # each file's fields naming code to run
            "env_spec.json": {"entry_point": "os:system", "kwargs": {"command": f"touch {marker}"}},
            "run.json": {"algo": "os:system", "env_kwargs": {"model": "os:system"}},
            "checkpoint_state.json": {"beta": "os:system"},
            "metrics.json": {"accuracy": {"py/object": "os.system", "args": [f"touch {marker}"]}},
        }[path.name]
        path.write_text(json.dumps({**data, **code}))


def read_with(reader: str, run_dir: Path) -> None:
    if reader == "load_agent":
        load_agent(run_dir)
    elif reader == "load_agent_and_env":
        load_agent_and_env(run_dir)[1].close()
    elif reader == "evaluate_run":  # what evaluate_run.py reads before it scores the agent
        from agents.evaluate import _recorded, load_run, trained_budget_range

        trained_budget_range(run_dir)
        load_run(run_dir)
        _recorded(run_dir)
    else:
        from agents.training import check_resume, prepare_agent

        cfg = RunConfig(**{**TINY, "timesteps": 128}, out=str(run_dir), resume=True)
        check_resume(cfg, run_dir)
        prepare_agent(cfg, "RuntimePrune-v0", run_dir, {"budget": 0.3, "budget_mode": "average"})[1].close()


def test_every_reader_works_on_the_undamaged_run(run_dir):
    for reader in {r for readers in FILES.values() for r in readers}:
        read_with(reader, run_dir)


@pytest.mark.parametrize("name", list(FILES))
def test_fuzz_every_reader_works_or_names_the_file(tiny_run, tmp_path, name):
    marker = tmp_path / "PWNED"
    for how in MUTATIONS:
        run_dir = Path(shutil.copytree(tiny_run, tmp_path / how))
        mutate(run_dir / name, how, marker)
        for reader in FILES[name]:
            try:
                read_with(reader, run_dir)
            except (UsageError, CheckpointError) as exc:
                assert name in str(exc), f"{reader} on {how} {name}: {exc}"
            assert not marker.exists(), f"{reader} on {how} {name} ran the payload"


def test_evaluate_run_exits_2_naming_a_damaged_file(run_dir):
    (run_dir / "run.json").write_bytes(os.urandom(64))
    proc = subprocess.run([sys.executable, str(ROOT / "evaluate_run.py"), str(run_dir), "--no-write"], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "run.json" in proc.stderr.strip().splitlines()[-1]


def test_benchmark_validate_refuses_damaged_and_hostile_records(tmp_path, capsys):
    from agents.benchmark.cli import main

    record = next(iter(sorted((ROOT / "benchmark_results").glob("*/runs/ppo/seed0.json"))))
    data = json.loads(record.read_text())
    cases = {"damaged.json": record.read_text()[:100],
             "hostile.json": json.dumps({**data, "episode_record": {**(data.get("episode_record") or {}),
                                                                     "env_id": "os:system"}})}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        line = usage_exit(main, ["validate", str(tmp_path / name)], capsys)
        assert name in line


# --------------------------------------------------------------------------- the reliability tables
def test_reliability_table_rows_each_name_tests_that_exist():
    """Every row of docs/guide/reliability.md's fault tables names ``T tests/FILE.py -k EXPR`` commands,
    and each selects at least one test of that file (pytest's -k matching on the test names)."""
    import ast
    import re

    from _pytest.mark.expression import Expression

    fault_rows, in_table = [], False
    for line in (ROOT / "docs/guide/reliability.md").read_text().splitlines():
        if line.startswith("|") and line.rstrip(" |").endswith("checked by"):
            in_table = True
        elif in_table and line.startswith("| ") and not line.startswith("|---"):
            fault_rows.append(line)
        elif not line.startswith("|"):
            in_table = False
    assert len(fault_rows) >= 40
    names: dict[str, list[str]] = {}
    for row in fault_rows:
        checked = row.rstrip(" |").rsplit("|", 1)[-1]
        commands = re.findall(r"`T (tests/\w+\.py)(?: -k (\"[^\"]+\"|\S+))?`", checked)
        assert commands, f"a row without a test: {row[:100]}"
        for file, expr in commands:
            if file not in names:
                tree = ast.parse((ROOT / file).read_text())
                names[file] = [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith("test")]
            if expr:
                matcher = Expression.compile(expr.strip('"'))
                hits = [n for n in names[file] if matcher.evaluate(lambda sub, n=n: sub.lower() in n.lower())]
                assert hits, f"{file} -k {expr}: selects no test (row: {row[:80]})"


def test_an_algorithm1_cnn_of_another_backbone_is_named(run_dir, tmp_path):
    from agents.evaluate import load_run
    from prune_env.nets.backbones import build_net

    alg = tmp_path / "algorithm1"
    for sub, env_id in (("runtime", "RuntimePrune-v0"), ("static", "StaticPrune-v0")):
        shutil.copytree(run_dir, alg / sub)
        record = json.loads((alg / sub / "run.json").read_text())
        (alg / sub / "run.json").write_text(json.dumps({**record, "env_id": env_id, "env_kwargs": {}}))
    save_checkpoint(alg / "cnn.pt", build_net("resnet20", num_classes=10, in_channels=1), dataset="digits",
                    input_shape=(1, 8, 8))
    with pytest.raises(RunFileError, match=r"cnn\.pt.*runtime observations of shape.*digitnet"):
        load_run(alg)
