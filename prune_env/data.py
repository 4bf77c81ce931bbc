"""Datasets by name, as deterministic train / validation / test splits.

``load_dataset(name)`` returns a :class:`DatasetSplits` whose three parts are torch
``Dataset`` objects yielding ``(image, label)`` pairs: ``image`` a float32 ``(C, H, W)`` tensor,
``label`` a Python ``int``.

* ``train`` — the official training set minus the validation indices, with the dataset's
  training augmentation (when ``augment=True``);
* ``val`` — a held-out part of the official training set, *without* augmentation. Agents'
  rewards are computed here. Its indices come from a ``torch.randperm`` seeded with ``seed``,
  so the same seed gives the same split in every process;
* ``test`` — the official test split, never used for rewards.

``train`` and ``val`` are ``torch.utils.data.Subset`` objects over two views of the same
training data (one with the training transform, one with the evaluation transform); their
``indices`` are disjoint and together cover the training set.

Registered datasets and how ``root`` is read:

``digits``
    scikit-learn's bundled 8x8 digits (1797 images); works offline and ignores ``root``.
    The test split is a fixed stratified 20 % (it does not depend on ``seed``).
``fashion-mnist``
    ``root`` may be either a directory holding the four ``*-ubyte.gz`` files (the layout of
    Debian's ``dataset-fashion-mnist`` package) or a torchvision root holding
    ``FashionMNIST/raw/*-ubyte``. Without ``root`` the Debian directory
    ``/usr/share/datasets/fashion-mnist`` is tried, then the cache. ``.gz`` files are
    decompressed once into the cache (``$PRUNE_ENV_DATA`` or ``~/.cache/prune_env``), never
    next to the source.
``cifar10``
    ``root`` is the directory holding ``cifar-10-batches-py/`` (torchvision's layout);
    default ``<cache>/cifar10``. ``verify=False`` skips torchvision's md5 checks.
``imagenet``
    ``root`` (required) holds ``train/<class>/<image>`` and ``val/<class>/<image>``; the
    ``val`` folder is the test split. ``image_size`` (default 224) sets the crop size.
``synthetic``
    seeded random images for benchmarks and tests when no real dataset is on the machine;
    ignores ``root``. Keywords: ``shape`` (default ``(3, 32, 32)``, CIFAR-10's), ``num_classes``
    (10), ``size`` (2048 images in the train pool, split into train / val by ``seed``) and
    ``test_size`` (512). Images are standard normal; a label is the argmax of a fixed random
    linear projection of its image, so labels are a learnable function of the images (a linear
    classifier represents them exactly), not noise. The pool, the test split and the projection
    come from fixed generator seeds, independent of ``seed``.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset
from torchvision import transforms as T

from prune_env.io import atomic_write

__all__ = [
    "BatchAugment",
    "DATASETS",
    "DEBIAN_FASHION_MNIST_DIR",
    "DatasetNotFoundError",
    "DatasetSplits",
    "DeviceBatches",
    "available_datasets",
    "cache_dir",
    "load_dataset",
    "make_loader",
    "materialize",
]

#: Where Debian's ``dataset-fashion-mnist`` package installs its files.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

#: Environment variable overriding the base cache directory.
CACHE_ENV_VAR = "PRUNE_ENV_DATA"

_FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_FASHION_MNIST_MEAN, _FASHION_MNIST_STD = (0.2860,), (0.3530,)

_CIFAR10_DIR = "cifar-10-batches-py"
_CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
_CIFAR10_MEAN, _CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

_DIGITS_TEST_FRACTION = 0.2
_DIGITS_TEST_SEED = 0

# Fixed generator seeds of the synthetic data: the projection, the train pool, the test split.
_SYNTHETIC_SEEDS = {"projection": 20_011, "pool": 20_021, "test": 20_023}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing; the message names the paths looked at and how to get them."""


