"""Tests of prune_env.data: splits, errors, and loading real on-disk formats from fixtures."""

from __future__ import annotations

import ast
import gzip
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from prune_env import data
from prune_env.data import (
    DATASETS,
    BatchAugment,
    DatasetNotFoundError,
    DatasetSplits,
    available_datasets,
    load_dataset,
    make_loader,
    materialize,
)

FASHION_MEAN, FASHION_STD = 0.2860, 0.3530
CIFAR_MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)
CIFAR_STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(3, 1, 1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Never write to ~/.cache: point the cache at a per-test directory."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(cache))
    return cache


def _index_sets(splits: DatasetSplits) -> tuple[set[int], set[int]]:
    return set(splits.train.indices), set(splits.val.indices)


# --------------------------------------------------------------------------- registry / errors


def test_registry_names():
    assert available_datasets() == sorted(["digits", "fashion-mnist", "cifar10", "imagenet", "synthetic"])
    assert set(DATASETS) == set(available_datasets())


def test_unknown_name_lists_accepted_names():
    with pytest.raises(ValueError, match="name") as info:
        load_dataset("mnist-ish")
    for accepted in available_datasets():
        assert accepted in str(info.value)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 0.51, 1.0, float("nan")])
def test_bad_val_fraction(fraction):
    with pytest.raises(ValueError, match=r"val_fraction.*\(0, 0\.5\]"):
        load_dataset("digits", val_fraction=fraction)


def test_not_found_error_is_file_not_found():
    assert issubclass(DatasetNotFoundError, FileNotFoundError)


# --------------------------------------------------------------------------- digits


def test_digits_sizes_shapes_dtypes():
    splits = load_dataset("digits")
    assert splits.name == "digits"
    assert (splits.num_classes, splits.input_shape) == (10, (1, 8, 8))
    assert len(splits.test) == 360
    assert len(splits.train) + len(splits.val) + len(splits.test) == 1797
    assert len(splits.val) == round(0.1 * 1437)
    for part in (splits.train, splits.val, splits.test):
        image, label = part[0]
        assert image.dtype == torch.float32 and tuple(image.shape) == splits.input_shape
        assert type(label) is int
    labels = [label for part in (splits.train, splits.val, splits.test) for _, label in part]
    assert set(labels) == set(range(10))


def test_digits_normalised_with_training_statistics():
    splits = load_dataset("digits")
    pool = splits.train.dataset.tensors[0]  # train and val share this pool
    assert pool.mean().abs() < 1e-4
    assert (pool.std() - 1).abs() < 1e-2


def test_digits_val_disjoint_deterministic_and_seeded():
    a, b = load_dataset("digits", seed=3), load_dataset("digits", seed=3)
    other = load_dataset("digits", seed=4)
    train_a, val_a = _index_sets(a)
    assert not train_a & val_a
    assert train_a | val_a == set(range(1437))
    assert list(a.val.indices) == list(b.val.indices)
    assert list(a.train.indices) == list(b.train.indices)
    assert set(other.val.indices) != val_a
    assert torch.equal(a.val[0][0], b.val[0][0])


def test_digits_test_split_independent_of_seed():
    a = load_dataset("digits", seed=0)
    data._digits_arrays.cache_clear()  # recompute the split rather than reuse the cached one
    b = load_dataset("digits", seed=123, val_fraction=0.5)
    assert torch.equal(a.test.tensors[0], b.test.tensors[0])
    assert torch.equal(a.test.tensors[1], b.test.tensors[1])
    # stratified: every class keeps about 20 % of its images in the test split
    counts = torch.bincount(a.test.tensors[1], minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37


_DIGITS_FINGERPRINT = """
from prune_env.data import load_dataset
splits = load_dataset("digits", seed=7)
print(repr((list(splits.val.indices), splits.test.tensors[1].tolist())))
"""


def test_digits_splits_same_in_another_process():
    out = subprocess.run(
        [sys.executable, "-c", _DIGITS_FINGERPRINT],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1],
    ).stdout
    splits = load_dataset("digits", seed=7)
    assert ast.literal_eval(out) == (list(splits.val.indices), splits.test.tensors[1].tolist())


@settings(max_examples=20, deadline=None)
@given(fraction=st.floats(0.01, 0.5), seed=st.integers(0, 2**31 - 1))
def test_digits_split_partition_property(fraction, seed):
    splits = load_dataset("digits", val_fraction=fraction, seed=seed)
    train, val = _index_sets(splits)
    assert not train & val and train | val == set(range(1437))
    assert len(val) == round(1437 * fraction)


