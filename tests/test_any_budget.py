"""One agent for every budget: budget ranges in both environments, beta and lambda per
budget bin, the batched VecEnv with mixed budgets, the budget as a deployment-time argument, and the
sweep an any-budget training run writes."""

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import DummyVecEnv

import prune_env  # noqa: F401
from prune_env.envs import BatchedPruneVecEnv, RuntimePruneEnv, StaticPruneEnv
from prune_env.envs.budgets import BudgetRange
from prune_env.evaluation.at_budget import budgeted_policy
from prune_env.rewards import BinnedDual, BinnedLossNormalizer, LossNormalizer

ROOT = Path(__file__).resolve().parents[1]
RANGE = "0.3:0.7"


def play(env, keep, **reset):
    obs, info = env.reset(**reset)
    first = obs
    for _ in range(env.num_layers):
        obs, reward, terminated, _, end = env.step(np.array([keep], dtype=np.float32))
    assert terminated
    return first, info, reward, end


# --------------------------------------------------------------------------- parsing and validation
@pytest.mark.parametrize("value, expected", [
    ("0.3:0.7", BudgetRange(0.3, 0.7)), ((0.25, 0.7), BudgetRange(0.25, 0.7)),
    ([0.7, 0.3, 0.5], BudgetRange(0.3, 0.7, (0.3, 0.5, 0.7))), ("0.3,0.5", BudgetRange(0.3, 0.5, (0.3, 0.5))),
    ((0.3, 0.5, 0.7), BudgetRange(0.3, 0.7, (0.3, 0.5, 0.7))), (0.5, None), ("0.5", None),
])
def test_budget_forms(value, expected):
    assert BudgetRange.parse(value) == expected
    if expected is not None:  # what run.json / env_spec.json hold reads back as the same range
        assert BudgetRange.parse(json.loads(json.dumps(expected.to_json()))) == expected


@pytest.mark.parametrize("value, words", [
    ("0.7:0.3", "low < high"), ("0.3:1.5", "(0, 1]"), ((0.3,), "two numbers"), ([0.5], "two different"),
    ((0.3, 0.3, 0.3), "two different"),
    ("0.3:x", "numbers"), ("cheap", "a range 'low:high'"),
])
def test_bad_budget_is_a_clear_error(value, words):
    with pytest.raises(ValueError, match="budget") as err:
        RuntimePruneEnv(budget=value)
    assert words in str(err.value)


# --------------------------------------------------------------------------- drawn per episode
def test_budget_drawn_per_episode_reproducible_in_range_and_observed():
    env = RuntimePruneEnv(budget=RANGE)
    task = env.task
    drawn = []
    for seed in range(12):
        obs, info = env.reset(seed=seed)
        value = info["budget_value"]
        assert 0.3 <= value <= 0.7
        assert obs[-1] == pytest.approx(task.costs_of(np.array([value]))[0][0])  # the MAC budget of the drawn sparsity
        assert obs[-1] == pytest.approx(task.costs.macs_budget(value))
        again, info2 = env.reset(seed=seed)
        assert info2 == info and np.array_equal(again, obs)
        drawn.append(value)
    assert len(set(drawn)) == 12 and min(drawn) < 0.4 and max(drawn) > 0.6
    # unseeded resets go on drawing from the stream of the last seed
    values = [env.reset()[1]["budget_value"] for _ in range(5)]
    assert len(set(values)) == 5
    # the images are those a one-budget environment draws with the same seed
    single = RuntimePruneEnv(budget=0.5)
    assert [single.reset(seed=s)[1]["index"] for s in range(5)] == [env.reset(seed=s)[1]["index"] for s in range(5)]


def test_set_of_budgets_and_static_env():
    env = StaticPruneEnv(budget=[0.3, 0.5, 0.7], eval_batch=8)
    task = env.task
    seen = set()
    for seed in range(20):
        obs, info = env.reset(seed=seed)
        assert info["budget_value"] in (0.3, 0.5, 0.7)
        stored = task.stored_counts(np.full((1, task.num_layers), info["budget_value"]))
        assert obs[-1] == pytest.approx(float(task.costs.params_ratio(stored[0])))  # the parameter budget
        seen.add(info["budget_value"])
    assert seen == {0.3, 0.5, 0.7}
    assert env.task.num_budget_bins == 3 and env.normalizer.centers == [0.3, 0.5, 0.7]


