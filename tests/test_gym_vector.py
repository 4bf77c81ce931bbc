"""Gymnasium's vector API, batched: ``gym.make_vec(..., vectorization_mode="vector_entry_point")``.

Gymnasium ships no checker for vector environments (``gymnasium.utils.env_checker.check_env`` takes
single ones), so these tests hold ours to what Gymnasium's own ``SyncVectorEnv`` does over the
same single environments, step by step under each autoreset mode, with Gymnasium's
``data_equivalence`` (values, dtypes, info keys and ``_key`` masks), plus the checks
``check_env`` makes of a single environment that apply to a vector one (spaces, seeding
determinism, returned data not reused).
"""

import copy

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import data_equivalence
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import prune_env  # noqa: F401  (registers the ids)
from prune_env.envs import RuntimePruneEnv, StaticPruneEnv
from prune_env.envs.gym_vector import PruneVectorEnv, RuntimePruneVectorEnv, StaticPruneVectorEnv

N = 3
CASES = [("RuntimePrune-v0", RuntimePruneEnv, {}), ("StaticPrune-v0", StaticPruneEnv, {"eval_batch": 8}),
         ("RuntimePrune-v0", RuntimePruneEnv, {"budget": 0.3, "budget_mode": "average"})]  # the main job's budget


def make_pair(env_id, cls, kwargs, mode):
    """Ours and ``SyncVectorEnv`` over single environments that share a copy of our reward normaliser
    (and dual variable), as our sub-environments share theirs."""
    kwargs = dict(kwargs, loss_batch=N)
    ours = gym.make_vec(env_id, num_envs=N, vectorization_mode="vector_entry_point", autoreset_mode=mode, **kwargs)
    shared = copy.deepcopy({"normalizer": ours.env.normalizer, "dual": ours.env.dual})
    sync = SyncVectorEnv([lambda: cls(**shared, **kwargs) for _ in range(N)], autoreset_mode=mode)
    return ours, sync


def assert_same(a, b, what):
    assert data_equivalence(a, b), f"{what}:\nours {a}\nsync {b}"


@pytest.mark.parametrize("mode", list(AutoresetMode))
@pytest.mark.parametrize("env_id, cls, kwargs", CASES)
def test_steps_like_sync_vector_env(env_id, cls, kwargs, mode):
    ours, sync = make_pair(env_id, cls, kwargs, mode)
    assert isinstance(ours, PruneVectorEnv) and ours.metadata["autoreset_mode"] == mode
    assert ours.single_observation_space == sync.single_observation_space
    assert ours.observation_space == sync.observation_space and ours.action_space == sync.action_space
    for venv in (ours, sync):
        venv.action_space.seed(0)
    reset_a, reset_b = ours.reset(seed=11), sync.reset(seed=11)
    assert_same(reset_a, reset_b, "reset")
    layers, rng = ours.env.num_layers, np.random.default_rng(0)
    ended = 0
    for step in range(3 * (layers + 1)):
        actions = rng.uniform(0.05, 1.0, size=(N, 1)).astype(np.float32)
        a, b = ours.step(actions), sync.step(actions)
        for name, x, y in zip(("obs", "rewards", "terminated", "truncated", "info"), a, b):
            assert_same(x, y, f"step {step} {name}")
        assert a[2].all() or not a[2].any()  # lockstep: they end together
        if a[2].all():
            ended += 1
            assert {"loss", "_loss", "keep_ratios", "_keep_ratios"} <= set(a[4].get("final_info", a[4]))
            if mode == AutoresetMode.DISABLED:
                mask = np.logical_or(a[2], a[3])
                assert_same(ours.reset(options={"reset_mask": mask}), sync.reset(options={"reset_mask": mask.copy()}),
                            "reset_mask")
    assert ended >= 2
    ours.close()
    sync.close()


def test_make_vec_returns_the_batched_env_with_its_spec():
    envs = gym.make_vec("StaticPrune-v0", num_envs=2, vectorization_mode="vector_entry_point", eval_batch=4)
    assert type(envs) is StaticPruneVectorEnv and envs.num_envs == 2
    assert envs.spec.id == "StaticPrune-v0" and envs.spec.kwargs["eval_batch"] == 4
    assert envs.spec.kwargs["vectorization_mode"] == "vector_entry_point"
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP  # Gymnasium's default
    assert gym.spec("RuntimePrune-v0").vector_entry_point.endswith(":RuntimePruneVectorEnv")


def test_reset_seeds_episodes_and_returned_data_is_not_reused():
    envs = RuntimePruneVectorEnv(4)
    obs1, info1 = envs.reset(seed=5)
    assert envs.observation_space.contains(obs1)
    first_step = envs.step(np.full((4, 1), 0.5, dtype=np.float32))
    obs2, info2 = envs.reset(seed=5)
    assert data_equivalence((obs1, info1), (obs2, info2), exact=True)
    assert len(set(info1["index"].tolist())) > 1  # sub-environment i is seeded 5 + i
    assert not np.shares_memory(obs1, obs2) and not np.shares_memory(obs2, first_step[0])
    obs3, _ = envs.reset(seed=[5, None, None, 8])
    assert np.array_equal(obs3[0], obs1[0]) and envs.reset(seed=[8, 6, 7, 5])[1]["index"][3] == info1["index"][0]
    assert envs.reset(options={"index": 7})[1]["index"].tolist() == [7] * 4  # options go to every sub-environment


def test_bad_calls_say_what_is_wrong():
    envs = RuntimePruneVectorEnv(2, autoreset_mode="Disabled")
    with pytest.raises(RuntimeError, match="reset"):
        envs.step(np.full((2, 1), 0.5))
    envs.reset(seed=0)
    with pytest.raises(ValueError, match="num_envs=2"):
        envs.step(np.full((3, 1), 0.5))
    with pytest.raises(TypeError, match="actions"):
        envs.step(["a", "b"])
    with pytest.raises(ValueError, match="lockstep"):
        envs.reset(options={"reset_mask": np.array([True, False])})
    for _ in range(envs.env.num_layers):
        envs.step(np.full((2, 1), 0.5))
    with pytest.raises(RuntimeError, match="Disabled"):
        envs.step(np.full((2, 1), 0.5))
    with pytest.raises(ValueError, match="autoreset_mode"):
        RuntimePruneVectorEnv(2, autoreset_mode="sometimes")
    with pytest.raises(ValueError, match="num_envs"):
        RuntimePruneVectorEnv(0)


def test_gymnasium_vector_wrappers_and_benchmark_run_on_it():
    from gymnasium.utils.performance import benchmark_vector_step
    from gymnasium.wrappers.vector import RecordEpisodeStatistics

    envs = RecordEpisodeStatistics(RuntimePruneVectorEnv(4))
    envs.reset(seed=0)
    layers = envs.unwrapped.env.num_layers
    for _ in range(layers):
        *_, info = envs.step(np.full((4, 1), 0.5, dtype=np.float32))
    assert info["_episode"].all() and (info["episode"]["l"] == layers).all()
    assert np.allclose(info["episode"]["r"], info["reward_acc"] + info["reward_budget"])
    for mode in AutoresetMode:
        assert benchmark_vector_step(RuntimePruneVectorEnv(4, autoreset_mode=mode), target_duration=0.2, seed=0) > 0
