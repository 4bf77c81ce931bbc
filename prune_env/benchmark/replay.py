"""Record episodes and replay them to validate a reported result, in the spirit of CompilerGym's ``validate()``.

A record holds what makes an episode reproducible: the environment id and keywords, the data it
started on (image index or validation batch), the actions, and the reward state in force (the
reward scale ``beta`` and, under an average budget, the dual variable ``lambda``).
:func:`validate` rebuilds the environment, replays the actions and checks that the
reward and the results (loss, accuracy, MAC and parameter ratios, keep ratios) come out the same.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from prune_env.io import write_json

#: info entries compared on replay
CHECKED_KEYS = ("loss", "correct", "accuracy", "macs_ratio", "params_ratio", "keep_ratios", "reward_acc", "reward_budget")


@dataclass
class EpisodeRecord:
    """One episode, enough to replay it."""

    env_id: str
    env_kwargs: dict
    reset_options: dict
    actions: list[float]
    beta: float
    reward: float
    info: dict = field(default_factory=dict)
    #: ``env.reward_state()`` at the episode's start (None in records written before it existed: ``beta`` alone)
    reward_state: dict | None = None

    def save(self, path: str | os.PathLike) -> Path:
        """Write the record as JSON, atomically."""
        return write_json(asdict(self), path, indent=1, sort_keys=False, default=_jsonable)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "EpisodeRecord":
        return cls(**json.loads(Path(path).read_text()))


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"env keyword value {value!r} cannot be recorded (only JSON-serialisable keywords can be replayed)")


class RecordEpisode(gym.Wrapper):
    """Keeps the last finished episode as :attr:`last_record`; keywords must be JSON-serialisable."""

    def __init__(self, env: gym.Env, env_id: str, env_kwargs: dict | None = None):
        super().__init__(env)
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})
        json.dumps(self.env_kwargs, default=_jsonable)  # fail early if not replayable
        self.last_record: EpisodeRecord | None = None
        self._actions: list[float] = []
        self._options: dict = {}
        self._beta = float("nan")
        self._state: dict | None = None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._actions = []
        self._options = {k: info[k] for k in ("index", "indices") if k in info}
        if self.env.unwrapped.task.budget_range is not None:  # the drawn budget of an any-budget episode
            self._options["budget"] = info["budget_value"]
        self._beta = float(getattr(self.env.unwrapped.normalizer, "beta", float("nan")))
        self._state = self.env.unwrapped.reward_state()
        return obs, info

    def step(self, action):
        self._actions.append(float(np.asarray(action, dtype=np.float64).reshape(-1)[0]))
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            kept = {k: info[k] for k in CHECKED_KEYS if k in info}
            self.last_record = EpisodeRecord(self.env_id, self.env_kwargs, self._options, list(self._actions), self._beta,
                                             float(reward), kept, self._state)
        return obs, reward, terminated, truncated, info


@dataclass
class ValidationResult:
    """Outcome of :func:`validate`: ``ok`` and, if not, what differed."""

    ok: bool
    mismatches: dict[str, tuple[Any, Any]]
    replayed_reward: float


#: absolute tolerance on a replayed loss: float32 logits of magnitude ~10 differ by ~1e-6 between CPUs
#: whose kernels sum in another order (AVX2 against AVX-512), and a near-zero loss (a confident correct
#: prediction, ~1e-3) turns that into a relative error of ~1e-4, far above ``rtol``
LOSS_ATOL = 1e-5


def _close(a: Any, b: Any, rtol: float, atol: float = 1e-9) -> bool:
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y, rtol, atol) for x, y in zip(a, b))
    return math.isclose(float(a), float(b), rel_tol=rtol, abs_tol=atol)


def _atol(key: str, beta: float) -> float:
    """The absolute tolerance of info entry ``key`` (or ``"reward"``) on replay, given the reward scale ``beta``."""
    if key == "loss":
        return LOSS_ATOL
    if key in ("reward", "reward_acc"):  # -L / beta (+ a budget term computed exactly)
        return LOSS_ATOL / max(abs(beta), 1e-12)
    return 1e-9


def validate(record: EpisodeRecord, rtol: float = 1e-5) -> ValidationResult:
    """Replay ``record`` in a fresh environment and compare reward and results.

    Values agree within ``rtol``; the loss and the terms computed from it also within
    :data:`LOSS_ATOL` (divided by the reward scale ``beta`` for the reward), the float32 noise
    between CPUs on a near-zero loss.
    """
    env = gym.make(record.env_id, **record.env_kwargs)
    if record.reward_state is not None:
        env.unwrapped.set_reward_state(record.reward_state)
    else:
        env.unwrapped.normalizer.beta = record.beta
    env.reset(options=record.reset_options)
    reward, info = 0.0, {}
    for action in record.actions:
        _, reward, terminated, truncated, info = env.step(np.array([action], dtype=np.float32))
        if terminated or truncated:
            break
    beta = float(info.get("beta", 1.0))  # the episode's reward scale (both environments report it)
    env.close()
    mismatches = {}
    if not _close(reward, record.reward, rtol, _atol("reward", beta)):
        mismatches["reward"] = (record.reward, reward)
    for key, value in record.info.items():
        if key not in info or not _close(value, info[key], rtol, _atol(key, beta)):
            mismatches[key] = (value, info.get(key))
    return ValidationResult(not mismatches, mismatches, float(reward))