def test_options_choose_the_budget_inside_the_range_only():
    env = RuntimePruneEnv(budget=RANGE)
    obs, info = env.reset(options={"budget": 0.4})
    assert info["budget_value"] == 0.4 and obs[-1] == pytest.approx(env.task.costs.macs_budget(0.4))
    with pytest.raises(ValueError, match=r"options\['budget'\]=0.8 is outside .*\[0.3, 0.7\]"):
        env.reset(options={"budget": 0.8})
    with pytest.raises(ValueError, match="one budget"):
        RuntimePruneEnv(budget=0.5).reset(options={"budget": 0.4})


# --------------------------------------------------------------------------- rewards of the episode's budget
def test_per_input_reward_uses_the_episode_budget():
    env = RuntimePruneEnv(budget=RANGE, dual_bins=2, budget_action="absolute")
    task = env.task
    _, info, reward, end = play(env, 0.6, seed=0, options={"budget": 0.35, "index": 3})
    b_bar = task.costs.macs_budget(0.35)  # 0.35 is in bin 0 of [0.3, 0.5), [0.5, 0.7]
    assert end["budget"] == pytest.approx(b_bar) and end["budget_value"] == 0.35
    beta = env.normalizer.betas[0]
    assert end["beta"] == beta != env.normalizer.betas[1]
    expected = -end["loss"] / beta - np.expm1(task.cfg.alpha_budget * (end["macs_ratio"] - b_bar))  # Eq. 7-10
    assert end["macs_ratio"] > b_bar and not end["within_budget"]
    assert reward == pytest.approx(expected, rel=1e-12)
    # the same keep ratios under a budget that covers them: no penalty, within budget
    _, _, reward_hi, end_hi = play(env, 0.6, seed=0, options={"budget": 0.69, "index": 3})
    assert end_hi["within_budget"] and end_hi["reward_budget"] == 0.0
    assert reward_hi == pytest.approx(-end_hi["loss"] / env.normalizer.betas[1], rel=1e-12)


def test_average_reward_uses_the_episode_budget_and_its_bins_lambda():
    env = RuntimePruneEnv(budget=RANGE, budget_mode="average", dual_bins=4)
    lams, betas = env.dual.lams, env.normalizer.betas
    for value, k in ((0.31, 0), (0.52, 2), (0.7, 3)):
        _, _, reward, end = play(env, 0.45, seed=1, options={"budget": value, "index": 7})
        b_bar = env.task.costs.macs_budget(value)
        expected = -end["loss"] / betas[k] - lams[k] * (end["macs_ratio"] - b_bar) / b_bar  # the bin's beta and lambda
        assert (end["lambda"], end["beta"]) == (lams[k], betas[k])
        assert reward == pytest.approx(expected, rel=1e-12)
    assert env.dual.updates == 0  # three episodes: no dual step yet (dual_batch = 64)


@pytest.mark.parametrize("env_id, extra", [("RuntimePrune-v0", {}), ("StaticPrune-v0", {"eval_batch": 8})])
def test_relative_actions_start_every_budget_at_its_uniform_keep_ratio(env_id, extra):
    relative = gym.make(env_id, budget=RANGE, **extra).unwrapped
    absolute = gym.make(env_id, budget=RANGE, budget_action="absolute", **extra).unwrapped
    assert relative.task.budget_action == "relative" and gym.make(env_id, **extra).unwrapped.task.action_shift([0.4]) is None
    for value in (0.3, 0.42, 0.7):
        # the range's reference keep ratio (0.5, what an untrained agent starts at) is the budget's own keep ratio
        *_, end = play(relative, 0.5, seed=0, options={"budget": value})
        kept = end["actions"] if env_id == "RuntimePrune-v0" else end["keep_ratios"]
        assert kept == pytest.approx([value] * relative.num_layers)
        *_, end = play(relative, 0.55, seed=0, options={"budget": value})  # an offset of +0.05
        kept = end["actions"] if env_id == "RuntimePrune-v0" else end["keep_ratios"]
        assert kept == pytest.approx([value + 0.05] * relative.num_layers)
        *_, end = play(absolute, 0.5, seed=0, options={"budget": value})
        kept = end["actions"] if env_id == "RuntimePrune-v0" else end["keep_ratios"]
        assert kept == pytest.approx([0.5] * absolute.num_layers)