@dataclass(frozen=True)
class BatchAugment:
    """A random crop with zero padding and a random horizontal flip, applied to a batch on its device.

    The same distribution as torchvision's ``RandomCrop(size, padding=pad)`` followed by
    ``RandomHorizontalFlip()`` on unnormalised images: the padding ``fill`` is the value a
    zero pixel takes after normalisation, one per channel.
    """

    pad: int
    flip: bool
    fill: tuple[float, ...]

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augmented copy of ``images`` ``(B, C, H, W)``; randomness from ``generator`` (on their device)."""
        b, c, h, w = images.shape
        dev = images.device
        out = images
        if self.pad > 0:
            p = self.pad
            padded = images.new_empty(b, c, h + 2 * p, w + 2 * p)
            padded[:] = torch.tensor(self.fill, dtype=images.dtype, device=dev).view(1, c, 1, 1)
            padded[:, :, p:p + h, p:p + w] = images
            dy = torch.randint(0, 2 * p + 1, (b, 1), generator=generator, device=dev)
            dx = torch.randint(0, 2 * p + 1, (b, 1), generator=generator, device=dev)
            rows = (dy + torch.arange(h, device=dev)).view(b, 1, h, 1).expand(b, c, h, w + 2 * p)
            out = padded.gather(2, rows)
            cols = (dx + torch.arange(w, device=dev)).view(b, 1, 1, w).expand(b, c, h, w)
            out = out.gather(3, cols)
        if self.flip:
            flip = torch.rand(b, generator=generator, device=dev) < 0.5
            out = torch.where(flip.view(b, 1, 1, 1), out.flip(3), out)
        return out


@dataclass(frozen=True)
class DatasetSplits:
    """The train / validation / test splits of one dataset.

    ``train_plain`` is ``train`` without augmentation (same images, same order) and
    ``batch_augment`` the augmentation as a batched operation, where the dataset has them: with
    both, a trainer can hold the split as one tensor on its device (:func:`materialize`) and
    augment whole batches there instead of going through a per-image ``DataLoader``.
    """

    name: str
    train: Dataset  # training augmentation where the dataset has one
    val: Dataset  # held out from the training set, no augmentation; rewards are computed here
    test: Dataset  # the official test split, never used for rewards
    num_classes: int
    input_shape: tuple[int, int, int]  # (C, H, W) of one image tensor after transforms
    train_plain: Dataset | None = None
    batch_augment: BatchAugment | None = None


# --------------------------------------------------------------------------- generic helpers


class _TransformedView(Dataset):
    """A dataset of ``(transform(image), int(label))`` over a base dataset of ``(image, label)``.

    ``bulk``, where given, maps an index tensor to the same images and labels as
    ``__getitem__`` would, for many indices at once (:func:`materialize` uses it).
    """

    def __init__(self, dataset: Dataset, transform: Callable | None,
                 bulk: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
        self.dataset = dataset
        self.transform = transform
        self.bulk = bulk

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.dataset[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(label)


class _ImageTensorDataset(TensorDataset):
    """In-memory ``(image, label)`` pairs; labels come out as Python ints."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        images, labels = self.tensors
        return images[index], int(labels[index])


def cache_dir() -> Path:
    """The base cache directory: ``$PRUNE_ENV_DATA`` if set, else ``~/.cache/prune_env``."""
    override = os.environ.get(CACHE_ENV_VAR)
    return Path(override).expanduser() if override else Path.home() / ".cache" / "prune_env"


