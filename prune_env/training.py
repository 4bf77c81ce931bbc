"""Former home of the CNN phase, kept so that existing imports work: see :mod:`prune_env.cnn`.

``prune_env.training`` re-exports the CNN phase's public names (:mod:`prune_env.cnn`), the
device and data-parallel helpers (:mod:`prune_env.distributed`) and the device batches
(:class:`prune_env.data.DeviceBatches`). New code imports from those modules.
"""

from prune_env.cnn import (
    PRESETS,
    STAGES,
    RatioFn,
    epochs_for_batches,
    evaluate,
    random_ratio_fn,
    stage_hparams,
    train_stage,
    uniform_ratio_fn,
)
from prune_env.data import DeviceBatches
from prune_env.distributed import DistContext, cleanup_distributed, init_distributed, resolve_device

__all__ = [
    "STAGES", "PRESETS", "RatioFn", "DistContext", "DeviceBatches", "stage_hparams", "epochs_for_batches",
    "uniform_ratio_fn", "random_ratio_fn", "resolve_device", "init_distributed", "cleanup_distributed",
    "train_stage", "evaluate",
]
