"""Budget modes: per-input Eq. 10 / 15 (exactly today's), the relative overshoot, and the average budget
(a constrained MDP with a dual variable)."""

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

import prune_env  # noqa: F401
from prune_env.envs import BatchedPruneVecEnv, RuntimePruneEnv, StaticPruneEnv
from prune_env.rewards import DualVariable, average_budget_term, budget_penalty, relative_budget_penalty


def run_episode(env, keep, seed=0, index=None):
    env.reset(seed=seed, options=None if index is None else {"index": index})
    for _ in range(env.num_layers):
        _, reward, terminated, _, info = env.step(np.array([keep], dtype=np.float32))
    assert terminated
    return reward, info


def test_per_input_is_eq10_bit_for_bit():
    env = gym.make("RuntimePrune-v0", budget=0.3).unwrapped
    beta = env.normalizer.beta
    reward, info = run_episode(env, 0.8, index=5)
    expected = -info["loss"] / beta - np.expm1(env.task.cfg.alpha_budget * (info["macs_ratio"] - env.task.macs_budget))
    assert info["macs_ratio"] > env.task.macs_budget
    assert reward == pytest.approx(expected, rel=1e-12)
    assert info["lambda"] == 0.0


def test_relative_penalty_is_alike_at_every_budget():
    over = 0.65  # a 65% overshoot
    low, high = relative_budget_penalty(0.1 * (1 + over), 0.1, 2.0), relative_budget_penalty(0.5 * (1 + over), 0.5, 2.0)
    assert low == pytest.approx(high) == pytest.approx(-np.expm1(2.0 * over))
    assert budget_penalty(0.1 * (1 + over), 0.1, 2.0) > budget_penalty(0.5 * (1 + over), 0.5, 2.0)  # absolute: not alike
    assert relative_budget_penalty(0.09, 0.1, 2.0) == 0.0


@pytest.mark.parametrize("mode_kwargs", [{}, {"penalty": "relative"}, {"budget_mode": "average", "dual_init": 1.0}])
def test_signs_in_every_mode(mode_kwargs):
    env = gym.make("RuntimePrune-v0", budget=0.3, loss_scale="fixed", **mode_kwargs).unwrapped
    task = env.task
    # more loss, less reward (same cost)
    assert env.normalizer.reward(np.array([2.0]))[0] < env.normalizer.reward(np.array([1.0]))[0]
    # over budget: less reward than at the budget
    b = task.macs_budget
    assert task.budget_reward(np.array([1.5 * b]), b, env.dual)[0] < task.budget_reward(np.array([b]), b, env.dual)[0]
    if task.cfg.budget_mode == "average":  # lambda > 0: a lower cost earns more, below the budget too
        cheaper, dearer = (task.budget_reward(np.array([f * b]), b, env.dual)[0] for f in (0.5, 0.8))
        assert cheaper > dearer > 0


def test_average_with_zero_lambda_has_no_budget_term():
    dual = DualVariable(0.2, init=0.0)
    assert np.all(dual.reward(np.array([0.0, 0.2, 0.9])) == 0.0)
    assert average_budget_term(np.array([0.3]), 0.2, 2.0)[0] == pytest.approx(-1.0)


def test_dual_step_rule_and_bounds():
    dual = DualVariable(0.2, init=1.0, lr=0.5, kp=2.0, lam_max=3.0, batch_size=2)
    dual.observe([0.3])  # half a batch: no update
    assert dual.lam == 1.0 and dual.updates == 0
    dual.observe([0.3])  # mean 0.3: e = 0.5
    assert dual.integral == pytest.approx(1.25) and dual.lam == pytest.approx(1.25 + 2.0 * 0.5)
    dual.observe([0.0, 0.0])  # e = -1
    assert dual.integral == pytest.approx(0.75) and dual.lam == 0.0  # projected onto lambda >= 0
    for _ in range(20):
        dual.observe([1.0, 1.0])  # e = 4: saturates at lambda_max
    assert dual.lam == dual.integral == 3.0
    for bad in (dict(lr=-1), dict(kp=-1), dict(init=500.0), dict(lam_max=0), dict(batch_size=0)):
        with pytest.raises(ValueError):
            DualVariable(0.2, **bad)
    with pytest.raises(ValueError, match="budget_mode must be one of"):
        RuntimePruneEnv(budget_mode="sometimes")
    with pytest.raises(ValueError, match="dual_lr must be in"):
        RuntimePruneEnv(budget_mode="average", dual_lr=-0.1)


