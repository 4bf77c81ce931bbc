"""A supervised start for the runtime agent: behaviour cloning of the per-input oracle.

Before any reinforcement learning, the runtime policy is fitted to the keep ratio that the
label oracle gives each **training** image at the agent's budget (the multiple-choice knapsack
over uniform widths of :func:`prune_env.evaluation.references.oracle_choice`; with
``objective="accuracy"`` the cheapest width that classifies the image right, as DS-Net's gate
targets). The reinforcement learning then starts from a policy that already spends more on the
inputs that need it, rather than from one that must discover adaptation from a terminal reward.

The data path:

1. :func:`oracle_targets`: per-image target keep ratios on (a subset of) the training split; the
   labels are used here and only here, never on the test split.
2. :func:`observations_under`: the runtime observations of those images under the policy's own
   keep ratios (DAgger: the policy learns on the states it reaches, not on the oracle's).
3. :func:`clone`: the policy's action mean regressed on the targets (mean squared error), the
   recurrent state carried over the layers exactly as in a rollout. The exploration noise (the
   policy's ``log_std``) and the critic are left as they are. Steps 2 and 3 repeat for a few rounds.

:func:`supervised_start` runs the three and returns what it measured (written to
``supervised_start.json`` by :func:`agents.training.run`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch

from prune_env.envs.task import PruningTask, check_range
from prune_env.evaluation.references import (
    ORACLE_LEVELS,
    allocation_results,
    fixed_subset,
    level_results,
    oracle_choice,
    search_static_allocation,
)
from prune_env.evaluation.split import rollout_split
from prune_env.policies import KeepRatioPolicy, SB3Policy, as_policy

#: the objectives of the oracle's targets (:func:`prune_env.evaluation.references.oracle_choice`)
OBJECTIVES = ("loss", "accuracy")
#: the allocations the oracle chooses among for each image: uniform keep ratios, or the best static
#: allocation (searched on the same split) scaled to the same MACs as each uniform level
FAMILIES = ("uniform", "best_static")


@dataclass
class OracleTargets:
    """Target keep ratios ``(N, L)`` for ``indices`` of a training split, with the oracle's own figures."""

    indices: np.ndarray
    keep: np.ndarray
    objective: str
    accuracy: float
    macs_ratio: float


def level_allocations(task: PruningTask, levels: Sequence[float], base: Sequence[float] | None = None) -> np.ndarray:
    """``(K, L)`` per-layer keep ratios, one row per level: the uniform level itself, or, given a base
    allocation ``base`` (one keep ratio per layer at the task's budget), ``base`` scaled by the level
    over the budget's uniform keep ratio, within ``[alpha, 1]``."""
    levels = np.asarray(levels, dtype=np.float64)[:, None]
    if base is None:
        return np.repeat(levels, task.num_layers, axis=1)
    base = np.asarray(base, dtype=np.float64)[None, :]
    return np.clip(base * levels / task.uniform_keep_ratio(), task.cfg.alpha, 1.0)


def oracle_targets(task: PruningTask, *, objective: str = "loss", levels: Sequence[float] = ORACLE_LEVELS,
                   base: Sequence[float] | None = None, max_images: int | None = 8192, seed: int = 0) -> OracleTargets:
    """The label oracle's allocation (:func:`level_allocations`) for each of at most ``max_images``
    images (a fixed random subset) of ``task``'s split, at ``task``'s mean MAC budget. Refuses the
    test split."""
    if task.cfg.split == "test":
        raise ValueError("oracle_targets: the oracle's targets use labels; build them on the train or val split, "
                         "not on the test split")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    indices = fixed_subset(len(task.source), max_images, seed)
    allocations = level_allocations(task, levels, base)
    per_level = (level_results(task, levels, indices=indices) if base is None
                 else allocation_results(task, [list(ratios) for ratios in allocations], indices=indices))
    found = oracle_choice(per_level, task.macs_budget, objective)
    keep = allocations[np.asarray(found["choice"], dtype=np.int64)]
    return OracleTargets(indices, keep, objective, found["accuracy"], found["macs_ratio"])


