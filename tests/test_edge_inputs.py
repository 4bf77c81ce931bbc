"""Inputs at the edges: odd actions, a wrong number of actions, odd keywords, odd --algo names.

The property tests drive both environments and the batched VecEnv with arbitrary keyword values
and actions: every outcome is a valid step or one of our documented errors (a ValueError or
TypeError whose message names what was wrong), never another exception.
"""

import math
import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import prune_env
from agents.registry import get_spec, load_class
from prune_env.envs import RuntimePruneEnv, StaticPruneEnv
from prune_env.envs.actions import as_keep_ratios

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")

#: examples per property; PRUNE_ENV_EXAMPLES=500 searches harder (minutes)
EXAMPLES = int(os.environ.get("PRUNE_ENV_EXAMPLES", "25"))
FEW = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def envs():
    """Built once (building is the slow part); the examples vary the actions."""
    torch.set_num_threads(1)
    return {
        "runtime": RuntimePruneEnv(),
        "static": StaticPruneEnv(eval_batch=8),
        "vec-runtime": prune_env.make_vec_env("RuntimePrune-v0", 3, seed=0),
        "vec-static": prune_env.make_vec_env("StaticPrune-v0", 2, seed=0, eval_batch=8),
    }


# ------------------------------------------------------------------------------------ actions
@pytest.mark.parametrize("action, words", [
    ("0.5", "got str '0.5'"), (True, "got bool True"), (np.bool_(False), "got bool"), (0.5 + 0j, "complex"),
    (None, "got NoneType None"), ({"keep": 0.5}, "got dict"), ([None], "holding NoneType None"),
    (np.array(["0.5"]), "strings"), (np.array([True]), "booleans"), ({0.5}, "got set"),
])
def test_actions_that_are_not_numbers_are_a_type_error_naming_the_action(envs, action, words):
    for name in ("runtime", "static"):
        env = envs[name]
        env.reset(seed=0)
        with pytest.raises(TypeError, match=r"action must be a real number or an array of real numbers") as err:
            env.step(action)
        assert words in str(err.value)
        obs, reward, terminated, truncated, info = env.step(np.array([0.5], dtype=np.float32))  # the episode goes on
        assert obs.shape == env.observation_space.shape


def test_numbers_of_every_real_kind_are_accepted():
    for action in (0.5, 1, np.float32(0.5), np.int64(1), [0.5], np.array([[0.5]]), torch.tensor([0.5])):
        np.testing.assert_allclose(as_keep_ratios(action).reshape(-1), [float(np.asarray(action).reshape(-1)[0])])


def test_a_vec_env_given_the_wrong_number_of_actions_names_n_envs(envs):
    venv = envs["vec-runtime"]
    venv.reset()
    for actions in (np.full(2, 0.5), np.full((3, 2), 0.5), np.full(4, 0.5), np.zeros(0)):
        with pytest.raises(ValueError, match=r"n_envs=3 .* got %d" % actions.size):
            venv.step(actions)
    with pytest.raises(TypeError, match="actions must be a real number"):
        venv.step(np.array(["0.5"] * 3))
    obs, rewards, dones, infos = venv.step(np.full((3, 1), 0.5))  # still steps
    assert obs.shape == (3, *venv.observation_space.shape)


# ------------------------------------------------------------------------------------ --algo
@pytest.mark.parametrize("name, error, words", [
    ("os:path", TypeError, "names a module, not an algorithm class"),
    ("os.path:join", TypeError, "names a function, not an algorithm class"),
    ("math:pi", TypeError, "names a float"),
    ("builtins:dict", TypeError, "expected a class with learn, save and load"),
    ("stable_baselines3:Nope", AttributeError, "has no attribute 'Nope'"),
    ("no_such_module_xyz:A", ImportError, "no_such_module_xyz"),
    ("nocolon", ValueError, "module:Class"),
])
def test_algo_names_that_are_not_algorithm_classes_say_what_was_expected(name, error, words):
    with pytest.raises(error, match=words):
        get_spec(name)


def test_an_algorithm_class_by_module_path_still_loads():
    from stable_baselines3 import PPO

    assert load_class("stable_baselines3:PPO") is PPO


def test_train_agents_reports_a_bad_algo_as_a_parser_error(capsys):
    import train_agents

    with pytest.raises(SystemExit) as done:
        train_agents.main(["--algo", "os:path"])
    assert done.value.code == 2
    assert "--algo" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ properties
GARBAGE = st.one_of(st.none(), st.text(max_size=4), st.booleans(), st.complex_numbers(max_magnitude=2),
                    st.lists(st.floats(0, 1), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-3, 300))
ACTIONS = st.one_of(
    NUMBERS, GARBAGE,
    hnp.arrays(st.sampled_from([np.float32, np.float64, np.int64, np.bool_, np.complex64, "U3"]),
               hnp.array_shapes(min_dims=0, max_dims=2, max_side=4)),
    st.lists(st.one_of(NUMBERS, st.none()), min_size=0, max_size=4),
)


def documented(exc: BaseException, words: tuple[str, ...]) -> bool:
    """One of our errors: ValueError / TypeError whose message names one of ``words``."""
    return isinstance(exc, (ValueError, TypeError)) and any(w in str(exc) for w in words)


def assert_valid_step(env, result) -> None:
    obs, reward, terminated, truncated, info = result
    assert obs.shape == env.observation_space.shape and obs.dtype == np.float32
    assert isinstance(reward, float) and not math.isnan(reward)
    assert isinstance(terminated, bool) and truncated is False


