"""SB3 callbacks of a training run: what the environments report, logged; atomic checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from agents.saved import CHECKPOINT_FILE, save_agent_checkpoint
from prune_env.errors import NonFiniteError


class PruningLogCallback(BaseCallback):
    """Logs the episode results the environments report (reward parts, MAC / parameter ratios,
    accuracy, per-layer keep ratios) to the SB3 logger (TensorBoard) at every rollout end."""

    KEYS = ("reward_acc", "reward_budget", "macs_ratio", "params_ratio", "correct", "accuracy", "within_budget", "lambda")

    def __init__(self, prefix: str = "prune"):
        super().__init__()
        self.prefix = prefix
        self._values: dict[str, list[float]] = {}
        self._keep: list[list[float]] = []
        self._relative: list[float] = []  # each episode's cost / its budget

    def _on_step(self) -> bool:
        for info, done in zip(self.locals.get("infos", []), self.locals.get("dones", [])):
            if not done:
                continue
            for key in self.KEYS:
                if key in info:
                    self._values.setdefault(key, []).append(float(info[key]))
            if "keep_ratios" in info:
                self._keep.append(info["keep_ratios"])
            cost = "params_ratio" if self.prefix.startswith("Static") else "macs_ratio"
            if "budget" in info and cost in info:  # a budget range: each episode against its own budget
                self._relative.append(float(info[cost]) / float(info["budget"]))
        return True

    def _on_rollout_end(self) -> None:
        for key, values in self._values.items():
            self.logger.record(f"{self.prefix}/{key}", float(np.mean(values)))
        if self._relative:  # the budget's relative violation (what lambda acts on)
            self.logger.record(f"{self.prefix}/violation", float(np.mean(self._relative)) - 1.0)
        self._relative = []
        if self._keep:
            for t, v in enumerate(np.mean(self._keep, axis=0)):
                self.logger.record(f"{self.prefix}/keep_layer{t}", float(v))
        self._values, self._keep = {}, []


def check_finite_agent(model: BaseAlgorithm, out: Path) -> None:
    """A :class:`~prune_env.errors.NonFiniteError` naming the step when ``model``'s weights hold NaN or inf
    (a training loss that diverged): the run stops there, and the last good checkpoint in ``out`` is kept."""
    for name, tensor in model.policy.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            kept = out / CHECKPOINT_FILE
            raise NonFiniteError(f"training stopped at step {model.num_timesteps}: the agent's weights ({name}) became "
                                 f"NaN or inf (a loss that diverged: lower --hyperparams learning_rate); "
                                 + (f"the last good checkpoint {str(kept)!r} is kept" if kept.exists()
                                    else "no checkpoint was written"))


class AtomicCheckpointCallback(BaseCallback):
    """Saves the model (and the environment's reward scale) atomically every ``every`` steps, once its
    weights are checked finite (:func:`check_finite_agent`)."""

    def __init__(self, out: Path, venv: VecEnv, every: int):
        super().__init__()
        self.out, self.venv, self.every = out, venv, max(1, int(every))
        self._last = 0

    def _on_rollout_start(self) -> None:  # after each update: weights that diverged stop the run before they act
        check_finite_agent(self.model, self.out)

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last >= self.every:
            self._last = self.num_timesteps
            check_finite_agent(self.model, self.out)
            save_agent_checkpoint(self.model, self.venv, self.out)
        return True


__all__ = ["AtomicCheckpointCallback", "PruningLogCallback", "check_finite_agent"]
