"""Budget ranges: one agent for every budget.

``budget`` of both environments is a number (one budget, the paper's setting) or a *range* the
episodes draw their budget from:

* ``"0.25:0.7"`` or ``(0.25, 0.7)``: a continuous range, each episode's budget drawn uniformly in
  ``[low, high]``;
* ``[0.3, 0.5, 0.7]``, ``"0.3,0.5,0.7"`` or a tuple of three or more: a set of values, each episode's
  budget drawn uniformly among them.

The values are read as ``budget_kind`` says (a uniform keep ratio, "sparsity", or a fraction of
the dense cost), as a single budget is. A range is written back as the string ``"low:high"`` and a
set as a list (JSON keeps neither tuples nor their meaning), so a run's ``env_spec.json`` names the
same range.

The draws come from a generator of their own, derived from the environment's seed
(:func:`budget_stream`): ``reset(seed=s)`` reproduces them, and the image (validation batch) draws
are those of a single-budget environment, so a batched VecEnv still fetches its image indices a
block at a time.

Under ``budget_mode="average"`` the dual variable becomes a function of the budget: the range is cut
into ``dual_bins`` bins of equal width (a set: one bin per value), each with its own ``lambda``
(:class:`~prune_env.rewards.BinnedDual`) and its own loss scale ``beta``
(:class:`~prune_env.rewards.BinnedLossNormalizer`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

#: the key that tells the budget stream from the environment's own stream of the same seed
BUDGET_STREAM_KEY = 0xB0D6E7
#: the separator of a continuous range in its string form
RANGE_SEPARATOR = ":"
#: the smallest width of a continuous range (narrower: give one number)
MIN_WIDTH = 1e-6


def _budget_value(name: str, value: Any) -> float:
    """One budget of the range or set ``name`` as a float in (0, 1], else a ValueError."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must hold numbers, got {value!r}") from None
    if not (math.isfinite(v) and 0.0 < v <= 1.0):
        raise ValueError(f"{name}: every budget must be in (0, 1], got {value!r}")
    return v


