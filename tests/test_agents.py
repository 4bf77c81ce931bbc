"""Agents: the registry, the paper's policy pieces (Sec. 3.3, Eq. 13) and train_agents.py."""

import json

import gymnasium as gym
import numpy as np
import pytest
import sb3_contrib
import torch

import train_agents
from agents.config import RunConfig
from agents.policies import LayerEncoderExtractor, action_regularizer
from agents.registry import ALGORITHMS, get_spec, hyperparameters
from agents.saved import agent_policy, load_agent
from agents.training import build_model, make_env

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

RUNTIME, STATIC = "RuntimePrune-v0", "StaticPrune-v0"

# tiny budgets so that every algorithm runs a few updates in seconds
TINY = {
    "on": dict(n_steps=8, batch_size=32),
    "a2c": dict(n_steps=4),
    "off": dict(learning_starts=16, batch_size=16, buffer_size=2_000, gradient_steps=1),
    "ars": dict(n_delta=2, n_top=1),
}


def tiny_overrides(algo):
    spec = get_spec(algo)
    name = spec.cls.__name__
    if name in ("PPO", "RecurrentPPO", "TRPO"):
        return dict(TINY["on"])
    if name == "A2C":
        return dict(TINY["a2c"])
    if issubclass(spec.cls, sb3_contrib.ARS):
        return dict(TINY["ars"])
    return dict(TINY["off"])


def test_action_regularizer_is_eq13():
    a = torch.tensor([[-0.5], [0.05], [0.3], [1.0], [2.0]])
    # outside [0.1, 1]: -0.5 -> 0.6, 0.05 -> 0.05, 2.0 -> 1.0; inside -> 0
    expected = 0.5 * (0.6**2 + 0.05**2 + 1.0**2) / 5
    assert action_regularizer(a, 0.1, 1.0).item() == pytest.approx(expected)


def test_layer_encoder_reads_only_the_current_layers_channels():
    space = gym.spaces.Box(-np.inf, np.inf, (5 + 2 + 2,), np.float32)
    ext = LayerEncoderExtractor(space, layer_in_channels=[3, 5], features_dim=4)
    obs = torch.zeros(2, 9)
    obs[:, :5] = torch.arange(1.0, 6.0)
    obs[0, 5] = 1.0  # layer 0: only the first 3 channels
    obs[1, 6] = 1.0  # layer 1: all 5
    obs[:, 7:] = torch.tensor([0.7, 0.25])
    out = ext(obs)
    enc0, enc1 = ext.encoders
    assert torch.allclose(out[0, :4], enc0(obs[0, :3]))
    assert torch.allclose(out[1, :4], enc1(obs[1, :5]))
    assert torch.equal(out[:, 4:], obs[:, 7:])
    with pytest.raises(ValueError, match="raw"):
        LayerEncoderExtractor(gym.spaces.Box(-1, 1, (70,), np.float32), layer_in_channels=[1, 16, 32, 32])


def test_hyperparameters_presets_and_overrides():
    fast = hyperparameters("recurrent_ppo", RUNTIME)
    paper = hyperparameters("recurrent_ppo", RUNTIME, "paper")
    assert paper["learning_rate"] == 1e-6 and paper["batch_size"] == 128
    assert fast["policy_kwargs"]["lstm_hidden_size"] == 128 and fast["policy_kwargs"]["shared_lstm"]
    over = hyperparameters("recurrent_ppo", RUNTIME, overrides={"learning_rate": 5e-4, "policy_kwargs.lstm_hidden_size": 32})
    assert over["learning_rate"] == 5e-4 and over["policy_kwargs"]["lstm_hidden_size"] == 32
    assert hyperparameters("recurrent_ppo", RUNTIME)["policy_kwargs"]["lstm_hidden_size"] == 128  # defaults untouched
    with pytest.raises(ValueError, match="preset"):
        hyperparameters("ppo", RUNTIME, "paper")
    with pytest.raises(ValueError, match="algo must be one of"):
        get_spec("alphazero")
    assert get_spec("stable_baselines3:PPO").cls.__name__ == "PPO"


def test_schedule_strings():
    from agents.registry import resolve_schedules

    params = resolve_schedules({"learning_rate": "lin_3e-4", "clip_range": "lin_0.2_0.1", "n_steps": 32})
    assert params["learning_rate"](1.0) == pytest.approx(3e-4) and params["learning_rate"](0.0) == 0.0
    assert params["clip_range"](0.5) == pytest.approx(0.15) and params["n_steps"] == 32
    with pytest.raises(ValueError, match="learning_rate"):
        resolve_schedules({"learning_rate": "cosine_1e-3"})