def _split_indices(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Disjoint sorted (train, val) index lists of ``range(n)`` from a seeded permutation."""
    if n < 2:
        raise ValueError(f"cannot hold out a validation split from {n} training item(s)")
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(perm[n_val:]), sorted(perm[:n_val])


def _train_val_subsets(
    train_view: Dataset, eval_view: Dataset, val_fraction: float, seed: int
) -> tuple[Subset, Subset, Subset]:
    """``train`` from the augmented view, ``val`` from the plain view on disjoint indices, and
    ``train`` from the plain view (``train_plain``)."""
    train_idx, val_idx = _split_indices(len(train_view), val_fraction, seed)  # type: ignore[arg-type]
    return Subset(train_view, train_idx), Subset(eval_view, val_idx), Subset(eval_view, train_idx)


def _splits_from_views(
    name: str,
    train_base: Dataset,
    test_base: Dataset,
    *,
    train_transform: Callable,
    eval_transform: Callable,
    val_fraction: float,
    seed: int,
    num_classes: int,
    input_shape: tuple[int, int, int],
    batch_augment: BatchAugment | None = None,
    eval_bulk: Callable[[Dataset], Callable | None] | None = None,
) -> DatasetSplits:
    """Assemble the splits from untransformed train / test datasets and two transforms.

    ``batch_augment`` is ``train_transform``'s augmentation as a batched operation (None when
    ``train_transform`` augments nothing); ``eval_bulk(base)``, ``eval_transform`` over many of
    ``base``'s images at once (or None where it cannot).
    """
    bulk = eval_bulk or (lambda base: None)
    train, val, train_plain = _train_val_subsets(
        _TransformedView(train_base, train_transform),
        _TransformedView(train_base, eval_transform, bulk(train_base)),
        val_fraction,
        seed,
    )
    return DatasetSplits(
        name=name,
        train=train,
        val=val,
        test=_TransformedView(test_base, eval_transform, bulk(test_base)),
        num_classes=num_classes,
        input_shape=input_shape,
        train_plain=train_plain,
        batch_augment=batch_augment,
    )


class _ArrayToTensor:
    """``ToTensor()`` + ``Normalize(mean, std)`` over a torchvision array dataset, for many images at once.

    ``data`` holds uint8 images as ``(N, H, W)`` (MNIST-style tensors) or ``(N, H, W, C)`` (CIFAR-style
    arrays) and ``targets`` their labels. The same float32 operations as the per-image transforms,
    so the images are bit-identical to theirs (tested), without a PIL image per item.
    """

    def __init__(self, data, targets, mean: Sequence[float], std: Sequence[float]) -> None:
        self.data, self.targets = data, targets
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw = torch.as_tensor(self.data[indices.numpy()] if isinstance(self.data, np.ndarray) else self.data[indices])
        images = raw.unsqueeze(1) if raw.ndim == 3 else raw.permute(0, 3, 1, 2)
        images = images.contiguous().to(torch.float32).div(255).sub(self.mean).div(self.std)
        return images, torch.as_tensor(self.targets)[indices].long()

    @classmethod
    def of(cls, base: Dataset, mean: Sequence[float], std: Sequence[float]) -> _ArrayToTensor | None:
        """The bulk form for ``base`` when it holds uint8 arrays in ``.data`` / ``.targets``, else None."""
        data = getattr(base, "data", None)
        if getattr(base, "targets", None) is None or getattr(data, "dtype", None) not in (torch.uint8, np.uint8):
            return None
        if data.ndim not in (3, 4):
            return None
        return cls(data, base.targets, mean, std)


def _pad_flip(pad: int, mean: Sequence[float], std: Sequence[float]) -> BatchAugment:
    """The batched form of ``RandomCrop(size, padding=pad)`` + ``RandomHorizontalFlip()`` before ``Normalize``."""
    return BatchAugment(pad=pad, flip=True, fill=tuple(-m / s for m, s in zip(mean, std)))


def _missing(paths: Sequence[Path]) -> list[Path]:
    return [p for p in paths if not p.is_file()]


# --------------------------------------------------------------------------- digits


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(pool images, test images, pool labels, test labels); images scaled to [0, 1].

    The pool is the non-test 80 %, split further into train / val by ``_split_indices``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    return tuple(  # type: ignore[return-value]
        train_test_split(
            images,
            digits.target.astype(np.int64),
            test_size=_DIGITS_TEST_FRACTION,
            stratify=digits.target,
            random_state=_DIGITS_TEST_SEED,
        )
    )


def _digits_tensor_dataset(images: np.ndarray, labels: np.ndarray, mean: float, std: float):
    x = torch.tensor((images - mean) / std, dtype=torch.float32).unsqueeze(1)
    return _ImageTensorDataset(x, torch.tensor(labels))


def _build_digits(root: str | os.PathLike | None, *, val_fraction: float, seed: int, download: bool,
                  augment: bool) -> DatasetSplits:
    """scikit-learn's 8x8 digits, normalised with the mean/std of the non-test images."""
    del root, download, augment  # embedded data; no augmentation
    pool_x, test_x, pool_y, test_y = _digits_arrays()
    mean, std = float(pool_x.mean()), float(pool_x.std())
    pool = _digits_tensor_dataset(pool_x, pool_y, mean, std)
    train, val, _ = _train_val_subsets(pool, pool, val_fraction, seed)
    return DatasetSplits(
        name="digits",
        train=train,
        val=val,
        test=_digits_tensor_dataset(test_x, test_y, mean, std),
        num_classes=10,
        input_shape=(1, 8, 8),
        train_plain=train,
    )


