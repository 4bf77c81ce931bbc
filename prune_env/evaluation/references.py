"""References that show how much of the headroom of dynamic pruning an agent captured.

A runtime agent is only worth its keep if it beats what needs no agent at the same mean cost.
Beside the agent, on the same network, split and budget:

* **uniform at the agent's MACs** (iso-MAC; FBS-like): the largest uniform keep ratio whose MACs
  do not exceed the agent's mean MACs (:func:`iso_mac_uniform_ratio`);
* **best static allocation**: the per-layer keep ratios, the same for every input, of lowest loss
  under the MAC budget, searched on a training or calibration split and scored on the test split
  (:func:`search_static_allocation`): the best a non-adaptive agent can do;
* **per-input oracle** (labels; an upper bound): one uniform level per input from a fixed set,
  chosen with the labels so that the *mean* MACs meet the budget, a multiple-choice knapsack
  (:func:`oracle_choice`);
* a **confidence cascade** (early-exit style, no RL): run the network at a narrow uniform keep
  ratio, and again at a wider one when its top softmax probability is under a threshold, both
  passes counted; the two levels and the threshold chosen on the training split under the mean
  MAC budget (:func:`confidence_cascade`): a two-line dynamic rule an agent has to beat;
* two **controls** that tell adaptation from a better fixed allocation: the agent's own
  per-input allocations **shuffled** across inputs (same mean MACs, no input dependence) and its
  **per-layer mean** allocation applied to every input (:func:`adaptation_controls`), with an
  exact McNemar test over the inputs, agent against its shuffled allocations on the same images
  (:func:`mcnemar_p_value`);
* **headroom captured** ``(agent - uniform) / (oracle - uniform)`` (:func:`headroom_captured`);
* where the agent spends its MACs: by class and by difficulty (:func:`cost_breakdown`).

:func:`calibrate_offset` finds the additive offset on a deterministic runtime policy's actions
that brings its mean MACs to the budget, on a split that is not the test split.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any, Callable, Sequence

import numpy as np
import torch
from scipy.stats import binomtest

from prune_env.envs.task import RUNTIME_TRADEOFF_RATE, PruningTask
from prune_env.evaluation.split import SplitResults, rollout_split, summarize
from prune_env.nets.masks import keep_count
from prune_env.policies import KeepRatioPolicy, as_policy

#: the oracle's per-input levels: one uniform keep ratio per input
ORACLE_LEVELS: tuple[float, ...] = (0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0)
#: the confidence cascade's candidate levels (each pass a uniform keep ratio)
CASCADE_LEVELS: tuple[float, ...] = tuple(round(0.15 + 0.05 * k, 2) for k in range(18))


# --------------------------------------------------------------------------- agent-independent results, once
#: the references that do not depend on an agent (the static search, the per-level results), kept for
#: the process's lifetime per network weights, task configuration and arguments: the seeds of a
#: benchmark run in one process share them (at most :data:`MEMO_LIMIT` entries, the oldest dropped)
_MEMO: dict[tuple, Any] = {}
MEMO_LIMIT = 64


def network_fingerprint(task: PruningTask) -> str | None:
    """SHA-1 of ``task``'s network weights and buffers (names and bytes); None for a network that is
    not a torch module."""
    if not isinstance(task.net, torch.nn.Module):
        return None
    digest = hashlib.sha1()
    for name, tensor in task.net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _memoized(kind: str, task: PruningTask, arguments: tuple, compute: Callable[[], Any]) -> Any:
    """``compute()``, or a copy of what it returned for the same network, task and ``arguments``."""
    fingerprint = network_fingerprint(task)
    if fingerprint is None:
        return compute()
    key = (kind, fingerprint, repr(task.cfg), len(task.source), arguments)
    if key not in _MEMO:
        if len(_MEMO) >= MEMO_LIMIT:
            _MEMO.pop(next(iter(_MEMO)))
        _MEMO[key] = compute()
    return copy.deepcopy(_MEMO[key])


def _indices_key(indices: np.ndarray | None) -> str | None:
    return None if indices is None else hashlib.sha1(np.ascontiguousarray(indices, dtype=np.int64).tobytes()).hexdigest()


def fixed_subset(n: int, max_images: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_images`` of ``n`` images, a fixed random subset per ``seed``
    (all of them where ``max_images`` is None or not below ``n``)."""
    if max_images is None or n <= max_images:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_images, replace=False))