def test_dual_state_round_trips():
    dual = DualVariable(0.2, init=1.0, batch_size=3)
    dual.observe([0.5, 0.1, 0.4, 0.3])
    other = DualVariable(0.2, batch_size=3)  # the same settings; the state is what changes as episodes finish
    other.load_state_dict(dual.state_dict())
    assert other.state_dict() == dual.state_dict()
    dual.observe([0.1, 0.1])
    other.observe([0.1, 0.1])
    assert other.lam == dual.lam


def test_average_mode_calibrates_a_fixed_scale_and_a_positive_lambda():
    env = RuntimePruneEnv(budget=0.3, budget_mode="average")
    assert env.task.loss_scale == "fixed" and env.normalizer.lam == 1.0
    assert 0.0 < env.dual.lam < env.task.cfg.dual_max
    assert RuntimePruneEnv(budget=0.3).dual is None and RuntimePruneEnv(budget=0.3).task.loss_scale == "moving"
    assert RuntimePruneEnv(budget=0.3, budget_mode="average", dual_init=0.5).dual.lam == 0.5


def test_collapse_to_alpha_scores_below_the_budgets_uniform_keep():
    """Under the average budget a constant keep alpha is no free lunch (with a moving beta, every steady
    policy scored about -1)."""
    kwargs = dict(budget=0.3, budget_mode="average", dual_lr=0.0, dual_kp=0.0)
    returns = {}
    for name, keep in (("alpha", 0.1), ("uniform", None)):
        env = RuntimePruneEnv(**kwargs)
        keep = env.budget_keep_ratio if keep is None else keep
        returns[name] = np.mean([run_episode(env, keep, index=i)[0] for i in range(0, 144, 2)])
    assert returns["alpha"] < returns["uniform"] - 1.0


@pytest.mark.parametrize("env_id, kwargs", [("RuntimePrune-v0", {}), ("StaticPrune-v0", {"eval_batch": 8})])
def test_batched_equals_dummy_with_lambda_moving(env_id, kwargs):
    n, seed = 4, 7
    kwargs = dict(kwargs, budget=0.3, budget_mode="average", dual_batch=n, dual_lr=2.0, dual_kp=3.0, loss_batch=n)
    cls = RuntimePruneEnv if env_id == "RuntimePrune-v0" else StaticPruneEnv
    batched = BatchedPruneVecEnv(env_id, n, kwargs)
    first = cls(**kwargs)
    shared_beta, shared_dual = first.normalizer, first.dual
    assert shared_dual.lam == pytest.approx(batched.env.dual.lam)
    dummy = DummyVecEnv([lambda: cls(normalizer=shared_beta, dual=shared_dual, **kwargs) for _ in range(n)])
    batched.seed(seed)
    dummy.seed(seed)
    batched.reset(), dummy.reset()
    rng = np.random.default_rng(0)
    lambdas = []
    for _ in range(4 * first.num_layers):
        actions = rng.uniform(0.1, 1.0, size=(n, 1)).astype(np.float32)
        _, rb, db, ib = batched.step(actions)
        _, rd, dd, idd = dummy.step(actions)
        np.testing.assert_allclose(rb, rd, rtol=1e-5, atol=1e-5)
        if db.all():
            assert [i["lambda"] for i in ib] == pytest.approx([i["lambda"] for i in idd])
            lambdas.append(batched.env.dual.lam)
    assert batched.env.dual.updates == shared_dual.updates == 4
    assert batched.env.dual.lam == pytest.approx(shared_dual.lam)
    assert len(set(np.round(lambdas, 6))) > 1  # lambda moved


def test_average_optimum_beats_uniform_where_per_input_does_not():
    """A generated set of inputs, three easy for one hard: the easy ones are right from the cheapest level
    on, the hard one only at keep 0.75 (losses per level below). Brute force over each input's level."""
    levels = np.array([0.25, 0.5, 0.75, 1.0])
    cost = levels**2  # MACs of a uniform keep ratio d in every layer: about d^2 of dense
    easy = np.array([0.05, 0.04, 0.03, 0.03])
    hard = np.array([2.5, 2.0, 0.1, 0.08])
    losses = np.array([easy, easy, easy, hard])
    correct = losses < 0.69
    budget, beta0 = cost[1], 0.5  # the budget of uniform keep 0.5
    uniform_acc = correct[:, 1].mean()  # 0.75: the hard input is wrong
    # per input (Eq. 10): each input maximises its own reward; no credit under the budget
    per_input = (-losses / beta0 + budget_penalty(cost, budget, 10.0)[None]).argmax(1)
    assert correct[np.arange(4), per_input].mean() <= uniform_acc
    # average budget: for some lambda the per-input maxima meet the mean budget, all right
    best = 0.0
    for lam in np.linspace(0, 20, 201):
        choice = (-losses / beta0 + average_budget_term(cost, budget, lam)[None]).argmax(1)
        if cost[choice].mean() <= budget + 1e-12:
            best = max(best, correct[np.arange(4), choice].mean())
    assert best == 1.0 > uniform_acc


