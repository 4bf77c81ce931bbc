"""The CNN phase of the method: pre-training, importance learning and fine-tuning under masks.

The paper (Sec. 4.1 and Algorithm 1; ``docs/design.md``, "Algorithm 1") trains the gated CNN in
these stages, each a call of :func:`~prune_env.cnn.train.train_stage`:

``pretrain``
    Algorithm 1's input, "a pretrained backbone CNN": the gates are off
    (``gating=False``) and the backbone is trained with cross entropy.
``importance``
    Algorithm 1 lines 1-7 / Sec. 4.1, two sub-steps. First (*hold_static*) the runtime
    importance predictor ``f`` is added and trained jointly with the backbone while every
    static importance ``u_s`` is held at 1 and ``d_r = 1``. Then (*free_static*) ``u_s`` is
    freed and ``u_s``, ``f`` and the backbone are trained with ``d_s = d_r = 1``. The stage's
    epochs are split between the two (``importance_split``, half each by default).
``finetune``
    Algorithm 1 lines 16-19: the agents are frozen and give the keep ratios; the CNN, ``f``
    and ``u_s`` are trained with cross entropy under the resulting hard masks (gradients flow
    through the kept channels and through ``u_r * u_s``, Eq. 2 and 6). The keep ratios come
    from ``ratio_fn(net, images) -> (runtime (B, L) tensor, static (L,) list)``; by default
    (until trained agents are wired in) a uniform ``keep`` for both.

Modules: :mod:`~prune_env.cnn.presets` (hyper-parameters per dataset, :data:`PRESETS`),
:mod:`~prune_env.cnn.ratios` (where the keep ratios come from), :mod:`~prune_env.cnn.phases`
(gate mode and trainable parameters per phase), :mod:`~prune_env.cnn.train` (one stage),
:mod:`~prune_env.cnn.metrics` (accuracy and loss on a split). Devices and data parallelism are in
:mod:`prune_env.distributed`, batches held on the device in :class:`prune_env.data.DeviceBatches`;
``finetune_cnn.py`` runs the stages from checkpoint to checkpoint.
"""

from prune_env.cnn.metrics import evaluate
from prune_env.cnn.presets import PRESETS, STAGES, epochs_for_batches, stage_hparams
from prune_env.cnn.ratios import RatioFn, random_ratio_fn, uniform_ratio_fn
from prune_env.cnn.train import train_stage

__all__ = [
    "STAGES", "PRESETS", "RatioFn", "stage_hparams", "epochs_for_batches", "uniform_ratio_fn", "random_ratio_fn",
    "train_stage", "evaluate",
]
