"""The state a pruning environment's rewards carry across episodes: ``beta`` and, under an average budget, ``lambda``.

``reset(seed=s)`` reproduces the episode's data (the image, or the validation batch) and so its
observations, but not its reward: the reward scale ``beta`` (Eq. 9, unless ``loss_scale="fixed"``)
and the dual variable ``lambda`` (``budget_mode="average"``) move as episodes finish. To reproduce
rewards too, snapshot this state and put it back (:meth:`RewardStateMixin.reward_state`,
:meth:`RewardStateMixin.set_reward_state`); :class:`~prune_env.benchmark.replay.RecordEpisode` records it.
"""

from __future__ import annotations

import copy

from prune_env.rewards import DualVariable, LossNormalizer


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