@pytest.mark.parametrize("env_id, extra", [("RuntimePrune-v0", {}), ("StaticPrune-v0", {"eval_batch": 8})])
def test_scaled_actions_multiply_by_the_budgets_keep_ratio(env_id, extra):
    """``budget_action="scaled"``: the keep ratio applied is the action times kappa(b) / kappa(0.5)."""
    env = gym.make(env_id, budget=RANGE, budget_action="scaled", **extra).unwrapped
    for value in (0.3, 0.42, 0.7):
        *_, end = play(env, 0.5, seed=0, options={"budget": value})  # the reference keep ratio: the budget's own
        kept = end["actions"] if env_id == "RuntimePrune-v0" else end["keep_ratios"]
        assert kept == pytest.approx([value] * env.num_layers)
        *_, end = play(env, 0.6, seed=0, options={"budget": value})  # 20% above the reference: 20% above each budget's
        kept = end["actions"] if env_id == "RuntimePrune-v0" else end["keep_ratios"]
        assert kept == pytest.approx([min(1.0, 1.2 * value)] * env.num_layers)
    held = budgeted_policy(env.task, 0.6, 0.3, "macs" if env_id == "RuntimePrune-v0" else "params")
    assert (held.scale, held.shift) == (pytest.approx(0.6), 0.0)
    held.reset(2)
    assert held(np.zeros((2, env.observation_space.shape[0]), np.float32)) == pytest.approx([0.36, 0.36])
    with pytest.raises(ValueError, match="budget_action must be one of"):
        gym.make(env_id, budget=RANGE, budget_action="multiplied", **extra)


# --------------------------------------------------------------------------- lambda and beta per bin
def test_binned_dual_steps_each_bin_from_its_own_episodes():
    dual = BinnedDual([1.0, 2.0, 0.5], [0.35, 0.5, 0.65], lr=0.5, kp=2.0, batch_size=4)
    budgets = np.array([0.1, 0.2, 0.3, 0.3])
    dual.observe(np.array([0.12, 0.2, 0.24]), budgets[:3], np.array([0, 0, 1]))
    assert dual.lams == [1.0, 2.0, 0.5] and dual.updates == 0  # 3 of 4 episodes: no tick yet
    dual.observe(np.array([0.27]), budgets[3:], np.array([1]))
    # bin 0: B / B_bar = 1.2, 1.0 -> e = 0.1: integral 1 + 0.5 * 0.1 = 1.05, lambda = 1.05 + 2 * 0.1 = 1.25
    # bin 1: 0.8, 0.9 -> e = -0.15: integral 2 - 0.075 = 1.925, lambda = 1.925 - 0.3 = 1.625
    # bin 2: no episodes, unchanged
    assert dual.lams == pytest.approx([1.25, 1.625, 0.5])
    assert [d.integral for d in dual.duals] == pytest.approx([1.05, 1.925, 0.5])
    assert dual.updates == 2
    # an episode's reward: its own budget, its bin's lambda
    assert dual.reward(np.array([0.15]), np.array([0.1]), np.array([1]))[0] == pytest.approx(-1.625 * 0.5)


def test_binned_state_survives_a_json_round_trip():
    dual = BinnedDual([0.3, 0.6], [0.4, 0.6], batch_size=3)
    norm = BinnedLossNormalizer([LossNormalizer(0.5, batch_size=3), LossNormalizer(0.2, batch_size=3)], [0.4, 0.6])
    rng = np.random.default_rng(0)
    for _ in range(4):  # ticks and pending episodes
        bins = rng.integers(2, size=2)
        dual.observe(rng.uniform(0.05, 0.5, 2), np.array([0.2, 0.3]), bins)
        norm.observe(rng.uniform(0.0, 2.0, 2), bins)
    state = json.loads(json.dumps({"dual": dual.state_dict(), "beta": norm.state_dict()}))
    dual2 = BinnedDual([0.0, 0.0], [0.4, 0.6], batch_size=3)
    norm2 = BinnedLossNormalizer([LossNormalizer(1.0, batch_size=3), LossNormalizer(1.0, batch_size=3)], [0.4, 0.6])
    dual2.load_state_dict(state["dual"])
    norm2.load_state_dict(state["beta"])
    assert dual2.state_dict() == dual.state_dict() and norm2.state_dict() == norm.state_dict()
    for d, n in ((dual, norm), (dual2, norm2)):  # and they go on alike (the pending episodes too)
        d.observe(np.array([0.4]), np.array([0.2]), np.array([1]))
        n.observe(np.array([1.5]), np.array([0]))
    assert dual2.lams == dual.lams and norm2.betas == norm.betas
    with pytest.raises(ValueError, match="2 budget bins"):
        BinnedDual([0.0, 0.0], [0.4, 0.6]).load_state_dict({"lam": 1.0})


