"""Files shipped with the package: the embedded default checkpoint and a Fashion-MNIST network.

``digitnet_digits.pt`` is a normal :mod:`prune_env.checkpoint` file: digitnet trained on
scikit-learn's 8x8 digits through the ``pretrain`` and ``importance`` stages (paper Sec. 4.1,
Algorithm 1 lines 1-7), ready for the agents. ``python -m prune_env.assets.build_default``
rebuilds it (fixed seed, under a minute on two CPU cores).

``mcifarnet_fashion_mnist.pt``: M-CifarNet at width 0.25 on Fashion-MNIST after pre-training,
importance and a warm-up under random keep ratios, so that agents train on real data with no CNN
phase (the data itself comes from Debian's ``dataset-fashion-mnist``);
``python -m prune_env.assets.build_fashion_mnist`` rebuilds it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_CHECKPOINT_NAME", "FASHION_MNIST_CHECKPOINT_NAME", "default_checkpoint_path",
           "fashion_mnist_checkpoint_path"]

#: File name of the embedded default checkpoint, next to this module.
DEFAULT_CHECKPOINT_NAME = "digitnet_digits.pt"
#: File name of the shipped Fashion-MNIST network, next to this module.
FASHION_MNIST_CHECKPOINT_NAME = "mcifarnet_fashion_mnist.pt"


def default_checkpoint_path(must_exist: bool = True) -> Path:
    """Path of the shipped default checkpoint (digitnet on digits, after the importance stage).

    Raises:
        FileNotFoundError: ``must_exist`` and the file is missing (rebuild it with
            ``python -m prune_env.assets.build_default``).
    """
    path = Path(__file__).resolve().with_name(DEFAULT_CHECKPOINT_NAME)
    if must_exist and not path.is_file():
        raise FileNotFoundError(
            f"the default checkpoint {path} is missing; build it with `python -m prune_env.assets.build_default`"
        )
    return path


def fashion_mnist_checkpoint_path() -> Path | None:
    """Path of the shipped Fashion-MNIST network (M-CifarNet x0.25 after its warm-up), None where missing."""
    path = Path(__file__).resolve().with_name(FASHION_MNIST_CHECKPOINT_NAME)
    return path if path.is_file() else None
