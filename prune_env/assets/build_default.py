"""Build the embedded default checkpoint: ``python -m prune_env.assets.build_default``.

Trains digitnet on scikit-learn's 8x8 digits with a fixed seed through the first stages of
the paper's schedule (Sec. 4.1, Algorithm 1 lines 1-7): ``pretrain`` (gates off), then
``importance`` (``f`` with ``u_s`` held at 1, then ``u_s``, ``f`` and backbone, keep ratios 1),
then ``finetune`` under random runtime keep ratios (so any allocation works), with the ``digits``
preset of :data:`prune_env.cnn.PRESETS`. Writes a normal checkpoint
(no optimizer state, so it stays small: about 150 KB) to ``prune_env/assets/digitnet_digits.pt``,
with the per-epoch histories and the test accuracy. Per-epoch wall-clock times are left out so
that rebuilding with the same library versions gives the same file. Under a minute on two
CPU cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from prune_env.assets import default_checkpoint_path
from prune_env.checkpoint import save_checkpoint
from prune_env.cnn import evaluate, random_ratio_fn, stage_hparams, train_stage
from prune_env.data import load_dataset
from prune_env.nets.backbones import build_net

#: The fixed recipe of the shipped checkpoint.
MODEL = "digitnet"
DATASET = "digits"
SEED = 0
SPLIT_SEED = 0
VAL_FRACTION = 0.1
#: fine-tuning under random keep ratios in [ROBUST_LOW, 1]
ROBUST_EPOCHS = 25
ROBUST_LOW = 0.2


def _without_timing(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def build(out: str | Path | None = None, *, seed: int = SEED, progress: bool = False, verbose: bool = True) -> dict[str, Any]:
    """Train and write the default checkpoint; returns ``{"path", "test", "seconds"}``."""
    t0 = time.perf_counter()
    # One thread: tiny convolutions gain nothing from more, a busy machine makes OpenMP threads
    # spin for ages, and a fixed thread count keeps the file reproducible.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _build(out, seed=seed, progress=progress, verbose=verbose, t0=t0)
    finally:
        torch.set_num_threads(threads)


def _build(out: str | Path | None, *, seed: int, progress: bool, verbose: bool, t0: float) -> dict[str, Any]:
    out = Path(out) if out is not None else default_checkpoint_path(must_exist=False)
    splits = load_dataset(DATASET, val_fraction=VAL_FRACTION, seed=SPLIT_SEED)
    torch.manual_seed(seed)
    net = build_net(MODEL, num_classes=splits.num_classes, in_channels=splits.input_shape[0])
    log = print if verbose else None
    histories: dict[str, list[dict[str, Any]]] = {}
    hparams: dict[str, dict[str, Any]] = {}
    for stage in ("pretrain", "importance"):
        hp = {k: v for k, v in stage_hparams(DATASET, stage).items() if v is not None}
        hparams[stage] = hp
        histories[stage] = train_stage(net, stage, splits, **hp, device="cpu", seed=seed, progress=progress, log=log)
    # Before any agent exists, fine-tune under random per-sample, per-layer keep ratios so the
    # network works for whatever allocation the agents will pick (Algorithm 1 then fine-tunes
    # under the agents' own masks).
    hp = {k: v for k, v in stage_hparams(DATASET, "finetune", epochs=ROBUST_EPOCHS, lr=1e-3).items() if v is not None}
    hp.pop("keep", None)
    hparams["finetune"] = {**hp, "ratio_fn": f"random_ratio_fn({ROBUST_LOW}, 1.0)"}
    histories["finetune"] = train_stage(net, "finetune", splits, **hp, device="cpu", seed=seed, progress=progress, log=log,
                                        ratio_fn=random_ratio_fn(ROBUST_LOW, 1.0, seed=seed), tradeoff_rate=1.0)
    test = evaluate(net, splits.test, device="cpu")
    save_checkpoint(
        out, net.cpu(), dataset=splits.name, input_shape=tuple(splits.input_shape),
        stage="finetune", epoch=len(histories["finetune"]), epochs=len(histories["finetune"]), completed=True,
        history=_without_timing(histories["finetune"]),
        importance_history=_without_timing(histories["importance"]),
        pretrain_history=_without_timing(histories["pretrain"]),
        hparams=hparams["finetune"], importance_hparams=hparams["importance"], pretrain_hparams=hparams["pretrain"], seed=seed,
        data={"val_fraction": VAL_FRACTION, "split_seed": SPLIT_SEED, "root": None},
        test={"accuracy": test["accuracy"], "loss": test["loss"], "kept_fraction": test["kept_fraction"]},
        builder="prune_env.assets.build_default",
    )
    seconds = time.perf_counter() - t0
    if verbose:
        print(
            f"wrote {out} ({out.stat().st_size / 1024:.0f} KB): {MODEL} on {DATASET}, "
            f"test accuracy {test['accuracy']:.4f} (loss {test['loss']:.4f}), {seconds:.1f}s"
        )
    return {"path": out, "test": test, "seconds": seconds}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the shipped file)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    build(args.out, seed=args.seed, verbose=not args.quiet)


if __name__ == "__main__":
    main()
