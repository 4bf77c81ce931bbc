"""Both agents as one PettingZoo ParallelEnv; skipped where PettingZoo is not installed
(the ``test`` extra installs it, so CI runs these)."""

import copy
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pettingzoo")

from pettingzoo.test import parallel_api_test, parallel_seed_test  # noqa: E402

from prune_env.envs import RuntimePruneEnv, StaticPruneEnv  # noqa: E402
from prune_env.envs.multiagent import STATIC_AGENT, parallel_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_passes_pettingzoos_parallel_api_and_seed_tests():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PettingZoo reports most API slips as warnings
        parallel_api_test(parallel_env(inputs=3), num_cycles=20)
        parallel_seed_test(lambda: parallel_env(inputs=3), num_cycles=20)


def test_agents_see_and_earn_what_the_single_environments_give():
    """Static ratios fixed per layer and per-layer runtime ratios: every observation and reward is the
    one ``RuntimePrune-v0`` (that static policy) and ``StaticPrune-v0`` (that runtime policy) give."""
    inputs, static_ratios, runtime_ratios = 3, [0.8, 0.6, 0.5, 0.7], [0.9, 0.4, 0.6, 0.3]
    joint = parallel_env(inputs=inputs)
    runtime_env = RuntimePruneEnv(static_policy=static_ratios, tradeoff_rate=0.5, normalizer=copy.deepcopy(joint.env.normalizer))
    static_env = StaticPruneEnv(runtime_policy=runtime_ratios, tradeoff_rate=0.5, eval_batch=inputs,
                                normalizer=copy.deepcopy(joint.static_normalizer))
    obs, infos = joint.reset(seed=4)
    indices = infos[STATIC_AGENT]["indices"]
    s_obs, _ = static_env.reset(options={"indices": indices})
    seen = []  # the runtime agents' observations, layer by layer
    for t in range(joint.num_layers):
        assert np.allclose(obs[STATIC_AGENT], s_obs, atol=1e-6)
        seen.append(obs)
        actions = {STATIC_AGENT: np.array([static_ratios[t]], dtype=np.float32),
                   **{a: np.array([runtime_ratios[t]], dtype=np.float32) for a in joint.runtime_agents}}
        obs, rewards, terminations, truncations, infos = joint.step(actions)
        s_obs, s_reward, *_, s_info = static_env.step(np.array([static_ratios[t]], dtype=np.float32))
    assert all(terminations.values()) and not any(truncations.values()) and joint.agents == []
    assert rewards[STATIC_AGENT] == pytest.approx(s_reward, rel=1e-5)
    assert infos[STATIC_AGENT]["params_ratio"] == pytest.approx(s_info["params_ratio"])
    assert infos[STATIC_AGENT]["keep_ratios"] == pytest.approx(static_ratios)
    for agent, index in zip(joint.runtime_agents, indices):
        single, _ = runtime_env.reset(options={"index": index})
        for t in range(joint.num_layers):
            assert np.allclose(seen[t][agent], single, atol=1e-5)
            single, reward, _, _, info = runtime_env.step(np.array([runtime_ratios[t]], dtype=np.float32))
        assert rewards[agent] == pytest.approx(reward, rel=1e-5)
        assert infos[agent]["macs_ratio"] == pytest.approx(info["macs_ratio"])


def test_bad_steps_say_what_is_wrong():
    env = parallel_env(inputs=2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})
    env.reset(seed=0)
    with pytest.raises(KeyError, match="runtime_1"):
        env.step({STATIC_AGENT: 0.5, "runtime_0": 0.5})
    with pytest.raises(TypeError, match="static"):
        env.step({STATIC_AGENT: "0.5", "runtime_0": 0.5, "runtime_1": 0.5})
    with pytest.raises(ValueError, match="inputs"):
        parallel_env(inputs=0)


def test_independent_learners_example_runs():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from pettingzoo_independent import main

    result = main(["--episodes", "4", "--inputs", "3", "--episodes-per-update", "2", "--report-every", "2"])
    assert len(result["history"]) == 4 and all(h["static_return"] <= 0 for h in result["history"])
