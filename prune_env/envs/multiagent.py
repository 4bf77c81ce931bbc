"""Both agents in one environment: a PettingZoo ``ParallelEnv`` (``pip install -e ".[multiagent]"``).

The paper trains the runtime and the static agent together (Sec. 3.3, Algorithm 1). Here they
act in the same episode, on the same network, with their own observations and rewards::

    from prune_env.envs.multiagent import parallel_env
    env = parallel_env(inputs=16, budget=0.5)           # agents: "static", "runtime_0" .. "runtime_15"
    observations, infos = env.reset(seed=0)
    while env.agents:
        actions = {agent: policy[agent](observations[agent]) for agent in env.agents}
        observations, rewards, terminations, truncations, infos = env.step(actions)

PettingZoo is imported by this module only: the core package does not need it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.utils import seeding

try:
    from pettingzoo import ParallelEnv
except ImportError as exc:  # the optional extra
    raise ImportError("prune_env.envs.multiagent needs PettingZoo: pip install -e '.[multiagent]' "
                      "(or pip install pettingzoo)") from exc

from prune_env.envs.actions import as_keep_ratios
from prune_env.envs.joint_batch import group_static_rewards
from prune_env.envs.runtime import RuntimePruneEnv
from prune_env.envs.static import uniform_static_point
from prune_env.envs.task import JOINT_TRADEOFF_RATE, check_range

STATIC_AGENT = "static"


class JointPruneParallelEnv(ParallelEnv):
    """The static agent and one runtime agent per input image, acting layer by layer in one episode.

    ## Description
    An episode is one static configuration of the network evaluated on ``inputs`` images drawn
    from the split. At step ``t`` every agent acts on prunable layer ``t`` at once: the **static
    agent** (``"static"``) sets the layer's permanent keep ratio ``d_s`` (paper Sec. 3.3.2), shared
    by every image of the episode, and **runtime agent** ``"runtime_i"`` sets the runtime keep
    ratio ``d_r`` of image ``i`` (Sec. 3.3.1). The layer then runs once on the batch, its masks
    merged by the trade-off pruner (Eq. 3-5) at rate ``R_r`` (``tradeoff_rate``, default 0.5 as in
    the paper's joint training), the permanent set inside every mask (Sec. 3.4). The runtime
    agents are copies of one role: give them one shared policy (parameter sharing) or one each.

    ## Agents, observations and actions
    * ``"static"``: ``StaticPrune-v0``'s observation (the layer's shape, share of MACs and
      parameters, one-hot layer, stored-parameter ratio so far, parameter budget) and action space.
    * ``"runtime_i"``: ``RuntimePrune-v0``'s observation of image ``i`` (pooled input features,
      one-hot layer, MAC ratio so far, MAC budget; ``observation="encoded"`` or ``"raw"``) and
      action space. An agent trained on one of the single environments with the same keywords
      acts here unchanged, and back.
    Actions are ``Box(alpha, 1, (1,))`` keep ratios, clipped to ``[alpha, 1]``; a missing agent's
    action is a ``KeyError`` naming it.

    ## Rewards
    Sparse, at the last layer; 0 before. ``"runtime_i"``: ``RuntimePrune-v0``'s reward of image
    ``i`` (Eq. 7-11 signs corrected, or the ``budget_mode`` / ``penalty`` / ``loss_scale``
    variants): ``-L_i / beta_r`` plus the MAC budget term. ``"static"``: ``StaticPrune-v0``'s
    (Eq. 14-15): ``-mean_i(L_i) / beta_s`` plus the parameter budget term, ``beta_s`` its own
    moving average over episodes (and its own dual variable under ``budget_mode="average"``).

    ## Episode end
    Every agent terminates after the ``L``-th layer (never truncated) and leaves ``agents``. The
    final infos are the single environments' (``loss``, ``correct``, ``macs_ratio``,
    ``params_ratio``, ``keep_ratios``, ``reward_acc``, ``reward_budget`` ... for each runtime agent;
    ``loss`` and ``accuracy`` of the batch, ``macs_ratio``, ``params_ratio``, ``keep_ratios`` ...
    for the static agent).

    ## Arguments
    ``inputs`` (16): images, hence runtime agents, per episode (at most the split's size); every
    other keyword is an environment keyword of ``RuntimePrune-v0`` (``budget`` gives both the MAC
    and the parameter budget; ``tradeoff_rate`` defaults to 0.5 here).
    """

    metadata = {"name": "joint_prune_v0", "render_modes": [], "is_parallelizable": True}

    def __init__(self, inputs: int = 16, **env_kwargs: Any):
        env_kwargs.setdefault("tradeoff_rate", JOINT_TRADEOFF_RATE)
        self.env = RuntimePruneEnv(static_policy=None, **env_kwargs)  # the task, the runtime reward, the lockstep episodes
        task = self.task = self.env.task
        if task.budget_range is not None:
            raise ValueError(f"budget={task.cfg.budget!r}: the joint environment takes one budget, not a range or set "
                             f"(budget ranges: RuntimePrune-v0 / StaticPrune-v0)")
        if isinstance(inputs, bool) or not isinstance(inputs, (int, np.integer)):
            raise ValueError(f"inputs must be an integer in [1, {len(task.source)}], got {inputs!r}")
        self.inputs = int(check_range("inputs", inputs, 1, len(task.source)))
        self.num_layers = task.num_layers
        self.static_normalizer = task.calibrated_normalizer(1.0, task.static_budget_keep_ratio)
        self.static_dual = task.calibrated_dual(task.params_budget, self.static_normalizer.beta, self._loss_and_params,
                                                task.static_budget_keep_ratio)
        self.runtime_agents = [f"runtime_{i}" for i in range(self.inputs)]
        self.possible_agents = [STATIC_AGENT, *self.runtime_agents]
        self.agents: list[str] = []
        keep = spaces.Box(np.float32(task.cfg.alpha), np.float32(1.0), (1,), np.float32)
        runtime_obs = spaces.Box(-np.inf, np.inf, (task.runtime_obs_dim,), np.float32)
        self._observation_spaces = {STATIC_AGENT: spaces.Box(-np.inf, np.inf, (task.static_obs_dim,), np.float32),
                                    **{agent: runtime_obs for agent in self.runtime_agents}}
        self._action_spaces = {agent: keep for agent in self.possible_agents}
        self._np_random = None
        self._static = np.ones(self.num_layers)
        self._t = 0

    def _loss_and_params(self, keep_ratio: float) -> tuple[float, float]:
        """Calibration loss (runtime keep 1) and parameter ratio of a uniform static keep ratio (as ``StaticPrune-v0``)."""
        return uniform_static_point(self.task, keep_ratio)

    # ------------------------------------------------------------------ PettingZoo's API
    def observation_space(self, agent: str) -> spaces.Box:
        """The agent's observation space (the same object at every call, as PettingZoo requires)."""
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Box:
        """The agent's action space (the same object at every call)."""
        return self._action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None):
        """Draw the episode's images (``options={"indices": [...]}`` picks them); all layers whole."""
        if seed is not None or self._np_random is None:
            self._np_random, _ = seeding.np_random(seed)
        source = len(self.task.source)
        if options and "indices" in options:
            indices = np.asarray(options["indices"], dtype=np.int64).reshape(-1)
            if indices.shape != (self.inputs,) or indices.min() < 0 or indices.max() >= source:
                raise ValueError(f"options['indices'] must hold {self.inputs} image indices in [0, {source - 1}], "
                                 f"got {indices.tolist()}")
        else:
            indices = self._np_random.choice(source, size=self.inputs, replace=False)
        self.agents = list(self.possible_agents)
        self._static = np.ones(self.num_layers)
        self._t = 0
        self.env.episodes.set_static_ratios(self._static)
        runtime_obs = self.env.episodes.start(indices)
        observations = {STATIC_AGENT: self.task.static_observation(self._static[None], 0)[0],
                        **dict(zip(self.runtime_agents, runtime_obs))}
        infos = {STATIC_AGENT: {"indices": indices.tolist()},
                 **{agent: {"index": int(i)} for agent, i in zip(self.runtime_agents, indices.tolist())}}
        return observations, infos

    def step(self, actions: dict):
        """Every agent's keep ratio of the current layer; the layer runs once for all images."""
        if not self.agents:
            raise RuntimeError("the episode is over: call reset() before step()")
        missing = [agent for agent in self.agents if agent not in actions]
        if missing:
            raise KeyError(f"actions: no action for agent(s) {missing[:4]}{' ...' if len(missing) > 4 else ''}; "
                           f"every live agent acts at every step")
        task, t = self.task, self._t
        self._static[t] = task.clip(self._one("static", actions[STATIC_AGENT]))[0]
        self.env.episodes.set_static_ratios(self._static)  # layer t runs under the static agent's new ratio
        runtime = np.concatenate([self._one(agent, actions[agent]) for agent in self.runtime_agents])
        runtime_obs, runtime_rewards, done, runtime_infos = self.env.episodes.advance(runtime[:, None])
        self._t += 1
        observations = {STATIC_AGENT: task.static_observation(self._static[None], self._t)[0],
                        **dict(zip(self.runtime_agents, runtime_obs))}
        if not done:
            rewards = dict.fromkeys(self.agents, 0.0)
            infos: dict[str, dict] = {agent: {} for agent in self.agents}
        else:
            static_reward, static_info = self._static_result(runtime_infos)
            rewards = {STATIC_AGENT: static_reward, **dict(zip(self.runtime_agents, runtime_rewards.astype(float).tolist()))}
            infos = {STATIC_AGENT: static_info, **dict(zip(self.runtime_agents, runtime_infos))}
        terminations = dict.fromkeys(self.agents, bool(done))
        truncations = dict.fromkeys(self.agents, False)
        if done:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    def render(self) -> None:
        return None

    def close(self) -> None:
        self.env.close()

    def state(self) -> np.ndarray:
        """A global view: the static observation followed by every runtime observation."""
        with torch.no_grad():
            runtime = self.task.runtime_observation(self.env.episodes.state)
        return np.concatenate([self.task.static_observation(self._static[None], self._t)[0], runtime.reshape(-1)])

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _one(agent: str, action: Any) -> np.ndarray:
        action = as_keep_ratios(action, f"action of {agent!r}").reshape(-1)
        if action.shape != (1,):
            raise ValueError(f"action of {agent!r} must hold one keep ratio, got shape {np.shape(action)}")
        return action

    def _static_result(self, runtime_infos: list[dict]) -> tuple[float, dict]:
        """Eq. 14-15: the batch's mean loss against ``beta_s`` and the parameter budget term."""
        params = np.array([self.env.episodes.params_ratio])
        rewards, infos = group_static_rewards(self.task, runtime_infos, params, self._static[None],
                                              self.static_normalizer, self.static_dual)
        return float(rewards[0]), infos[0]


def parallel_env(**kwargs: Any) -> JointPruneParallelEnv:
    """The joint environment (PettingZoo's naming convention); keywords as :class:`JointPruneParallelEnv`."""
    return JointPruneParallelEnv(**kwargs)