# --------------------------------------------------------------------------- fashion-mnist


def _has_torchvision_fashion_layout(root: Path) -> bool:
    raw = root / "FashionMNIST" / "raw"
    return not _missing([raw / name for name in _FASHION_MNIST_FILES])


def _has_gz_files(directory: Path) -> bool:
    return not _missing([directory / f"{name}.gz" for name in _FASHION_MNIST_FILES])


def _source_fingerprint(directory: Path, names: Sequence[str]) -> str:
    """A short hash of a directory's path and its files' sizes and mtimes (the cache key)."""
    digest = hashlib.sha256(str(directory.resolve()).encode())
    for name in names:
        stat = (directory / name).stat()
        digest.update(f"|{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _gunzip_atomic(source: Path, target: Path) -> None:
    """Decompress ``source`` to ``target``, atomically (:func:`prune_env.io.atomic_write`)."""
    with gzip.open(source, "rb") as src:
        atomic_write(target, lambda dst: shutil.copyfileobj(src, dst))


def _prepare_fashion_mnist_cache(source: Path) -> Path:
    """A torchvision root in the cache holding the decompressed files of ``source``."""
    gz_names = [f"{name}.gz" for name in _FASHION_MNIST_FILES]
    root = cache_dir() / "fashion-mnist" / f"from-{_source_fingerprint(source, gz_names)}"
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in _FASHION_MNIST_FILES:
        if not (raw / name).is_file():
            _gunzip_atomic(source / f"{name}.gz", raw / name)
    return root


def _find_fashion_mnist_root(root: str | os.PathLike | None, download: bool) -> Path:
    """The torchvision root to read Fashion-MNIST from (see the module docstring)."""
    default_root = cache_dir() / "fashion-mnist"
    candidates = [Path(root)] if root is not None else [DEBIAN_FASHION_MNIST_DIR, default_root]
    for candidate in candidates:
        if _has_torchvision_fashion_layout(candidate):
            return candidate
        if _has_gz_files(candidate):
            return _prepare_fashion_mnist_cache(candidate)
    if download:
        return candidates[0] if root is not None else default_root
    looked_at = "\n".join(
        f"  {c} (*-ubyte.gz) and {c / 'FashionMNIST' / 'raw'} (*-ubyte)" for c in candidates
    )
    raise DatasetNotFoundError(
        f"Fashion-MNIST not found. Looked in:\n{looked_at}\n"
        "Install it with `apt-get install dataset-fashion-mnist`, or let torchvision fetch it: download=True "
        "(gym.make / load_dataset), --env-kwargs download=True (train_agents.py) or --download (finetune_cnn.py)."
    )


def _build_fashion_mnist(root: str | os.PathLike | None, *, val_fraction: float, seed: int, download: bool,
                         augment: bool) -> DatasetSplits:
    """Fashion-MNIST through ``torchvision.datasets.FashionMNIST``."""
    tv_root = _find_fashion_mnist_root(root, download)
    train_base = torchvision.datasets.FashionMNIST(tv_root, train=True, download=download)
    test_base = torchvision.datasets.FashionMNIST(tv_root, train=False, download=download)
    return _image_splits("fashion-mnist", train_base, test_base, mean=_FASHION_MNIST_MEAN, std=_FASHION_MNIST_STD,
                         input_shape=(1, 28, 28), padding=2, augment=augment, val_fraction=val_fraction, seed=seed)


def _image_splits(name: str, train_base: Dataset, test_base: Dataset, *, mean: tuple, std: tuple,
                  input_shape: tuple[int, int, int], padding: int, augment: bool, val_fraction: float,
                  seed: int) -> DatasetSplits:
    """The splits of a 10-class torchvision image dataset: normalised with ``mean`` / ``std``; with
    ``augment``, training images randomly cropped after ``padding`` pixels of padding and flipped
    (per image, and the same per batch on the device: :func:`_pad_flip`)."""
    to_tensor = [T.ToTensor(), T.Normalize(mean, std)]
    augmentation = [T.RandomCrop(input_shape[1], padding=padding), T.RandomHorizontalFlip()] if augment else []
    return _splits_from_views(
        name,
        train_base,
        test_base,
        train_transform=T.Compose([*augmentation, *to_tensor]),
        eval_transform=T.Compose(to_tensor),
        val_fraction=val_fraction,
        seed=seed,
        num_classes=10,
        input_shape=input_shape,
        batch_augment=_pad_flip(padding, mean, std) if augment else None,
        eval_bulk=lambda base: _ArrayToTensor.of(base, mean, std),
    )


# --------------------------------------------------------------------------- cifar10


class _UnverifiedCIFAR10(torchvision.datasets.CIFAR10):
    """CIFAR-10 that checks only that its files exist, not their md5 sums."""

    # torchvision checks the metadata file's md5 separately, in ``_load_meta``.
    meta = {**torchvision.datasets.CIFAR10.meta, "md5": None}

    def _check_integrity(self) -> bool:
        folder = Path(self.root, self.base_folder)
        return all((folder / name).is_file() for name, _ in self.train_list + self.test_list)


def _open_cifar10(cls: type, root: Path, train: bool, download: bool):
    try:
        return cls(root, train=train, download=download)
    except RuntimeError as err:  # torchvision's "not found or corrupted" (an md5 mismatch)
        raise RuntimeError(
            f"CIFAR-10 files under {root / _CIFAR10_DIR} failed torchvision's md5 check; "
            "download them again or pass verify=False."
        ) from err


def _build_cifar10(root: str | os.PathLike | None, *, val_fraction: float, seed: int, download: bool, augment: bool,
                   verify: bool = True) -> DatasetSplits:
    """CIFAR-10 through ``torchvision.datasets.CIFAR10``; ``verify=False`` skips md5 checks."""
    root = Path(root) if root is not None else cache_dir() / "cifar10"
    folder = root / _CIFAR10_DIR
    missing = _missing([folder / name for name in _CIFAR10_FILES])
    if missing and not download:
        raise DatasetNotFoundError(
            f"CIFAR-10 not found: {folder} lacks {', '.join(p.name for p in missing)}. "
            f"Download CIFAR-10 (python version) and extract it into {root}, or let torchvision fetch it: "
            "download=True (gym.make / load_dataset), --env-kwargs download=True (train_agents.py) or --download "
            "(finetune_cnn.py)."
        )
    cls = torchvision.datasets.CIFAR10 if verify else _UnverifiedCIFAR10
    train_base = _open_cifar10(cls, root, train=True, download=download)
    test_base = _open_cifar10(cls, root, train=False, download=False)
    return _image_splits("cifar10", train_base, test_base, mean=_CIFAR10_MEAN, std=_CIFAR10_STD,
                         input_shape=(3, 32, 32), padding=4, augment=augment, val_fraction=val_fraction, seed=seed)


# --------------------------------------------------------------------------- imagenet


def _image_folder(directory: Path) -> torchvision.datasets.ImageFolder:
    if not directory.is_dir():
        raise DatasetNotFoundError(
            f"ImageNet folder not found: {directory}. Expected the layout "
            "<root>/train/<class>/<image> and <root>/val/<class>/<image>; ImageNet cannot be "
            "downloaded automatically (get it from https://image-net.org)."
        )
    return torchvision.datasets.ImageFolder(directory)


def _build_imagenet(root: str | os.PathLike | None, *, val_fraction: float, seed: int, download: bool, augment: bool,
                    image_size: int = 224) -> DatasetSplits:
    """ImageNet-style ``ImageFolder`` data; the ``val`` folder is the test split."""
    if root is None:
        raise ValueError("root is required for 'imagenet': a directory holding train/ and val/")
    del download  # ImageNet cannot be downloaded automatically
    root = Path(root)
    train_base, test_base = _image_folder(root / "train"), _image_folder(root / "val")
    if test_base.class_to_idx != train_base.class_to_idx:
        raise ValueError(f"class folders of {root / 'train'} and {root / 'val'} differ")
    to_tensor = [T.ToTensor(), T.Normalize(_IMAGENET_MEAN, _IMAGENET_STD)]
    resize = round(image_size * 256 / 224)
    eval_transform = T.Compose([T.Resize(resize), T.CenterCrop(image_size), *to_tensor])
    train_transform = (
        T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), *to_tensor])
        if augment
        else eval_transform
    )
    return _splits_from_views(
        "imagenet",
        train_base,
        test_base,
        train_transform=train_transform,
        eval_transform=eval_transform,
        val_fraction=val_fraction,
        seed=seed,
        num_classes=len(train_base.classes),
        input_shape=(3, image_size, image_size),
    )


