"""RuntimePrune-v0 and StaticPrune-v0: API conformance, rewards, seeding, batching, replay."""

import copy

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import DummyVecEnv

import prune_env
from prune_env.benchmark.replay import RecordEpisode, validate
from prune_env.envs import DiscreteKeepRatio, RuntimePruneEnv, StaticPruneEnv, VecDiscreteKeepRatio
from prune_env.envs.vec_env import BatchedPruneVecEnv, EpisodeMonitor, IndexStreams
from prune_env.rewards import LossNormalizer, budget_penalty

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def run_episode(env, action, options=None, seed=None):
    obs, info = env.reset(seed=seed, options=options)
    rewards, done = [], False
    while not done:
        obs, reward, terminated, truncated, info = env.step(np.array([action], dtype=np.float32))
        rewards.append(reward)
        done = terminated or truncated
    return rewards, info


def test_ids_are_registered_and_make_works_without_arguments():
    env = gym.make("RuntimePrune-v0")
    assert env.unwrapped.num_layers == 4
    assert env.observation_space.shape == (64 + 4 + 2,)
    static = gym.make("prune_env:StaticPrune-v0")
    assert isinstance(static.unwrapped, StaticPruneEnv)
    assert static.observation_space.shape == (7 + 4 + 2,)


@pytest.mark.parametrize("env_id, kwargs", [
    ("RuntimePrune-v0", {}),
    ("RuntimePrune-v0", {"observation": "raw", "reward": "dense"}),
    ("StaticPrune-v0", {"eval_batch": 16}),
])
def test_envs_pass_gymnasium_and_sb3_checkers(env_id, kwargs):
    env = gym.make(env_id, **kwargs).unwrapped
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(env)


def test_reward_terms_have_the_corrected_signs():
    norm = LossNormalizer(beta0=2.0, lam=0.5, batch_size=2)
    r = norm.reward(np.array([0.5, 1.0, 4.0]))
    assert np.allclose(r, [-0.25, -0.5, -2.0])  # more loss => less reward
    norm.observe([1.0, 3.0])  # beta = 0.5 * 2 + 0.5 * mean(1, 3) = 2.0
    norm.observe([5.0])
    assert norm.beta == 2.0 and norm.updates == 1
    norm.observe([7.0])  # beta = 0.5 * 2 + 0.5 * 6 = 4
    assert norm.beta == 4.0
    pen = budget_penalty(np.array([0.2, 0.5, 0.6, 0.9]), 0.5, 10.0)
    assert pen[0] == 0.0 and pen[1] == 0.0  # within budget => no penalty
    assert pen[2] == pytest.approx(-(np.exp(1.0) - 1))  # over budget => less reward
    assert pen[3] < pen[2] < 0


def test_runtime_episode_rewards_and_info():
    env = gym.make("RuntimePrune-v0")
    rewards, info = run_episode(env, 1.0, options={"index": 5})
    assert rewards[:-1] == [0.0, 0.0, 0.0]  # sparse
    assert info["macs_ratio"] == 1.0 and not info["within_budget"]
    assert info["reward_budget"] == pytest.approx(-np.expm1(10.0 * (1.0 - info["budget"])))
    assert info["reward_acc"] == pytest.approx(-info["loss"] / info["beta"])
    assert rewards[-1] == pytest.approx(info["reward_acc"] + info["reward_budget"])
    assert info["keep_ratios"] == [1.0] * 4 and info["params_ratio"] == 1.0
    _, low = run_episode(env, 0.1, options={"index": 5})
    assert low["reward_budget"] == 0.0 and low["within_budget"] and low["macs_ratio"] < low["budget"]
    assert low["keep_ratios"] == [2 / 16, 4 / 32, 4 / 32, 7 / 64]  # max(1, ceil(0.1 C))


def test_more_loss_means_less_reward_in_the_env():
    env = gym.make("RuntimePrune-v0", loss_lambda=1.0)  # frozen beta: rewards comparable across episodes
    results = [run_episode(env, 1.0, options={"index": i})[1] for i in range(12)]
    losses = np.array([r["loss"] for r in results])
    acc = np.array([r["reward_acc"] for r in results])
    assert np.all(np.diff(acc[np.argsort(losses)]) <= 0)
    assert losses.std() > 0