@FEW
@given(action=ACTIONS)
def test_any_action_is_a_valid_step_or_our_error(envs, action):
    for name in ("runtime", "static"):
        env = envs[name]
        env.reset(seed=1)
        try:
            result = env.step(action)
        except Exception as exc:  # noqa: BLE001 - the property: only our errors
            assert documented(exc, ("action",)), f"{name}: {type(exc).__name__}: {exc}"
            result = env.step(np.array([0.5], dtype=np.float32))  # a refused action changes nothing
        assert_valid_step(env, result)


@FEW
@given(actions=ACTIONS, n_rows=st.integers(0, 4))
def test_any_action_array_is_a_valid_vec_step_or_our_error(envs, actions, n_rows):
    for name in ("vec-runtime", "vec-static"):
        venv = envs[name]
        venv.reset()
        if n_rows and not isinstance(actions, (str, bytes, dict)):
            actions = [actions] * n_rows  # also arrays of the right length holding odd things
        try:
            obs, rewards, dones, infos = venv.step(actions)
        except Exception as exc:  # noqa: BLE001
            assert documented(exc, ("actions", "action", "n_envs")), f"{name}: {type(exc).__name__}: {exc}"
            obs, rewards, dones, infos = venv.step(np.full(venv.num_envs, 0.5))
        assert obs.shape == (venv.num_envs, *venv.observation_space.shape)
        assert rewards.shape == (venv.num_envs,) and not np.isnan(rewards).any()


#: per keyword: (values in range, values out of range or of the wrong type)
KEYWORDS = {
    "budget": (st.floats(0.05, 1.0), st.one_of(st.floats(-0.5, 0.0), st.floats(1.001, 9), NUMBERS, GARBAGE)),
    "budget_kind": (st.sampled_from(["sparsity", "fraction"]), GARBAGE),
    "tradeoff_rate": (st.floats(0.0, 1.0), st.one_of(st.floats(-0.5, -0.01), st.floats(1.01, 2), GARBAGE)),
    "alpha": (st.floats(0.01, 1.0), st.one_of(st.floats(-0.5, 0.0), st.floats(1.01, 2), GARBAGE)),
    # the whole range: the penalty's exponent is capped, so rewards stay finite in float32
    "alpha_budget": (st.floats(0.0, 1000.0), st.one_of(st.floats(-10, -0.01), st.floats(1000.5, 1e6), GARBAGE)),
    "loss_lambda": (st.floats(0.0, 1.0), st.one_of(st.floats(1.01, 2), GARBAGE)),
    "loss_batch": (st.integers(1, 300), st.one_of(st.integers(-2, 0), GARBAGE)),
    "reward": (st.sampled_from(["sparse", "dense"]), GARBAGE),
    "observation": (st.sampled_from(["encoded", "raw"]), GARBAGE),
    "encoding_dim": (st.integers(1, 200), st.one_of(st.integers(-2, 0), GARBAGE)),
    "split": (st.sampled_from(["train", "val", "test"]), GARBAGE),
    "dataset": (st.sampled_from(["digits", "synthetic"]), st.text(min_size=1, max_size=4)),
    "model": (st.sampled_from(["digitnet", "mcifarnet"]), st.text(min_size=1, max_size=4)),
    "device": (st.just("cpu"), st.one_of(st.sampled_from(["cuda:7", "meta", "nope", ""]), GARBAGE)),
}


@st.composite
def keyword_sets(draw) -> dict:
    """Up to four keywords, each in range twice as often as not."""
    names = draw(st.lists(st.sampled_from(sorted(KEYWORDS)), max_size=4, unique=True))
    return {name: draw(st.one_of(KEYWORDS[name][0], KEYWORDS[name][0], KEYWORDS[name][1])) for name in names}


@FEW
@given(env_id=st.sampled_from(["RuntimePrune-v0", "StaticPrune-v0", "vec"]),
       kwargs=keyword_sets(), actions=st.lists(ACTIONS, min_size=1, max_size=4))
def test_any_keywords_build_a_working_env_or_raise_our_error(env_id, kwargs, actions):
    if env_id == "StaticPrune-v0":
        kwargs = {**kwargs, "eval_batch": 8}
    try:
        if env_id == "vec":
            env = prune_env.make_vec_env("RuntimePrune-v0", 2, seed=0, **kwargs)
        else:
            env = gym.make(env_id, **kwargs).unwrapped
    except Exception as exc:  # noqa: BLE001
        assert documented(exc, tuple(kwargs)), f"{type(exc).__name__}: {exc} (keywords {kwargs})"
        event("refused")
        return
    event("built")
    if env_id == "vec":
        env.reset()
        for a in actions:
            try:
                obs, rewards, dones, infos = env.step(a)
            except Exception as exc:  # noqa: BLE001
                assert documented(exc, ("action", "n_envs")), f"{type(exc).__name__}: {exc}"
                continue
            assert not np.isnan(rewards).any() and obs.shape == (2, *env.observation_space.shape)
        return
    env.reset(seed=0)
    for t in range(env.num_layers):
        try:
            result = env.step(actions[t % len(actions)])
        except Exception as exc:  # noqa: BLE001
            assert documented(exc, ("action",)), f"{type(exc).__name__}: {exc}"
            result = env.step(env.action_space.sample())
        assert_valid_step(env, result)


def test_the_budget_penalty_stays_finite_at_the_top_of_the_alpha_budget_range():
    env = RuntimePruneEnv(alpha_budget=999, budget=0.05, reward="dense")
    env.reset(seed=0)
    rewards = [env.step(np.array([1.0]))[1] for _ in range(env.num_layers)]
    assert all(math.isfinite(r) for r in rewards), rewards