def mean_actions(model, venv, episodes=3):
    """The policy's raw Gaussian mean (before any clipping) on the states it visits."""
    policy, n = model.policy, venv.num_envs
    recurrent = hasattr(policy, "lstm_actor")
    means = []
    obs = venv.reset()
    for _ in range(episodes):
        starts = np.ones(n, dtype=bool)
        states = None
        if recurrent:
            shape = (policy.lstm_actor.num_layers, n, policy.lstm_actor.hidden_size)
            states = (torch.zeros(shape), torch.zeros(shape))
        for _ in range(venv.unwrapped.env.num_layers):
            obs_t = torch.as_tensor(obs)
            with torch.no_grad():
                if recurrent:
                    dist, states = policy.get_distribution(obs_t, states, torch.as_tensor(starts, dtype=torch.float32))
                else:
                    dist = policy.get_distribution(obs_t)
            mean = dist.distribution.mean
            means.append(mean.numpy().ravel())
            obs, _, dones, _ = venv.step(np.clip(mean.numpy(), 0.1, 1.0))
            starts = dones
    return np.concatenate(means)


def eq13_model(policy_algo, coef, **hyperparams):
    """A policy whose mean starts at 3, far above the action range [alpha, 1]: the env clips every action to 1."""
    venv = make_env(RUNTIME, policy_algo, 8, 0, {})
    cfg = RunConfig(algo=policy_algo, seed=0, device="cpu")
    cfg.hyperparams = dict(tiny_overrides(policy_algo), **hyperparams,
                           **{"policy_kwargs.action_reg_coef": coef, "policy_kwargs.initial_action": 3.0})
    return build_model(cfg, RUNTIME, venv, None), venv


@pytest.mark.parametrize("policy_algo", ["ppo", "recurrent_ppo"])
def test_eq13_is_in_the_gradient_of_the_algorithms_own_update(policy_algo):
    """The mechanism, inside SB3's real train(): one rollout and one gradient step, with coef 1 and 0 from
    the same seed (same rollout, same minibatch, same policy before the step). The two gradients differ by
    exactly coef * dL_a/dtheta: on the action head's bias mean(mean - clip(mean, alpha, 1)), nothing on the
    critic's head. Float-exact on any CPU: no assertion on where training ends up."""

    def one_update(coef):
        # n_steps * n_envs = batch_size: one minibatch, one epoch, one optimiser step; no gradient clipping
        model, _ = eq13_model(policy_algo, coef, n_steps=8, batch_size=64, n_epochs=1, max_grad_norm=1e9)
        policy = model.policy
        means, grads = [], []
        record = policy._record_penalty

        def record_and_keep_the_mean():
            record()
            means.append(policy.action_dist.distribution.mean.detach().clone())

        policy._record_penalty = record_and_keep_the_mean
        step = policy.optimizer.step

        def step_and_keep_the_gradient(*args, **kwargs):
            grads.append({name: p.grad.detach().clone() for name, p in policy.named_parameters() if p.grad is not None})
            return step(*args, **kwargs)

        policy.optimizer.step = step_and_keep_the_gradient
        model.learn(64)
        assert len(grads) == len(means) == 1
        return means[0], grads[0], policy

    mean, with_eq13, policy = one_update(1.0)
    mean0, without, _ = one_update(0.0)
    torch.testing.assert_close(mean, mean0, rtol=0, atol=0)  # the same minibatch through the same policy
    assert mean.shape == (64, 1) and bool((mean > 2.5).all())  # every mean far above the range
    overshoot = (mean - mean.clamp(policy.action_low, policy.action_high)).sum(-1).mean()
    torch.testing.assert_close(with_eq13["action_net.bias"] - without["action_net.bias"], overshoot.reshape(1),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(with_eq13["value_net.weight"], without["value_net.weight"], rtol=0, atol=0)
    torch.testing.assert_close(with_eq13["value_net.bias"], without["value_net.bias"], rtol=0, atol=0)
    assert policy.last_action_penalty == pytest.approx(0.5 * float((mean - 1.0).pow(2).mean()), rel=1e-5)


def test_training_pulls_a_mean_outside_the_range_back_inside():
    """The one "it learns" test of Eq. 13, with a wide margin: from a mean of 3, where the env clips every
    action to 1 (so the reward cannot tell the actions apart), 240 Adam steps at lr 1e-2 bring the mean
    down to about 1 (Eq. 13's gradient dominates the bias's; each step moves it ~lr). Asserted: below 2."""
    model, venv = eq13_model("ppo", 1.0, learning_rate=1e-2, n_epochs=10)
    model.learn(8 * 8 * 12)
    assert np.median(mean_actions(model, venv)) < 2.0


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_every_algorithm_trains_saves_and_loads(algo, tmp_path):
    env_id = STATIC if algo == "ars" else RUNTIME
    env_kwargs = {"eval_batch": 8} if env_id == STATIC else {}
    venv = make_env(env_id, algo, 4, 0, env_kwargs)
    cfg = RunConfig(algo=algo, seed=0, device="cpu", hyperparams=tiny_overrides(algo))
    model = build_model(cfg, env_id, venv, None)
    model.learn(64)
    path = tmp_path / "model.zip"
    model.save(path)
    levels = [0.25, 0.5, 0.75, 1.0] if get_spec(algo).discrete else None
    (tmp_path / "run.json").write_text(json.dumps({"algo": algo, "levels": levels}))
    loaded, meta = load_agent(tmp_path)
    policy = agent_policy(loaded, meta)
    original = agent_policy(model, meta)
    obs = venv.reset()
    policy.reset(4)
    original.reset(4)
    ratios = policy(obs)
    assert ratios.shape == (4,) and np.all(np.isfinite(ratios))
    np.testing.assert_allclose(ratios, original(obs), atol=1e-6)  # the reloaded agent acts as the trained one


def test_train_agents_cli_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--env", RUNTIME, "--timesteps", "1024", "--n-envs", "16", "--out", str(out), "--no-progress",
            "--hyperparams", "n_steps=16", "batch_size=128", "n_epochs=2", "--checkpoint-every", "256"]
    metrics = train_agents.main(argv)
    for key in ("accuracy", "dense_accuracy", "macs_ratio", "params_ratio", "budget", "within_budget"):
        assert key in metrics
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["accuracy"] == metrics["accuracy"] and saved["num_images"] == 360
    assert (out / "keep_ratios.png").stat().st_size > 1000
    refs = json.loads((out / "references.json").read_text())
    assert refs["dense"]["macs_ratio"] == 1.0 and refs["uniform"]["macs_ratio"] <= metrics["budget"] + 1e-9
    assert (out / "model.zip").is_file() and (out / "checkpoint.zip").is_file()
    printed = capsys.readouterr().out
    assert "uniform @ budget" in printed and "best static" in printed and "dense" in printed
    assert (out / "adaptation.png").stat().st_size > 1000
    assert {"oracle_accuracy", "best_static", "shuffled", "uniform_iso_mac", "summary"} <= set(refs)
    first = json.loads((out / "checkpoint_state.json").read_text())["num_timesteps"]
    resumed = train_agents.main([*argv[:3], "2048", *argv[4:], "--resume"])
    assert json.loads((out / "checkpoint_state.json").read_text())["num_timesteps"] > first
    assert resumed["timesteps"] >= 2048


