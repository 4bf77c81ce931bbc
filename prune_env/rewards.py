"""The agents' rewards: paper Eq. 7-11 (runtime) and 14-15 (static), with the signs corrected.

As printed, Eq. 9 averages ``-L`` (so the normalised reward is positive and *rises* with the
loss) and Eq. 10 / 15 lack a minus (rewarding going over budget). DESIGN.md fixes the intent:

* ``R_acc = -L / beta_b`` with ``beta_b = lambda * beta_{b-1} + (1 - lambda) * mean(L over batch b)``,
  a moving average of the positive loss (Eq. 7-9);
* ``R_bud = -(exp(alpha * (B - B_bar)) - 1)`` when ``B > B_bar``, else 0 (Eq. 10 and 15);
* sparse: their sum at the last step, 0 before (Eq. 11).

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
            self.beta = max(self.lam * self.beta + (1.0 - self.lam) * float(np.mean(batch)), self.floor)
            self.updates += 1

    def state_dict(self) -> dict:
        return {"beta": self.beta, "pending": list(self._pending), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.beta = float(state["beta"])
        self._pending = list(state["pending"])
        self.updates = int(state["updates"])


def budget_penalty(cost: np.ndarray, budget: float, alpha: float) -> np.ndarray:
    """``R_bud`` (Eq. 10 / 15, corrected): ``-(exp(alpha (B - B_bar)) - 1)`` over budget, else 0.

    ``cost`` and ``budget`` are fractions of the dense network's cost.
    """
    cost = np.asarray(cost, dtype=np.float64)
    over = np.maximum(cost - budget, 0.0)
    return -np.expm1(alpha * over)