def test_env_reward_state_with_a_range_restores_lambda_per_bin():
    kwargs = dict(budget=RANGE, budget_mode="average", dual_bins=3, dual_batch=2, loss_batch=2)
    env = RuntimePruneEnv(**kwargs)
    for seed in range(6):
        play(env, 0.3 + 0.1 * (seed % 4), seed=seed)
    state = json.loads(json.dumps(env.reward_state()))
    assert len(state["dual"]["bins"]) == 3 and env.dual.updates > 0
    fresh = RuntimePruneEnv(**kwargs)
    assert fresh.dual.lams != env.dual.lams
    fresh.set_reward_state(state)
    assert fresh.dual.lams == env.dual.lams and fresh.normalizer.betas == env.normalizer.betas
    with pytest.raises(TypeError, match="BinnedDual"):
        RuntimePruneEnv(dual=RuntimePruneEnv(budget=0.5, budget_mode="average").dual, **kwargs)


# --------------------------------------------------------------------------- batched VecEnv
@pytest.mark.parametrize("env_id, cls, extra", [("RuntimePrune-v0", RuntimePruneEnv, {}),
                                                 ("StaticPrune-v0", StaticPruneEnv, {"eval_batch": 8})])
def test_vec_env_equals_dummy_vec_env_with_mixed_budgets(env_id, cls, extra):
    n = 4
    kwargs = dict(extra, budget=RANGE, budget_mode="average", dual_batch=n, loss_batch=n, dual_bins=3,
                  dual_lr=2.0, dual_kp=3.0)
    batched = BatchedPruneVecEnv(env_id, n, kwargs)
    first = cls(**kwargs)
    assert batched.env.dual.lams == first.dual.lams
    dummy = DummyVecEnv([lambda: cls(normalizer=first.normalizer, dual=first.dual, **kwargs) for _ in range(n)])
    batched.seed(5)
    dummy.seed(5)
    np.testing.assert_allclose(batched.reset(), dummy.reset(), rtol=1e-5, atol=1e-5)
    rng = np.random.default_rng(0)
    budgets, lambdas = [], []
    for _ in range(5 * first.num_layers):
        actions = rng.uniform(0.1, 1.0, size=(n, 1)).astype(np.float32)
        ob, rb, db, ib = batched.step(actions)
        od, rd, dd, idd = dummy.step(actions)
        np.testing.assert_allclose(ob, od, rtol=1e-5, atol=1e-5)  # the next episodes' budgets included
        np.testing.assert_allclose(rb, rd, rtol=1e-5, atol=1e-5)
        if db.all():
            assert [i["budget_value"] for i in ib] == [i["budget_value"] for i in idd]
            assert [i["lambda"] for i in ib] == pytest.approx([i["lambda"] for i in idd])
            budgets += [i["budget_value"] for i in ib]
            lambdas.append(tuple(batched.env.dual.lams))
    assert len(set(batched.env.task.budget_bins(np.array(budgets)).tolist())) == 3  # mixed budgets, every bin
    assert batched.env.dual.lams == pytest.approx(first.dual.lams) and len(set(lambdas)) > 1


def test_gym_vector_env_draws_what_single_environments_draw():
    envs = gym.make_vec("RuntimePrune-v0", num_envs=3, vectorization_mode="vector_entry_point", budget=RANGE)
    obs, info = envs.reset(seed=10)
    for i in range(3):
        single_obs, single_info = RuntimePruneEnv(budget=RANGE).reset(seed=10 + i)
        assert info["budget_value"][i] == single_info["budget_value"]
        assert obs[i, -1] == pytest.approx(single_obs[-1])


@pytest.mark.parametrize("env_id, kwargs", [("RuntimePrune-v0", {"budget_mode": "average"}),
                                            ("StaticPrune-v0", {"eval_batch": 8})])
def test_check_env_with_a_range(env_id, kwargs):
    env = gym.make(env_id, budget=RANGE, **kwargs).unwrapped
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(env)


