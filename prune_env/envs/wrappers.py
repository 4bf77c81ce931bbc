"""Wrappers that change how an agent sees or acts on the environments.

* :class:`DiscreteKeepRatio` / :class:`VecDiscreteKeepRatio`: a discrete-action view, ``k``
  keep-ratio levels, with which DQN, QR-DQN and other discrete-action algorithms run on the
  pruning environments. :data:`DEFAULT_LEVELS` are RNP's (Lin et al. 2017, *Runtime Neural
  Pruning*: each layer's channels split into ``k = 4`` groups, the agent picks how many run);
  :data:`PURL_LEVELS` are PuRL's (Gupta et al. 2020, *Learning to Prune Deep Neural Networks via
  Reinforcement Learning*: one action set for all layers in steps of 0.1).
* :class:`AMCFeatures`, :class:`AMCWrapper`, :class:`VecAMCWrapper`: AMC's layer-embedding state
  (He et al. 2018, *AMC: AutoML for Model Compression and Acceleration on Mobile Devices*,
  Sec. 3.2) built from ``StaticPrune-v0``'s task, and, as an option, AMC's action clamping so
  that the budget can still be met when every remaining layer is pruned as far as allowed.
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from prune_env.envs.task import PruningTask

#: RNP's levels: each layer's channels in k = 4 groups, the agent picks how many to run
DEFAULT_LEVELS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
#: PuRL's action set is one set of values for every layer in steps of 0.1; as keep ratios:
PURL_LEVELS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 11))


def _check_levels(levels: Sequence[float] | int) -> np.ndarray:
    """The keep ratios of the levels; an int ``k`` gives ``k`` evenly spaced ones, ``1/k, 2/k, ..., 1`` (RNP's for 4)."""
    if isinstance(levels, (int, np.integer)) and not isinstance(levels, bool):
        if levels < 2:
            raise ValueError(f"levels: k must be >= 2 keep-ratio levels, got {levels}")
        return np.arange(1, int(levels) + 1, dtype=np.float64) / int(levels)
    try:
        arr = np.asarray(levels, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        arr = np.empty(0)
    if arr.size < 2 or not np.all((arr > 0) & (arr <= 1)):
        raise ValueError(f"levels must be an int k >= 2 (evenly spaced levels) or at least 2 keep ratios in (0, 1], "
                         f"got {levels!r}")
    return arr


class DiscreteKeepRatio(gym.ActionWrapper):
    """Action ``i`` in ``Discrete(k)`` applies keep ratio ``levels[i]``; ``levels`` is the keep ratios or
    an int ``k`` (``1/k, 2/k, ..., 1``: ``DiscreteKeepRatio(env, 4)`` is RNP's)."""

    def __init__(self, env: gym.Env, levels: Sequence[float] | int = DEFAULT_LEVELS):
        super().__init__(env)
        self.levels = _check_levels(levels)
        self.action_space = spaces.Discrete(len(self.levels))

    def action(self, action) -> np.ndarray:
        return np.array([self.levels[int(action)]], dtype=np.float32)


class VecDiscreteKeepRatio(VecEnvWrapper):
    """:class:`DiscreteKeepRatio` for a (batched) VecEnv."""

    def __init__(self, venv: VecEnv, levels: Sequence[float] | int = DEFAULT_LEVELS):
        self.levels = _check_levels(levels)
        super().__init__(venv, action_space=spaces.Discrete(len(self.levels)))

    def step_async(self, actions: np.ndarray) -> None:
        self.venv.step_async(self.levels[np.asarray(actions).reshape(-1).astype(int)][:, None])

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        return self.venv.step_wait()


# --------------------------------------------------------------------------- AMC state and clamping
AMC_FEATURES = ("layer", "c_out", "c_in", "height", "width", "stride", "kernel", "cost", "reduced", "rest", "previous_action")
RESOURCES = ("params", "macs")


class AMCFeatures:
    """AMC's state of layer ``t`` (He et al. 2018, Sec. 3.2) and its action bound, from a task.

    The 11 features, in order (:data:`AMC_FEATURES`): layer index ``t``, output channels ``n``,
    input channels ``c``, input height ``h`` and width ``w``, stride, kernel size ``k``, the
    layer's dense cost, the cost *reduced* by the choices so far, the dense cost of the layers
    after ``t`` (*rest*), and the previous action ``a_{t-1}`` (0 at the first layer). As in AMC's
    code, the static columns (``t`` to the layer cost) are min-max normalised over the layers
    (a constant column is 0) and *reduced* / *rest* are fractions of the dense total.

    ``resource`` says which cost: ``"params"`` (stored parameters, what ``StaticPrune-v0``'s
    budget constrains; AMC's model-size setting) or ``"macs"`` (AMC's FLOPs setting; for the
    static choices alone, i.e. runtime keep ratio 1). The clamping bound uses the same resource
    and the task's matching budget.
    """

    def __init__(self, task: PruningTask, resource: str = "params"):
        if resource not in RESOURCES:
            raise ValueError(f"resource must be one of {list(RESOURCES)}, got {resource!r}")
        self.task, self.resource = task, resource
        self.num_layers = task.num_layers
        self.budget = task.params_budget if resource == "params" else task.macs_budget
        convs = {e.out_layer: e for e in task.costs.entries if e.kind == "conv" and e.out_layer >= 0}
        shapes = self._input_shapes(task)
        rows, shares = [], []
        dense = task.costs.dense_params if resource == "params" else task.costs.dense_macs
        for t, layer in enumerate(task.net.layers):
            e = convs[t]
            full_in, full_out = torch.tensor(e.in_channels), torch.tensor(e.out_channels)
            cost = float(e.params(full_in, full_out) if resource == "params" else e.macs(full_in, full_out)) / dense
            _, h, w = shapes[t]
            rows.append([t, layer.out_channels, layer.in_channels, h, w, layer.conv.stride[0], layer.conv.kernel_size[0], cost])
            shares.append(cost)
        raw = np.asarray(rows, dtype=np.float64)
        span = raw.max(0) - raw.min(0)
        self.static = np.where(span > 0, (raw - raw.min(0)) / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)
        shares = np.asarray(shares)
        self.rest = np.array([shares[t + 1 :].sum() for t in range(self.num_layers)], dtype=np.float32)

    @staticmethod
    def _input_shapes(task: PruningTask) -> list[tuple[int, int, int]]:
        """``(C, H, W)`` entering every prunable layer (one dense pass on a zero image)."""
        net = task.net
        shapes = []
        with torch.no_grad():
            state = net.begin(torch.zeros(1, *task.input_shape, device=task.device))
            for _ in range(net.num_layers):
                shapes.append(tuple(int(v) for v in state.x.shape[1:]))
                state = net.step(state, 1.0, 1.0)
        return shapes

    @property
    def dim(self) -> int:
        return len(AMC_FEATURES)

    def cost_ratio(self, ratios: np.ndarray, upto: int | None = None) -> np.ndarray:
        """``(B,)`` resource ratio of static keep ratios ``(B, L)`` (layers from ``upto`` on whole)."""
        stored = self.task.stored_counts(ratios, upto=upto)
        costs = self.task.costs
        value = costs.params_ratio(stored) if self.resource == "params" else costs.macs_ratio(stored)
        return np.asarray(value, dtype=np.float64).reshape(-1)

    def observation(self, ratios: np.ndarray, t: int, previous: np.ndarray) -> np.ndarray:
        """``(B, 11)`` features before layer ``t`` given the ratios so far; after the last layer all but *reduced* are 0."""
        ratios = np.asarray(ratios, dtype=np.float64).reshape(-1, self.num_layers)
        batch = ratios.shape[0]
        out = np.zeros((batch, self.dim), dtype=np.float32)
        out[:, 8] = 1.0 - self.cost_ratio(ratios, upto=min(t, self.num_layers))
        if t < self.num_layers:
            out[:, :8] = self.static[t]
            out[:, 9] = self.rest[t]
            out[:, 10] = np.asarray(previous, dtype=np.float32).reshape(-1) if t > 0 else 0.0
        return out

    def max_keep_ratio(self, ratios: np.ndarray, t: int) -> np.ndarray:
        """AMC's clamp: per episode, the largest keep ratio of layer ``t`` that still meets the budget
        if every later layer keeps only ``alpha`` (``alpha`` when none does)."""
        ratios = np.asarray(ratios, dtype=np.float64).reshape(-1, self.num_layers)
        batch, alpha = ratios.shape[0], self.task.cfg.alpha
        channels = int(self.task.channels[t])
        candidates = np.maximum(alpha, np.arange(1, channels + 1) / channels)  # k / C keeps exactly k channels
        trial = np.repeat(ratios, channels, axis=0)
        trial[:, t] = np.tile(candidates, batch)
        trial[:, t + 1 :] = alpha
        ok = (self.cost_ratio(trial) <= self.budget + 1e-9).reshape(batch, channels)
        best = np.where(ok.any(1), candidates[np.where(ok, np.arange(channels), -1).max(1).clip(0)], alpha)
        return best


class AMCWrapper(gym.Wrapper):
    """``StaticPrune-v0`` with AMC's observation (11 features) and, optionally, AMC's action clamping.

    Observation: ``Box(0, 1, (11,))`` from :class:`AMCFeatures`. Action: the keep ratio, as in
    the environment (``Box(alpha, 1, (1,))``); with ``clamp=True`` it is lowered to
    :meth:`AMCFeatures.max_keep_ratio` before the environment sees it, so that every episode
    meets the budget (AMC, Sec. 3.3: "if the budget cannot be satisfied even if all the following
    layers are pruned to the maximum, the action is limited"). The applied ratio is reported in
    ``info["applied_action"]``. Wrap a :class:`~prune_env.benchmark.replay.RecordEpisode` *inside* this
    wrapper to record the applied (clamped) actions.
    """

    def __init__(self, env: gym.Env, *, resource: str = "params", clamp: bool = True):
        super().__init__(env)
        self.features = AMCFeatures(env.unwrapped.task, resource)
        self.clamp = bool(clamp)
        self.alpha = float(env.unwrapped.task.cfg.alpha)
        self.observation_space = spaces.Box(0.0, 1.0, (self.features.dim,), np.float32)
        self._ratios = np.ones((1, self.features.num_layers))
        self._t = 0

    def reset(self, **kwargs):
        _, info = self.env.reset(**kwargs)
        self._ratios = np.ones((1, self.features.num_layers))
        self._t = 0
        return self.features.observation(self._ratios, 0, np.zeros(1))[0], info

    def applied(self, action: Any) -> float:
        """The keep ratio the wrapper passes on for ``action`` at the current layer."""
        a = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], self.alpha, 1.0))
        if self.clamp:
            a = min(a, float(self.features.max_keep_ratio(self._ratios, self._t)[0]))
        return a

    def step(self, action):
        a = self.applied(action)
        _, reward, terminated, truncated, info = self.env.step(np.array([a], dtype=np.float32))
        self._ratios[0, self._t] = a
        self._t += 1
        info = dict(info, applied_action=a)
        return self.features.observation(self._ratios, self._t, np.array([a]))[0], reward, terminated, truncated, info


