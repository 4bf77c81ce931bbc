"""The CNN phase's hyper-parameters per dataset (:data:`PRESETS`) and its schedule arithmetic.

Batch 128 and Adam in every preset (paper Sec. 4.1, rebuttal); learning rate 1e-3 on CIFAR-10
and 1e-4 on ImageNet (rebuttal) divided by 10 after a number of iterations (Sec. 4.1 says "after
15 millions iterations"; we read that as 15 M *images*, i.e. 117,188 batches of 128, which falls
inside the final 200,000-batch fine-tune; ``lr_decay_every`` overrides it). ``digits`` and
``fashion-mnist`` have fast defaults of our choosing. Every value can be overridden.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["STAGES", "PRESETS", "stage_hparams", "epochs_for_batches"]

#: The CNN training stages, in the order they are run.
STAGES: tuple[str, ...] = ("pretrain", "importance", "finetune")

#: Hyper-parameters per dataset. Top-level values apply to every stage; ``stages`` holds
#: per-stage overrides (at least the number of epochs). Keys: ``batch_size`` (global batch),
#: ``lr`` (Adam), ``weight_decay``, ``lr_decay_every`` (iterations between /``lr_decay_factor``
#: steps, None = constant), ``importance_split`` (fraction of the importance epochs spent with
#: ``u_s`` held at 1), ``steps_per_epoch`` (cap on batches per epoch, None = the whole split),
#: ``keep`` (uniform keep ratio of ``finetune`` while no agents are given).
#: What every preset shares unless it says otherwise: Adam's batch and schedule knobs (paper Sec. 4.1).
_PRESET_BASE: dict[str, Any] = {
    "batch_size": 128,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "lr_decay_every": None,
    "lr_decay_factor": 0.1,
    "importance_split": 0.5,
    "steps_per_epoch": None,
    "keep": 0.5,
}

PRESETS: dict[str, dict[str, Any]] = {
    # Paper values (Sec. 4.1, rebuttal): batch 128, Adam, lr 1e-3; a fine-tune round is
    # N2 = 780 batches (two passes over the 50,000 training images). The paper starts from a
    # pretrained backbone and does not say how it was trained; 60 epochs of Adam is our choice,
    # as is the importance length.
    "cifar10": {
        **_PRESET_BASE,
        "stages": {"pretrain": {"epochs": 60}, "importance": {"epochs": 10}, "finetune": {"epochs": 2}},
    },
    # Rebuttal: lr 1e-4, batch 128; a fine-tune round is N2 = 600 batches (the last one
    # 200,000: override steps_per_epoch). Pre-training is normally replaced by torchvision
    # weights (``build_net("resnet18", weights=...)``); the numbers below are for completeness.
    "imagenet": {
        **_PRESET_BASE,
        "lr": 1e-4,
        "lr_decay_every": 117_188,  # 15 M images / 128 (Sec. 4.1, see the module docstring)
        "stages": {
            "pretrain": {"epochs": 90},
            "importance": {"epochs": 2},
            "finetune": {"epochs": 1, "steps_per_epoch": 600},
        },
    },
    # Fast defaults (ours): digitnet pre-trains in a few seconds on two CPU cores.
    "digits": {
        **_PRESET_BASE,
        "batch_size": 64,
        "lr": 3e-3,
        # importance at 1e-3: at 3e-3 the gates' first epochs cost a few points of accuracy.
        "stages": {
            "pretrain": {"epochs": 15},
            "importance": {"epochs": 6, "lr": 1e-3},
            "finetune": {"epochs": 6},
        },
    },
    # Seeded random images (prune_env.data "synthetic"), for tests and benchmarks: fast values.
    "synthetic": {
        **_PRESET_BASE,
        "batch_size": 64,
        "lr": 3e-3,
        "stages": {"pretrain": {"epochs": 5}, "importance": {"epochs": 2, "lr": 1e-3}, "finetune": {"epochs": 2}},
    },
    # Datasets without a preset of their own: the paper's CIFAR-10 values, shorter pre-training.
    "default": {
        **_PRESET_BASE,
        "stages": {"pretrain": {"epochs": 20}, "importance": {"epochs": 4}, "finetune": {"epochs": 2}},
    },
    "fashion-mnist": {
        **_PRESET_BASE,
        "stages": {"pretrain": {"epochs": 10}, "importance": {"epochs": 4}, "finetune": {"epochs": 2}},
    },
}

_HPARAM_KEYS = (
    "epochs", "batch_size", "lr", "weight_decay", "lr_decay_every", "lr_decay_factor",
    "importance_split", "steps_per_epoch", "keep",
)


def check_stage(stage: str) -> None:
    """Raise ValueError unless ``stage`` is one of :data:`STAGES`."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")