# --------------------------------------------------------------------------- iso-MAC uniform
def iso_mac_uniform_ratio(task: PruningTask, macs_ratio: float) -> float:
    """The largest uniform keep ratio whose MAC ratio does not exceed ``macs_ratio`` (never more MACs than the agent)."""
    return task.uniform_keep_ratio(macs_ratio)


# --------------------------------------------------------------------------- best static allocation
def _counts_to_ratios(counts: np.ndarray, channels: np.ndarray) -> np.ndarray:
    """Keep ratios that keep exactly ``counts`` channels (``keep_count(n / C, C) == n``)."""
    return counts / channels


def search_static_allocation(task: PruningTask, macs_budget: float | None = None, *, criterion: str = "loss",
                             max_rounds: int = 40, steps: int = 16, max_images: int | None = 2048,
                             seed: int = 0) -> dict:
    """The per-layer keep ratios (the same for every input) of lowest ``criterion`` on ``task``'s split
    among those whose MACs meet ``macs_budget`` (default: the task's), by coordinate exchange.

    Starts at the uniform keep ratio of the budget; each round tries, for every ordered pair of
    layers ``(i, j)``, growing layer ``i`` by one step and shrinking layer ``j`` until the budget
    holds again, keeps the best candidate if it improves, and halves the steps otherwise (a step
    starts at ``C / steps`` channels). Pure runtime pruning (``R_r = 1``), no static pruning, as
    the uniform reference. ``criterion`` is ``"loss"`` (mean cross entropy) or ``"accuracy"``
    (top-1, ties by loss). At most ``max_images`` images of the split (a fixed random subset).

    Returns ``{"ratios", "counts", "macs_ratio", "score", "evaluations", "rounds"}``; computed once
    per process for the same network, task and arguments.
    """
    if criterion not in ("loss", "accuracy"):
        raise ValueError(f"criterion must be 'loss' or 'accuracy', got {criterion!r}")
    budget = task.macs_budget if macs_budget is None else float(macs_budget)
    return _memoized("static_search", task, (budget, criterion, max_rounds, steps, max_images, seed),
                     lambda: _search_static_allocation(task, budget, criterion, max_rounds, steps, max_images, seed))


