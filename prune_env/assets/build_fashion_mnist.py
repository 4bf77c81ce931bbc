"""Build the shipped Fashion-MNIST network: ``python -m prune_env.assets.build_fashion_mnist``.

M-CifarNet at width 0.25 (eight 3x3 conv layers, 81 k parameters) on Fashion-MNIST (Debian's
``dataset-fashion-mnist`` package, or ``--data-root``), through the CNN phase's first stages with
the ``fashion-mnist`` preset of :data:`prune_env.cnn.PRESETS`, one CPU thread, seed 0, the data
held in memory (``data_on_device``):

1. ``pretrain``, 8 epochs (gates off);
2. ``importance``, 2 epochs (Sec. 4.1: ``f`` with ``u_s`` held at 1, then ``u_s``, ``f`` and backbone);
3. ``finetune`` under random per-sample, per-layer runtime keep ratios in ``[0.2, 1]`` with
   ``R_r = 1``, 2 epochs: a warm-up before any agent exists, so that narrow widths serve too.

The same stages as the command line runs them::

    C="--data-on-device --threads 1 --no-progress"
    python finetune_cnn.py pretrain   --model mcifarnet --width 0.25 --dataset fashion-mnist --epochs 8 $C --out pre.pt
    python finetune_cnn.py importance --checkpoint pre.pt --epochs 2 $C --out imp.pt
    python finetune_cnn.py finetune   --checkpoint imp.pt --random-keep 0.2 --tradeoff-rate 1.0 --epochs 2 $C --out warm.pt

Writes ``prune_env/assets/mcifarnet_fashion_mnist.pt`` (no optimizer state, about 400 KB); the
environments take it when ``dataset="fashion-mnist"`` is given without a checkpoint. The CNN phase
is reproducible bit for bit on one CPU type (floating-point kernels differ between instruction
sets); about 40 minutes on one core of a 2-core machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from prune_env.assets import FASHION_MNIST_CHECKPOINT_NAME
from prune_env.checkpoint import save_checkpoint
from prune_env.cnn import evaluate, random_ratio_fn, stage_hparams, train_stage
from prune_env.data import load_dataset
from prune_env.nets.backbones import build_net

#: The fixed recipe of the shipped checkpoint.
MODEL, WIDTH, DATASET = "mcifarnet", 0.25, "fashion-mnist"
SEED, SPLIT_SEED, VAL_FRACTION = 0, 0, 0.1
EPOCHS = {"pretrain": 8, "importance": 2, "finetune": 2}
#: the warm-up's runtime keep ratios are drawn uniformly in [WARMUP_LOW, 1]
WARMUP_LOW = 0.2


def _without_timing(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def build(out: str | Path | None = None, *, data_root: str | Path | None = None, progress: bool = False,
          verbose: bool = True) -> dict[str, Any]:
    """Train and write the Fashion-MNIST checkpoint; returns ``{"path", "test", "seconds"}``."""
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a fixed thread count keeps the file reproducible
    try:
        out = Path(out) if out is not None else Path(__file__).resolve().with_name(FASHION_MNIST_CHECKPOINT_NAME)
        splits = load_dataset(DATASET, data_root, val_fraction=VAL_FRACTION, seed=SPLIT_SEED)
        log = print if verbose else None
        histories: dict[str, list[dict[str, Any]]] = {}
        hparams: dict[str, dict[str, Any]] = {}
        torch.manual_seed(SEED)
        net = build_net(MODEL, num_classes=splits.num_classes, in_channels=splits.input_shape[0], width=WIDTH)
        for stage in ("pretrain", "importance", "finetune"):
            if stage != "pretrain":  # as finetune_cnn.py seeds each stage it runs from a checkpoint
                torch.manual_seed(SEED)
            hp = {k: v for k, v in stage_hparams(DATASET, stage, epochs=EPOCHS[stage]).items() if v is not None}
            extra: dict[str, Any] = {}
            if stage == "finetune":
                hp.pop("keep", None)
                extra = {"ratio_fn": random_ratio_fn(WARMUP_LOW, 1.0, seed=SEED), "tradeoff_rate": 1.0}
            hparams[stage] = {**hp, **({"ratio_fn": f"random_ratio_fn({WARMUP_LOW}, 1.0)"} if extra else {})}
            histories[stage] = train_stage(net, stage, splits, **hp, **extra, device="cpu", seed=SEED, progress=progress,
                                           log=log, data_on_device=True)
        test = evaluate(net, splits.test, device="cpu")
        save_checkpoint(
            out, net.cpu(), dataset=splits.name, input_shape=tuple(splits.input_shape),
            stage="finetune", epoch=EPOCHS["finetune"], epochs=EPOCHS["finetune"], completed=True,
            history=_without_timing(histories["finetune"]), importance_history=_without_timing(histories["importance"]),
            pretrain_history=_without_timing(histories["pretrain"]), hparams=hparams["finetune"],
            importance_hparams=hparams["importance"], pretrain_hparams=hparams["pretrain"], seed=SEED,
            data={"val_fraction": VAL_FRACTION, "split_seed": SPLIT_SEED, "root": None},
            test={"accuracy": test["accuracy"], "loss": test["loss"], "kept_fraction": test["kept_fraction"]},
            builder="prune_env.assets.build_fashion_mnist",
        )
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - t0
    if verbose:
        print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB): {MODEL} x{WIDTH} on {DATASET}, "
              f"test accuracy {test['accuracy']:.4f} (loss {test['loss']:.4f}), {seconds:.1f}s")
    return {"path": out, "test": test, "seconds": seconds}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the shipped file)")
    parser.add_argument("--data-root", type=Path, default=None, help="where Fashion-MNIST is (default: Debian's package)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    build(args.out, data_root=args.data_root, verbose=not args.quiet)


if __name__ == "__main__":
    main()
