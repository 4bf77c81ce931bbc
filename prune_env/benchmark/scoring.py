"""How the RL benchmark scores one method on the held-out test split, on one fixed scale for every method.

Per run (:func:`score_runtime`, :func:`score_static`), on the test split of the suite's network:

* ``objective``: the *fixed-β test objective* ``-mean(L) / beta0``, the accuracy term of the
  environments' reward with the loss scale frozen at the suite's ``beta0``
  (:func:`prune_env.benchmark.leaderboard.reference_beta`: the calibration loss of the uniform network at
  the budget). It is the same number for every method, budget mode and algorithm; the budget is
  not in it but in the ranking: methods whose mean cost exceeds the budget x
  :data:`BUDGET_TOLERANCE` are ranked after those within it ("at equal budget");
* ``iso_mac``: uniform pruning at the run's own mean MACs (the largest uniform keep ratio that
  does not spend more; FBS-like): what the same compute buys without an agent;
* ``adaptation`` (runtime agents): the run's own per-input allocations shuffled across inputs
  (same allocations, same mean MACs, no input dependence; as :func:`prune_env.evaluation.references.adaptation_controls`)
  and the gain over them, the control that tells per-input adaptation from a better fixed allocation.

Headroom captured needs the suite's uniform and oracle rows and is computed when the leaderboard
is built (:mod:`prune_env.benchmark.leaderboard`).

Every score also returns ``per_input`` (:func:`per_input_record`): what re-derives it, the runtime keep
ratios each test input was run at (``(N, L)``, stored losslessly: float32 where that round-trips
exactly, else float64, zlib-compressed, base64), the static keep ratios, the task's configuration
and trade-off rate, the seed of the shuffled control. :func:`rescore` runs the network again at
exactly those ratios and returns the figures the score gave (:mod:`prune_env.benchmark.validate`
compares them with a record's).
"""

from __future__ import annotations

import base64
import dataclasses
import zlib
from typing import Any

import numpy as np

from prune_env.envs.task import RUNTIME_TRADEOFF_RATE, PruningTask, TaskConfig
from prune_env.evaluation.references import iso_mac_uniform_ratio
from prune_env.evaluation.split import SplitResults, rollout_split, summarize

#: a method is within its budget when its mean cost is at most the budget times this
BUDGET_TOLERANCE = 1.01


#: the version of :func:`per_input_record`'s layout
PER_INPUT_FORMAT = 1


def task_kwargs(env_kwargs: dict) -> dict:
    """The keywords of ``env_kwargs`` that configure the task (:class:`TaskConfig`'s fields)."""
    names = {f.name for f in dataclasses.fields(TaskConfig)}
    return {k: v for k, v in env_kwargs.items() if k in names}


def suite_test_task(env_kwargs: dict) -> PruningTask:
    """The runtime task of a suite's environment keywords on the test split: what the suite's ``beta0``
    (:func:`prune_env.benchmark.leaderboard.reference_beta`) and its references are computed on."""
    return PruningTask(TaskConfig(**{**task_kwargs(env_kwargs), "split": "test"}))


def encode_array(values: np.ndarray) -> dict:
    """A float array as JSON, losslessly: float32 where every value round-trips, else float64; the raw
    little-endian bytes zlib-compressed and base64-encoded (:func:`decode_array` inverts it)."""
    a = np.asarray(values, dtype=np.float64)
    dtype = "<f4" if np.array_equal(a.astype("<f4").astype(np.float64), a) else "<f8"
    raw = np.ascontiguousarray(a.astype(dtype)).tobytes()
    return {"dtype": dtype, "shape": list(a.shape), "zlib_base64": base64.b64encode(zlib.compress(raw, 9)).decode("ascii")}


def decode_array(stored: dict) -> np.ndarray:
    """The float64 array of :func:`encode_array`."""
    raw = zlib.decompress(base64.b64decode(stored["zlib_base64"]))
    return np.frombuffer(raw, dtype=np.dtype(stored["dtype"])).astype(np.float64).reshape(stored["shape"])


def per_input_record(task: PruningTask, actions: np.ndarray, static_ratios: Any, *, shuffle_seed: int | None = None,
                     constraint: str = "macs", objective_actions: np.ndarray | None = None,
                     rerank: str | None = None) -> dict:
    """What re-derives a score on ``task`` (:func:`rescore`), for a result record.

    ``actions``: the runtime keep ratios each input of the split was run at, ``(N, L)``, in the split's
    order (:attr:`~prune_env.evaluation.split.SplitResults.actions`); ``static_ratios``: ``(L,)``;
    ``shuffle_seed``: the seed of the shuffled control (None: no control); ``constraint``: the budget the
    score holds the method to (``"macs"``: :func:`score_runtime`, ``"params"``: :func:`score_static`);
    ``objective_actions``: another allocation the loss and the objective come from (the oracle's loss
    knapsack); ``rerank``: the baseline whose channel ranking the network was given
    (:func:`prune_env.evaluation.baselines.make_baseline`: ``l1_static``, ``bn_static``).
    """
    out = {"format": PER_INPUT_FORMAT, "task": dataclasses.asdict(task.cfg), "tradeoff_rate": float(task.tradeoff_rate),
           "rerank": rerank, "constraint": constraint, "shuffle_seed": shuffle_seed,
           "static_ratios": np.broadcast_to(np.asarray(static_ratios, dtype=np.float64), (task.num_layers,)).tolist(),
           "actions": encode_array(actions)}
    if objective_actions is not None:
        out["objective_actions"] = encode_array(objective_actions)
    return out