def test_static_agent_then_fixed_in_runtime_training(tmp_path):
    static_out = tmp_path / "static"
    train_agents.main(["--env", STATIC, "--algo", "ppo", "--timesteps", "256", "--n-envs", "8", "--out", str(static_out),
                       "--no-progress", "--env-kwargs", "eval_batch=16", "tradeoff_rate=0.5",
                       "--hyperparams", "n_steps=8", "batch_size=64"])
    model, meta = load_agent(static_out)
    metrics = train_agents.main(["--env", RUNTIME, "--algo", "ppo", "--timesteps", "256", "--n-envs", "8",
                                 "--out", str(tmp_path / "rt"), "--no-progress", "--static-agent", str(static_out),
                                 # the static agent's budget (the main job's own default is 0.3)
                                 "--env-kwargs", "tradeoff_rate=0.5", "budget=0.5",
                                 "--hyperparams", "n_steps=8", "batch_size=64"])
    from prune_env.envs import StaticPruneEnv

    expected = StaticPruneEnv(tradeoff_rate=0.5).task.static_ratios_of(agent_policy(model, meta))
    np.testing.assert_allclose(metrics["static_keep_ratios"], expected)


def test_joint_training_alternates_both_agents(tmp_path):
    out = tmp_path / "joint"
    metrics = train_agents.main(["--joint", "--algo", "ppo", "--timesteps", "256", "--n-envs", "8", "--out", str(out),
                                 "--no-progress", "--env-kwargs", "eval_batch=16", "--hyperparams", "n_steps=8", "batch_size=64"])
    assert (out / "runtime" / "model.zip").is_file() and (out / "static" / "model.zip").is_file()
    assert metrics["params_ratio"] <= 1.0 and "accuracy" in metrics


def test_cli_rejects_bad_options(capsys):
    with pytest.raises(SystemExit):
        train_agents.main(["--env", "CartPole-v1"])
    with pytest.raises(SystemExit):
        train_agents.main(["--algo", "nope"])
    assert "--algo" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_agents.main(["--env-kwargs", "budget"])