def test_make_loader_reproducible_shuffle():
    splits = load_dataset("digits")

    def labels(seed):
        return torch.cat([y for _, y in make_loader(splits.train, 64, shuffle=True, seed=seed)])

    assert torch.equal(labels(1), labels(1))
    assert not torch.equal(labels(1), labels(2))
    images, batch_labels = next(iter(make_loader(splits.val, 16, shuffle=False)))
    assert images.shape == (16, 1, 8, 8) and batch_labels.dtype == torch.int64
    assert len(make_loader(splits.train, 100, shuffle=False, drop_last=True)) == len(splits.train) // 100


# --------------------------------------------------------------------------- fashion-mnist


def _write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as a gzipped big-endian IDX file, as in the MNIST distribution."""
    magic = 2051 if array.ndim == 3 else 2049
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _write_fashion_fixture(directory: Path, n_train: int = 30, n_test: int = 10):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        _write_idx(directory / f"{name}.gz", array)
    return arrays


def _fashion_pixels(image: torch.Tensor) -> np.ndarray:
    return torch.round((image[0] * FASHION_STD + FASHION_MEAN) * 255).to(torch.uint8).numpy()


def _assert_fashion_round_trip(splits: DatasetSplits, arrays: dict) -> None:
    train_images, train_labels = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    for position, index in enumerate(splits.val.indices):
        image, label = splits.val[position]
        np.testing.assert_array_equal(_fashion_pixels(image), train_images[index])
        assert label == train_labels[index]
    for index in range(len(splits.test)):
        image, label = splits.test[index]
        np.testing.assert_array_equal(_fashion_pixels(image), arrays["t10k-images-idx3-ubyte"][index])
        assert label == arrays["t10k-labels-idx1-ubyte"][index]


def test_fashion_mnist_from_debian_style_gz_dir(tmp_path, _isolated_cache):
    source = tmp_path / "debian-like"
    arrays = _write_fashion_fixture(source)
    before = sorted(p.name for p in source.iterdir())
    splits = load_dataset("fashion-mnist", root=source)

    assert (len(splits.train), len(splits.val), len(splits.test)) == (27, 3, 10)
    assert (splits.num_classes, splits.input_shape) == (10, (1, 28, 28))
    image, label = splits.train[0]
    assert image.dtype == torch.float32 and image.shape == (1, 28, 28) and type(label) is int
    assert not _index_sets(splits)[0] & _index_sets(splits)[1]
    _assert_fashion_round_trip(splits, arrays)
    # decompressed into the cache, not next to the (read-only in Debian) source
    assert sorted(p.name for p in source.iterdir()) == before
    assert len(list(_isolated_cache.rglob("train-images-idx3-ubyte"))) == 1


def test_fashion_mnist_cache_reused_and_refreshed(tmp_path, _isolated_cache):
    source = tmp_path / "src"
    _write_fashion_fixture(source)
    load_dataset("fashion-mnist", root=source)
    load_dataset("fashion-mnist", root=source)
    assert len(list(_isolated_cache.rglob("train-images-idx3-ubyte"))) == 1
    assert not list(_isolated_cache.rglob("*.tmp"))  # atomic writes leave no temporaries
    # new source files (different size) get a fresh cache entry, not stale data
    arrays = _write_fashion_fixture(source, n_train=40)
    splits = load_dataset("fashion-mnist", root=source)
    assert len(splits.train) + len(splits.val) == 40
    _assert_fashion_round_trip(splits, arrays)


def test_fashion_mnist_from_torchvision_root(tmp_path):
    root = tmp_path / "tv"
    raw = root / "FashionMNIST" / "raw"
    arrays = _write_fashion_fixture(raw)
    for gz in raw.glob("*.gz"):
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    splits = load_dataset("fashion-mnist", root=root, val_fraction=0.5, seed=1)
    assert (len(splits.train), len(splits.val)) == (15, 15)
    _assert_fashion_round_trip(splits, arrays)


def test_fashion_mnist_augmentation_only_on_train(tmp_path):
    source = tmp_path / "src"
    _write_fashion_fixture(source)
    splits = load_dataset("fashion-mnist", root=source)
    torch.manual_seed(0)
    assert torch.equal(splits.val[0][0], splits.val[0][0])
    draws = [splits.train[0][0] for _ in range(10)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    plain = load_dataset("fashion-mnist", root=source, augment=False)
    assert torch.equal(plain.train[0][0], plain.train[0][0])


def test_fashion_mnist_missing_names_paths(tmp_path, monkeypatch):
    empty = tmp_path / "nothing-here"
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion-mnist", root=empty)
    assert str(empty) in str(info.value)
    assert "apt-get install dataset-fashion-mnist" in str(info.value)
    assert "download=True" in str(info.value)

    fake_debian = tmp_path / "no-debian"
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", fake_debian)
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion-mnist")
    assert str(fake_debian) in str(info.value)
    assert str(data.cache_dir() / "fashion-mnist") in str(info.value)


def require_debian_fashion_mnist() -> None:
    """Skip without Debian's Fashion-MNIST files, except in CI (``CI=true``), where .ci/run installs them: fail there."""
    if all((data.DEBIAN_FASHION_MNIST_DIR / f"{n}.gz").is_file() for n in data._FASHION_MNIST_FILES):
        return
    message = (f"Debian package dataset-fashion-mnist not installed ({data.DEBIAN_FASHION_MNIST_DIR}): "
               "sudo apt-get install dataset-fashion-mnist")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; .ci/run installs it where it runs as root with apt-get, so CI must have it")
    pytest.skip(message)