def rescore(per_input: dict, beta0: float) -> dict:
    """The score of a record re-derived from its ``per_input`` (:func:`per_input_record`): the network run
    again at exactly the stored keep ratios, scored by :func:`score_runtime` / :func:`score_static` with
    ``beta0``; returns what they return (``test``, ``iso_mac``, ``adaptation``, ``per_input``)."""
    if per_input.get("format") != PER_INPUT_FORMAT:
        raise ValueError(f"per-input record of format {per_input.get('format')!r}, this version reads {PER_INPUT_FORMAT}")
    task = iso_task = PruningTask(TaskConfig(**per_input["task"]))
    if per_input.get("rerank"):
        from prune_env.evaluation.baselines import make_baseline

        task = make_baseline(per_input["rerank"], task).task
    actions = decode_array(per_input["actions"])
    static = np.asarray(per_input["static_ratios"], dtype=np.float64)
    with task.at_tradeoff_rate(per_input["tradeoff_rate"]):
        if per_input["constraint"] == "params":
            scores = score_static(task, None, static, beta0, per_input=actions)
        else:
            seed = per_input.get("shuffle_seed")
            scores = score_runtime(task, None, static, beta0, per_input=actions, controls=seed is not None,
                                   seed=seed or 0)
        if "objective_actions" in per_input:
            other = rollout_split(task, None, static, per_input=decode_array(per_input["objective_actions"]))
            scores["test"].update(loss=float(other.losses.mean()), objective=objective(other.losses, beta0),
                                  loss_oracle_macs_ratio=float(other.macs.mean()))
    if task is not iso_task:  # uniform at the same MACs runs on the suite's own network, not a re-ranked one
        scores["iso_mac"] = iso_mac_uniform(iso_task, scores["test"]["macs_ratio"], beta0)
    return scores


def objective(losses: np.ndarray, beta0: float) -> float:
    """The fixed-β test objective ``-mean(L) / beta0``."""
    return float(-np.mean(losses) / beta0)


def iso_mac_uniform(test: PruningTask, macs_ratio: float, beta0: float) -> dict:
    """Uniform pure runtime pruning at ``macs_ratio`` (never more MACs): keep ratio, top-1, objective, MACs."""
    ones = np.ones(test.num_layers)
    with test.at_tradeoff_rate(RUNTIME_TRADEOFF_RATE):
        ratio = iso_mac_uniform_ratio(test, macs_ratio)
        res = rollout_split(test, ratio, ones)
    return {"keep_ratio": float(ratio), "accuracy": float(res.correct.mean()), "objective": objective(res.losses, beta0),
            "macs_ratio": float(res.macs.mean())}


def _scores(test: PruningTask, res: SplitResults, static_ratios: Any, beta0: float, within: str) -> dict:
    metrics = summarize(test, res, static_ratios, within=within)
    metrics["objective"] = objective(res.losses, beta0)
    metrics["beta0"] = float(beta0)
    return metrics


def score_runtime(test: PruningTask, policy: Any, static_ratios: Any, beta0: float, *, controls: bool = True,
                  seed: int = 0, per_input: np.ndarray | None = None) -> dict:
    """A runtime method (MAC budget) on ``test``: ``{"test": metrics with "objective", "iso_mac": ...,
    "adaptation": ... or None, "per_input": what re-derives it}``; ``controls`` adds the shuffled control
    (agents, not fixed baselines); ``per_input`` ``(N, L)``: run each input at these keep ratios instead
    of ``policy``'s."""
    res = rollout_split(test, policy, static_ratios, per_input=per_input)
    metrics = _scores(test, res, static_ratios, beta0, "macs")
    out: dict[str, Any] = {"test": metrics, "iso_mac": iso_mac_uniform(test, metrics["macs_ratio"], beta0), "adaptation": None,
                           "per_input": per_input_record(test, res.actions, static_ratios,
                                                         shuffle_seed=seed if controls else None)}
    if controls:
        shuffled = rollout_split(test, None, static_ratios,
                                 per_input=res.actions[np.random.default_rng(seed).permutation(res.actions.shape[0])])
        out["adaptation"] = {
            "shuffled_accuracy": float(shuffled.correct.mean()), "shuffled_objective": objective(shuffled.losses, beta0),
            "shuffled_macs_ratio": float(shuffled.macs.mean()),
            "gain_accuracy": float(res.correct.mean() - shuffled.correct.mean()),
            "gain_objective": objective(res.losses, beta0) - objective(shuffled.losses, beta0),
            "keep_ratio_std_over_inputs": res.keep.std(0).tolist(),
        }
    return out


def score_static(test: PruningTask, runtime_policy: Any, static_ratios: Any, beta0: float, *,
                 per_input: np.ndarray | None = None) -> dict:
    """A static method (parameter budget) on ``test``: ``{"test": metrics with "objective", "iso_mac": ...,
    "adaptation": None, "per_input": what re-derives it}`` (``per_input``: as :func:`score_runtime`)."""
    res = rollout_split(test, runtime_policy, static_ratios, per_input=per_input)
    metrics = _scores(test, res, static_ratios, beta0, "params")
    return {"test": metrics, "iso_mac": iso_mac_uniform(test, metrics["macs_ratio"], beta0), "adaptation": None,
            "per_input": per_input_record(test, res.actions, static_ratios, constraint="params")}