def test_actions_are_clipped_and_bad_actions_rejected():
    env = gym.make("RuntimePrune-v0").unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan], dtype=np.float32))
    with pytest.raises(ValueError, match="one keep ratio"):
        env.step(np.array([0.5, 0.5]))
    for _ in range(4):
        *_, info = env.step(np.array([7.0]))  # relaxed action above 1 is clipped to 1
    assert info["actions"] == [1.0] * 4
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.array([0.5]))
    env.reset(seed=0)
    for _ in range(4):
        *_, info = env.step(np.array([-3.0]))
    assert info["actions"] == [0.1] * 4


@pytest.mark.parametrize("kwargs, match", [
    ({"budget": 0.0}, "budget must be in"),
    ({"budget": 1.5}, "budget must be in"),
    ({"tradeoff_rate": 2}, "tradeoff_rate must be in"),
    ({"alpha": 0}, "alpha must be in"),
    ({"reward": "shaped"}, "reward must be one of"),
    ({"observation": "pixels"}, "observation must be one of"),
    ({"split": "holdout"}, "split must be one of"),
    ({"loss_batch": 0}, "loss_batch"),
    ({"budget_kind": "flops"}, "budget_kind must be one of"),
])
def test_bad_keywords_name_the_parameter_and_range(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gym.make("RuntimePrune-v0", **kwargs)


def test_budget_as_fraction_or_sparsity():
    by_sparsity = gym.make("RuntimePrune-v0", budget=0.5).unwrapped.task
    by_fraction = gym.make("RuntimePrune-v0", budget=0.3, budget_kind="fraction").unwrapped.task
    assert by_sparsity.macs_budget == pytest.approx(by_sparsity.costs.macs_budget(0.5))
    assert by_fraction.macs_budget == 0.3


def test_seeding_makes_episodes_reproducible():
    a, b = gym.make("RuntimePrune-v0"), gym.make("RuntimePrune-v0")
    obs_a, info_a = a.reset(seed=7)
    obs_b, info_b = b.reset(seed=7)
    assert info_a == info_b and np.array_equal(obs_a, obs_b)
    seq_a = [a.reset()[1]["index"] for _ in range(5)]
    seq_b = [b.reset()[1]["index"] for _ in range(5)]
    assert seq_a == seq_b
    assert len({a.reset(seed=s)[1]["index"] for s in range(10)}) > 1


def test_static_policy_sets_permanent_pruning_during_runtime_episodes():
    env = gym.make("RuntimePrune-v0", static_policy=[0.5, 0.5, 0.5, 0.5], tradeoff_rate=0.5).unwrapped
    task = env.task
    _, info = run_episode(env, 1.0, seed=0)
    stored = task.stored_counts(np.full((1, 4), 0.5))[0]
    assert stored.tolist() == [12, 24, 24, 48]  # C - floor(0.5 * 0.5 * C)
    assert info["params_ratio"] == pytest.approx(float(task.costs.params_ratio(stored)))
    assert info["keep_ratios"] == [0.75] * 4  # runtime keep 1: only P pruned


def test_static_env_episode_and_runtime_policy():
    env = gym.make("StaticPrune-v0", eval_batch=32, runtime_policy=0.5)
    rewards, info = run_episode(env, 0.5, seed=1)
    assert rewards[:-1] == [0.0] * 3
    assert info["params_ratio"] == pytest.approx(env.unwrapped.task.costs.params_budget(0.5))
    assert info["within_budget"] and info["reward_budget"] == 0.0
    assert info["macs_ratio"] < 0.3  # the runtime policy prunes as well
    assert 0.0 <= info["accuracy"] <= 1.0
    _, whole = run_episode(env, 1.0, seed=1)
    assert whole["params_ratio"] == 1.0 and whole["reward_budget"] < 0


def test_dense_reward_telescopes_to_sparse_minus_dense_network():
    kwargs = dict(loss_lambda=1.0)
    sparse = gym.make("RuntimePrune-v0", **kwargs)
    dense = gym.make("RuntimePrune-v0", reward="dense", **kwargs)
    actions = [0.6, 0.3, 0.9, 0.2]

    def play(env, acts):
        env.reset(options={"index": 11})
        out = [env.step(np.array([a], dtype=np.float32))[1] for a in acts]
        return out

    shaped = play(dense, actions)
    assert any(r != 0.0 for r in shaped[:-1])
    assert sum(shaped) == pytest.approx(play(sparse, actions)[-1] - play(sparse, [1.0] * 4)[-1], rel=1e-6)


@pytest.mark.parametrize("env_id, kwargs", [("RuntimePrune-v0", {}), ("StaticPrune-v0", {"eval_batch": 8})])
def test_batched_vec_env_equals_dummy_vec_env(env_id, kwargs):
    n, seed = 4, 123
    kwargs = dict(kwargs, loss_batch=n)
    batched = BatchedPruneVecEnv(env_id, n, kwargs)
    cls = RuntimePruneEnv if env_id == "RuntimePrune-v0" else StaticPruneEnv
    shared = cls(**kwargs).normalizer
    assert shared.beta == batched.env.normalizer.beta
    dummy = DummyVecEnv([lambda: cls(normalizer=shared, **kwargs) for _ in range(n)])
    batched.seed(seed)
    dummy.seed(seed)
    obs_b, obs_d = batched.reset(), dummy.reset()
    assert np.allclose(obs_b, obs_d, atol=1e-6)
    rng = np.random.default_rng(0)
    finished = 0
    for _ in range(3 * 4):
        actions = rng.uniform(0.05, 1.0, size=(n, 1)).astype(np.float32)
        ob, rb, db, ib = batched.step(actions)
        od, rd, dd, idd = dummy.step(actions)
        assert np.allclose(ob, od, atol=1e-6)
        assert np.allclose(rb, rd, atol=1e-6)
        assert np.array_equal(db, dd)
        for x, y in zip(ib, idd):
            assert x.keys() == y.keys()
            for key in x:
                if key == "terminal_observation":
                    assert np.allclose(x[key], y[key], atol=1e-6)
                elif isinstance(x[key], float):
                    # float32 convolutions may sum in another order at another batch size
                    assert x[key] == pytest.approx(y[key], rel=1e-5, abs=1e-9)
                else:
                    assert x[key] == y[key]
        finished += int(db.all())
    assert finished == 3
    assert batched.env.normalizer.updates == 3 == shared.updates


def test_index_streams_draw_what_single_environments_draw():
    size, n, block = 359, 3, 4
    streams = IndexStreams([np.random.default_rng(s) for s in range(n)], size, block=block)
    singles = [np.random.default_rng(s) for s in range(n)]
    for step in range(11):  # several blocks; a reseed and a partial draw in between
        if step == 5:
            streams.reseed(1, np.random.default_rng(99))
            singles[1] = np.random.default_rng(99)
        rows = np.array([0, 2]) if step == 7 else np.arange(n)
        assert streams.draw(None if step != 7 else rows).tolist() == [int(singles[i].integers(size)) for i in rows]


def test_batched_vec_env_honours_index_options_like_dummy_vec_env():
    n = 4
    batched = BatchedPruneVecEnv("RuntimePrune-v0", n)
    dummy = DummyVecEnv([lambda: RuntimePruneEnv(normalizer=batched.env.normalizer) for _ in range(n)])
    options = [{"index": 5}, {}, {"index": 7}, {}]
    for venv in (batched, dummy):
        venv.seed(3)
        venv.set_options(options)
    assert np.allclose(batched.reset(), dummy.reset(), atol=1e-6)
    assert batched.episodes.indices[[0, 2]].tolist() == [5, 7]
    for _ in range(4):
        *_, infos_b = batched.step(np.full((n, 1), 0.5, dtype=np.float32))
        *_, infos_d = dummy.step(np.full((n, 1), 0.5, dtype=np.float32))
    assert [i["index"] for i in infos_b] == [i["index"] for i in infos_d]


def test_episode_monitor_records_what_vec_monitor_records():
    from stable_baselines3.common.vec_env import VecMonitor

    def play(monitor_cls):
        venv = monitor_cls(DummyVecEnv([lambda: RuntimePruneEnv() for _ in range(3)]), info_keywords=("macs_ratio",))
        venv.seed(0)
        venv.reset()
        actions = np.array([[0.3], [0.6], [0.9]], dtype=np.float32)
        episodes = []
        for step in range(9):
            *_, infos = venv.step(actions if step != 2 else actions[::-1])
            episodes += [(i, {k: (type(v), v) for k, v in info["episode"].items() if k != "t"})
                         for i, info in enumerate(infos) if "episode" in info]
        return episodes, venv.episode_count

    assert play(EpisodeMonitor) == play(VecMonitor)


def test_make_vec_env_is_monitored_and_trains_with_ppo():
    from stable_baselines3 import PPO

    venv = prune_env.make_vec_env("RuntimePrune-v0", n_envs=8, seed=0)
    model = PPO("MlpPolicy", venv, n_steps=16, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(128)
    assert len(model.ep_info_buffer) >= 8
    assert {"r", "l", "macs_ratio", "params_ratio"} <= set(model.ep_info_buffer[0])
    assert model.ep_info_buffer[0]["l"] == 4


def test_discrete_wrappers_map_levels():
    env = DiscreteKeepRatio(gym.make("RuntimePrune-v0"), levels=(0.25, 0.5, 1.0))
    assert env.action_space.n == 3
    env.reset(seed=0)
    for a in (0, 1, 2, 0):
        *_, info = env.step(a)
    assert info["actions"] == [0.25, 0.5, 1.0, 0.25]
    venv = VecDiscreteKeepRatio(prune_env.make_vec_env("RuntimePrune-v0", n_envs=2, seed=0), levels=(0.5, 1.0))
    venv.reset()
    for _ in range(4):
        _, _, dones, infos = venv.step(np.array([0, 1]))
    assert dones.all() and infos[0]["actions"] == [0.5] * 4 and infos[1]["actions"] == [1.0] * 4
    with pytest.raises(ValueError, match="levels"):
        DiscreteKeepRatio(gym.make("RuntimePrune-v0"), levels=(0.5,))


@pytest.mark.parametrize("env_id, kwargs", [("RuntimePrune-v0", {"budget": 0.6}), ("StaticPrune-v0", {"eval_batch": 16})])
def test_recorded_episode_replays_and_validates(env_id, kwargs, tmp_path):
    env = RecordEpisode(gym.make(env_id, **kwargs), env_id, kwargs)
    for _ in range(2):  # the second episode runs with an updated beta
        run_episode(env, 0.4, seed=None if _ else 3)
    record = env.last_record
    path = record.save(tmp_path / "episode.json")
    loaded = type(record).load(path)
    result = validate(loaded)
    assert result.ok, result.mismatches
    loaded.reward += 0.01
    assert not validate(loaded).ok


def test_replay_tolerates_float32_noise_on_a_near_zero_loss_and_no_more():
    """Another CPU's kernels move a confident prediction's loss (~1e-3) by ~1e-7: a relative 1e-4."""
    from prune_env.benchmark.replay import LOSS_ATOL

    kwargs = {"budget": 0.6}
    env = RecordEpisode(gym.make("RuntimePrune-v0", **kwargs), "RuntimePrune-v0", kwargs)
    run_episode(env, 0.9, seed=3)
    record = env.last_record
    beta = record.reward_state["normalizer"]["beta"] if record.reward_state else record.beta
    noisy = copy.deepcopy(record)
    noisy.info["loss"] += 0.1 * LOSS_ATOL  # 8x the 1.2e-7 measured between two machines' CPUs
    noisy.info["reward_acc"] -= 0.1 * LOSS_ATOL / beta
    noisy.reward -= 0.1 * LOSS_ATOL / beta
    assert validate(noisy).ok, validate(noisy).mismatches
    wrong = copy.deepcopy(record)
    wrong.info["loss"] += 10 * LOSS_ATOL  # beyond float32 noise: a different result
    assert set(validate(wrong).mismatches) == {"loss"}
    wrong = copy.deepcopy(record)
    wrong.reward -= 10 * LOSS_ATOL / beta
    assert set(validate(wrong).mismatches) == {"reward"}