def test_fashion_mnist_real_debian_files():
    require_debian_fashion_mnist()
    splits = load_dataset("fashion-mnist")
    assert len(splits.train) + len(splits.val) == 60000
    assert len(splits.val) == 6000 and len(splits.test) == 10000
    image, label = splits.test[0]
    assert image.shape == (1, 28, 28) and 0 <= label < 10


# --------------------------------------------------------------------------- cifar10


def _write_cifar_fixture(root: Path, per_batch: int = 20, n_test: int = 10) -> dict[str, dict]:
    """CIFAR-10's python layout: pickled dicts of uint8 (N, 3072) data and int labels."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    batches = {}
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        batches[name] = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, n).tolist(),
            "batch_label": name,
        }
        (folder / name).write_bytes(pickle.dumps(batches[name], protocol=2))
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer",
                            "dog", "frog", "horse", "ship", "truck"]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return batches


def _cifar_pixels(image: torch.Tensor) -> np.ndarray:
    return torch.round((image * CIFAR_STD + CIFAR_MEAN) * 255).to(torch.uint8).reshape(-1).numpy()


def test_cifar10_fixture_round_trip(tmp_path):
    batches = _write_cifar_fixture(tmp_path)
    splits = load_dataset("cifar10", tmp_path, verify=False)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (90, 10, 10)
    assert (splits.num_classes, splits.input_shape) == (10, (3, 32, 32))
    train_data = np.concatenate([batches[f"data_batch_{i}"]["data"] for i in range(1, 6)])
    train_labels = sum((batches[f"data_batch_{i}"]["labels"] for i in range(1, 6)), [])
    for position, index in enumerate(splits.val.indices):
        image, label = splits.val[position]
        assert image.dtype == torch.float32 and image.shape == (3, 32, 32)
        np.testing.assert_array_equal(_cifar_pixels(image), train_data[index])
        assert label == train_labels[index] and type(label) is int
    for index in range(len(splits.test)):
        image, label = splits.test[index]
        np.testing.assert_array_equal(_cifar_pixels(image), batches["test_batch"]["data"][index])
        assert label == batches["test_batch"]["labels"][index]
    assert splits.train[0][0].shape == (3, 32, 32)
    assert not _index_sets(splits)[0] & _index_sets(splits)[1]


def test_cifar10_verify_rejects_fixture_checksums(tmp_path):
    _write_cifar_fixture(tmp_path)
    with pytest.raises(RuntimeError, match="verify=False"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_missing_names_path(tmp_path):
    root = tmp_path / "no-cifar"
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", root)
    message = str(info.value)
    assert str(root / "cifar-10-batches-py") in message
    assert "CIFAR-10 (python version)" in message and "download=True" in message
    with pytest.raises(DatasetNotFoundError, match="no-cifar"):
        load_dataset("cifar10", root, verify=False)


def test_cifar10_default_root_in_cache(_isolated_cache):
    with pytest.raises(DatasetNotFoundError, match=str(_isolated_cache / "cifar10")):
        load_dataset("cifar10")


# --------------------------------------------------------------------------- imagenet (ImageFolder)

_COLOURS = {"ant": (255, 0, 0), "bee": (0, 0, 255)}


def _write_image_folder(root: Path, per_class: dict[str, int]) -> None:
    for split, n in per_class.items():
        for cls, colour in _COLOURS.items():
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (40 + i, 36), colour).save(root / split / cls / f"{i}.png")


def test_imagenet_image_folder(tmp_path):
    _write_image_folder(tmp_path, {"train": 5, "val": 2})
    splits = load_dataset("imagenet", tmp_path, image_size=32, val_fraction=0.2)
    assert (splits.num_classes, splits.input_shape) == (2, (3, 32, 32))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8, 2, 4)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    for part in (splits.train, splits.val, splits.test):
        for image, label in part:
            assert image.shape == (3, 32, 32) and image.dtype == torch.float32
            red, _, blue = (image * std + mean).mean(dim=(1, 2))
            assert label == (0 if red > blue else 1)  # "ant" (red) is class 0, "bee" class 1
    assert not _index_sets(splits)[0] & _index_sets(splits)[1]


def test_imagenet_missing_names_path(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("imagenet", tmp_path)
    assert str(tmp_path / "train") in str(info.value)
    assert "<root>/train/<class>/<image>" in str(info.value)
    with pytest.raises(ValueError, match="root"):
        load_dataset("imagenet")


# --------------------------------------------------------------------------- synthetic


def test_synthetic_default_shapes_and_sizes():
    splits = load_dataset("synthetic")
    assert (splits.name, splits.num_classes, splits.input_shape) == ("synthetic", 10, (3, 32, 32))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (2048 - 205, 205, 512)
    train, val = _index_sets(splits)
    assert not train & val and train | val == set(range(2048))
    for part in (splits.train, splits.val, splits.test):
        image, label = part[0]
        assert image.dtype == torch.float32 and tuple(image.shape) == (3, 32, 32)
        assert type(label) is int and 0 <= label < 10
    images, labels = next(iter(make_loader(splits.val, 32, shuffle=False)))
    assert images.shape == (32, 3, 32, 32) and labels.dtype == torch.int64


def test_synthetic_keywords_through_load_dataset():
    splits = load_dataset(
        "synthetic", val_fraction=0.25, shape=[1, 8, 6], num_classes=3, size=40, test_size=7
    )
    assert (splits.num_classes, splits.input_shape) == (3, (1, 8, 6))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (30, 10, 7)
    assert splits.test[6][0].shape == (1, 8, 6)
    labels = [label for part in (splits.train, splits.val, splits.test) for _, label in part]
    assert set(labels) <= {0, 1, 2}


def test_synthetic_deterministic_and_test_independent_of_seed():
    a, b = load_dataset("synthetic", seed=5), load_dataset("synthetic", seed=5)
    other = load_dataset("synthetic", seed=6, val_fraction=0.3)
    for x, y in ((a, b), (a, other)):  # the generated data never depends on seed
        assert torch.equal(x.train.dataset.tensors[0], y.train.dataset.tensors[0])
        assert torch.equal(x.train.dataset.tensors[1], y.train.dataset.tensors[1])
        assert torch.equal(x.test.tensors[0], y.test.tensors[0])
        assert torch.equal(x.test.tensors[1], y.test.tensors[1])
    assert list(a.val.indices) == list(b.val.indices)
    assert set(other.val.indices) != set(a.val.indices)
    # the val split is the module's seeded split of the pool
    assert (list(a.train.indices), list(a.val.indices)) == data._split_indices(2048, 0.1, 5)
    # pool and test are different draws
    assert not torch.equal(a.train.dataset.tensors[0][:512], a.test.tensors[0])


_SYNTHETIC_FINGERPRINT = """
from prune_env.data import load_dataset
s = load_dataset("synthetic", seed=2, shape=(2, 5, 5), size=64, test_size=16)
print(repr((list(s.val.indices), s.train.dataset.tensors[1].tolist(), s.test.tensors[1].tolist(),
            round(float(s.test.tensors[0].sum()), 4))))