class _Recorder(KeepRatioPolicy):
    """Records, batch by batch, what ``inner`` (a :class:`~prune_env.policies.KeepRatioPolicy`)
    observes while it acts."""

    def __init__(self, inner: KeepRatioPolicy):
        self.inner = inner
        self.records: list[np.ndarray] = []
        self._steps: list[np.ndarray] = []

    def _close_batch(self) -> None:
        if self._steps:
            self.records.append(np.stack(self._steps, 1))
            self._steps = []

    def reset(self, batch_size: int) -> None:
        super().reset(batch_size)
        self._close_batch()
        self.inner.reset(batch_size)

    def act(self, observations, t):
        self._steps.append(np.asarray(observations, dtype=np.float32).copy())
        return self.inner(observations)

    def observations(self) -> np.ndarray:
        self._close_batch()
        return np.concatenate(self.records)


def observations_under(task: PruningTask, policy: Any, static_ratios: Any, indices: np.ndarray, *,
                       batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """``(N, L, D)`` runtime observations of the images at ``indices`` while ``policy`` (anything
    :func:`~prune_env.policies.as_policy` takes) chooses the keep ratios, and its ``(N, L)`` keep ratios."""
    recorder = _Recorder(as_policy(policy, task.num_layers))
    results = rollout_split(task, recorder, static_ratios, indices=indices, batch_size=batch_size)
    return recorder.observations(), results.keep


def _action_means(policy: Any, observations: torch.Tensor) -> torch.Tensor:
    """``(B, L)`` action means of ``policy`` for ``B`` whole episodes ``(B, L, D)``, the recurrent state
    (if any) carried from layer to layer from a fresh start."""
    b, steps, dim = observations.shape
    flat = observations.reshape(b * steps, dim)  # episode-major, as sb3-contrib's sequences are
    if hasattr(policy, "lstm_actor"):
        lstm = policy.lstm_actor
        zeros = torch.zeros(lstm.num_layers, b, lstm.hidden_size, device=flat.device)
        starts = torch.zeros(b * steps, device=flat.device)  # zero states = a fresh episode
        distribution, _ = policy.get_distribution(flat, (zeros, zeros.clone()), starts)
    else:
        distribution = policy.get_distribution(flat)
    return distribution.distribution.mean.reshape(b, steps, -1)[..., 0]


def clone(policy: Any, observations: np.ndarray, keep: np.ndarray, *, epochs: int = 30, batch_size: int = 256,
          learning_rate: float = 3e-3, seed: int = 0) -> dict:
    """Fit ``policy``'s action mean to ``keep`` (``(N, L)``, or ``(N,)``: one target at every layer) by mean squared
    error with Adam; returns the loss before and after. ``policy`` is an SB3 actor-critic policy
    (``ActorCriticPolicy`` or sb3-contrib's ``RecurrentActorCriticPolicy``)."""
    if not hasattr(policy, "get_distribution"):
        raise ValueError(f"a supervised start needs an actor-critic policy with get_distribution (PPO, A2C, TRPO, "
                         f"RecurrentPPO); got {type(policy).__name__}")
    if not isinstance(policy.action_space, gym.spaces.Box):
        raise ValueError(f"a supervised start needs a continuous keep-ratio action, got {policy.action_space}")
    device = policy.device
    obs = torch.as_tensor(observations, dtype=torch.float32, device=device)
    target = torch.as_tensor(keep, dtype=torch.float32, device=device)
    if target.dim() == 1:  # one keep ratio per episode, at every layer
        target = target[:, None].expand(-1, obs.shape[1])
    log_std = getattr(policy, "log_std", None)
    params = [p for p in policy.parameters() if p is not log_std and p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)

    def loss_on(rows: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(_action_means(policy, obs[rows]), target[rows])

    everything = torch.arange(len(obs))
    policy.set_training_mode(False)
    with torch.no_grad():
        before = float(loss_on(everything))
    policy.set_training_mode(True)
    for _ in range(epochs):
        for rows in torch.randperm(len(obs), generator=generator).split(batch_size):
            optimizer.zero_grad()
            loss_on(rows).backward()
            optimizer.step()
    policy.set_training_mode(False)
    with torch.no_grad():
        after = float(loss_on(everything))
        target_var = float(target.var(0, unbiased=False).mean())  # over episodes, averaged over layers
    return {"mse_before": before, "mse_after": after, "target_variance": target_var,
            "explained": 1.0 - after / target_var if target_var > 0 else None}


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else None


def supervised_start(model: Any, task: PruningTask, static_ratios: Any, *, objective: str = "loss",
                     family: str = "uniform", levels: Sequence[float] = ORACLE_LEVELS, search_rounds: int = 40,
                     max_images: int | None = 8192, rounds: int = 4, epochs: int = 20, seed: int = 0) -> dict:
    """Behaviour-clone ``model``'s runtime policy (an SB3 model) on the oracle's targets of ``task``'s
    (training) split; returns the targets' and the fit's figures.

    ``family``: the allocations the oracle chooses among (:data:`FAMILIES`): uniform keep ratios, or
    the best static allocation of the split (:func:`~prune_env.evaluation.references.search_static_allocation`,
    ``search_rounds`` rounds on the images every reference uses) scaled to each uniform level's MACs,
    so that the policy starts at the best single allocation and adapts around it. ``levels``: the
    uniform keep ratios of the family (each scaled, for ``"best_static"``); a narrow set around the
    budget's keep ratio keeps the cloned policy's mistakes cheap where the network degrades fast at
    narrow widths.

    The observations come from the policy's own rollouts (DAgger, Ross et al., 2011): ``rounds``
    times, the current policy runs the images, its observations join the data set with each image's
    oracle target, and the policy is fitted again on all of it. Teacher forcing would leak the target
    through the observation's "MACs so far" and fit a policy that only copies it.
    """
    if task.budget_range is not None:
        raise ValueError("a supervised start needs one budget (the oracle's targets are for one budget); "
                         f"got the budget range {task.budget_range}")
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    start = time.time()
    base = None
    if family == "best_static":
        base = search_static_allocation(task, task.macs_budget, max_rounds=search_rounds, seed=0)["ratios"]
    levels = tuple(check_range("levels", v, 0.0, 1.0, low_open=True) for v in levels)
    if len(levels) < 2:
        raise ValueError(f"levels: the oracle needs at least two keep ratios to choose among, got {levels}")
    targets = oracle_targets(task, objective=objective, levels=levels, base=base, max_images=max_images, seed=seed)
    wanted = targets.keep.mean(1)
    seen, keeps, history = [], [], []
    for r in range(rounds + 1):
        observations, keep = observations_under(task, SB3Policy(model), static_ratios, targets.indices)
        history.append({"round": r, "keep_mean": float(keep.mean()), "keep_std_over_inputs": float(keep.mean(1).std()),
                        "correlation_with_targets": _correlation(keep.mean(1), wanted)})
        if r == rounds:  # the last rollout only measures the fitted policy
            break
        seen.append(observations)
        keeps.append(targets.keep)
        history[-1].update(clone(model.policy, np.concatenate(seen), np.concatenate(keeps), epochs=epochs, seed=seed + r))
    chosen, counts = np.unique(np.round(wanted, 4), return_counts=True)
    return {"objective": objective, "family": family, "levels": list(levels), "base_allocation": base,
            "images": int(len(targets.indices)), "split": task.cfg.split, "oracle_accuracy": targets.accuracy,
            "oracle_macs_ratio": targets.macs_ratio,
            "target_keep_mean": float(targets.keep.mean()), "target_keep_std": float(wanted.std()),
            "target_layer_means": targets.keep.mean(0).tolist(),
            "target_levels": {f"{level:g}": int(c) for level, c in zip(chosen, counts)},
            "rounds": rounds, "epochs": epochs, "history": history,
            "correlation_with_targets": history[-1]["correlation_with_targets"], "seconds": time.time() - start}
