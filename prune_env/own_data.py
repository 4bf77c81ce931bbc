"""Data of one's own: a torch ``Dataset`` of ``(image, label)`` pairs or ``"imagefolder:PATH"``.

Both get train / validation / test splits as deterministic as the named sets': a folder with
``train/`` and ``test/`` (or ``val/``) subfolders keeps that test split; otherwise
:data:`TEST_FRACTION` of the items, drawn with :data:`TEST_SEED`, is the test split, and the
validation split is held out of the rest by ``seed`` as for every dataset
(:func:`prune_env.data.load_dataset`). Images must be ``(C, H, W)`` tensors of one shape (a
folder's images are read with ``ToTensor``; give a ``Dataset`` with your own transforms to resize).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import Dataset, Subset

#: the fraction of a single dataset held out as its test split, and the seed that draws it
TEST_FRACTION = 0.2
TEST_SEED = 0
IMAGEFOLDER_PREFIX = "imagefolder:"


def is_own_dataset(dataset: object) -> bool:
    """Whether ``dataset`` is a Dataset object or an ``"imagefolder:PATH"`` string."""
    return isinstance(dataset, Dataset) or (isinstance(dataset, str) and dataset.startswith(IMAGEFOLDER_PREFIX))


def dataset_label(dataset: object) -> str:
    """The text that names a dataset in checkpoints and run records."""
    if isinstance(dataset, Dataset):
        return f"dataset:{type(dataset).__name__}"
    return str(dataset)


def _labels(dataset: Dataset) -> list[int]:
    targets = getattr(dataset, "targets", None)
    if targets is not None and len(targets) == len(dataset):
        return [int(t) for t in targets]
    return [int(dataset[i][1]) for i in range(len(dataset))]


def _folder(path: Path):
    import torchvision

    if not path.is_dir():
        raise FileNotFoundError(f"dataset='imagefolder:{path}': no folder there; expected <path>/<class>/<image> "
                                "or <path>/train/<class>/<image> with <path>/test/<class>/<image>")
    return torchvision.datasets.ImageFolder(os.fspath(path), transform=torchvision.transforms.ToTensor())


def own_splits(dataset: Dataset | str, *, val_fraction: float, seed: int,
               split_indices: Callable[[int, float, int], tuple[list[int], list[int]]]) -> dict:
    """The fields of :class:`~prune_env.data.DatasetSplits` for a Dataset object or an ``"imagefolder:PATH"``.

    ``split_indices(n, fraction, seed)`` draws the (kept, held-out) indices, as for every dataset.

    Raises:
        FileNotFoundError: no folder at PATH.
        ValueError: an empty dataset, items that are not ``(C, H, W)`` tensor and label pairs, or
            fewer than two classes.
    """
    test = None
    if isinstance(dataset, str):
        root = Path(dataset[len(IMAGEFOLDER_PREFIX):]).expanduser()
        held = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
        if (root / "train").is_dir() and held is not None:
            base, test = _folder(root / "train"), _folder(held)
        else:
            base = _folder(root)
        name = dataset
    else:
        base, name = dataset, dataset_label(dataset)
    if len(base) < 3:
        raise ValueError(f"dataset {name!r} has {len(base)} items; train, validation and test need at least 3")
    image, _ = base[0]
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        raise ValueError(f"dataset {name!r}: items must be (image, label) with a (C, H, W) tensor image, got "
                         f"{type(image).__name__} {tuple(getattr(image, 'shape', ()))}")
    labels = _labels(base) + (_labels(test) if test is not None else [])
    num_classes = max(len(getattr(base, "classes", ())), max(labels) + 1)
    if num_classes < 2 or min(labels) < 0:
        raise ValueError(f"dataset {name!r}: labels must be integers 0..K-1 with K >= 2, got {sorted(set(labels))[:5]}")
    if test is None:
        rest, held_out = split_indices(len(base), TEST_FRACTION, TEST_SEED)
        base, test = Subset(base, rest), Subset(base, held_out)
    train_idx, val_idx = split_indices(len(base), val_fraction, seed)
    train, val = Subset(base, train_idx), Subset(base, val_idx)
    return dict(name=name, train=train, val=val, test=test, num_classes=num_classes,
                input_shape=tuple(int(v) for v in image.shape), train_plain=train)
