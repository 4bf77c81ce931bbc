"""ARS on the batched VecEnv (agents/ars.py): every environment's episode scores a candidate, each
environment step is counted once, and callbacks see every episode's info."""

import numpy as np
import pytest
import sb3_contrib
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnvWrapper

from agents.ars import BatchedARS
from agents.registry import get_spec
from agents.training import RunConfig, build_model, make_env

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