def stage_hparams(dataset: str, stage: str, **overrides: Any) -> dict[str, Any]:
    """The flat hyper-parameters of ``stage`` on ``dataset``: the preset, then ``overrides``.

    Overrides whose value is None are ignored (so command-line defaults of None fall back to
    the preset). Returns a dict with the keys ``epochs, batch_size, lr, weight_decay,
    lr_decay_every, lr_decay_factor, importance_split, steps_per_epoch, keep``; the stage-specific
    ``importance_split`` (importance) and ``keep`` (finetune) are None for the other stages.
    ``stage_hparams(...)`` minus its None values can be passed to
    :func:`~prune_env.cnn.train.train_stage` as is.

    A dataset without a preset of its own gets ``PRESETS["default"]``.

    Raises:
        ValueError: unknown stage or override key.
    """
    check_stage(stage)
    unknown = set(overrides) - set(_HPARAM_KEYS)
    if unknown:
        raise ValueError(f"unknown hyper-parameter(s) {sorted(unknown)}; accepted: {list(_HPARAM_KEYS)}")
    preset = PRESETS.get(dataset, PRESETS["default"])
    merged = {k: v for k, v in preset.items() if k != "stages"}
    merged.update(preset["stages"][stage])
    merged.update({k: v for k, v in overrides.items() if v is not None})
    if stage != "importance":
        merged["importance_split"] = None
    if stage != "finetune":
        merged["keep"] = None
    return {k: merged.get(k) for k in _HPARAM_KEYS}


def check_hparams(epochs: int, lr: float, batch_size: int, weight_decay: float, steps_per_epoch: int | None,
                  lr_decay_every: int | None, lr_decay_factor: float, keep: float) -> None:
    """Raise ValueError naming the first hyper-parameter out of its range."""
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if steps_per_epoch is not None and steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1 or None, got {steps_per_epoch}")
    if lr_decay_every is not None and lr_decay_every < 1:
        raise ValueError(f"lr_decay_every must be >= 1 or None, got {lr_decay_every}")
    if not 0 < lr_decay_factor <= 1:
        raise ValueError(f"lr_decay_factor must be in (0, 1], got {lr_decay_factor}")
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")


def epochs_for_batches(batches: int, train_size: int, batch_size: int, world_size: int = 1) -> tuple[int, int]:
    """``(epochs, steps_per_epoch)`` for :func:`~prune_env.cnn.train.train_stage` to run ``batches`` optimizer steps.

    One epoch holds at most ``ceil(train_size / batch_size)`` batches (``steps_per_epoch`` only
    caps it), so a schedule longer than an epoch is spread over several, as evenly as possible
    (``epochs * steps_per_epoch`` may exceed ``batches`` by less than ``epochs``).
    """
    if batches < 1:
        raise ValueError(f"batches must be >= 1, got {batches}")
    per_epoch = math.ceil(math.ceil(train_size / world_size) / (batch_size // world_size))
    epochs = math.ceil(batches / per_epoch)
    return epochs, math.ceil(batches / epochs)