# --------------------------------------------------------------------------- synthetic


def _synthetic_tensor_dataset(
    n: int, shape: tuple[int, int, int], projection: torch.Tensor, seed: int
) -> _ImageTensorDataset:
    """``n`` standard normal images labelled by the argmax of ``projection`` (``(C*H*W, classes)``)."""
    images = torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))
    labels = (images.reshape(n, -1).double() @ projection).argmax(dim=1)
    return _ImageTensorDataset(images, labels)


def _build_synthetic(root: str | os.PathLike | None, *, val_fraction: float, seed: int, download: bool, augment: bool,
                     shape: Sequence[int] = (3, 32, 32), num_classes: int = 10, size: int = 2048,
                     test_size: int = 512) -> DatasetSplits:
    """Seeded random images with learnable labels (see the module docstring)."""
    del root, download, augment  # generated data; no augmentation
    try:
        shape = tuple(int(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be three positive integers (C, H, W), got {shape!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be three positive integers (C, H, W), got {shape!r}")
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes!r}")
    if int(size) < 2:
        raise ValueError(f"size must be >= 2 (train and val both need images), got {size!r}")
    if int(test_size) < 1:
        raise ValueError(f"test_size must be >= 1, got {test_size!r}")
    generator = torch.Generator().manual_seed(_SYNTHETIC_SEEDS["projection"])
    projection = torch.randn(math.prod(shape), int(num_classes), generator=generator, dtype=torch.float64)
    pool = _synthetic_tensor_dataset(int(size), shape, projection, _SYNTHETIC_SEEDS["pool"])
    train, val, _ = _train_val_subsets(pool, pool, val_fraction, seed)
    return DatasetSplits(
        name="synthetic",
        train=train,
        val=val,
        test=_synthetic_tensor_dataset(int(test_size), shape, projection, _SYNTHETIC_SEEDS["test"]),
        num_classes=int(num_classes),
        input_shape=shape,  # type: ignore[arg-type]
        train_plain=train,
    )


# --------------------------------------------------------------------------- public API

#: Dataset builders by name; each takes ``(root, *, val_fraction, seed, download, augment, ...)``.
DATASETS: dict[str, Callable[..., DatasetSplits]] = {
    "digits": _build_digits,
    "fashion-mnist": _build_fashion_mnist,
    "cifar10": _build_cifar10,
    "imagenet": _build_imagenet,
    "synthetic": _build_synthetic,
}


def available_datasets() -> list[str]:
    """The names ``load_dataset`` accepts, sorted."""
    return sorted(DATASETS)


def load_dataset(
    name: str | Dataset,
    root: str | os.PathLike | None = None,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    download: bool = False,
    augment: bool = True,
    **kwargs,
) -> DatasetSplits:
    """Load dataset ``name`` as train / val / test splits.

    ``name`` is a dataset name, ``"imagefolder:PATH"`` or a torch ``Dataset`` of ``(image,
    label)`` pairs (:mod:`prune_env.own_data`).

    ``val_fraction`` (in (0, 0.5]) of the training set is held out as ``val``, chosen by
    ``seed``. Extra keyword arguments go to the dataset's builder (``verify`` for
    ``cifar10``, ``image_size`` for ``imagenet``, ``shape``, ``num_classes``, ``size`` and
    ``test_size`` for ``synthetic``).

    Raises:
        ValueError: unknown ``name`` or ``val_fraction`` out of range.
        DatasetNotFoundError: the dataset's files are missing and ``download`` is False.
    """
    if not 0 < val_fraction <= 0.5:
        raise ValueError(f"val_fraction must be in (0, 0.5], got {val_fraction!r}")
    from prune_env.own_data import is_own_dataset, own_splits

    if is_own_dataset(name):
        return DatasetSplits(**own_splits(name, val_fraction=val_fraction, seed=seed, split_indices=_split_indices))
    if name not in DATASETS:
        raise ValueError(f"unknown dataset name={name!r}; accepted names: {available_datasets()}, "
                         "'imagefolder:PATH' or a torch Dataset")
    return DATASETS[name](
        root, val_fraction=val_fraction, seed=seed, download=download, augment=augment, **kwargs
    )


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A ``DataLoader`` whose shuffling (and worker seeds) are reproducible from ``seed``."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),
    )


#: (dataset, device) -> (images, labels) of the last few materialised splits
_MATERIALIZED: dict[tuple[int, str], tuple[Dataset, torch.Tensor, torch.Tensor]] = {}
_MATERIALIZED_MAX = 6


def _bulk_tensors(dataset: Dataset, indices: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``dataset``'s items (at ``indices``) as two tensors without per-item transforms, where its
    view knows how (a :class:`_TransformedView` with ``bulk``, possibly under subsets), else None."""
    if isinstance(dataset, Subset):
        inner = torch.as_tensor(dataset.indices, dtype=torch.long)
        return _bulk_tensors(dataset.dataset, inner if indices is None else inner[indices])
    if isinstance(dataset, _TransformedView) and dataset.bulk is not None:
        return dataset.bulk(torch.arange(len(dataset)) if indices is None else indices)
    return None


def materialize(dataset: Dataset, device: str | torch.device = "cpu", *,
                batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole of ``dataset`` as one image tensor ``(N, C, H, W)`` and one label tensor on ``device``.

    Read once per process and device (the last few are cached): for splits that fit in memory,
    so that training can index batches on the device instead of collating images one by one.
    Fashion-MNIST's and CIFAR-10's evaluation views are converted as whole arrays, not image by
    image (the same values; Fashion-MNIST's 54,000 training images in 0.8 s here).
    """
    key = (id(dataset), str(torch.device(device)))
    cached = _MATERIALIZED.get(key)
    if cached is not None and cached[0] is dataset:
        return cached[1], cached[2]
    bulk = _bulk_tensors(dataset)
    if bulk is not None:
        images, labels = bulk[0].to(device), bulk[1].to(device)
    else:
        xs, ys = [], []
        for images, labels in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            xs.append(images)
            ys.append(torch.as_tensor(labels))
        images, labels = torch.cat(xs).to(device), torch.cat(ys).long().to(device)
    while len(_MATERIALIZED) >= _MATERIALIZED_MAX:
        _MATERIALIZED.pop(next(iter(_MATERIALIZED)))
    _MATERIALIZED[key] = (dataset, images, labels)
    return images, labels


class DeviceBatches:
    """Batches of a split held as one tensor on the device, in the order of an index sampler.

    Yields ``(images, labels)`` like a ``DataLoader`` over the same sampler would (the same
    images in the same order, without the last partial batch dropped), with ``augment``
    applied to every batch on the device, its randomness seeded by :meth:`seed`.
    """

    def __init__(self, dataset: Dataset, sampler, batch_size: int, device: torch.device,
                 augment: Callable[..., torch.Tensor] | None = None) -> None:
        self.images, self.labels = materialize(dataset, device)
        self.sampler, self.batch_size, self.augment = sampler, batch_size, augment
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(0)

    def seed(self, seed: int) -> None:
        """Reseed the augmentation (once per epoch)."""
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self):
        order = torch.as_tensor(list(iter(self.sampler)), dtype=torch.long).to(self.images.device)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            images = self.images[idx]
            if self.augment is not None:
                images = self.augment(images, self.generator)
            yield images, self.labels[idx]