def _search_static_allocation(task: PruningTask, budget: float, criterion: str, max_rounds: int, steps: int,
                              max_images: int | None, seed: int) -> dict:
    channels = np.asarray(task.net.channels, dtype=np.int64)
    lowest = np.array([int(keep_count(task.cfg.alpha, int(c))) for c in channels])
    n = len(task.source)
    indices = fixed_subset(n, max_images, seed)
    images, labels = task.source.get(indices)
    ones = np.ones(task.num_layers)

    def macs(counts: np.ndarray) -> float:
        return float(task.costs.macs_ratio(torch.as_tensor(counts[None]))[0])

    def score(counts: np.ndarray) -> float:
        ratios = torch.as_tensor(_counts_to_ratios(counts, channels))
        with torch.no_grad():
            logits = task.net(images, ratios, ones)
        loss = float(task.losses(logits, labels).mean())
        if criterion == "loss":
            return loss
        return -float((logits.argmax(1) == labels).float().mean()) + 1e-6 * loss

    with task.at_tradeoff_rate(RUNTIME_TRADEOFF_RATE):
        start = np.array([int(keep_count(task.uniform_keep_ratio(budget), int(c))) for c in channels])
        best, best_score, evaluations, rounds = start, score(start), 1, 0
        step = np.maximum(1, np.round(channels / steps)).astype(np.int64)
        while rounds < max_rounds:
            rounds += 1
            candidates = []
            for i in range(len(channels)):
                if best[i] >= channels[i]:
                    continue
                for j in range(len(channels)):
                    if j == i:
                        continue
                    c = best.copy()
                    c[i] = min(channels[i], c[i] + step[i])
                    while macs(c) > budget + 1e-12 and c[j] > lowest[j]:
                        c[j] = max(lowest[j], c[j] - step[j])
                    if macs(c) <= budget + 1e-12:
                        candidates.append(c)
            scored = [(score(c), k) for k, c in enumerate(candidates)]
            evaluations += len(scored)
            if scored and min(scored)[0] < best_score - 1e-9:
                best_score, k = min(scored)
                best = candidates[k]
            elif np.all(step == 1):
                break
            else:
                step = np.maximum(1, step // 2)
    ratios = _counts_to_ratios(best, channels)
    return {"ratios": ratios.tolist(), "counts": best.tolist(), "macs_ratio": macs(best), "score": best_score,
            "criterion": criterion, "evaluations": evaluations, "rounds": rounds, "search_images": int(len(indices))}


# --------------------------------------------------------------------------- per-input oracle
def multiple_choice_knapsack(values: np.ndarray, costs: np.ndarray, capacity: float) -> np.ndarray:
    """One option per item maximising the total value with total cost at most ``capacity``.

    ``values`` and ``costs`` are ``(N, K)``. The greedy of the LP relaxation (Sinha & Zoltners
    1979): every item starts at its cheapest option; the increments along each item's upper convex
    hull of (cost, value) are taken in order of decreasing value per cost while they fit, each
    item's in hull order. The result is feasible and at most one increment short of the LP bound.
    Returns the chosen option per item ``(N,)``; the cheapest options when even they do not fit.
    """
    values, costs = np.asarray(values, dtype=np.float64), np.asarray(costs, dtype=np.float64)
    if values.shape != costs.shape or values.ndim != 2:
        raise ValueError(f"values and costs must both be (N, K), got {values.shape} and {costs.shape}")
    n = values.shape[0]
    choice = np.argmin(costs, axis=1)
    total = float(costs[np.arange(n), choice].sum())
    increments = []  # (-efficiency, item, order along the hull, from option, to option, d_cost)
    for i in range(n):
        order = np.lexsort((-values[i], costs[i]))  # by cost, then best value first
        hull = [int(order[0])]
        for k in order[1:]:
            k = int(k)
            if values[i, k] <= values[i, hull[-1]]:
                continue  # dominated: costs no less, worth no more
            while len(hull) >= 2:
                a, b = hull[-2], hull[-1]
                # drop b if it lies on or below the segment a -> k (not on the upper hull)
                lhs = (values[i, b] - values[i, a]) * (costs[i, k] - costs[i, a])
                if lhs <= (values[i, k] - values[i, a]) * (costs[i, b] - costs[i, a]):
                    hull.pop()
                else:
                    break
            hull.append(k)
        choice[i] = hull[0]
        for pos in range(1, len(hull)):
            a, b = hull[pos - 1], hull[pos]
            dc, dv = costs[i, b] - costs[i, a], values[i, b] - values[i, a]
            increments.append((-dv / dc if dc > 0 else -np.inf, i, pos, a, b, dc))
    total = float(costs[np.arange(n), choice].sum())
    increments.sort(key=lambda x: (x[0], x[1], x[2]))
    for _, i, _, a, b, dc in increments:
        if choice[i] == a and total + dc <= capacity + 1e-9:
            choice[i] = b
            total += dc
    return choice


def level_results(task: PruningTask, levels: Sequence[float] = ORACLE_LEVELS, *,
                  indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-input loss, correctness, MAC ratio and confidence (top softmax probability) of each
    uniform level: ``(N, K)`` arrays (pure runtime pruning, no static pruning, as the uniform
    reference); the images at ``indices`` only, where given. Computed once per process for the same
    network, task, levels and images."""
    return _memoized("levels", task, (tuple(float(v) for v in levels), _indices_key(indices)),
                     lambda: _level_results(task, levels, indices))


def _level_results(task: PruningTask, levels: Sequence[float], indices: np.ndarray | None) -> dict[str, np.ndarray]:
    return allocation_results(task, [float(level) for level in levels], indices=indices)


def allocation_results(task: PruningTask, allocations: Sequence[Any], *,
                       indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-input loss, correctness, MAC ratio and confidence ``(N, K)`` of each of ``K`` runtime
    allocations (a keep ratio, or one per layer; the same for every input), pure runtime pruning."""
    out = {"losses": [], "correct": [], "macs": [], "confidence": []}
    with task.at_tradeoff_rate(RUNTIME_TRADEOFF_RATE):
        for allocation in allocations:
            r = rollout_split(task, allocation, np.ones(task.num_layers), indices=indices)
            out["losses"].append(r.losses)
            out["correct"].append(r.correct.astype(np.float64))
            out["macs"].append(r.macs)
            out["confidence"].append(r.confidence)
    return {k: np.stack(v, 1) for k, v in out.items()}


def oracle_choice(per_level: dict[str, np.ndarray], macs_budget: float, objective: str = "accuracy") -> dict:
    """The per-input oracle: the level of each input, with the labels, under a mean-MAC budget.

    ``objective="accuracy"`` maximises the number of correct inputs (ties by lower loss),
    ``"loss"`` minimises the total loss. Returns the chosen level index per input and the
    resulting accuracy, loss and mean MAC ratio.
    """
    losses, correct, macs = per_level["losses"], per_level["correct"], per_level["macs"]
    if objective == "accuracy":
        values = correct - 1e-6 * losses
    elif objective == "loss":
        values = -losses
    else:
        raise ValueError(f"objective must be 'accuracy' or 'loss', got {objective!r}")
    n = losses.shape[0]
    choice = multiple_choice_knapsack(values, macs, macs_budget * n)
    rows = np.arange(n)
    return {"choice": choice.tolist(), "accuracy": float(correct[rows, choice].mean()),
            "loss": float(losses[rows, choice].mean()), "macs_ratio": float(macs[rows, choice].mean()),
            "objective": objective}


# --------------------------------------------------------------------------- confidence cascade
def _cascade_outcome(per_level: dict[str, np.ndarray], low: int, high: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-input correctness and MAC ratio of the cascade ``(low, high, threshold)`` (level indices):
    the ``low`` pass answers where its confidence is at least ``threshold``, else the ``high`` pass
    answers and both passes' MACs count."""
    second = per_level["confidence"][:, low] < threshold
    correct = np.where(second, per_level["correct"][:, high], per_level["correct"][:, low])
    macs = per_level["macs"][:, low] + second * per_level["macs"][:, high]
    return correct, macs


def confidence_cascade(search: dict[str, np.ndarray], test: dict[str, np.ndarray], levels: Sequence[float],
                       macs_budget: float, *, thresholds: int = 50) -> dict:
    """The two-pass confidence cascade (early exit on the top softmax probability) at a mean-MAC budget.

    ``search`` and ``test`` are :func:`level_results` of the same ``levels`` on a training split and
    on the split scored. On ``search``, every pair of levels ``low < high`` and every threshold (the
    quantiles of the ``low`` pass's confidence, ``thresholds`` of them) is tried, plus every single
    level alone (no second pass); the most accurate choice whose mean MACs, both passes counted, meet
    ``macs_budget`` is applied to ``test``. Returns the choice and its test accuracy and MACs.
    """
    candidates = [(k, k, -np.inf) for k in range(len(levels))]  # a single pass: the uniform level
    quantiles = np.linspace(0.0, 1.0, thresholds + 1)
    for low in range(len(levels)):
        cuts = np.unique(np.quantile(search["confidence"][:, low], quantiles))
        candidates += [(low, high, float(t)) for high in range(low + 1, len(levels)) for t in (*cuts, np.inf)]
    best, best_key = None, None
    for low, high, threshold in candidates:
        correct, macs = _cascade_outcome(search, low, high, threshold)
        if macs.mean() > macs_budget + 1e-12:
            continue
        key = (correct.mean(), -macs.mean())
        if best_key is None or key > best_key:
            best, best_key = (low, high, threshold), key
    if best is None:  # not even the cheapest level meets the budget
        cheapest = int(np.argmin(search["macs"].mean(0)))
        best = (cheapest, cheapest, -np.inf)
    low, high, threshold = best
    correct, macs = _cascade_outcome(test, low, high, threshold)
    return {"low": float(levels[low]), "high": float(levels[high]),
            "threshold": float(threshold) if np.isfinite(threshold) else None,  # None: one pass, or always two
            "second_pass_share": float(np.mean(test["confidence"][:, low] < threshold)),
            "search_accuracy": float(best_key[0]) if best_key else None,
            "accuracy": float(correct.mean()), "macs_ratio": float(macs.mean()), "correct": correct.astype(bool),
            "within_budget": float(np.mean(macs <= macs_budget + 1e-9))}


# --------------------------------------------------------------------------- statistics over inputs
def mcnemar_p_value(a_correct: np.ndarray, b_correct: np.ndarray) -> dict:
    """Exact McNemar test of two classifiers on the same inputs: a two-sided binomial test on the
    inputs where exactly one is right. Returns the counts of each kind of disagreement and ``p``
    (1.0 when they never disagree)."""
    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mcnemar_p_value: the two results cover different inputs ({a.shape} and {b.shape})")
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = only_a + only_b
    p = 1.0 if n == 0 else float(binomtest(only_a, n, 0.5).pvalue)
    return {"only_first_right": only_a, "only_second_right": only_b, "p_value": p}


def cost_breakdown(results: SplitResults, difficulty: np.ndarray, *, bins: int = 5) -> dict:
    """Where a runtime policy spends its MACs: the mean MAC ratio and accuracy per class and per
    difficulty quantile (``difficulty`` per input, e.g. the loss at the uniform keep ratio; bin 0 =
    easiest)."""
    difficulty = np.asarray(difficulty, dtype=np.float64)
    edges = np.quantile(difficulty, np.linspace(0, 1, bins + 1)[1:-1])
    which = np.searchsorted(edges, difficulty, side="right")
    by_difficulty = [{"bin": int(k), "images": int(np.sum(which == k)),
                      "macs_ratio": float(results.macs[which == k].mean()) if np.any(which == k) else None,
                      "accuracy": float(results.correct[which == k].mean()) if np.any(which == k) else None}
                     for k in range(bins)]
    by_class = []
    if results.labels is not None:
        for c in np.unique(results.labels):
            rows = results.labels == c
            by_class.append({"class": int(c), "images": int(rows.sum()), "macs_ratio": float(results.macs[rows].mean()),
                             "accuracy": float(results.correct[rows].mean())})
    return {"by_difficulty": by_difficulty, "by_class": by_class,
            "difficulty_macs_correlation": float(np.corrcoef(difficulty, results.macs)[0, 1])
            if np.std(difficulty) > 0 and np.std(results.macs) > 0 else 0.0}


# --------------------------------------------------------------------------- controls
def adaptation_controls(task: PruningTask, agent: SplitResults, static_ratios: Any, *, seed: int = 0) -> dict[str, dict]:
    """The agent's own allocations without their input dependence.

    * ``shuffled``: each input gets another input's runtime keep ratios (a random permutation of
      the rows): the same distribution of allocations and the same mean MACs;
    * ``layer_mean``: every input gets the agent's mean keep ratio of each layer.

    Each row carries ``paired_test``: :func:`mcnemar_p_value` of the agent against it on the same inputs.
    """
    perm = np.random.default_rng(seed).permutation(agent.actions.shape[0])
    shuffled = rollout_split(task, None, static_ratios, per_input=agent.actions[perm])
    mean = rollout_split(task, agent.actions.mean(0).tolist(), static_ratios)
    return {name: {**summarize(task, r, static_ratios), "paired_test": mcnemar_p_value(agent.correct, r.correct)}
            for name, r in (("shuffled", shuffled), ("layer_mean", mean))}


def headroom_captured(agent: float, uniform: float, oracle: float, *, lower_is_better: bool = False) -> float | None:
    """``(agent - uniform) / (oracle - uniform)``: 0 = no better than uniform, 1 = the oracle; None without headroom."""
    gap = oracle - uniform
    if abs(gap) < 1e-12 or (gap > 0) == lower_is_better:
        return None
    return float((agent - uniform) / gap)


# --------------------------------------------------------------------------- budget calibration
class OffsetPolicy(KeepRatioPolicy):
    """A runtime policy whose keep ratios are shifted by a constant ``offset``."""

    def __init__(self, policy: Any, offset: float, num_layers: int | None = None):
        self.policy = as_policy(policy, num_layers)
        self.offset = float(offset)

    def reset(self, batch_size: int) -> None:
        super().reset(batch_size)
        self.policy.reset(batch_size)

    def act(self, observations, t):
        return self.policy(observations) + self.offset

    def __repr__(self) -> str:
        return f"OffsetPolicy({self.policy!r}, {self.offset:+.4f})"


def calibrate_offset(task: PruningTask, policy: Any, static_ratios: Any, macs_budget: float | None = None, *,
                     max_offset: float = 0.1, step: float = 0.0025, max_images: int | None = 4096, seed: int = 0) -> float:
    """The largest additive offset on ``policy``'s keep ratios, on a grid of ``step`` in
    ``[-max_offset, max_offset]``, whose mean MAC ratio on ``task``'s split meets ``macs_budget``
    (default: the task's); when none does, the offset of the grid that spends the least (the largest
    such one on ties). Use a training or calibration split, never the test split; at most
    ``max_images`` of its images (a fixed random subset).

    The grid is scanned from the top rather than bisected: a runtime agent observes the MACs it
    has spent so far and may answer a lower keep ratio in one layer with higher ones after, so its
    mean MACs need not fall monotonically with the offset (a bisection was seen to land on an
    offset of -0.22 that starved the first layer), and for the same reason the most negative offset
    need not be the cheapest one (an agent seen to spend 0.119 MACs at -0.1 against 0.108 at 0).
    The offset is a small correction by design.
    """
    if task.cfg.split == "test":
        raise ValueError("calibrate_offset: calibrate on the train or val split, not on the test split")
    if not (0 < step <= max_offset):
        raise ValueError(f"step must be in (0, max_offset={max_offset}], got {step}")
    budget = task.macs_budget if macs_budget is None else float(macs_budget)
    n = len(task.source)
    indices = None if max_images is None or n <= max_images else np.sort(
        np.random.default_rng(seed).choice(n, size=max_images, replace=False))
    cheapest, least = -max_offset, np.inf
    for k in range(int(round(max_offset / step)), -int(round(max_offset / step)) - 1, -1):
        offset = k * step
        macs = float(rollout_split(task, OffsetPolicy(policy, offset, task.num_layers), static_ratios,
                                   indices=indices).macs.mean())
        if macs <= budget + 1e-12:
            return offset
        if macs < least:
            cheapest, least = offset, macs
    return cheapest


# --------------------------------------------------------------------------- everything at once
def headroom_report(test: PruningTask, agent: SplitResults, static_ratios: Any, *, search: PruningTask | None = None,
                    policy: Any = None, calibrate: bool = False, levels: Sequence[float] = ORACLE_LEVELS,
                    search_rounds: int = 40, seed: int = 0, cascade_images: int = 8192) -> dict:
    """Every reference beside a runtime agent's results ``agent`` on the split of ``test``.

    ``search`` is the task on the split the static allocation is searched on, the agent's offset
    calibrated on and the confidence cascade chosen on (a training or calibration split, at most
    ``cascade_images`` of its images for the cascade; without it none of the three is computed).
    With ``calibrate`` (and ``policy``, the agent's deterministic runtime policy), the agent is
    also scored with the additive offset that brings its mean MACs to the budget on ``search``.
    ``seed`` seeds what depends on the agent (the calibration subset, the shuffled control); the
    static allocation and the cascade, properties of the network and the budget, are chosen on the
    same images whatever the seed (and computed once per process, :func:`search_static_allocation`).

    Returns ``{"rows": name -> metrics, "summary": {...}, "static_search": ..., "oracle": ...,
    "cascade_choice": ..., "breakdown": ...}`` (:func:`cost_breakdown`, difficulty = the loss at the oracle
    level nearest the uniform keep ratio);
    every row is scored on ``test``'s split, with ``test``'s budget.
    """
    from prune_env.evaluation.split import reference_metrics

    ones = np.ones(test.num_layers)
    rows = {"agent": summarize(test, agent, static_ratios)}
    refs = reference_metrics(test)
    rows["dense"], rows["uniform"] = refs["dense"], refs["uniform"]
    with test.at_tradeoff_rate(RUNTIME_TRADEOFF_RATE):
        iso = iso_mac_uniform_ratio(test, rows["agent"]["macs_ratio"])
        rows["uniform_iso_mac"] = {**summarize(test, rollout_split(test, iso, ones), ones), "uniform_keep_ratio": iso}
    out: dict[str, Any] = {"rows": rows}
    if search is not None:
        found = search_static_allocation(search, test.macs_budget, max_rounds=search_rounds, seed=0)
        with test.at_tradeoff_rate(RUNTIME_TRADEOFF_RATE):
            rows["best_static"] = summarize(test, rollout_split(test, found["ratios"], ones), ones)
        rows["best_static"]["runtime_keep_ratios"] = found["ratios"]
        out["static_search"] = {**found, "split": search.cfg.split}
        if calibrate and policy is not None:
            offset = calibrate_offset(search, policy, static_ratios, test.macs_budget)
            calibrated = rollout_split(test, OffsetPolicy(policy, offset, test.num_layers), static_ratios)
            rows["agent_calibrated"] = {**summarize(test, calibrated, static_ratios), "offset": offset}
    rows.update(adaptation_controls(test, agent, static_ratios, seed=seed))
    # the test split runs once per width, for the oracle's levels and the cascade's together
    widths = sorted(set(levels) | (set(CASCADE_LEVELS) if search is not None else set()))
    per_width = level_results(test, widths)
    per_level = {k: v[:, [widths.index(level) for level in levels]] for k, v in per_width.items()}
    if search is not None:
        n = len(search.source)
        subset = None if n <= cascade_images else np.sort(np.random.default_rng(0).choice(n, cascade_images, replace=False))
        found = confidence_cascade(level_results(search, CASCADE_LEVELS, indices=subset),
                                   {k: v[:, [widths.index(level) for level in CASCADE_LEVELS]] for k, v in per_width.items()},
                                   CASCADE_LEVELS, test.macs_budget)
        rows["cascade"] = {"accuracy": found["accuracy"], "macs_ratio": found["macs_ratio"],
                           "speedup": 1.0 / found["macs_ratio"], "params_ratio": 1.0, "within_budget": found["within_budget"],
                           "paired_test": mcnemar_p_value(agent.correct, found["correct"])}
        out["cascade_choice"] = {k: v for k, v in found.items() if k != "correct"} | {"split": search.cfg.split}
    uniform_ratio = rows["uniform"]["uniform_keep_ratio"]
    difficulty = per_level["losses"][:, int(np.argmin(np.abs(np.asarray(levels) - uniform_ratio)))]
    out["breakdown"] = cost_breakdown(agent, difficulty)
    oracle = {objective: oracle_choice(per_level, test.macs_budget, objective) for objective in ("accuracy", "loss")}
    for objective, found in oracle.items():
        rows[f"oracle_{objective}"] = {"accuracy": found["accuracy"], "loss": found["loss"], "macs_ratio": found["macs_ratio"],
                                       "speedup": 1.0 / found["macs_ratio"], "params_ratio": 1.0,
                                       "within_budget": float(np.mean(
                                           per_level["macs"][np.arange(len(found["choice"])), found["choice"]]
                                           <= test.macs_budget + 1e-9))}
    out["oracle"] = {"levels": list(levels), **{k: {kk: vv for kk, vv in v.items() if kk != "choice"} for k, v in oracle.items()}}
    a, u = rows["agent"], rows["uniform"]
    out["summary"] = {
        "headroom_captured_accuracy": headroom_captured(a["accuracy"], u["accuracy"], rows["oracle_accuracy"]["accuracy"]),
        "headroom_captured_loss": headroom_captured(a["loss"], u["loss"], rows["oracle_loss"]["loss"], lower_is_better=True),
        "gain_over_uniform": a["accuracy"] - u["accuracy"],
        "gain_over_uniform_iso_mac": a["accuracy"] - rows["uniform_iso_mac"]["accuracy"],
        "gain_over_best_static": a["accuracy"] - rows["best_static"]["accuracy"] if "best_static" in rows else None,
        "adaptation_gain_shuffled": a["accuracy"] - rows["shuffled"]["accuracy"],
        "adaptation_gain_layer_mean": a["accuracy"] - rows["layer_mean"]["accuracy"],
        "adaptation_p_value_shuffled": rows["shuffled"]["paired_test"]["p_value"],
        "gain_over_cascade": a["accuracy"] - rows["cascade"]["accuracy"] if "cascade" in rows else None,
        "macs_over_budget": a["macs_ratio"] / test.macs_budget - 1.0,
    }
    return out