# --------------------------------------------------------------------------- deployment and evaluation
def test_budget_at_deployment_and_out_of_range():
    from prune_env.deploy import RuntimeExecutor, export_static
    from prune_env.envs.task import PruningTask, TaskConfig
    from prune_env.evaluation.at_budget import budgeted_policy, keep_ratios_at_budget, run_at_budget

    task = PruningTask(TaskConfig(budget=RANGE, split="test"))
    images, labels = task.source.get(np.arange(16))
    follows_budget = lambda obs: 0.2 + obs[:, -1]  # noqa: E731  (an "agent" reading the budget entry)
    low, high = (keep_ratios_at_budget(task, follows_budget, images, b) for b in (0.3, 0.7))
    # its action, plus the relative actions' shift from the range's reference 0.5 to the budget
    assert np.allclose(low, 0.2 + task.costs.macs_budget(0.3) - 0.2)
    assert np.allclose(high, 0.2 + task.costs.macs_budget(0.7) + 0.2)
    logits = run_at_budget(RuntimeExecutor(export_static(task.net, 1.0)), task, follows_budget, images, 0.7)
    assert (logits.argmax(1) == labels).float().mean() > 0.8
    for call in (lambda: budgeted_policy(task, follows_budget, 0.25), lambda: task.at_budget(0.75).__enter__()):
        with pytest.raises(ValueError, match=r"outside the range this agent was trained over, \[0.3, 0.7\]"):
            call()
    with task.at_budget(0.4):
        assert task.macs_budget == pytest.approx(task.costs.macs_budget(0.4)) and task.budget_range is None
    assert task.budget_range == BudgetRange(0.3, 0.7)


@pytest.fixture(scope="module")
def any_budget_run(tmp_path_factory):
    """A tiny any-budget training run (the sweep without the offset calibration, to stay fast)."""
    from agents.config import RunConfig
    from agents.training import run

    out = tmp_path_factory.mktemp("any") / "run"
    metrics = run(RunConfig(env_id="RuntimePrune-v0", algo="ppo", timesteps=256, n_envs=8, out=str(out), progress=False,
                            env_kwargs={"budget": (0.3, 0.7), "budget_mode": "average", "dual_bins": 2},
                            sweep_budgets=[0.3, 0.7], search_rounds=1, sweep_calibrate=False, device="cpu"))
    return out, metrics


def test_tiny_any_budget_run_writes_the_sweep(any_budget_run):
    out, metrics = any_budget_run
    for name in ("any_budget.json", "any_budget.csv", "any_budget.png", "model.zip", "metrics.json"):
        assert (out / name).is_file(), name
    sweep = json.loads((out / "any_budget.json").read_text())
    assert [p["budget"] for p in sweep["points"]] == [0.3, 0.7]
    for p in sweep["points"]:
        assert {"agent", "uniform", "best_static", "dense"} <= set(p["rows"])
        assert p["rows"]["best_static"]["macs_ratio"] <= p["macs_budget"] + 1e-9
        assert p["rows"]["uniform"]["macs_ratio"] <= p["macs_budget"] + 1e-9
    assert sweep["points"][0]["macs_budget"] < sweep["points"][1]["macs_budget"]
    rows = (out / "any_budget.csv").read_text().splitlines()
    assert rows[0].startswith("budget,cost_budget,method,accuracy") and len(rows) == 1 + 2 * 4
    assert metrics["any_budget"] and [p["budget"] for p in metrics["sweep"]] == [0.3, 0.7]
    # the tuple range is recorded in the form JSON reads back as the same range
    assert json.loads((out / "run.json").read_text())["env_kwargs"]["budget"] == "0.3:0.7"


def test_saved_any_budget_agent_takes_the_budget_as_an_argument(any_budget_run):
    from agents import load_agent_and_env

    out, _ = any_budget_run
    model, env = load_agent_and_env(out, budget=0.45)
    for seed in range(3):  # every episode at 0.45
        obs, info = env.reset(seed=seed)
        assert info["budget_value"] == 0.45 and obs[-1] == pytest.approx(env.unwrapped.task.costs.macs_budget(0.45))
    action, _ = model.predict(obs, deterministic=True)
    *_, end = env.step(action)
    assert end == {} or end["budget_value"] == 0.45
    with pytest.raises(ValueError, match=r"budget=0.9 is outside .*\[0.3, 0.7\]"):
        load_agent_and_env(out, budget=0.9)