@dataclass(frozen=True)
class BudgetRange:
    """The budgets an any-budget environment draws from: ``[low, high]`` or the set ``values``.

    Attributes:
        low, high: the smallest and the largest budget (in the units of ``budget_kind``).
        values: the set of budgets (sorted), or None for the continuous range.
    """

    low: float
    high: float
    values: tuple[float, ...] | None = None

    # ------------------------------------------------------------------ parsing
    @classmethod
    def parse(cls, value: Any, name: str = "budget") -> "BudgetRange | None":
        """The range ``value`` describes, or None for one number; a ValueError naming ``name`` and the
        accepted forms otherwise."""
        forms = ("a number in (0, 1], a range 'low:high' or (low, high), or a list of values [b1, b2, ...]")
        if isinstance(value, bool):
            raise ValueError(f"{name} must be {forms}, got {value!r}")
        if isinstance(value, (int, float, np.integer, np.floating)):
            return None
        if isinstance(value, str):
            text = value.strip()
            if RANGE_SEPARATOR in text:
                parts = text.split(RANGE_SEPARATOR)
                if len(parts) != 2:
                    raise ValueError(f"{name}: a range is 'low:high', got {value!r}")
                return cls.between(_budget_value(name, parts[0]), _budget_value(name, parts[1]), name)
            if "," in text:
                return cls.of([_budget_value(name, p) for p in text.split(",") if p.strip()], name)
            try:
                float(text)
            except ValueError:
                raise ValueError(f"{name} must be {forms}, got {value!r}") from None
            return None
        if isinstance(value, tuple):  # the command line's budget=0.3,0.7 (a range) or budget=0.3,0.5,0.7 (a set)
            if len(value) == 2:
                return cls.between(_budget_value(name, value[0]), _budget_value(name, value[1]), name)
            if len(value) < 2:
                raise ValueError(f"{name}: a tuple is a range (low, high) of two numbers, got {value!r}")
            return cls.of([_budget_value(name, v) for v in value], name)
        if isinstance(value, (list, np.ndarray)):
            return cls.of([_budget_value(name, v) for v in value], name)
        raise ValueError(f"{name} must be {forms}, got {value!r}")

    @classmethod
    def between(cls, low: float, high: float, name: str = "budget") -> "BudgetRange":
        if not high - low >= MIN_WIDTH:
            raise ValueError(f"{name}: a range needs low < high, got {low}:{high}")
        return cls(float(low), float(high))

    @classmethod
    def of(cls, values: list[float], name: str = "budget") -> "BudgetRange":
        unique = tuple(sorted({float(v) for v in values}))
        if len(unique) < 2:
            raise ValueError(f"{name}: a list of budgets needs at least two different values, got {values!r}; "
                             f"give one budget as a number")
        return cls(unique[0], unique[-1], unique)

    def to_json(self) -> str | list[float]:
        """The form ``parse`` reads back: ``"low:high"`` or the list of values."""
        if self.values is not None:
            return list(self.values)
        return f"{self.low:g}{RANGE_SEPARATOR}{self.high:g}"

    def __str__(self) -> str:
        if self.values is not None:
            return "{" + ", ".join(f"{v:g}" for v in self.values) + "}"
        return f"[{self.low:g}, {self.high:g}]"

    # ------------------------------------------------------------------ what an episode draws
    @property
    def reference(self) -> float:
        """The budget that stands for the range where one number is needed (the agent's first action,
        a plain ``rollout``): the middle of ``[low, high]``."""
        return 0.5 * (self.low + self.high)

    def sample(self, rng: np.random.Generator) -> float:
        """One budget: uniform in ``[low, high]``, or uniform among the values."""
        if self.values is not None:
            return self.values[int(rng.integers(len(self.values)))]
        return float(rng.uniform(self.low, self.high))

    def contains(self, value: float) -> bool:
        return self.low - 1e-9 <= float(value) <= self.high + 1e-9

    def check(self, value: Any, name: str = "budget") -> float:
        """``value`` as a float when inside ``[low, high]``; else a ValueError saying that the agent was
        trained over this range (an any-budget agent outside it extrapolates)."""
        v = _budget_value(name, value)
        if not self.contains(v):
            raise ValueError(f"{name}={v:g} is outside the range this agent was trained over, {self} "
                             f"(budgets in [{self.low:g}, {self.high:g}] only)")
        return v

    # ------------------------------------------------------------------ bins of the dual variable
    def num_bins(self, requested: int) -> int:
        """``requested`` bins over a continuous range; one per value for a set."""
        return len(self.values) if self.values is not None else int(requested)

    def centers(self, bins: int) -> np.ndarray:
        """The budget each bin stands for (where its ``beta`` and ``lambda`` are calibrated)."""
        if self.values is not None:
            return np.asarray(self.values, dtype=np.float64)
        width = (self.high - self.low) / bins
        return self.low + width * (np.arange(bins) + 0.5)

    def bin_of(self, budgets: np.ndarray, bins: int) -> np.ndarray:
        """The bin of each budget: equal-width bins over ``[low, high]`` (the top edge in the last bin),
        or the nearest value of a set."""
        budgets = np.asarray(budgets, dtype=np.float64)
        if self.values is not None:
            return np.abs(budgets[..., None] - np.asarray(self.values)[None]).argmin(-1)
        width = (self.high - self.low) / bins
        return np.clip(np.floor((budgets - self.low) / width), 0, bins - 1).astype(np.int64)


def budget_stream(rng: np.random.Generator) -> np.random.Generator:
    """The generator an environment draws its episode budgets from, given its own generator ``rng``.

    Derived from ``rng``'s seed (:class:`numpy.random.SeedSequence` with one more spawn key), without
    drawing from ``rng``: the same seed gives the same budgets, and ``rng`` gives the same images as
    in a single-budget environment.
    """
    seq = getattr(rng.bit_generator, "seed_seq", None)
    if isinstance(seq, np.random.SeedSequence):
        child = np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, BUDGET_STREAM_KEY))
    else:  # a generator built without a seed sequence: key on its current state
        digest = hashlib.sha256(repr(rng.bit_generator.state).encode()).digest()
        child = np.random.SeedSequence(int.from_bytes(digest[:16], "little"), spawn_key=(BUDGET_STREAM_KEY,))
    return np.random.Generator(np.random.PCG64(child))


class AtBudget(gym.Wrapper):
    """An any-budget environment held at one ``budget`` (inside its range): every ``reset`` chooses it
    (``options={"budget": budget}``), so observations, relative actions and rewards are those of that
    budget, as the agent was trained to see them."""

    def __init__(self, env: gym.Env, budget: float):
        super().__init__(env)
        task = env.unwrapped.task
        if task.budget_range is None:
            raise ValueError(f"AtBudget: the environment has one budget ({task.cfg.budget!r}), not a range")
        self.budget = task.budget_range.check(budget)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        return self.env.reset(seed=seed, options={**(options or {}), "budget": self.budget})


__all__ = ["AtBudget", "BudgetRange", "budget_stream"]