def test_lambda_survives_save_and_resume(tmp_path):
    import json

    import train_agents
    from agents.config import RunConfig
    from agents.training import prepare_agent

    out = tmp_path / "avg"
    argv = ["--env", "RuntimePrune-v0", "--algo", "ppo", "--timesteps", "1024", "--n-envs", "16", "--out", str(out),
            "--no-progress", "--env-kwargs", "budget=0.3", "budget_mode=average", "dual_batch=16",
            "--hyperparams", "n_steps=16", "batch_size=128", "n_epochs=1"]
    train_agents.main(argv)
    saved = json.loads((out / "checkpoint_state.json").read_text())["dual"]
    assert saved["updates"] >= 1024 // 4 // 16 - 1
    cfg = RunConfig(algo="ppo", n_envs=16, resume=True, out=str(out),
                    env_kwargs={"budget": 0.3, "budget_mode": "average", "dual_batch": 16})
    _, venv, fresh = prepare_agent(cfg, "RuntimePrune-v0", out, cfg.env_kwargs)
    assert not fresh
    assert venv.unwrapped.env.dual.state_dict() == saved


def test_reset_seed_and_reward_state_reproduce_rewards():
    """``reset(seed=s)`` alone reproduces observations; with the reward state put back, rewards too."""
    kwargs = dict(budget=0.3, budget_mode="average", loss_scale="moving", loss_batch=2, dual_batch=2, dual_lr=2.0)

    def episodes(env, n, seed):
        out = []
        for k in range(n):
            obs, _ = env.reset(seed=seed + k)
            total = 0.0
            for t in range(env.num_layers):
                obs, reward, *_ = env.step(np.array([0.2 + 0.1 * t], dtype=np.float32))
                total += reward
            out.append(total)
        return out

    env = RuntimePruneEnv(**kwargs)
    episodes(env, 4, seed=100)  # beta and lambda move
    snapshot = env.reward_state()
    first = episodes(env, 4, seed=7)
    again = episodes(env, 4, seed=7)  # same images, moved state: other rewards
    assert again != pytest.approx(first)
    fresh = RuntimePruneEnv(**kwargs)
    fresh.set_reward_state(snapshot)
    assert episodes(fresh, 4, seed=7) == pytest.approx(first, rel=1e-9)
    assert snapshot["dual"]["updates"] == 2 and snapshot["normalizer"]["updates"] == 2


def test_replay_validates_an_episode_under_a_moved_lambda():
    from prune_env.benchmark.replay import RecordEpisode, validate

    kwargs = dict(budget=0.3, budget_mode="average", dual_batch=1, dual_lr=3.0)
    env = RecordEpisode(gym.make("RuntimePrune-v0", **kwargs), "RuntimePrune-v0", kwargs)
    for seed in range(3):
        env.reset(seed=seed)
        for _ in range(4):
            env.step(np.array([0.9], dtype=np.float32))  # over budget: lambda rises
    record = env.last_record
    assert record.reward_state["dual"]["lam"] != env.unwrapped.task.cfg.dual_init
    assert validate(record).ok
    record.reward_state["dual"]["lam"] += 1.0  # a wrong lambda gives another reward
    assert not validate(record).ok


def test_two_runs_of_the_main_job_with_one_seed_write_the_same_metrics(tmp_path):
    import json

    import train_agents

    def run(name):
        out = tmp_path / name
        train_agents.main(["--env", "RuntimePrune-v0", "--timesteps", "512", "--n-envs", "16", "--seed", "3",
                           "--out", str(out), "--no-progress", "--hyperparams", "n_steps=8", "batch_size=128", "n_epochs=1"])
        metrics = json.loads((out / "metrics.json").read_text())
        metrics.pop("train_seconds")  # the one figure that is a clock reading
        return metrics, json.loads((out / "references.json").read_text())

    first, refs_first = run("a")
    second, refs_second = run("b")
    assert first == second and refs_first == refs_second
    assert first["calibration_offset"] is not None and "best_static" in refs_first
