"""Baselines for the pruning environments under the same budget.

Every baseline is a pair the evaluation accepts, ``(runtime policy, static keep ratios)`` on a
:class:`~prune_env.envs.task.PruningTask` (see :func:`prune_env.evaluation.split.evaluate_policies`),
bundled as a :class:`Baseline`:

* ``uniform`` (FBS-like; Gao et al. 2019, *Dynamic Channel Pruning: Feature Boosting and
  Suppression*): every layer keeps the same runtime fraction of channels, the largest uniform
  keep ratio whose MAC ratio meets the budget, chosen per input by the learned runtime
  importance ``u_r`` (:func:`prune_env.evaluation.split.uniform_keep_ratio`);
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
QR-DQN) are run by the agents' benchmark runner (``python -m agents.benchmark``); what they need of
the environments, AMC's state and clamping wrappers and the discrete keep-ratio levels, is in
:mod:`prune_env.envs.wrappers` with the other wrappers.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from prune_env.envs.task import STATIC_TRADEOFF_RATE, PruningTask
from prune_env.evaluation.split import evaluate_policies, uniform_keep_ratio
from prune_env.nets.gated import GatedConv, GatedNet
from prune_env.nets.masks import keep_count
from prune_env.policies import KeepRatioPolicy

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
            baseline's episodes (recorded for :func:`prune_env.benchmark.replay.validate`), or None when
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
        """:func:`~prune_env.evaluation.split.evaluate_policies` on :attr:`task`, plus the parameter-budget check."""
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
    return Baseline("l1_static",
                    "uniform static keep ratio meeting the parameter budget, filter L1-norm ranking (Li et al. 2017)",
                    variant, 1.0, np.full(task.num_layers, ratio), env_kwargs=None,
                    net_transform=lambda net: rank_by_l1(net, inplace=True),
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


__all__ = [
    "BASELINE_NAMES", "Baseline", "bn_static_baseline", "RandomKeepRatioPolicy", "l1_filter_norms", "l1_static_baseline",
    "make_baseline", "random_baseline", "rank_by_l1", "rerank_static", "static_uniform_baseline", "task_variant",
    "uniform_baseline", "uniform_static_ratio",
]
