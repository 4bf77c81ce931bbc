"""The joint agent update (Algorithm 1, lines 12-15): both agents in one episode, one reward batch updates both."""

import copy

import numpy as np
import pytest
import torch

from agents.config import RunConfig
from agents.joint import JointEpisodes, JointTrainer
from agents.registry import RUNTIME, STATIC
from agents.training import joint_env_kwargs, prepare_agent
from prune_env.envs.runtime import RuntimeEpisodes

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _agents(tmp_path, algo: str, **env_kwargs):
    """A runtime and a static agent on the embedded default, and their environments."""
    kwargs = joint_env_kwargs(algo, {"tradeoff_rate": 0.5, "split": "val", "eval_batch": 4, **env_kwargs})
    cfg = RunConfig(algo=algo, n_envs=4, seed=0, device="cpu", progress=False,
                    hyperparams={"n_steps": 8, "batch_size": 32, "n_epochs": 2})
    models, venvs = {}, {}
    for env_id, sub in ((RUNTIME, "runtime"), (STATIC, "static")):
        models[env_id], venvs[env_id], _ = prepare_agent(cfg, env_id, tmp_path / sub, kwargs[env_id])
    return models, venvs


def _episodes(venvs, groups: int, images: int) -> JointEpisodes:
    runtime, static = venvs[RUNTIME].unwrapped.env, venvs[STATIC].unwrapped.env
    return JointEpisodes(runtime.task, groups, images, runtime_normalizer=runtime.normalizer, runtime_dual=runtime.dual,
                         static_normalizer=static.normalizer, static_dual=static.dual)


def _parameters(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.policy.named_parameters()}


@pytest.mark.parametrize("algo", ["ppo", "recurrent_ppo"])
def test_one_joint_update_trains_both_agents_from_one_batch_of_episodes(tmp_path, algo):
    models, venvs = _agents(tmp_path, algo)
    trainer = JointTrainer(models[RUNTIME], models[STATIC], _episodes(venvs, groups=2, images=8), seed=0)
    before = {env_id: _parameters(m) for env_id, m in models.items()}
    trainer.setup(1, {})
    update = trainer.update(1)  # one joint batch: 2 static episodes of 8 images, 4 layers
    layers = trainer.episodes.num_layers
    assert models[RUNTIME].num_timesteps == 2 * 8 * layers and models[STATIC].num_timesteps == 2 * layers
    for env_id, model in models.items():
        after = _parameters(model)
        changed = [name for name in after if not torch.equal(after[name], before[env_id][name])]
        assert changed, f"{env_id}: no parameter moved"
        assert any("action_net" in name for name in changed)  # the actor itself was updated
    if algo == "recurrent_ppo":  # the LSTM learnt too, from the states the rollout carried
        assert any("lstm" in name for name in changed)
    # both buffers hold exactly the joint batch: one row per layer, one column per image / group
    assert update.runtime.collected["rewards"].shape == (layers, 16) and update.static.collected["rewards"].shape == (layers, 2)
    assert update.runtime.buffer.full and update.static.buffer.full
    np.testing.assert_array_equal(update.runtime.collected["episode_starts"][0], np.ones(16))
    np.testing.assert_array_equal(update.runtime.collected["episode_starts"][1:], np.zeros((layers - 1, 16)))


def _forward_loss(task, index: int, runtime_keep: list[float], static_keep: list[float]) -> float:
    """One image's cross entropy, recomputed outside the environment from the kept ratios."""
    images, labels = task.source.get(np.array([index]))
    with torch.no_grad():
        state = task.net.begin(images)
        for t in range(task.num_layers):
            state = task.net.step(state, torch.tensor([runtime_keep[t]], dtype=torch.float64), float(static_keep[t]))
        return float(torch.nn.functional.cross_entropy(state.logits, labels))


