"""Baselines for the pruning environments under the same budget, and the AMC state / clamping wrappers.

Every baseline is a pair the evaluation accepts, ``(runtime policy, static keep ratios)`` on a
:class:`~prune_env.envs.task.PruningTask` (see :func:`prune_env.evaluation.evaluate_policies`),
bundled as a :class:`Baseline`:

* ``uniform`` (FBS-like; Gao et al. 2019, *Dynamic Channel Pruning: Feature Boosting and
  Suppression*): every layer keeps the same runtime fraction of channels, the largest uniform
  keep ratio whose MAC ratio meets the budget, chosen per input by the learned runtime
  importance ``u_r`` (:func:`prune_env.evaluation.uniform_keep_ratio`);
* ``l1_static`` (Li et al. 2017, *Pruning Filters for Efficient ConvNets*): static pruning with
  the uniform keep ratio that meets the parameter budget, channels ranked by the L1 norm of
  their conv filters instead of the learned static importance ``u_s`` (pure static pruning,
  ``R_r = 0``, runtime keep ratio 1). See :func:`rank_by_l1` for how the ranking is swapped
  while the trained network's output scaling ``u_r * u_s`` is kept;
* ``bn_static`` (Liu et al. 2017, *Learning Efficient Convolutional Networks through Network
  Slimming*): the same, ranked by the magnitude of the BN scale ``|gamma|`` of each channel;
* ``static_uniform``: the same uniform static pruning ranked by the learned ``u_s``, the control
  that isolates the effect of the L1 ranking;
* ``random``: an independent random keep ratio per layer and per input (see
  :class:`RandomKeepRatioPolicy`), centred so that the *expected* MAC ratio meets the budget.

The trained baselines (the paper's recurrent PPO, AMC-style DDPG, PuRL-style DQN, RNP-style
QR-DQN) are run by :mod:`prune_env.benchmark`; this module holds what they need of the
environments and nothing of ``agents``:

* :class:`AMCFeatures`, :class:`AMCWrapper`, :class:`VecAMCWrapper`: AMC's layer-embedding state
  (He et al. 2018, *AMC: AutoML for Model Compression and Acceleration on Mobile Devices*,
  Sec. 3.2) built from ``StaticPrune-v0``'s task, and, as an option, AMC's action clamping so
  that the budget can still be met when every remaining layer is pruned as far as allowed.
* :data:`PURL_LEVELS` / :data:`RNP_LEVELS`: the discrete keep-ratio levels of the PuRL-style
  (Gupta et al. 2020, *Learning to Prune Deep Neural Networks via Reinforcement Learning*: DQN,
  dense rewards, one action set for all layers in steps of 0.1) and RNP-style (Lin et al. 2017,
  *Runtime Neural Pruning*: ``k`` channel groups, here ``k = 4``) agents.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from torch import Tensor, nn

from prune_env.envs.task import STATIC_TRADEOFF_RATE, PruningTask
from prune_env.evaluation import evaluate_policies, uniform_keep_ratio
from prune_env.nets.gated import GatedConv, GatedNet
from prune_env.nets.masks import keep_count
from prune_env.policies import KeepRatioPolicy

#: PuRL's action set is one set of values for every layer in steps of 0.1; as keep ratios:
PURL_LEVELS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 11))
#: RNP splits each layer's channels into k groups and picks how many to run; k = 4:
RNP_LEVELS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)

BASELINE_NAMES = ("uniform", "l1_static", "bn_static", "static_uniform", "random")


# --------------------------------------------------------------------------- budget helpers
def uniform_static_ratio(task: PruningTask, budget: float | None = None) -> float:
    """The largest uniform static keep ratio whose stored-parameter ratio meets ``budget``
    (see :meth:`PruningTask.uniform_static_ratio`)."""
    return task.uniform_static_ratio(budget)


def _keep_counts(ratios: np.ndarray, channels: Tensor) -> Tensor:
    """``(N, L)`` kept channel counts of ``(N, L)`` keep ratios (the environments' rounding rule)."""
    r = torch.as_tensor(np.asarray(ratios, dtype=np.float64))
    return torch.stack([keep_count(r[:, t], int(c)) for t, c in enumerate(channels)], 1)


# --------------------------------------------------------------------------- L1-norm ranking
def l1_filter_norms(layer: GatedConv, normalise: bool = True) -> Tensor:
    """The L1 norm of each output filter of the layer's conv (Li et al. 2017), ``(C_out,)``.

    ``normalise`` divides by the largest norm, so the values lie in ``(0, 1]`` (a filter of
    all zeros gets a tiny positive value, so that it ranks lowest without dividing by zero).
    """
    norms = layer.conv.weight.detach().abs().sum(dim=(1, 2, 3)).double()
    if normalise:
        norms = norms / norms.max().clamp_min(1e-30)
    return norms.clamp_min(1e-12).to(layer.static_importance.dtype)


#: modules that act channel-wise linearly in eval mode, so a per-channel scale passes through them
_LINEAR_PASS = (nn.Identity, nn.Dropout, nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.Flatten)


def _consumer_slices(net: GatedNet, t: int) -> list[tuple[nn.Module, str]]:
    """The modules (and weight names) that read layer ``t``'s gated output linearly by input channel.

    Who reads the channels comes from the stages (:meth:`GatedNet.channel_consumers`); this checks
    that the way there is channel-wise linear, so that a per-channel factor can be moved into them.
    """
    stage = net.stages[t]
    path = [m for name in stage.gate_path for m in stage.get_submodule(name).modules()]
    if not all(isinstance(m, (nn.Sequential, *_LINEAR_PASS)) for m in path):
        raise NotImplementedError(f"rank_by_l1: stage {t}'s post-processing is not channel-wise linear")
    try:
        consumers = net.channel_consumers(t)
    except NotImplementedError as err:
        raise NotImplementedError(f"rank_by_l1: {err}") from None
    for name, module in consumers:
        if getattr(module, "groups", 1) != 1:
            raise NotImplementedError(f"rank_by_l1: grouped conv {name!r} reads a gated layer; not supported")
        if name.startswith("head"):  # what comes before the classifier in the head must pass the factor on
            for m in net.head.modules():
                if m is module:
                    break
                if not isinstance(m, (nn.Sequential, *_LINEAR_PASS)):
                    raise NotImplementedError(f"rank_by_l1: head module {m} before the classifier is not channel-wise linear")
    return [(module, "weight") for _, module in consumers]


def rerank_static(net: GatedNet, scores: Sequence[Tensor], *, inplace: bool = False) -> GatedNet:
    """A copy of ``net`` (or ``net`` itself) whose static masks rank layer ``t``'s channels by ``scores[t]``.

    ``GatedConv`` uses ``u_s`` twice: to rank channels for the static mask and the permanent set
    (Eq. 3-5, Sec. 3.4) and to scale the output, ``F_hat = F_out (1 - M) (u_r u_s)`` (Eq. 6).
    Replacing ``u_s`` by positive scores ``n`` would change the output scale. This function
    keeps the trained function exactly by folding the ratio ``u_s / n`` of every channel into
    the weights that read it (next layer's conv and importance predictor input slices; ``conv2``
    in a residual block; the classifier after the last layer), which are linear in it (BN is in
    eval mode, dropout is the identity). Masks then rank by ``n`` while the network computes
    ``F_out (1 - M) (u_r u_s)`` as trained; with nothing pruned the logits are unchanged (up to
    rounding).

    The runtime observations of the next layer's pooled input change scale (the environments'
    calibrated encoders see different features), which is why the re-ranked baselines are
    evaluated with runtime keep ratio 1. A cleaner route is a ranking hook in :class:`GatedConv`
    (a separate ranking vector used by the masks only); this needs no change to ``prune_env/nets``.

    Raises:
        NotImplementedError: a gated output feeds something the fold cannot pass through (a
            residual block's shortcut, a grouped conv, a non-linear module).
        ValueError: a score is not positive and finite, or has the wrong length.
    """
    if net.gate_config.hold_static:
        raise ValueError("rerank_static: the network holds u_s at 1 (hold_static); nothing to re-rank")
    if len(scores) != net.num_layers:
        raise ValueError(f"rerank_static: need {net.num_layers} score vectors, got {len(scores)}")
    net = net if inplace else copy.deepcopy(net)
    with torch.no_grad():
        for t, layer in enumerate(net.layers):
            n = torch.as_tensor(scores[t]).detach().to(layer.static_importance)
            if n.shape != layer.static_importance.shape or not bool(torch.all(torch.isfinite(n) & (n > 0))):
                raise ValueError(f"rerank_static: scores[{t}] must be {layer.out_channels} positive finite values")
            factor = layer.static_importance.detach() / n  # the consumers absorb u_s / n per input channel
            for module, name in _consumer_slices(net, t):
                weight = getattr(module, name)
                shape = [1, -1] + [1] * (weight.dim() - 2)
                weight.mul_(factor.to(weight.dtype).reshape(shape))
            layer.static_importance.copy_(n)
    return net


def rank_by_l1(net: GatedNet, *, inplace: bool = False) -> GatedNet:
    """:func:`rerank_static` by the normalised filter L1 norms (Li et al. 2017), see :func:`l1_filter_norms`."""
    return rerank_static(net, [l1_filter_norms(layer) for layer in net.layers], inplace=inplace)


def task_variant(task: PruningTask, *, tradeoff_rate: float | None = None, net: GatedNet | None = None) -> PruningTask:
    """The same task with another trade-off rate and/or network; ``task`` is never touched.

    Built afresh from the configuration (so budgets that depend on ``R_r``, such as the parameter
    budget of a sparsity, follow the new rate), then given a deep copy of ``task``'s network (or
    ``net``) and observation encoders recalibrated on it.
    """
    rate = task.cfg.tradeoff_rate if tradeoff_rate is None else float(tradeoff_rate)
    variant = PruningTask(dataclasses.replace(task.cfg, tradeoff_rate=rate))
    variant.net = copy.deepcopy(task.net) if net is None else net
    variant.net.eval()
    variant.tradeoff_rate = rate
    for p in variant.net.parameters():
        p.requires_grad_(False)
    variant._build_encoders(len(task.calibration_images))
    return variant


# --------------------------------------------------------------------------- random policy
class RandomKeepRatioPolicy(KeepRatioPolicy):
    """An independent random keep ratio per layer and per input, uniform on ``[c - w, c + w] ∩ [alpha, 1]``.

    Args:
        center: ``c``; :meth:`for_budget` sets it so that the expected MAC ratio meets a budget.
        spread: ``w`` (0.25).
        alpha: the minimum keep ratio.
        seed: seed of the policy's own generator (reset by :meth:`reseed`, not by ``reset``, so
            successive batches draw fresh values).
    """

    def __init__(self, center: float, spread: float = 0.25, alpha: float = 0.1, seed: int = 0):
        self.center, self.spread, self.alpha, self.seed = float(center), float(spread), float(alpha), int(seed)
        self.rng = np.random.default_rng(self.seed)

    @property
    def bounds(self) -> tuple[float, float]:
        return max(self.alpha, self.center - self.spread), min(1.0, self.center + self.spread)

    def reseed(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(self.seed if seed is None else seed)

    def act(self, observations: np.ndarray, t: int) -> np.ndarray:
        lo, hi = self.bounds
        return self.rng.uniform(lo, hi, observations.shape[0])

    @classmethod
    def for_budget(cls, task: PruningTask, budget: float | None = None, *, spread: float = 0.25, seed: int = 0,
                   samples: int = 4096) -> "RandomKeepRatioPolicy":
        """The policy whose expected per-input MAC ratio equals ``budget`` (default: the task's).

        ``c`` is found by bisection on a Monte-Carlo estimate of the expected MAC ratio over
        ``samples`` draws of ``L`` ratios (fixed draws, so the estimate is monotone in ``c``),
        counting channels with the environments' rounding rule. It meets the budget on average,
        not per input: about half the inputs go over.
        """
        budget = task.macs_budget if budget is None else float(budget)
        alpha = task.cfg.alpha
        u = np.random.default_rng(12_345).random((samples, task.num_layers))

        def expected(center: float) -> float:
            lo, hi = max(alpha, center - spread), min(1.0, center + spread)
            return float(task.costs.macs_ratio(_keep_counts(lo + u * (hi - lo), task.channels)).mean())

        lo_c, hi_c = alpha, 1.0
        if expected(hi_c) <= budget:
            lo_c = hi_c
        else:
            for _ in range(40):
                mid = 0.5 * (lo_c + hi_c)
                lo_c, hi_c = (mid, hi_c) if expected(mid) <= budget else (lo_c, mid)
        policy = cls(lo_c, spread=spread, alpha=alpha, seed=seed)
        policy.expected_macs_ratio = expected(lo_c)
        return policy

    def __repr__(self) -> str:
        lo, hi = self.bounds
        return f"RandomKeepRatioPolicy(U[{lo:.3f}, {hi:.3f}], seed={self.seed})"


# --------------------------------------------------------------------------- the baselines
@dataclass
class Baseline:
    """A policy pair on a task, evaluated like a trained agent.

    Attributes:
        name: the registry name.
        description: one line, with the method it follows.
        task: the task to evaluate on (a variant of the caller's when the baseline needs one).
        runtime_policy: anything :func:`~prune_env.policies.as_policy` accepts.
        static_ratios: ``(L,)`` static keep ratios.
        env_kwargs: ``RuntimePrune-v0`` keywords under which ``gym.make`` reproduces the
            baseline's episodes (recorded for :func:`prune_env.replay.validate`), or None when
            no environment keyword can (the L1 ranking changes the network).
        net_transform: applied to an environment's network to reproduce the baseline (L1).
        constraint: the budget the baseline is built to meet: ``"macs"`` (runtime) or ``"params"`` (static).
    """

    name: str
    description: str
    task: PruningTask
    runtime_policy: Any
    static_ratios: np.ndarray
    env_kwargs: dict | None = field(default_factory=dict)
    net_transform: Callable[[GatedNet], GatedNet] | None = None
    info: dict = field(default_factory=dict)
    constraint: str = "macs"

    def evaluate(self, batch_size: int = 512) -> dict:
        """:func:`~prune_env.evaluation.evaluate_policies` on :attr:`task`, plus the parameter-budget check."""
        metrics = evaluate_policies(self.task, self.runtime_policy, self.static_ratios, batch_size=batch_size)
        metrics["params_within_budget"] = float(metrics["params_ratio"] <= metrics["params_budget"] + 1e-9)
        metrics.update(self.info)
        return metrics


def uniform_baseline(task: PruningTask, static_ratios: Sequence[float] | None = None) -> Baseline:
    """FBS-like: the uniform runtime keep ratio meeting the MAC budget, ranked by the learned ``u_r``."""
    ratio = uniform_keep_ratio(task)
    static = np.ones(task.num_layers) if static_ratios is None else np.asarray(static_ratios, dtype=np.float64)
    return Baseline("uniform", "uniform runtime keep ratio meeting the MAC budget, learned u_r ranking (FBS-like)",
                    task, ratio, static, env_kwargs={}, info={"uniform_keep_ratio": ratio})


def static_uniform_baseline(task: PruningTask) -> Baseline:
    """Uniform static pruning meeting the parameter budget, ranked by the learned ``u_s`` (``R_r = 0``)."""
    variant = task_variant(task, tradeoff_rate=STATIC_TRADEOFF_RATE)
    ratio = uniform_static_ratio(variant)
    return Baseline("static_uniform", "uniform static keep ratio meeting the parameter budget, learned u_s ranking",
                    variant, 1.0, np.full(task.num_layers, ratio),
                    env_kwargs={"tradeoff_rate": STATIC_TRADEOFF_RATE, "static_policy": [ratio] * task.num_layers},
                    info={"uniform_static_ratio": ratio}, constraint="params")


def l1_static_baseline(task: PruningTask) -> Baseline:
    """Li et al. (2017): uniform static pruning meeting the parameter budget, filters ranked by L1 norm.

    Measures L1-norm *selection* within our gated network: the channels removed are those of
    smallest filter L1 norm, the kept ones are scaled by the trained ``u_r * u_s`` as in every
    other policy (see :func:`rank_by_l1`), and nothing is fine-tuned after pruning (Li et al.
    retrain; none of the policies here do).
    """
    variant = task_variant(task, tradeoff_rate=STATIC_TRADEOFF_RATE, net=rank_by_l1(task.net))
    ratio = uniform_static_ratio(variant)
    return Baseline("l1_static", "uniform static keep ratio meeting the parameter budget, filter L1-norm ranking (Li et al. 2017)",
                    variant, 1.0, np.full(task.num_layers, ratio), env_kwargs=None, net_transform=lambda net: rank_by_l1(net, inplace=True),
                    info={"uniform_static_ratio": ratio}, constraint="params")


def bn_static_baseline(task: PruningTask) -> Baseline:
    """Network Slimming (Liu et al. 2017) selection: uniform static pruning ranked by BN ``|gamma|``.

    As :func:`l1_static_baseline`, with each channel scored by the magnitude of its BN scale
    (a better proxy than the filter L1 norm when BN follows the conv: BN undoes the filter's scale).
    """
    scores = []
    for layer in task.net.layers:
        gamma = getattr(layer.bn, "weight", None)
        if gamma is None:
            raise ValueError("bn_static: the prunable layers have no affine BN")
        scores.append(gamma.detach().abs().clamp_min(1e-12))

    def transform(net: GatedNet) -> GatedNet:
        return rerank_static(net, [layer.bn.weight.detach().abs().clamp_min(1e-12) for layer in net.layers], inplace=True)

    variant = task_variant(task, tradeoff_rate=STATIC_TRADEOFF_RATE, net=rerank_static(task.net, scores))
    ratio = uniform_static_ratio(variant)
    return Baseline("bn_static", "uniform static keep ratio meeting the parameter budget, BN |gamma| ranking (Network Slimming)",
                    variant, 1.0, np.full(task.num_layers, ratio), env_kwargs=None, net_transform=transform,
                    info={"uniform_static_ratio": ratio}, constraint="params")


def random_baseline(task: PruningTask, seed: int = 0, static_ratios: Sequence[float] | None = None) -> Baseline:
    """Random keep ratios per layer and input whose expected MAC ratio meets the budget."""
    policy = RandomKeepRatioPolicy.for_budget(task, seed=seed)
    static = np.ones(task.num_layers) if static_ratios is None else np.asarray(static_ratios, dtype=np.float64)
    lo, hi = policy.bounds
    return Baseline("random", f"random keep ratio per layer and input, U[{lo:.3f}, {hi:.3f}] (expected MACs = budget)",
                    task, policy, static, env_kwargs={},
                    info={"random_bounds": [lo, hi], "expected_macs_ratio": policy.expected_macs_ratio})


def make_baseline(name: str, task: PruningTask, seed: int = 0) -> Baseline:
    """The baseline called ``name`` (one of :data:`BASELINE_NAMES`) on ``task``."""
    if name == "uniform":
        return uniform_baseline(task)
    if name == "l1_static":
        return l1_static_baseline(task)
    if name == "bn_static":
        return bn_static_baseline(task)
    if name == "static_uniform":
        return static_uniform_baseline(task)
    if name == "random":
        return random_baseline(task, seed=seed)
    raise ValueError(f"baseline must be one of {list(BASELINE_NAMES)}, got {name!r}")


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
    ``info["applied_action"]``. Wrap a :class:`~prune_env.replay.RecordEpisode` *inside* this
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
    "AMCFeatures", "AMCWrapper", "AMC_FEATURES", "BASELINE_NAMES", "Baseline", "PURL_LEVELS", "bn_static_baseline", "RNP_LEVELS",
    "RandomKeepRatioPolicy", "VecAMCWrapper", "l1_filter_norms", "l1_static_baseline", "make_baseline",
    "random_baseline", "rank_by_l1", "rerank_static", "static_uniform_baseline", "task_variant", "uniform_baseline", "uniform_static_ratio",
]
