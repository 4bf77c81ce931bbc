"""Keep-ratio policies the environments accept for the *other* agent, and for evaluation.

``prune_env`` never imports ``agents``: an environment that needs the other agent's actions
takes a policy, built by :func:`as_policy` from

* ``None`` or a number: a constant keep ratio (``None`` = 1, no pruning);
* a sequence of ``L`` numbers: one keep ratio per layer;
* any object with a stable-baselines3 ``predict(obs, state, episode_start, deterministic)``
  method (a trained or loaded SB3 / sb3-contrib model, recurrent ones included);
* a callable ``observation batch (B, D) -> keep ratios (B,)``.

A policy sees one batch of episodes at a time: :meth:`KeepRatioPolicy.reset` starts them and
each call returns the keep ratios of the next layer.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np


class KeepRatioPolicy:
    """Maps a batch of observations, layer by layer, to raw keep ratios (clipped by the caller)."""

    def reset(self, batch_size: int) -> None:
        """Start ``batch_size`` new episodes."""
        self._t = 0
        self._batch = batch_size

    def act(self, observations: np.ndarray, t: int) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        """Keep ratios ``(B,)`` of the next layer for a batch of observations ``(B, D)``."""
        ratios = np.asarray(self.act(np.asarray(observations, dtype=np.float32), self._t), dtype=np.float64)
        self._t += 1
        return np.broadcast_to(ratios.reshape(-1), (observations.shape[0],)).copy()


class ConstantPolicy(KeepRatioPolicy):
    """The same keep ratio everywhere."""

    def __init__(self, ratio: float = 1.0):
        self.ratio = float(ratio)

    def act(self, observations, t):
        return np.full(observations.shape[0], self.ratio)

    def __repr__(self) -> str:
        return f"ConstantPolicy({self.ratio})"


class PerLayerPolicy(KeepRatioPolicy):
    """A fixed keep ratio per layer."""

    def __init__(self, ratios: Sequence[float]):
        self.ratios = [float(r) for r in ratios]

    def act(self, observations, t):
        return np.full(observations.shape[0], self.ratios[t])

    def __repr__(self) -> str:
        return f"PerLayerPolicy({self.ratios})"


class SB3Policy(KeepRatioPolicy):
    """A stable-baselines3 model's deterministic action, recurrent state carried across layers.

    Args:
        model: an object with SB3's ``predict`` method.
        levels: for discrete-action models, the keep ratio of each action index.
    """

    def __init__(self, model: Any, levels: Sequence[float] | None = None, deterministic: bool = True):
        self.model = model
        self.levels = None if levels is None else np.asarray(levels, dtype=np.float64)
        self.deterministic = deterministic
        self._state = None

    def reset(self, batch_size: int) -> None:
        super().reset(batch_size)
        self._state = None

    def act(self, observations, t):
        check_observation_shape(self.model, observations)
        starts = np.full(observations.shape[0], t == 0, dtype=bool)
        actions, self._state = self.model.predict(observations, state=self._state, episode_start=starts,
                                                  deterministic=self.deterministic)
        actions = np.asarray(actions)
        if self.levels is not None:
            return self.levels[actions.reshape(-1).astype(int)]
        return actions.reshape(observations.shape[0], -1)[:, 0]


def describe_trained_on(trained_on: dict | None) -> str:
    """Where an agent was trained, from the ``trained_on`` record its training run saves with it."""
    if not trained_on:
        return "another network or dataset (the agent was saved without a record of which)"
    checkpoint = trained_on.get("checkpoint") or "the embedded default checkpoint"
    return (f"{trained_on.get('env_id', 'an environment')} with network {trained_on.get('network')!r} on dataset "
            f"{trained_on.get('dataset')!r} ({checkpoint}, observation={trained_on.get('observation')!r}, "
            f"observations of shape {tuple(trained_on.get('observation_shape', ()))})")


def check_observation_shape(model: Any, observations: np.ndarray) -> None:
    """Raise a ``ValueError`` naming the network and dataset ``model`` was trained on when it cannot
    act on ``observations`` (another network, dataset or observation mode), before SB3's shape error.

    The record is the ``trained_on`` attribute that ``agents`` training runs give a model (saved
    in its zip); without it the message says only the shapes.
    """
    shape = getattr(getattr(model, "observation_space", None), "shape", None)
    if shape is None or tuple(np.shape(observations)[1:]) == tuple(shape):
        return
    raise ValueError(
        f"this saved agent cannot act here: it was trained on {describe_trained_on(getattr(model, 'trained_on', None))}, "
        f"taking observations of shape {tuple(shape)}; this environment gives observations of shape "
        f"{tuple(np.shape(observations)[1:])} (another network, dataset or observation mode). Use an agent trained on "
        "this network and dataset (its run's env_spec.json names them), or train one."
    )


class CallablePolicy(KeepRatioPolicy):
    """A plain function of the observation batch."""

    def __init__(self, fn: Callable[[np.ndarray], Any]):
        self.fn = fn

    def act(self, observations, t):
        return self.fn(observations)


def _keep_ratio(value: Any, name: str) -> float:
    """``value`` as a keep ratio in ``(0, 1]``, else a ValueError naming ``name`` (never clipped silently)."""
    ratio = float(value)
    if not 0 < ratio <= 1:
        raise ValueError(f"{name} must hold keep ratios in (0, 1], got {value!r}")
    return ratio


def as_policy(spec: Any, num_layers: int | None = None, name: str = "policy") -> KeepRatioPolicy:
    """A :class:`KeepRatioPolicy` from ``None``, a keep ratio in ``(0, 1]``, ``L`` of them, an SB3 model or a
    callable; anything else (a string, a bool, a ratio outside ``(0, 1]``) a TypeError / ValueError naming ``name``."""
    accepted = "None, a keep ratio in (0, 1], one per layer, a trained agent or a callable"
    if isinstance(spec, KeepRatioPolicy):
        return spec
    if spec is None:
        return ConstantPolicy(1.0)
    if isinstance(spec, (bool, np.bool_, str, bytes)):
        raise TypeError(f"{name} must be {accepted}; got {type(spec).__name__} {spec!r:.60}")
    if isinstance(spec, (int, float, np.floating, np.integer)):
        return ConstantPolicy(_keep_ratio(spec, name))
    if hasattr(spec, "predict"):
        return SB3Policy(spec)
    if callable(spec):
        return CallablePolicy(spec)
    try:
        items = list(spec)
    except TypeError:
        raise TypeError(f"{name} must be {accepted}; got {type(spec).__name__} {spec!r:.60}") from None
    if not all(isinstance(r, (int, float, np.floating, np.integer)) and not isinstance(r, (bool, np.bool_)) for r in items):
        raise TypeError(f"{name} must be {accepted}; got {spec!r:.60}")
    ratios = [_keep_ratio(r, name) for r in items]
    if num_layers is not None and len(ratios) != num_layers:
        raise ValueError(f"{name}: a per-layer policy needs {num_layers} keep ratios, got {len(ratios)}")
    return PerLayerPolicy(ratios)
