"""``--timesteps`` honoured: a run ends at the requested step count rounded up to at most one rollout,
and its progress bar's total is the count it will actually reach.

An on-policy algorithm (PPO, A2C, TRPO, recurrent PPO) collects ``n_steps`` steps in each of
``n_envs`` environments before it learns or checks whether to stop, so ``learn(2000)`` with TRPO's
``n_steps=2048`` on 64 environments trains 131,072 steps. :func:`fit_rollout` shortens the rollout
of a run shorter than one (``n_steps = ceil(timesteps / n_envs)``, the batch size capped at the
rollout), so that it ends within ``n_envs`` steps of the request; longer runs keep their settings
and end at most one rollout past it. :func:`reached` is where a run will end and
:class:`StepsProgress` shows it (:mod:`prune_env.progress`: a bar on a terminal, lines in a log).
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm


def _default(cls: type, name: str) -> Any:
    param = inspect.signature(cls.__init__).parameters.get(name)
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def fit_rollout(params: dict, cls: type, timesteps: int, n_envs: int) -> dict:
    """``params`` with ``n_steps`` (and ``batch_size``) shortened so that one rollout of ``n_envs``
    environments is no longer than ``timesteps`` rounded up to ``n_envs`` (in place; returned)."""
    if not (isinstance(cls, type) and issubclass(cls, OnPolicyAlgorithm)):
        return params  # off-policy algorithms stop within a train_freq of every environment (their n_steps is n-step returns)
    n_steps = int(params.get("n_steps", _default(cls, "n_steps") or 2048))
    if n_steps * n_envs <= timesteps:
        return params
    n_steps = max(2, math.ceil(timesteps / n_envs))  # PPO's advantages need 2 steps per rollout
    params["n_steps"] = n_steps
    batch = params.get("batch_size", _default(cls, "batch_size"))
    if batch is not None:
        rollout = n_steps * n_envs
        batch = max(2, min(int(batch), rollout))
        params["batch_size"] = batch if rollout % batch == 0 else rollout  # whole mini-batches (SB3 warns otherwise)
    return params


def rollout_steps(model: BaseAlgorithm) -> int:
    """Steps between two checks of the stopping condition: a rollout of every environment."""
    n_envs = int(getattr(model, "n_envs", 1) or 1)
    if isinstance(model, OnPolicyAlgorithm):
        return int(model.n_steps) * n_envs
    freq = getattr(model, "train_freq", None)  # off-policy: TrainFreq(frequency, unit); episodes count as 1 step here
    in_steps = freq is not None and getattr(getattr(freq, "unit", None), "value", "step") == "step"
    return int(getattr(freq, "frequency", 1) if in_steps else 1) * n_envs


def reached(model: BaseAlgorithm, total: int) -> int:
    """The step count at which ``model.learn`` up to ``total`` stops (from ``model.num_timesteps``)."""
    done = int(model.num_timesteps)
    if total <= done:
        return done
    step = rollout_steps(model)
    return done + math.ceil((total - done) / step) * step


class StepsProgress(BaseCallback):
    """The progress of ``model.learn`` up to ``total`` steps, whose bar's total is :func:`reached`."""

    def __init__(self, total: int, desc: str = "training"):
        super().__init__()
        self.total, self.desc, self.bar = int(total), desc, None

    def _on_training_start(self) -> None:
        from prune_env.progress import bar

        end = reached(self.model, self.total)
        note = f" (asked {self.total:,}, rounded up to whole rollouts)" if end != self.total else ""
        self.bar = bar(end, f"{self.desc}{note}", "steps", initial=self.model.num_timesteps)

    def _on_step(self) -> bool:
        if self.bar is not None:
            self.bar.update(int(self.model.num_timesteps) - int(self.bar.n))
        return True

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


__all__ = ["StepsProgress", "fit_rollout", "reached", "rollout_steps"]
