"""Messages that lead somewhere: typos end in a usage error naming the key, the accepted ones and
the closest match, before anything is created; one syntax for KEY=VALUE options; clean device errors."""

from __future__ import annotations

import argparse

import gymnasium as gym
import pytest
import torch

import evaluate_run
import prune_env  # noqa: F401
import train_agents
from prune_env.cli import check_keys, device, parse_key_values
from prune_env.envs import DiscreteKeepRatio


def test_key_values_take_rl_zoo_colons_too():
    got = parse_key_values(["budget=0.5", "alpha:0.2", "checkpoint=runs/a:b.pt", "policy_kwargs.net_arch:[8, 8]"], "--x")
    assert got == {"budget": 0.5, "alpha": 0.2, "checkpoint": "runs/a:b.pt", "policy_kwargs.net_arch": [8, 8]}
    with pytest.raises(argparse.ArgumentTypeError, match="expected KEY=VALUE"):
        parse_key_values(["budget"], "--x")


def test_unknown_key_names_the_closest_match():
    with pytest.raises(argparse.ArgumentTypeError, match=r"unknown key 'budgett' \(did you mean 'budget'\?\); accepted: .*alpha"):
        check_keys(["budget", "budgett"], ["alpha", "budget"], "--env-kwargs")


@pytest.mark.parametrize("argv, words", [
    (["--hyperparams", "learning_rte=1e-3"], ["--hyperparams", "'learning_rte'", "did you mean 'learning_rate'"]),
    (["--env-kwargs", "budgett=0.5"], ["--env-kwargs", "'budgett'", "did you mean 'budget'"]),
    (["--preset", "papr"], ["--preset", "'papr'", "did you mean 'paper'"]),
    (["--hyperparams", "policy_kwargs.lstm_hiden_size=8"], ["policy_kwargs", "did you mean 'lstm_hidden_size'"]),
    (["--algo", "ppo", "--env-kwargs", "budget:0.5", "tradeof_rate:0.5"], ["did you mean 'tradeoff_rate'"]),
])
def test_typos_exit_2_before_anything_is_created(tmp_path, capsys, argv, words):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        train_agents.main([*argv, "--out", str(out), "--timesteps", "64"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_device_cuda_without_gpu_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(argparse.ArgumentTypeError, match="not usable on this machine"):
        device("cuda")
    assert device("auto") == "auto" and device("cpu") == "cpu"
    with pytest.raises(SystemExit) as exc:
        train_agents.main(["--device", "cuda", "--out", str(tmp_path / "run")])
    assert exc.value.code == 2 and "--device" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_discrete_levels_from_an_int():
    env = DiscreteKeepRatio(gym.make("RuntimePrune-v0"), 4)
    assert env.action_space.n == 4 and list(env.levels) == [0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError, match="k must be >= 2"):
        DiscreteKeepRatio(gym.make("RuntimePrune-v0"), 1)
    with pytest.raises(ValueError, match="levels must be"):
        DiscreteKeepRatio(gym.make("RuntimePrune-v0"), "ab")


def test_evaluate_run_given_a_file_names_the_directory(tmp_path, capsys):
    (tmp_path / "model.zip").write_bytes(b"")
    with pytest.raises(SystemExit) as exc:
        evaluate_run.main([str(tmp_path / "model.zip")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "is a file, not a run directory" in err and str(tmp_path) in err
