"""The joint agent update of Algorithm 1 (paper Appendix B, lines 12-15): both agents act in one
episode and one reward batch updates both.

Line 13 forwards the entire model, line 14 computes the rewards ``R^r_t`` and ``R^s_t`` of that
forward pass against the budgets, line 15 updates the runtime and the static agent by their PPO
losses. Here one *joint batch* is ``groups`` static episodes, each evaluated on ``images`` inputs:

* at layer ``t`` the static agent sets ``d_s`` of every group (one action per group, Sec. 3.3.2)
  and the runtime agent sets ``d_r`` of every image (one action per image, Sec. 3.3.1); the layer
  then runs once per group, its masks merged by the trade-off pruner (Eq. 3-5);
* after the last layer each image's cross entropy ``L_i`` gives the runtime reward of that image
  (Eq. 7-11, or the environment's ``budget_mode`` / ``penalty`` / ``loss_scale`` variants) and the
  group's mean loss the static reward (Eq. 14-15): the same losses, the same forward pass;
* every transition goes into its agent's own SB3 rollout buffer, and each agent's own ``train()``
  runs on it (PPO's or recurrent PPO's loss with Eq. 13, unchanged).

:class:`JointEpisodes` is the environment side (lockstep episodes over one
:class:`~prune_env.envs.task.PruningTask`, the reward state ``beta`` / ``lambda`` shared with the
single environments' objects, so that it is saved and restored as theirs). :class:`AgentRollout`
is one agent's side of SB3's ``collect_rollouts``, step for step (LSTM states carried and reset
at episode starts as sb3-contrib's recurrent PPO does). :class:`JointTrainer` runs both.

With ``groups=1`` and ``images=128`` a joint batch is the paper's: one batch of 128 images, one
static episode. On small datasets the static agent needs more episodes per batch (the
``static_episodes`` of :data:`agents.algorithm1.PRESETS`): each is then a group of its own images,
and the runtime agent learns from every image of every group, at no extra forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.utils import obs_as_tensor

from prune_env.envs.joint_batch import group_static_rewards
from prune_env.envs.runtime import RuntimeEpisodes
from prune_env.envs.task import PruningTask
from prune_env.interrupt import check_interrupt
from prune_env.rewards import DualVariable, LossNormalizer


# --------------------------------------------------------------------------- the environment side
class _Deferred:
    """A view of a shared reward state (``beta``'s :class:`LossNormalizer` or ``lambda``'s
    :class:`DualVariable`) whose updates wait until :meth:`flush`.

    The groups of a joint batch finish one after the other; through this view every reward of the
    batch uses the ``beta`` and ``lambda`` of the batches finished before it, and the batch's
    losses and costs are then observed in order: exactly what one batched environment over all
    the images computes (:mod:`prune_env.rewards`: a reward uses the past batches only).
    """

    def __init__(self, target: LossNormalizer | DualVariable):
        self.target = target
        self._pending: list[np.ndarray] = []

    @property
    def beta(self) -> float:
        return self.target.beta

    @property
    def lam(self) -> float:
        return self.target.lam

    def reward(self, values: np.ndarray) -> np.ndarray:
        return self.target.reward(values)

    def observe(self, values: np.ndarray) -> None:
        self._pending.append(np.ravel(np.asarray(values, dtype=np.float64)))

    def flush(self) -> None:
        """Apply the held observations to the shared state, in the order they came."""
        for values in self._pending:
            self.target.observe(values)
        self._pending = []


@dataclass
class JointStep:
    """What one layer of a joint batch returns (the runtime arrays are in group-major order)."""

    runtime_obs: np.ndarray  # (groups * images, D_r)
    static_obs: np.ndarray  # (groups, D_s)
    runtime_rewards: np.ndarray  # (groups * images,)
    static_rewards: np.ndarray  # (groups,)
    done: bool
    runtime_infos: list[dict] | None  # after the last layer: one per image (RuntimePrune-v0's)
    static_infos: list[dict] | None  # after the last layer: one per group (StaticPrune-v0's)


class JointEpisodes:
    """``groups`` static episodes of ``images`` runtime episodes each, in lockstep over one task.

    Args:
        task: the network, data, costs and budgets (the runtime environment's task).
        groups, images: static episodes per joint batch, images per static episode.
        runtime_normalizer, runtime_dual: the runtime reward's ``beta`` and ``lambda`` (None
            unless ``budget_mode="average"``), shared with ``RuntimePrune-v0``'s objects.
        static_normalizer, static_dual: the static reward's, shared with ``StaticPrune-v0``'s.
    """

    def __init__(self, task: PruningTask, groups: int, images: int, *, runtime_normalizer: LossNormalizer,
                 runtime_dual: DualVariable | None, static_normalizer: LossNormalizer, static_dual: DualVariable | None):
        if task.budget_range is not None:
            raise ValueError(f"budget={task.cfg.budget!r}: the joint update takes one budget, not a range or set")
        if groups < 1 or not 1 <= images <= len(task.source):
            raise ValueError(f"joint batch: groups must be >= 1 and images in [1, {len(task.source)}] "
                             f"(the split's size), got groups={groups}, images={images}")
        self.task, self.groups, self.images = task, int(groups), int(images)
        self.num_layers = task.num_layers
        self.static_normalizer, self.static_dual = static_normalizer, static_dual
        self._beta = _Deferred(runtime_normalizer)
        self._lam = None if runtime_dual is None else _Deferred(runtime_dual)
        ones = np.ones(self.num_layers)
        self.runtime = [RuntimeEpisodes(task, ones, self._beta, self._lam) for _ in range(self.groups)]  # type: ignore[arg-type]
        self.static_ratios = np.ones((self.groups, self.num_layers))
        self.t = 0

    @property
    def num_images(self) -> int:
        return self.groups * self.images

    def sample_indices(self, rng: np.random.Generator) -> np.ndarray:
        """``(groups, images)`` indices of the split, each group drawn without replacement (as ``StaticPrune-v0``'s batch)."""
        size = len(self.task.source)
        return np.stack([rng.choice(size, size=self.images, replace=False) for _ in range(self.groups)])

    def start(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Begin a joint batch on ``(groups, images)`` indices; returns the runtime and static observations of layer 0."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.shape != (self.groups, self.images):
            raise ValueError(f"indices must have shape {(self.groups, self.images)}, got {indices.shape}")
        self.static_ratios = np.ones((self.groups, self.num_layers))
        self.t = 0
        runtime_obs = []
        for g, episodes in enumerate(self.runtime):
            # a view of the group's row: layer t runs under the d_s that step() writes there
            episodes.set_static_ratios(self.static_ratios[g])
            runtime_obs.append(episodes.start(indices[g]))
        return np.concatenate(runtime_obs), self.task.static_observation(self.static_ratios, 0)

    def step(self, static_actions: np.ndarray, runtime_actions: np.ndarray) -> JointStep:
        """Algorithm 1, line 13 for layer ``t``: every group's ``d_s`` and every image's ``d_r``; the
        layer runs once per group. After the last layer, line 14: both agents' rewards."""
        task, t, m = self.task, self.t, self.images
        if t >= self.num_layers:
            raise RuntimeError("the joint batch is over: call start() first")
        static_actions = np.asarray(static_actions, dtype=np.float64).reshape(-1)
        runtime_actions = np.asarray(runtime_actions, dtype=np.float64).reshape(-1)
        if static_actions.shape != (self.groups,) or runtime_actions.shape != (self.num_images,):
            raise ValueError(f"a joint step takes {self.groups} static and {self.num_images} runtime keep ratios, "
                             f"got {static_actions.size} and {runtime_actions.size}")
        self.static_ratios[:, t] = task.clip(static_actions)
        results = []
        last = t == self.num_layers - 1
        for g, episodes in enumerate(self.runtime):
            if last:  # all d_s chosen: the group's stored-parameter ratio, reported with its runtime episodes
                episodes.set_static_ratios(self.static_ratios[g])
            results.append(episodes.advance(runtime_actions[g * m:(g + 1) * m, None]))
        self.t += 1
        runtime_obs = np.concatenate([r[0] for r in results])
        runtime_rewards = np.concatenate([r[1] for r in results])
        static_obs = task.static_observation(self.static_ratios, self.t)
        done = bool(results[0][2])
        if not done:
            return JointStep(runtime_obs, static_obs, runtime_rewards, np.zeros(self.groups), False, None, None)
        self._beta.flush()  # the batch's losses and costs update beta and lambda, after its rewards
        if self._lam is not None:
            self._lam.flush()
        runtime_infos = [info for r in results for info in r[3]]
        static_rewards, static_infos = self._static_rewards(runtime_infos)
        return JointStep(runtime_obs, static_obs, runtime_rewards, static_rewards, True, runtime_infos, static_infos)

    def _static_rewards(self, runtime_infos: list[dict]) -> tuple[np.ndarray, list[dict]]:
        """Eq. 14-15 (line 14): each group's mean loss against the static ``beta``, plus the parameter budget term."""
        params = np.array([episodes.params_ratio for episodes in self.runtime])
        return group_static_rewards(self.task, runtime_infos, params, self.static_ratios, self.static_normalizer,
                                    self.static_dual)


# --------------------------------------------------------------------------- the agents' side
class AgentRollout:
    """One agent's part of a joint rollout: SB3's ``collect_rollouts``, step for step, into a buffer of its own.

    The buffer has the model's buffer class sized ``n_steps x n_envs`` of the joint batch, and
    replaces the model's own during :meth:`train` only. A rollout starts at an episode boundary:
    ``episode_starts`` all True and, for a recurrent policy, zero LSTM states, which sb3-contrib
    also resets itself at every episode start (inside the rollout too).
    """

    def __init__(self, model: OnPolicyAlgorithm, n_envs: int, n_steps: int):
        if not isinstance(model, OnPolicyAlgorithm):
            raise TypeError(f"the joint update trains on-policy algorithms (PPO, A2C, TRPO, recurrent PPO), "
                            f"got {type(model).__name__}; use agent_update='alternating'")
        self.model, self.n_envs, self.n_steps = model, int(n_envs), int(n_steps)
        self.recurrent = isinstance(model.policy, RecurrentActorCriticPolicy)
        kwargs = dict(device=model.device, gamma=model.gamma, gae_lambda=model.gae_lambda, n_envs=self.n_envs)
        if self.recurrent:
            lstm = model.policy.lstm_actor
            self._state_shape = (lstm.num_layers, self.n_envs, lstm.hidden_size)
            self.buffer = type(model.rollout_buffer)(self.n_steps, model.observation_space, model.action_space,
                                                     (self.n_steps, *self._state_shape), **kwargs)
        else:
            self.buffer = type(model.rollout_buffer)(self.n_steps, model.observation_space, model.action_space,
                                                     **kwargs, **getattr(model, "rollout_buffer_kwargs", {}))
        self._pending: tuple | None = None
        self.collected: dict[str, np.ndarray] = {}

    def begin(self) -> None:
        """A new rollout (at an episode boundary)."""
        model = self.model
        model.policy.set_training_mode(False)
        self.buffer.reset()
        if model.use_sde:
            model.policy.reset_noise(self.n_envs)
        self.episode_starts = np.ones(self.n_envs, dtype=bool)
        if self.recurrent:
            zeros = lambda: th.zeros(self._state_shape, device=model.device)  # noqa: E731
            self.lstm_states = RNNStates((zeros(), zeros()), (zeros(), zeros()))

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The policy's sampled actions for ``obs``, clipped to the action space (the relaxed ones are stored)."""
        model = self.model
        with th.no_grad():
            obs_tensor = obs_as_tensor(obs, model.device)
            if self.recurrent:
                starts = th.tensor(self.episode_starts, dtype=th.float32, device=model.device)
                actions, values, log_probs, states = model.policy(obs_tensor, self.lstm_states, starts)
            else:
                actions, values, log_probs = model.policy(obs_tensor)
                states = None
        actions = actions.cpu().numpy()
        self._pending = (obs, actions, values, log_probs, states)
        if isinstance(model.action_space, spaces.Box):
            return np.clip(actions, model.action_space.low, model.action_space.high)
        return actions

    def record(self, rewards: np.ndarray, dones: np.ndarray) -> None:
        """Store the transition of the last :meth:`act` (as ``collect_rollouts``: the states *before* the step)."""
        obs, actions, values, log_probs, states = self._pending
        extra = {"lstm_states": self.lstm_states} if self.recurrent else {}
        self.buffer.add(obs, actions, np.asarray(rewards, dtype=np.float32), self.episode_starts, values, log_probs, **extra)
        self.episode_starts = np.asarray(dones, dtype=bool).copy()
        if self.recurrent:
            self.lstm_states = states
        self._pending = None

    def finish(self, last_obs: np.ndarray, dones: np.ndarray) -> None:
        """Returns and advantages (GAE), bootstrapped as ``collect_rollouts`` does (terminal here: no bootstrap)."""
        model = self.model
        with th.no_grad():
            obs = obs_as_tensor(last_obs, model.device)
            starts = th.tensor(dones, dtype=th.float32, device=model.device)
            values = (model.policy.predict_values(obs, self.lstm_states.vf, starts) if self.recurrent
                      else model.policy.predict_values(obs))
        self.buffer.compute_returns_and_advantage(last_values=values, dones=np.asarray(dones, dtype=bool))
        # what was collected, (n_steps, n_envs, ...), kept apart: train() flattens the buffer's arrays
        self.collected = {key: getattr(self.buffer, key).copy()
                          for key in ("observations", "actions", "rewards", "episode_starts", "returns")}

    def train(self, steps: int) -> None:
        """Count the rollout's ``steps`` and run the model's own ``train()`` on it (Algorithm 1, line 15)."""
        model = self.model
        model.num_timesteps += int(steps)
        model._update_current_progress_remaining(model.num_timesteps, model._total_timesteps)
        own, model.rollout_buffer = model.rollout_buffer, self.buffer
        try:
            model.train()
        finally:
            model.rollout_buffer = own
        model.logger.record("time/total_timesteps", model.num_timesteps, exclude="tensorboard")
        model.logger.dump(step=model.num_timesteps)


@dataclass
class JointUpdate:
    """What one joint update trained on: the last joint batch's final infos, and the rollouts."""

    runtime_infos: list[dict]
    static_infos: list[dict]
    runtime: AgentRollout
    static: AgentRollout


class JointTrainer:
    """Algorithm 1, lines 12-15 with both agents updated from the same forward passes.

    Each update collects ``batches`` joint batches (:class:`JointEpisodes`), then trains the
    static and the runtime agent, each with its own ``train()`` on its own buffer. The models'
    ``num_timesteps`` count only updates that finished: an interrupted rollout is not trained on
    (as in SB3's ``learn``), and a resumed run continues from the last finished update.

    Args:
        runtime_model, static_model: on-policy SB3 / sb3-contrib models (built on the single
            environments' spaces: ``RuntimePrune-v0`` and ``StaticPrune-v0``).
        episodes: the joint episodes.
        batches_per_update: joint batches per rollout (the last update of a phase may be shorter).
        seed: seeds the images of every update, with the runtime model's step count (reproducible on resume).
        callbacks: per agent (``"runtime"``, ``"static"``), SB3 callbacks fed each step's
            ``infos`` and ``dones`` (e.g. :class:`agents.callbacks.PruningLogCallback`).
    """

    def __init__(self, runtime_model: OnPolicyAlgorithm, static_model: OnPolicyAlgorithm, episodes: JointEpisodes, *,
                 batches_per_update: int = 1, seed: int = 0, callbacks: dict[str, BaseCallback] | None = None):
        if batches_per_update < 1:
            raise ValueError(f"batches_per_update must be >= 1, got {batches_per_update}")
        self.models = {"runtime": runtime_model, "static": static_model}
        self.episodes, self.batches_per_update, self.seed = episodes, int(batches_per_update), int(seed)
        task = episodes.task
        if runtime_model.observation_space.shape != (task.runtime_obs_dim,):
            raise ValueError(f"the runtime model observes {runtime_model.observation_space.shape}, the joint episodes "
                             f"give ({task.runtime_obs_dim},): were they built with the same observation mode?")
        if static_model.observation_space.shape != (task.static_obs_dim,):
            raise ValueError(f"the static model observes {static_model.observation_space.shape}, the joint episodes "
                             f"give ({task.static_obs_dim},)")
        for model in self.models.values():
            if not isinstance(model, OnPolicyAlgorithm):
                raise TypeError(f"the joint update trains on-policy algorithms (PPO, A2C, TRPO, recurrent PPO), got "
                                f"{type(model).__name__}; use agent_update='alternating'")
        self.callbacks = callbacks or {}
        self._rollouts: dict[int, dict[str, AgentRollout]] = {}

    @property
    def steps_per_batch(self) -> dict[str, int]:
        """Environment steps one joint batch gives each agent: one per layer and episode."""
        layers = self.episodes.num_layers
        return {"runtime": self.episodes.num_images * layers, "static": self.episodes.groups * layers}

    def setup(self, batches: int, tb_log_names: dict[str, str]) -> None:
        """SB3's ``_setup_learn`` for both models (logger, the run's total steps for schedules), before :meth:`learn`."""
        for name, model in self.models.items():
            model._setup_learn(batches * self.steps_per_batch[name], None, reset_num_timesteps=False,
                               tb_log_name=tb_log_names.get(name, name))
            callback = self.callbacks.get(name)
            if callback is not None:
                callback.init_callback(model)

    def _rollout_pair(self, batches: int) -> dict[str, AgentRollout]:
        if batches not in self._rollouts:
            steps = batches * self.episodes.num_layers
            self._rollouts[batches] = {
                "runtime": AgentRollout(self.models["runtime"], self.episodes.num_images, steps),
                "static": AgentRollout(self.models["static"], self.episodes.groups, steps),
            }
        return self._rollouts[batches]

    def learn(self, batches: int, after_update: Callable[[], Any] | None = None) -> None:
        """Train both agents on ``batches`` joint batches (updates of :attr:`batches_per_update`)."""
        done = 0
        while done < batches:
            n = min(self.batches_per_update, batches - done)
            self.update(n)
            done += n
            if after_update is not None:
                after_update()

    def update(self, batches: int = 1) -> JointUpdate:
        """Collect ``batches`` joint batches with both agents acting, then train both on them."""
        episodes, layers = self.episodes, self.episodes.num_layers
        rollouts = self._rollout_pair(batches)
        rng = np.random.default_rng([self.seed, int(self.models["runtime"].num_timesteps)])
        for name, rollout in rollouts.items():
            rollout.begin()
            if name in self.callbacks:
                self.callbacks[name].on_rollout_start()
        runtime, static = rollouts["runtime"], rollouts["static"]
        for _ in range(batches):
            runtime_obs, static_obs = episodes.start(episodes.sample_indices(rng))
            for _t in range(layers):
                step = episodes.step(static.act(static_obs), runtime.act(runtime_obs))
                runtime.record(step.runtime_rewards, np.full(episodes.num_images, step.done))
                static.record(step.static_rewards, np.full(episodes.groups, step.done))
                runtime_obs, static_obs = step.runtime_obs, step.static_obs
                self._feed("runtime", step.runtime_infos, step.done, episodes.num_images)
                self._feed("static", step.static_infos, step.done, episodes.groups)
                check_interrupt()  # a held Ctrl-C ends the rollout here, before anything is trained
        runtime.finish(runtime_obs, np.ones(episodes.num_images, dtype=bool))
        static.finish(static_obs, np.ones(episodes.groups, dtype=bool))
        for name in rollouts:
            if name in self.callbacks:
                self.callbacks[name].on_rollout_end()
        for name in ("static", "runtime"):  # line 15: each agent's PPO loss on the same forward passes
            rollouts[name].train(batches * self.steps_per_batch[name])
        return JointUpdate(step.runtime_infos, step.static_infos, runtime, static)

    def _feed(self, name: str, infos: list[dict] | None, done: bool, n: int) -> None:
        callback = self.callbacks.get(name)
        if callback is None:
            return
        callback.update_locals({"infos": infos if infos is not None else [{} for _ in range(n)],
                                "dones": np.full(n, done)})
        callback.on_step()


def joint_models_ok(*models: BaseAlgorithm) -> bool:
    """Whether the joint update can train these models (on-policy SB3 algorithms)."""
    return all(isinstance(m, OnPolicyAlgorithm) for m in models)


# --------------------------------------------------------------------------- choosing the update
#: how the agents learn in Algorithm 1's lines 12-15 (``agents.algorithm1``, ``train_agents.py --joint``):
#: ``"joint"`` (one reward batch updates both, this module) or ``"alternating"`` (each against the other's frozen policy)
AGENT_UPDATES = ("joint", "alternating")


def _named(option: str, value: str) -> str:
    """``agent_update='joint'`` (a keyword) or ``--agent-update joint`` (a command-line option)."""
    return f"{option} {value}" if option.startswith("-") else f"{option}={value!r}"


def off_policy_refusal(algo: str, option: str = "agent_update") -> str:
    """Why the joint update cannot train ``algo`` (an off-policy or other non-``OnPolicyAlgorithm`` class)."""
    return (f"{_named(option, 'joint')} trains on-policy algorithms (recurrent_ppo, ppo, a2c, trpo), not {algo!r}; "
            f"use {_named(option, 'alternating')}")


def resolve_agent_update(agent_update: str | None, *, budget_range: Any = None, on_policy: bool = True,
                         algo: str | None = None, option: str = "agent_update", default: str = "joint") -> str:
    """The agent update to run: ``agent_update`` checked, or its default when None.

    The default is ``default`` for one budget and an on-policy algorithm (``"joint"`` in Algorithm 1,
    ``"alternating"`` for ``train_agents.py --joint``, where it was measured to hold the budget better), ``"alternating"`` for a
    budget range or set (``budget_range``: the budget as given, None for one budget; an any-budget
    runtime agent draws its budget per episode) or an algorithm the joint update cannot train
    (``on_policy=False``). Asking for ``"joint"`` in those cases is a ValueError naming ``option``
    and the alternation, as is a value outside :data:`AGENT_UPDATES`.
    """
    if agent_update is not None and agent_update not in AGENT_UPDATES:
        raise ValueError(f"{option} must be one of {list(AGENT_UPDATES)}, got {agent_update!r}")
    if budget_range is not None:
        if agent_update == "joint":
            raise ValueError(f"{_named(option, 'joint')} takes one budget, not budget={budget_range!r}; an any-budget "
                             f"runtime agent trains with {_named(option, 'alternating')}")
        return "alternating"
    if not on_policy:
        if agent_update == "joint":
            raise ValueError(off_policy_refusal(str(algo), option))
        return "alternating"
    return agent_update or default


def rollout_batches(model: BaseAlgorithm, episodes_per_batch: int, num_layers: int) -> int:
    """Joint batches that hold one rollout of ``model`` as it learns alone (its ``n_steps x n_envs``
    steps), when a joint batch gives it ``episodes_per_batch`` episodes of ``num_layers`` steps; at least 1."""
    rollout = int(getattr(model, "n_steps", 1)) * int(getattr(model, "n_envs", 1))
    return max(1, rollout // (int(episodes_per_batch) * int(num_layers)))
