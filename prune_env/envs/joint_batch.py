"""The static agent's reward when both agents act in one batch: Eq. 14-15 on the runtime episodes' losses.

When the runtime and the static agent act in the same episodes (the joint environment
:mod:`prune_env.envs.multiagent`, Algorithm 1's joint update ``agents.joint``), one forward pass
gives both rewards: each image's cross entropy ``L_i`` is the runtime reward's (Eq. 7-11), and the
mean over a group of images, under one static configuration, is the static reward's (Eq. 14-15),
computed by :func:`group_static_rewards` as ``StaticPrune-v0`` computes it for a validation batch.
"""

from __future__ import annotations

import numpy as np

from prune_env.envs.reward import Dual, Normalizer, terminal_reward
from prune_env.envs.task import PruningTask


def group_static_rewards(task: PruningTask, runtime_infos: list[dict], params: np.ndarray, static_ratios: np.ndarray,
                         normalizer: Normalizer, dual: Dual | None) -> tuple[np.ndarray, list[dict]]:
    """The static reward and final info of each group of a joint batch (``beta`` and ``lambda`` updated after).

    Args:
        task: the task the episodes ran on (its parameter budget and reward keywords).
        runtime_infos: the runtime episodes' final infos, group-major (``RuntimePrune-v0``'s:
            ``loss``, ``correct``, ``macs_ratio``, ``index``), the same number per group.
        params: ``(groups,)`` each group's stored-parameter ratio.
        static_ratios: ``(groups, L)`` each group's static keep ratios.
        normalizer, dual: the static reward's ``beta`` and ``lambda`` (None per input).

    Returns:
        ``(rewards, infos)``: ``(groups,)`` rewards ``-mean_i(L_i) / beta_s + R_bud(P)`` and one
        ``StaticPrune-v0``-style info per group.
    """
    groups = len(params)
    m = len(runtime_infos) // groups

    def group_mean(key: str) -> np.ndarray:
        return np.array([info[key] for info in runtime_infos], dtype=np.float64).reshape(groups, m).mean(1)

    losses, accuracy, macs = group_mean("loss"), group_mean("correct"), group_mean("macs_ratio")
    budget = task.params_budget
    reward = terminal_reward(task.cfg, normalizer, dual, losses, params, budget)  # Eq. 14-15
    infos = [
        {"loss": float(losses[g]), "accuracy": float(accuracy[g]), "macs_ratio": float(macs[g]),
         "params_ratio": float(params[g]), "budget": budget, "within_budget": bool(params[g] <= budget + 1e-9),
         "keep_ratios": static_ratios[g].tolist(), "reward_acc": float(reward.accuracy[g]),
         "reward_budget": float(reward.budget[g]), "beta": reward.betas[g], "lambda": reward.lams[g],
         "indices": [info["index"] for info in runtime_infos[g * m:(g + 1) * m]]}
        for g in range(groups)
    ]
    return reward.total, infos