"""


def test_synthetic_same_in_another_process():
    out = subprocess.run(
        [sys.executable, "-c", _SYNTHETIC_FINGERPRINT],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1],
    ).stdout
    s = load_dataset("synthetic", seed=2, shape=(2, 5, 5), size=64, test_size=16)
    expected = (list(s.val.indices), s.train.dataset.tensors[1].tolist(), s.test.tensors[1].tolist(),
                round(float(s.test.tensors[0].sum()), 4))
    assert ast.literal_eval(out) == expected


def test_synthetic_labels_are_learnable_and_balanced():
    splits = load_dataset("synthetic", shape=(1, 8, 8), size=1024, test_size=256)
    images, labels = splits.train.dataset.tensors
    assert torch.bincount(labels, minlength=10).min() > 1024 / 10 / 2  # every class well represented
    # a least-squares linear classifier fitted on the pool generalises to the test split
    x = images.reshape(len(images), -1).double()
    w = torch.linalg.lstsq(x, torch.nn.functional.one_hot(labels, 10).double()).solution
    test_x = splits.test.tensors[0].reshape(256, -1).double()
    accuracy = (test_x @ w).argmax(1).eq(splits.test.tensors[1]).double().mean()
    assert accuracy > 0.5  # chance is 0.1 (0.68 measured)


@pytest.mark.parametrize("kwargs", [
    {"shape": (32, 32)}, {"shape": (3, 0, 32)}, {"shape": 32}, {"num_classes": 1}, {"size": 1}, {"test_size": 0},
])
def test_synthetic_rejects_bad_keywords(kwargs):
    with pytest.raises(ValueError):
        load_dataset("synthetic", **kwargs)


# --------------------------------------------------------------------------- batched augmentation, materialised splits


def _crops_of(image: torch.Tensor, pad: int, fill: tuple[float, ...]) -> list[torch.Tensor]:
    """Every crop (and its mirror image) RandomCrop(padding=pad) + RandomHorizontalFlip can give."""
    c, h, w = image.shape
    padded = torch.tensor(fill).view(c, 1, 1).expand(c, h + 2 * pad, w + 2 * pad).clone()
    padded[:, pad:pad + h, pad:pad + w] = image
    crops = [padded[:, y:y + h, x:x + w] for y in range(2 * pad + 1) for x in range(2 * pad + 1)]
    return crops + [crop.flip(2) for crop in crops]


def test_batch_augment_gives_padded_crops_and_flips():
    aug = BatchAugment(pad=2, flip=True, fill=(-0.5, 3.0))
    images = torch.randn(64, 2, 5, 6)
    out = aug(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    seen_shift = seen_flip = seen_fill = False
    for image, result in zip(images, out):
        crops = _crops_of(image, 2, (-0.5, 3.0))
        hits = [i for i, crop in enumerate(crops) if torch.equal(crop, result)]
        assert hits, "an output is not a padded crop of its input"
        seen_flip |= hits[0] >= len(crops) // 2
        seen_shift |= hits[0] % (len(crops) // 2) != 12  # 12 = no shift
        seen_fill |= bool((result[0] == -0.5).any())
    assert seen_shift and seen_flip and seen_fill
    # seeded: the same generator seed, the same batch
    again = aug(images, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert torch.equal(BatchAugment(pad=0, flip=False, fill=(0.0, 0.0))(images), images)


def test_fashion_mnist_batch_augment_matches_the_transform(tmp_path):
    source = tmp_path / "src"
    _write_fashion_fixture(source)
    splits = load_dataset("fashion-mnist", root=source)
    aug = splits.batch_augment
    assert aug == BatchAugment(pad=2, flip=True, fill=(-0.2860 / 0.3530,))
    # train_plain holds the training images without augmentation, in train's order
    assert len(splits.train_plain) == len(splits.train)
    assert splits.train_plain.indices == splits.train.indices
    # what RandomCrop + flip + Normalize gives is one of the batched augmentation's outcomes
    torch.manual_seed(0)
    plain = splits.train_plain[3][0]
    for _ in range(5):
        drawn = splits.train[3][0]
        assert any(torch.allclose(drawn, crop, atol=1e-6) for crop in _crops_of(plain, 2, aug.fill))
    assert load_dataset("fashion-mnist", root=source, augment=False).batch_augment is None


def test_materialize_returns_the_whole_split_once():
    splits = load_dataset("digits")
    images, labels = materialize(splits.val)
    assert images.shape == (len(splits.val), 1, 8, 8) and labels.dtype == torch.int64
    for i in (0, 17, len(splits.val) - 1):
        assert torch.equal(images[i], splits.val[i][0]) and int(labels[i]) == splits.val[i][1]
    again, _ = materialize(splits.val)
    assert again is images  # cached


@pytest.mark.parametrize("name", ["fashion-mnist", "cifar10"])
def test_materialize_converts_array_datasets_in_bulk_bit_for_bit(tmp_path, name, _isolated_cache):
    """Fashion-MNIST's and CIFAR-10's evaluation views are materialised without the per-image
    transform (it is made to fail), and every image equals the per-image ToTensor + Normalize."""
    if name == "fashion-mnist":
        _write_fashion_fixture(tmp_path / "src")
        splits = load_dataset(name, root=tmp_path / "src")
    else:
        _write_cifar_fixture(tmp_path)
        splits = load_dataset(name, tmp_path, verify=False)
    expected = {part: [getattr(splits, part)[i] for i in range(len(getattr(splits, part)))]
                for part in ("val", "test", "train_plain")}

    def refuse(image):
        raise AssertionError("the per-image transform ran")

    splits.test.transform = refuse
    splits.val.dataset.transform = refuse  # val and train_plain share the evaluation view
    for part, items in expected.items():
        images, labels = materialize(getattr(splits, part))
        assert images.shape == (len(items), *splits.input_shape) and images.dtype == torch.float32
        assert labels.dtype == torch.int64
        assert torch.equal(images, torch.stack([x for x, _ in items]))
        assert labels.tolist() == [y for _, y in items]


def test_image_source_preloads_through_materialize(tmp_path, _isolated_cache):
    from prune_env.envs.task import ImageSource

    _write_fashion_fixture(tmp_path / "src")
    splits = load_dataset("fashion-mnist", root=tmp_path / "src")
    source = ImageSource(splits.val, torch.device("cpu"))
    images, labels = source.get(np.array([2, 0]))
    assert torch.equal(images[0], splits.val[2][0]) and int(labels[1]) == splits.val[0][1]


def test_environments_serve_training_images_without_augmentation(tmp_path, _isolated_cache):
    """split="train" is the training images as they are: not one random crop and flip of each, drawn
    from the global RNG when the task loads (the same images whatever that RNG's state)."""
    from prune_env.envs.task import PruningTask, TaskConfig

    _write_fashion_fixture(tmp_path / "src")
    cfg = dict(model="mcifarnet", dataset="fashion-mnist", data_root=str(tmp_path / "src"), split="train", width=0.25)
    images = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        with pytest.warns(UserWarning, match="randomly initialised"):
            images.append(PruningTask(TaskConfig(**cfg)).source.images)
    plain = load_dataset("fashion-mnist", root=tmp_path / "src").train_plain
    assert torch.equal(images[0], images[1])
    assert torch.equal(images[0], torch.stack([plain[i][0] for i in range(len(plain))]))


def test_cifar10_download_goes_through_torchvision(tmp_path, monkeypatch):
    """download=True reaches torchvision's own download (stubbed: it writes the fixture where the archive would go)."""
    import torchvision.datasets.cifar as tv_cifar

    calls = []

    def fake_download(url, download_root, filename=None, md5=None, **kwargs):
        calls.append((url, Path(download_root), filename))
        _write_cifar_fixture(Path(download_root))

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", fake_download)
    root = tmp_path / "fresh"
    with pytest.raises(DatasetNotFoundError, match="--download"):  # the hint names every route
        load_dataset("cifar10", root, verify=False)
    splits = load_dataset("cifar10", root, download=True, verify=False)
    assert len(calls) == 1 and calls[0][0].startswith("https://") and calls[0][1] == root
    assert len(splits.test) == 10 and splits.num_classes == 10
    load_dataset("cifar10", root, download=True, verify=False)  # present now: no second download
    assert len(calls) == 1


def test_download_keyword_reaches_the_loaders(monkeypatch):
    import finetune_cnn
    from prune_env.envs.task import PruningTask, TaskConfig

    with pytest.raises(ValueError, match="download must be True or False"):
        TaskConfig(download="yes").validate()
    task = PruningTask(TaskConfig(download=True))  # digits ships with scikit-learn: nothing to fetch
    assert task.cfg.download is True
    job = finetune_cnn._job_from_args(finetune_cnn.build_parser().parse_args(
        ["pretrain", "--dataset", "cifar10", "--download", "--out", "x.pt"]))
    assert job.download is True
