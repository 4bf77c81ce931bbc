"""ARS on the batched VecEnv (agents/ars.py): every environment's episode scores a candidate, each
environment step is counted once, and callbacks see every episode's info."""

import numpy as np
import pytest
import sb3_contrib
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnvWrapper

from agents.ars import BatchedARS
from agents.config import RunConfig
from agents.registry import get_spec
from agents.training import build_model, make_env

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

RUNTIME = "RuntimePrune-v0"


class CountSteps(VecEnvWrapper):
    """Counts the environment steps actually taken (num_envs per VecEnv step)."""

    def __init__(self, venv):
        super().__init__(venv)
        self.steps = 0

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        self.steps += self.num_envs
        return self.venv.step_wait()


class Episodes(BaseCallback):
    def __init__(self):
        super().__init__()
        self.infos = []

    def _on_step(self) -> bool:
        for info, done in zip(self.locals["infos"], self.locals["dones"]):
            if done:
                self.infos.append(info)
        return True


def _model(n_envs: int, **overrides):
    venv = CountSteps(make_env(RUNTIME, "ars", n_envs, 0, {}))
    cfg = RunConfig(algo="ars", seed=0, device="cpu", hyperparams={"n_delta": 2, "n_top": 1, **overrides})
    return build_model(cfg, RUNTIME, venv, None), venv


def test_registry_ars_is_sb3_contribs_ars():
    assert issubclass(get_spec("ars").cls, sb3_contrib.ARS) and get_spec("ars").cls is BatchedARS


def test_every_environments_episode_scores_a_candidate_and_each_step_counts_once():
    model, venv = _model(4)
    assert model.n_eval_episodes == 4  # one episode per environment
    layers = venv.get_attr("num_layers")[0]
    per_update = 2 * 2 * 4 * layers  # 2 x n_delta candidates, 4 episodes of `layers` steps each
    callback = Episodes()
    model.learn(3 * per_update, callback=callback)
    assert model.num_timesteps == venv.steps == 3 * per_update  # sb3-contrib's ARS counts 4 x the steps here
    assert len(callback.infos) == 3 * 2 * 2 * 4  # every episode reaches the callback, with its info
    assert all("reward_acc" in info and np.isfinite(info["macs_ratio"]) for info in callback.infos)


def test_explicit_n_eval_episodes_is_kept_and_checked():
    model, _ = _model(4, n_eval_episodes=8)
    assert model.n_eval_episodes == 8
    with pytest.raises(ValueError, match="n_eval_episodes"):
        _model(4, n_eval_episodes=0)


# --------------------------------------------------------------------------- ARS V2: normalised states
def test_running_normalization_is_the_mean_and_variance_of_every_state_given():
    from gymnasium import spaces

    from agents.ars import NormalizedLinearPolicy

    policy = NormalizedLinearPolicy(spaces.Box(-np.inf, np.inf, (3,), np.float32), spaces.Box(0.1, 1.0, (1,), np.float32))
    rng = np.random.default_rng(0)
    first, second = rng.normal(5.0, 3.0, (40, 3)), rng.normal(-2.0, 0.5, (7, 3))
    first[:, 2] = second[:, 2] = 4.0  # a constant component (zero padding): centred, not scaled
    policy.update_normalization(first)
    policy.update_normalization(second)
    states = np.concatenate([first, second])
    assert float(policy.obs_count) == 47
    np.testing.assert_allclose(policy.obs_mean.numpy(), states.mean(0), rtol=1e-5)
    np.testing.assert_allclose(policy.obs_var.numpy(), states.var(0), rtol=1e-4, atol=1e-6)
    x = np.array([[2.0, 1.0, 6.0]], dtype=np.float32)
    expected = (x - states.mean(0)) / np.array([states[:, 0].std(), states[:, 1].std(), 1.0])
    np.testing.assert_allclose(policy.normalize(torch.as_tensor(x)).numpy(), expected, rtol=1e-4)


def test_the_zero_policy_keeps_the_middle_of_the_action_range():
    model, venv = _model(4)
    obs = venv.reset()
    action, _ = model.predict(obs, deterministic=True)
    low, high = venv.action_space.low[0], venv.action_space.high[0]
    np.testing.assert_allclose(action, (low + high) / 2, rtol=1e-6)  # not the clipped lower end (V1: 0 -> alpha)


def test_ars_v2_normalizes_with_the_states_its_training_visited_and_saves_them(tmp_path):
    model, venv = _model(4)
    layers = venv.get_attr("num_layers")[0]
    per_update = 2 * 2 * 4 * layers
    seen = []
    real = model.policy.update_normalization
    model.policy.update_normalization = lambda states: seen.append(np.array(states)) or real(states)
    model.learn(2 * per_update)
    # one update per iteration, after it, with each counted step's state
    assert [len(s) for s in seen] == [per_update, per_update]
    assert float(model.policy.obs_count) == model.num_timesteps == 2 * per_update
    states = np.concatenate(seen)
    np.testing.assert_allclose(model.policy.obs_mean.numpy(), states.mean(0), rtol=1e-4, atol=1e-5)
    assert not np.allclose(states[:per_update].mean(0), 0.0)  # real pooled features, not the identity's zeros
    obs = venv.reset()
    before, _ = model.predict(obs, deterministic=True)
    model.save(tmp_path / "ars.zip")
    loaded = BatchedARS.load(tmp_path / "ars.zip", device="cpu")
    np.testing.assert_array_equal(loaded.policy.obs_mean.numpy(), model.policy.obs_mean.numpy())
    after, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(after, before)


def test_ars_v2_refuses_asynchronous_evaluation():
    model, _ = _model(4)
    with pytest.raises(NotImplementedError, match="async_eval"):
        model._do_one_update(Episodes(), async_eval=object())


class VisitedStates(BaseCallback):
    """The number of states ARS has put aside for the normalisation, at each counted step."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def _on_step(self) -> bool:
        self.sizes.append(len(self.model._visited))
        return True


def test_only_the_normalized_policy_collects_the_visited_states():
    model, venv = _model(4)
    layers = venv.get_attr("num_layers")[0]
    normalized = VisitedStates()
    model.learn(2 * 2 * 4 * layers, callback=normalized)
    assert normalized.sizes == list(range(1, len(normalized.sizes) + 1))  # one state per counted step
    plain = BatchedARS("LinearPolicy", make_env(RUNTIME, "ars", 4, 0, {}), n_delta=2, n_top=1, seed=0)
    visited = VisitedStates()
    plain.learn(2 * 2 * 4 * layers, callback=visited)
    assert visited.sizes and set(visited.sizes) == {0}  # sb3-contrib's LinearPolicy: nothing kept