class VecAMCWrapper(VecEnvWrapper):
    """:class:`AMCWrapper` for a VecEnv of ``StaticPrune-v0`` (batched or ``DummyVecEnv``).

    All sub-environments run episodes of the same length in lockstep (they reset together),
    which both VecEnvs of this package guarantee.
    """

    def __init__(self, venv: VecEnv, *, resource: str = "params", clamp: bool = True):
        task = venv.get_attr("task")[0]
        self.features = AMCFeatures(task, resource)
        self.clamp = bool(clamp)
        self.alpha = float(task.cfg.alpha)
        super().__init__(venv, observation_space=spaces.Box(0.0, 1.0, (self.features.dim,), np.float32))
        self._ratios = np.ones((self.num_envs, self.features.num_layers))
        self._t = 0
        self._applied = np.ones(self.num_envs)

    def reset(self) -> np.ndarray:
        self.venv.reset()
        self._ratios[:] = 1.0
        self._t = 0
        return self.features.observation(self._ratios, 0, np.zeros(self.num_envs))

    def step_async(self, actions: np.ndarray) -> None:
        a = np.clip(np.asarray(actions, dtype=np.float64).reshape(self.num_envs, -1)[:, 0], self.alpha, 1.0)
        if self.clamp:
            a = np.minimum(a, self.features.max_keep_ratio(self._ratios, self._t))
        self._applied = a
        self.venv.step_async(a[:, None].astype(np.float32))

    def step_wait(self):
        _, rewards, dones, infos = self.venv.step_wait()
        a = self._applied
        self._ratios[:, self._t] = a
        self._t += 1
        obs = self.features.observation(self._ratios, self._t, a)
        for i, info in enumerate(infos):
            info["applied_action"] = float(a[i])
        if dones.any():
            if not dones.all():
                raise RuntimeError("VecAMCWrapper needs sub-environments that finish their episodes together")
            for i, info in enumerate(infos):
                info["terminal_observation"] = obs[i]
            self._ratios[:] = 1.0
            self._t = 0
            obs = self.features.observation(self._ratios, 0, np.zeros(self.num_envs))
        return obs, rewards, dones, infos


__all__ = [
    "AMCFeatures", "AMCWrapper", "AMC_FEATURES", "DEFAULT_LEVELS", "DiscreteKeepRatio", "PURL_LEVELS", "VecAMCWrapper",
    "VecDiscreteKeepRatio",
]