def test_evaluate_run_budget_argument(any_budget_run):
    out, _ = any_budget_run

    def cli(*args):
        return subprocess.run([sys.executable, "evaluate_run.py", str(out), *args], cwd=ROOT, capture_output=True,
                              text=True)

    outside = cli("--budget", "0.8")
    assert outside.returncode == 2 and "outside the range this agent was trained over, [0.3, 0.7]" in outside.stderr
    missing = cli()
    assert missing.returncode == 2 and "pass --budget" in missing.stderr


def test_sweep_of_a_saved_run_with_per_budget_runs(any_budget_run, tmp_path):
    from agents.evaluate import evaluate_any_budget_run

    out, _ = any_budget_run
    per = tmp_path / "per-0.5"  # a finished one-budget run, as train_agents.py leaves it
    per.mkdir()
    (per / "run.json").write_text(json.dumps({"env_kwargs": {"budget": 0.5}, "seed": 0}))
    (per / "metrics.json").write_text(json.dumps({"accuracy": 0.9, "macs_ratio": 0.25, "within_budget": 0.6,
                                                  "train_seconds": 10.0, "timesteps": 300}))
    metrics = evaluate_any_budget_run(out, budgets=[0.5], per_budget_runs=[str(per)], out=tmp_path / "sweep",
                                      calibrate=False)
    point = json.loads((tmp_path / "sweep" / "any_budget.json").read_text())["points"][0]
    assert point["rows"]["per_budget"]["accuracy"] == 0.9 and point["rows"]["per_budget"]["seeds"] == 1
    assert "agent_minus_per_budget_points" in metrics["summary"]
    with pytest.raises(ValueError, match="outside"):
        evaluate_any_budget_run(out, budgets=[0.2], out=tmp_path / "x")


def test_tiny_static_any_budget_run_sweeps_parameter_budgets(tmp_path):
    from agents.config import RunConfig
    from agents.training import run

    metrics = run(RunConfig(env_id="StaticPrune-v0", algo="ppo", timesteps=64, n_envs=4, out=str(tmp_path), progress=False,
                            env_kwargs={"budget": "0.3:0.7", "eval_batch": 8}, sweep_budgets=[0.3, 0.7], device="cpu"))
    sweep = json.loads((tmp_path / "any_budget.json").read_text())
    low, high = sweep["points"]
    assert low["params_budget"] < high["params_budget"]
    for p in (low, high):  # the uniform static keep ratio meets each parameter budget; rows judged on parameters
        assert p["rows"]["uniform"]["params_ratio"] <= p["params_budget"] + 1e-9
        assert p["rows"]["uniform"]["within_budget"] == 1.0
    assert metrics["any_budget"] and (tmp_path / "any_budget.png").is_file()


# --------------------------------------------------------------------------- what does not take a range
def test_replay_validates_an_any_budget_episode_at_its_drawn_budget():
    from prune_env.benchmark.replay import RecordEpisode, validate

    kwargs = dict(budget=RANGE, budget_mode="average", dual_batch=1)
    env = RecordEpisode(gym.make("RuntimePrune-v0", **kwargs), "RuntimePrune-v0", kwargs)
    budgets = []
    for seed in range(3):
        _, info = env.reset(seed=seed)
        budgets.append(info["budget_value"])
        for _ in range(env.unwrapped.task.num_layers):
            env.step(np.array([0.6], dtype=np.float32))
    record = env.last_record
    assert record.reset_options["budget"] == budgets[-1] and len(set(budgets)) == 3
    assert validate(record).ok
    record.reset_options["budget"] = 0.3 if budgets[-1] > 0.5 else 0.7  # another budget gives another reward
    assert not validate(record).ok


def test_joint_environment_and_report_refuse_a_range():
    from prune_env.envs.task import PruningTask, TaskConfig
    from prune_env.evaluation.report import build_report

    pytest.importorskip("pettingzoo")
    from prune_env.envs.multiagent import parallel_env

    with pytest.raises(ValueError, match="budget='0.3:0.7': the joint environment takes one budget"):
        parallel_env(inputs=2, budget=RANGE)
    with pytest.raises(ValueError, match="budget='0.3:0.7': the report evaluates one budget"):
        build_report(PruningTask(TaskConfig(budget=RANGE, split="test")), {})
