"""The state a pruning environment's rewards carry across episodes: ``beta`` and, under an average budget, ``lambda``.

``reset(seed=s)`` reproduces the episode's data (the image, or the validation batch) and so its
observations, but not its reward: the reward scale ``beta`` (Eq. 9, unless ``loss_scale="fixed"``)
and the dual variable ``lambda`` (``budget_mode="average"``) move as episodes finish. To reproduce
rewards too, snapshot this state and put it back (:meth:`RewardStateMixin.reward_state`,
:meth:`RewardStateMixin.set_reward_state`); :class:`~prune_env.benchmark.replay.RecordEpisode` records it.
Under a budget range there is one ``beta`` and one ``lambda`` per budget bin (:func:`shared_binned_state`).
"""

from __future__ import annotations

import copy
from typing import Any

from prune_env.envs.task import PruningTask
from prune_env.rewards import BinnedDual, BinnedLossNormalizer, DualVariable, LossNormalizer


class RewardStateMixin:
    """Snapshot and restore of the reward state of an environment holding ``normalizer`` and ``dual``."""

    normalizer: LossNormalizer
    dual: DualVariable | None

    def reward_state(self) -> dict:
        """``{"normalizer": beta's state, "dual": lambda's state or None}``, a copy (JSON-ready)."""
        return copy.deepcopy({"normalizer": self.normalizer.state_dict(),
                              "dual": None if self.dual is None else self.dual.state_dict()})

    def set_reward_state(self, state: dict) -> None:
        """Put back what :meth:`reward_state` returned (``lambda`` only where this environment has one)."""
        self.normalizer.load_state_dict(copy.deepcopy(state["normalizer"]))
        if self.dual is not None and state.get("dual") is not None:
            self.dual.load_state_dict(copy.deepcopy(state["dual"]))


def shared_binned_state(normalizer: Any, dual: Any, task: PruningTask,
                        calibrate: Any) -> tuple[BinnedLossNormalizer, BinnedDual | None]:
    """The reward state of a budget range: the given (shared) ``normalizer`` / ``dual`` where given,
    else calibrated by ``calibrate()`` (which returns both); a one-budget one given is a TypeError."""
    for name, value, cls in (("normalizer", normalizer, BinnedLossNormalizer), ("dual", dual, BinnedDual)):
        if value is not None and not isinstance(value, cls):
            raise TypeError(f"{name}: an environment with a budget range (budget={task.cfg.budget!r}) shares a "
                            f"{cls.__name__} (one per budget bin), got {type(value).__name__}")
    if normalizer is None or (dual is None and task.cfg.budget_mode == "average"):
        own_normalizer, own_dual = calibrate()
        normalizer, dual = normalizer or own_normalizer, dual or own_dual
    return normalizer, dual