def test_both_agents_are_rewarded_from_the_same_forward_pass_hand_checked(tmp_path):
    """One static episode of two images, budget 1 (no budget term), fixed loss scales: by hand,
    runtime reward r_i = -L_i / beta_r and static reward = -(L_1 + L_2) / 2 / beta_s, with L_i
    each image's cross entropy under the actions both agents took."""
    models, venvs = _agents(tmp_path, "ppo", budget=1.0, loss_scale="fixed")
    episodes = _episodes(venvs, groups=1, images=2)
    beta_r, beta_s = episodes._beta.beta, episodes.static_normalizer.beta
    trainer = JointTrainer(models[RUNTIME], models[STATIC], episodes, seed=3)
    trainer.setup(1, {})
    update = trainer.update(1)
    (static_info,), runtime_infos = update.static_infos, update.runtime_infos
    task, last = episodes.task, episodes.num_layers - 1
    losses = [_forward_loss(task, info["index"], info["actions"], static_info["keep_ratios"]) for info in runtime_infos]
    runtime_rewards = update.runtime.collected["rewards"][last]
    static_reward = update.static.collected["rewards"][last, 0]
    np.testing.assert_allclose(runtime_rewards, [-losses[0] / beta_r, -losses[1] / beta_r], rtol=1e-5)
    np.testing.assert_allclose(static_reward, -(losses[0] + losses[1]) / 2 / beta_s, rtol=1e-5)
    assert np.all(update.runtime.collected["rewards"][:last] == 0) and np.all(update.static.collected["rewards"][:last] == 0)
    # the static ratios the runtime episodes ran under are the static agent's actions, clipped
    alpha = task.cfg.alpha
    np.testing.assert_allclose(static_info["keep_ratios"], np.clip(update.static.collected["actions"][:, 0, 0], alpha, 1.0))
    np.testing.assert_allclose([info["actions"] for info in runtime_infos],
                               np.clip(update.runtime.collected["actions"][:, :, 0].T, alpha, 1.0), rtol=1e-6)


def test_a_joint_batch_rewards_every_group_with_the_reward_state_before_it(tmp_path):
    """Two groups under one static configuration give each image the reward one batched runtime
    environment over all the images gives (beta and lambda updated after the batch, not between groups)."""
    models, venvs = _agents(tmp_path, "ppo", budget=0.5, budget_mode="average", loss_batch=4, dual_batch=4)
    episodes = _episodes(venvs, groups=2, images=4)
    runtime = venvs[RUNTIME].unwrapped.env
    reference_beta, reference_dual = copy.deepcopy(runtime.normalizer), copy.deepcopy(runtime.dual)
    reference = RuntimeEpisodes(episodes.task, np.full(4, 0.6), reference_beta, reference_dual)
    indices = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    episodes.start(indices)
    reference.start(indices.reshape(-1))
    rng = np.random.default_rng(0)
    for _ in range(episodes.num_layers):
        actions = rng.uniform(0.2, 1.0, 8)
        step = episodes.step(np.full(2, 0.6), actions)
        _, expected, done, _ = reference.advance(actions[:, None])
    assert step.done and done
    assert runtime.dual.updates == reference_dual.updates == 2  # two batches of 4 observed, after the rewards
    np.testing.assert_allclose(step.runtime_rewards, expected)
    assert runtime.dual.lam == pytest.approx(reference_dual.lam) and runtime.normalizer.beta == pytest.approx(reference_beta.beta)


def test_joint_steps_check_their_actions(tmp_path):
    _, venvs = _agents(tmp_path, "ppo")
    episodes = _episodes(venvs, groups=2, images=3)
    episodes.start(np.array([[0, 1, 2], [3, 4, 5]]))
    with pytest.raises(ValueError, match="2 static and 6 runtime"):
        episodes.step(np.ones(1), np.ones(6))
    with pytest.raises(ValueError, match="shape"):
        episodes.start(np.zeros((3, 3), dtype=int))
