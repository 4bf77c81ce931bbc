"""The agents' rewards: paper Eq. 7-11 (runtime) and 14-15 (static), with the signs corrected.

As printed, Eq. 9 averages ``-L`` (so the normalised reward is positive and *rises* with the
loss) and Eq. 10 / 15 lack a minus (rewarding going over budget). Implemented is the intent
(``docs/design.md``, "Rewards"):

* ``R_acc = -L / beta_b`` with ``beta_b = lambda * beta_{b-1} + (1 - lambda) * mean(L over batch b)``,
  a moving average of the positive loss (Eq. 7-9);
* ``R_bud = -(exp(alpha * (B - B_bar)) - 1)`` when ``B > B_bar``, else 0 (Eq. 10 and 15);
* sparse: their sum at the last step, 0 before (Eq. 11).

These are the terms and the state they carry (``beta``, ``lambda``); :mod:`prune_env.envs.reward`
assembles them into each environment's reward.

One choice of ours: a reward uses the moving average of the batches *completed before* its
episode, and the average is updated after. A reward then depends only on its own episode and the
past, so a batched environment and the same number of single environments agree exactly.
"""

from __future__ import annotations

import math

import numpy as np


class LossNormalizer:
    """The moving average ``beta`` of the loss over batches of episodes (Eq. 8-9, corrected).

    Args:
        beta0: initial value (the environments calibrate it on validation data); must be > 0.
        lam: the moving weight ``lambda`` in [0, 1]; 1 freezes ``beta`` at ``beta0``.
        batch_size: episodes per update of ``beta``.
        floor: lower bound of ``beta``, so that a near-zero loss cannot blow the reward up.
    """

    def __init__(self, beta0: float, lam: float = 0.9, batch_size: int = 64, floor: float = 1e-3):
        if not beta0 > 0 or not math.isfinite(beta0):
            raise ValueError(f"beta0 must be a positive finite number, got {beta0}")
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"loss_lambda must be in [0, 1], got {lam}")
        if batch_size < 1:
            raise ValueError(f"loss_batch must be >= 1, got {batch_size}")
        self.beta = max(float(beta0), floor)
        self.lam = float(lam)
        self.batch_size = int(batch_size)
        self.floor = float(floor)
        self._pending: list[float] = []
        self.updates = 0

    def reward(self, losses: np.ndarray) -> np.ndarray:
        """``R_acc = -L / beta`` (Eq. 7-8) for each loss, with the current ``beta``."""
        return -np.asarray(losses, dtype=np.float64) / self.beta

    def observe(self, losses: np.ndarray) -> None:
        """Add episode losses; every ``batch_size`` of them update ``beta`` (Eq. 9)."""
        self._pending.extend(float(v) for v in np.ravel(losses))
        while len(self._pending) >= self.batch_size:
            batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size :]
            self.step(float(np.mean(batch)))

    def step(self, mean_loss: float) -> float:
        """One update of ``beta`` (Eq. 9) from a batch's mean loss; returns the new ``beta``."""
        self.beta = max(self.lam * self.beta + (1.0 - self.lam) * mean_loss, self.floor)
        self.updates += 1
        return self.beta

    def state_dict(self) -> dict:
        return {"beta": self.beta, "pending": list(self._pending), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.beta = float(state["beta"])
        self._pending = list(state["pending"])
        self.updates = int(state["updates"])


#: the largest exponent of the budget penalties: ``exp(80)`` is about 5.5e34, far beyond any loss term
#: and still finite in the float32 rewards of a VecEnv (whose largest value is about 3.4e38)
MAX_PENALTY_EXPONENT = 80.0


def budget_penalty(cost: np.ndarray, budget: float, alpha: float) -> np.ndarray:
    """``R_bud`` (Eq. 10 / 15, corrected): ``-(exp(alpha (B - B_bar)) - 1)`` over budget, else 0.

    ``cost`` and ``budget`` are fractions of the dense network's cost. The exponent is capped at
    :data:`MAX_PENALTY_EXPONENT` so that a steep ``alpha`` never gives an infinite reward.
    """
    cost = np.asarray(cost, dtype=np.float64)
    over = np.maximum(cost - budget, 0.0)
    return -np.expm1(np.minimum(alpha * over, MAX_PENALTY_EXPONENT))


def relative_budget_penalty(cost: np.ndarray, budget: float, alpha: float) -> np.ndarray:
    """Eq. 10 / 15 on the *relative* overshoot: ``-(exp(alpha (B - B_bar) / B_bar) - 1)`` over budget, else 0.

    One ``alpha`` then costs the same for the same relative overshoot at every budget level (the
    absolute form charges a 65% overshoot 0.92 at ``B_bar = 0.1`` but 24.8 at ``B_bar = 0.5``).
    """
    cost = np.asarray(cost, dtype=np.float64)
    over = np.maximum(cost - budget, 0.0) / budget
    return -np.expm1(np.minimum(alpha * over, MAX_PENALTY_EXPONENT))


def average_budget_term(cost: np.ndarray, budget: float, lam: float) -> np.ndarray:
    """The average-budget (constrained MDP) term ``-lambda (B - B_bar) / B_bar`` of one episode.

    Linear in the episode's cost: an input that spends less than the budget earns
    ``lambda (B_bar - B) / B_bar`` that another input can spend, so only the *mean* cost is held
    to the budget, by the dual variable ``lambda`` (:class:`DualVariable`).
    """
    cost = np.asarray(cost, dtype=np.float64)
    return -float(lam) * (cost - budget) / budget


class DualVariable:
    """The Lagrange multiplier ``lambda >= 0`` of an average-cost budget, by projected dual ascent.

    After every ``batch_size`` finished episodes, with ``e = mean(B) / B_bar - 1`` the batch's
    relative violation (positive over budget):

    * integral part: ``lambda_I <- clip(lambda_I + lr * e, 0, lambda_max)`` (projected dual ascent);
    * ``lambda = clip(lambda_I + kp * e, 0, lambda_max)`` (a proportional term, as in PID
      Lagrangian methods for safe RL (Stooke et al. 2020), damps the oscillation of plain ascent;
      ``kp = 0`` is plain dual ascent).

    A reward uses the ``lambda`` of the batches completed before its episode, as with ``beta``
    (:class:`LossNormalizer`), so a batched VecEnv and single environments agree exactly.

    Args:
        budget: ``B_bar``, the bound on the mean cost (a fraction of the dense cost), > 0.
        init: the starting ``lambda`` (and ``lambda_I``), in ``[0, lambda_max]``.
        lr: the integral step, >= 0 (0 freezes ``lambda_I``).
        kp: the proportional gain, >= 0.
        lam_max: the upper bound of ``lambda``.
        batch_size: episodes per update.
    """

    def __init__(self, budget: float, init: float = 0.0, lr: float = 0.5, kp: float = 2.0, lam_max: float = 100.0,
                 batch_size: int = 64):
        if not budget > 0 or not math.isfinite(budget):
            raise ValueError(f"budget must be a positive finite number, got {budget}")
        if not (lam_max > 0 and math.isfinite(lam_max)):
            raise ValueError(f"dual_max must be a positive finite number, got {lam_max}")
        if not 0.0 <= init <= lam_max:
            raise ValueError(f"dual_init must be in [0, {lam_max}], got {init}")
        if not (lr >= 0 and math.isfinite(lr)):
            raise ValueError(f"dual_lr must be a finite number >= 0, got {lr}")
        if not (kp >= 0 and math.isfinite(kp)):
            raise ValueError(f"dual_kp must be a finite number >= 0, got {kp}")
        if batch_size < 1:
            raise ValueError(f"dual_batch must be >= 1, got {batch_size}")
        self.budget = float(budget)
        self.lr, self.kp, self.lam_max = float(lr), float(kp), float(lam_max)
        self.batch_size = int(batch_size)
        self.integral = self.lam = float(init)
        self.violation = 0.0  # e of the last update
        self._pending: list[float] = []
        self.updates = 0

    def reward(self, costs: np.ndarray) -> np.ndarray:
        """``-lambda (B - B_bar) / B_bar`` for each episode cost, with the current ``lambda``."""
        return average_budget_term(costs, self.budget, self.lam)

    def observe(self, costs: np.ndarray) -> None:
        """Add finished episodes' costs; every ``batch_size`` of them take one dual step."""
        self._pending.extend(float(v) for v in np.ravel(costs))
        while len(self._pending) >= self.batch_size:
            batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size :]
            self.step(float(np.mean(batch)))

    def step(self, mean_cost: float) -> float:
        """One dual update from a batch's mean cost; returns the new ``lambda``."""
        e = mean_cost / self.budget - 1.0
        self.integral = min(max(self.integral + self.lr * e, 0.0), self.lam_max)
        self.lam = min(max(self.integral + self.kp * e, 0.0), self.lam_max)
        self.violation = e
        self.updates += 1
        return self.lam

    def state_dict(self) -> dict:
        return {"lam": self.lam, "integral": self.integral, "violation": self.violation,
                "pending": list(self._pending), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.lam, self.integral = float(state["lam"]), float(state["integral"])
        self.violation = float(state.get("violation", 0.0))
        self._pending = list(state["pending"])
        self.updates = int(state["updates"])


# --------------------------------------------------------------------------- one agent for every budget
class _BinClock:
    """Pending ``(value, bin)`` pairs of finished episodes; every ``batch_size`` of them (of any bin)
    make one tick, at which each bin that received episodes steps with the mean of its own values.

    One clock for all bins, rather than one per bin, keeps the batched VecEnv and single
    environments in step: with ``batch_size`` equal to the number of environments every tick falls
    where a lockstep batch of episodes ends, whatever budgets they drew.
    """

    def __init__(self, batch_size: int):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self._pending: list[tuple[float, int]] = []

    def add(self, values: np.ndarray, bins: np.ndarray) -> list[dict[int, float]]:
        """Queue the episodes; returns, per completed tick, ``{bin: mean value of its episodes}``."""
        self._pending.extend(zip((float(v) for v in np.ravel(values)), (int(b) for b in np.ravel(bins))))
        ticks = []
        while len(self._pending) >= self.batch_size:
            batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size :]
            groups: dict[int, list[float]] = {}
            for value, b in batch:
                groups.setdefault(b, []).append(value)
            ticks.append({b: float(np.mean(v)) for b, v in sorted(groups.items())})
        return ticks

    def state_dict(self) -> list[list[float]]:
        return [[v, b] for v, b in self._pending]

    def load_state_dict(self, pending: list) -> None:
        self._pending = [(float(v), int(b)) for v, b in pending]


def _check_bins(bins: np.ndarray, count: int) -> np.ndarray:
    bins = np.asarray(bins, dtype=np.int64).reshape(-1)
    if bins.size and (bins.min() < 0 or bins.max() >= count):
        raise ValueError(f"budget bins must be in [0, {count - 1}], got {bins.tolist()}")
    return bins


class _PerBin:
    """What the per-bin reward states share: each bin's own state (a :class:`LossNormalizer` or a
    :class:`DualVariable`), the centres, the one clock of their updates, and the saved state of all three."""

    _label = ""  # what each bin holds, for the error message
    centers: list[float]
    _clock: _BinClock

    def _per_bin(self) -> list:
        raise NotImplementedError

    @property
    def updates(self) -> int:
        return sum(b.updates for b in self._per_bin())

    def _bins(self, bins: np.ndarray) -> np.ndarray:
        """``bins`` as an int array, each checked to be a bin of this state."""
        return _check_bins(bins, len(self._per_bin()))

    def _step(self, values: np.ndarray, bins: np.ndarray) -> None:
        """Queue finished episodes' values on the clock; at each tick the bins that received some step
        with the mean of their own."""
        per_bin = self._per_bin()
        for tick in self._clock.add(values, self._bins(bins)):
            for b, mean in tick.items():
                per_bin[b].step(mean)

    def state_dict(self) -> dict:
        return {"centers": list(self.centers), "bins": [b.state_dict() for b in self._per_bin()],
                "pending": self._clock.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        bins = self._per_bin()
        if "bins" not in state or len(state["bins"]) != len(bins):
            raise ValueError(f"reward state: expected {self._label} for {len(bins)} budget bins "
                             f"(centres {self.centers}), got {state.get('centers', 'one budget')}")
        for b, s in zip(bins, state["bins"]):
            b.load_state_dict(s)
        self._clock.load_state_dict(state["pending"])


class BinnedLossNormalizer(_PerBin):
    """The loss scale ``beta`` as a function of the budget: one :class:`LossNormalizer` per budget bin.

    An agent trained over a range of budgets sees losses that grow as the budget shrinks; each bin
    keeps its own ``beta`` (calibrated at its budget, Eq. 9's moving average over its own episodes
    unless frozen), so ``R_acc = -L / beta`` has one scale at every budget. Updates follow one clock
    (:class:`_BinClock`): every ``batch_size`` finished episodes, each bin that received some steps
    with their mean loss.

    Args:
        normalizers: one per bin (their ``batch_size`` must agree).
        centers: the budget each bin stands for (recorded in the state, checked on load).
    """

    def __init__(self, normalizers: list[LossNormalizer], centers: np.ndarray | list[float]):
        if not normalizers or len(normalizers) != len(centers):
            raise ValueError(f"one normalizer per bin: got {len(normalizers)} for {len(centers)} bins")
        self.normalizers = list(normalizers)
        self.centers = [float(c) for c in centers]
        self._clock = _BinClock(self.normalizers[0].batch_size)

    _label = "beta"

    def _per_bin(self) -> list:
        return self.normalizers

    @property
    def betas(self) -> list[float]:
        return [n.beta for n in self.normalizers]

    def beta_of(self, bins: np.ndarray) -> np.ndarray:
        return np.asarray(self.betas)[self._bins(bins)]

    def reward(self, losses: np.ndarray, bins: np.ndarray) -> np.ndarray:
        """``R_acc = -L / beta_k`` (Eq. 7-8) for each loss, ``k`` its episode's bin."""
        return -np.asarray(losses, dtype=np.float64).reshape(-1) / self.beta_of(bins)

    def observe(self, losses: np.ndarray, bins: np.ndarray) -> None:
        """Add finished episodes' losses and bins (Eq. 9, per bin, on the shared clock)."""
        self._step(losses, bins)


class BinnedDual(_PerBin):
    """The dual variable of an average budget as a function of the budget: one ``lambda`` per budget bin.

    Each bin is a constraint of its own, "the mean relative cost ``B / B_bar`` of the episodes whose
    budget fell in the bin is at most 1", with its own multiplier ``lambda_k``; an episode of budget
    ``B_bar`` in bin ``k`` earns ``-lambda_k (B - B_bar) / B_bar`` (:func:`average_budget_term` with
    the episode's own budget). ``lambda_k`` follows :class:`DualVariable`'s rule (projected dual
    ascent plus a proportional term) on the relative violation ``e_k = mean(B / B_bar) - 1`` of the
    bin's episodes; every ``batch_size`` finished episodes (one clock for all bins, :class:`_BinClock`)
    each bin that received episodes takes one step.

    Args:
        inits: the starting ``lambda`` of each bin.
        centers: the budget each bin stands for.
        lr, kp, lam_max, batch_size: as :class:`DualVariable`.
    """

    def __init__(self, inits: list[float], centers: np.ndarray | list[float], *, lr: float = 0.5, kp: float = 2.0,
                 lam_max: float = 100.0, batch_size: int = 64):
        if not inits or len(inits) != len(centers):
            raise ValueError(f"one initial lambda per bin: got {len(inits)} for {len(centers)} bins")
        # each bin's constraint is on the relative cost B / B_bar, whose bound is 1
        self.duals = [DualVariable(1.0, init=float(i), lr=lr, kp=kp, lam_max=lam_max, batch_size=batch_size)
                      for i in inits]
        self.centers = [float(c) for c in centers]
        self._clock = _BinClock(batch_size)

    _label = "lambda"

    def _per_bin(self) -> list:
        return self.duals

    @property
    def lams(self) -> list[float]:
        return [d.lam for d in self.duals]

    def lam_of(self, bins: np.ndarray) -> np.ndarray:
        return np.asarray(self.lams)[self._bins(bins)]

    def reward(self, costs: np.ndarray, budgets: np.ndarray, bins: np.ndarray) -> np.ndarray:
        """``-lambda_k (B - B_bar) / B_bar`` for each episode: its cost, its budget, its bin's ``lambda``."""
        costs = np.asarray(costs, dtype=np.float64).reshape(-1)
        budgets = np.asarray(budgets, dtype=np.float64).reshape(-1)
        return -self.lam_of(bins) * (costs - budgets) / budgets

    def observe(self, costs: np.ndarray, budgets: np.ndarray, bins: np.ndarray) -> None:
        """Add finished episodes (cost, budget, bin); each tick steps the bins that received episodes."""
        relative = np.asarray(costs, dtype=np.float64).reshape(-1) / np.asarray(budgets, dtype=np.float64).reshape(-1)
        self._step(relative, bins)
