"""Checkpoints of gated networks: self-describing and written atomically.

A checkpoint is a ``torch.save`` dict holding the network's ``config`` (backbone name and
keyword arguments), its ``state_dict``, the gate mode, the dataset it was trained on, its
input shape and dense cost figures, plus anything a training stage adds (optimizer state,
epoch, history). The environments and scripts rebuild the network from it with nothing else.

Loading never runs code from the file: checkpoints are read with ``torch.load(weights_only=True)``,
which only rebuilds tensors, numbers, strings and containers; a file that holds anything else is
refused with a :class:`CheckpointError`, as are empty, truncated, foreign and newer-format files.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from prune_env.io import atomic_write  # the one atomic writer; re-exported here for its callers
from prune_env.nets.gated import GateConfig, GatedNet
from prune_env.nets.models import rebuild as rebuild_net

FORMAT_VERSION = 1
#: the first bytes of a zip archive (``torch.save``'s format since torch 1.6)
ZIP_MAGIC = b"PK\x03\x04"


class CheckpointError(ValueError):
    """A checkpoint or deployed-model file that cannot be used: names the file and what is wrong.

    Attributes:
        path: the file, as given.
        problem: what is wrong with it, in words.
        kind: what the file was meant to be ("checkpoint", "deployed model").
    """

    def __init__(self, path: str | os.PathLike, problem: str, kind: str = "checkpoint"):
        self.path, self.problem, self.kind = str(path), problem, kind
        super().__init__(f"{kind} {self.path!r}: {problem}")


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` atomically (see :func:`prune_env.io.atomic_write`)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def save_checkpoint(path: str | os.PathLike, net: GatedNet, *, dataset: str, input_shape: tuple[int, int, int],
                    **extra: Any) -> Path:
    """Write a self-describing checkpoint of ``net`` atomically; ``extra`` entries are stored too."""
    from prune_env.costs import CostModel

    cfg = net.gate_config
    payload = {
        "format_version": FORMAT_VERSION,
        "config": dict(net.config),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "gate_config": {"gating": cfg.gating, "hold_static": cfg.hold_static, "tradeoff_rate": cfg.tradeoff_rate},
        "dataset": dataset,
        "input_shape": list(input_shape),
        "costs": CostModel(net, input_shape).summary(),
        **extra,
    }
    return atomic_save(payload, path)


def _refusal_reason(exc: BaseException) -> str:
    """The line of torch's weights-only error that says which Python object was refused."""
    lines = [line.strip() for line in str(exc).splitlines() if "GLOBAL" in line or "Unsupported" in line]
    return f" ({lines[0]})" if lines else ""


def load_file(path: str | os.PathLike, *, kind: str = "checkpoint", trusted: bool = False, trust_hint: str = "") -> Any:
    """What ``torch.save`` wrote to ``path``, read without running code from the file.

    With ``trusted=False`` (the default) the file is read with ``torch.load(weights_only=True)``:
    tensors, numbers, strings, ``None`` and containers of them only. ``trusted=True`` unpickles
    whatever the file holds, which runs any code the file names: use it only for files you wrote
    or whose source you trust. ``trust_hint`` ends the message of a refused file (how to load it anyway).

    Raises:
        FileNotFoundError: nothing at ``path``.
        CheckpointError: the file is empty, truncated, not a torch file, or (untrusted) holds
            other Python objects; the message names the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind}: no file at {str(path)!r}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(path, "empty file (0 bytes); was its writing interrupted?", kind)
    with path.open("rb") as f:
        head = f.read(len(ZIP_MAGIC))
    if head != ZIP_MAGIC:
        raise CheckpointError(path, "not a torch zip file (random bytes, text or another format)", kind)
    if not zipfile.is_zipfile(path):
        raise CheckpointError(path, f"truncated or damaged ({size} bytes, no zip directory at its end); "
                                    "was its writing interrupted?", kind)
    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as exc:
        if trusted or "weights only" not in str(exc).lower():
            raise CheckpointError(path, f"damaged: {type(exc).__name__}: {exc}", kind) from None
        raise CheckpointError(
            path, f"refused: it holds Python objects other than tensors, numbers and strings{_refusal_reason(exc)}, "
                  f"and unpickling them could run code from the file{'; ' + trust_hint if trust_hint else ''}", kind) from None
    except Exception as exc:  # torch reports damage as RuntimeError, OSError, EOFError, KeyError ...
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(path, f"damaged or not a torch file: {type(exc).__name__}: {first}", kind) from None


def check_format_version(path: str | os.PathLike, version: Any, supported: int, kind: str = "checkpoint") -> None:
    """A CheckpointError when ``version`` is not an integer up to ``supported`` (a newer prune_env wrote it)."""
    if version is None:
        return
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(path, f"not a prune_env {kind}: format version {version!r} is not a positive integer", kind)
    if version > supported:
        raise CheckpointError(path, f"written by a newer prune_env (format version {version}; this one reads up to "
                                    f"{supported}): upgrade prune_env to load it", kind)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The raw checkpoint dict, read without running code (see :func:`load_file`).

    Raises:
        FileNotFoundError: nothing at ``path``.
        CheckpointError: empty, truncated, foreign or unsafe file, not a prune_env checkpoint,
            or a newer format version.
    """
    payload = load_file(path)
    if not isinstance(payload, dict) or "config" not in payload or "state_dict" not in payload:
        raise CheckpointError(path, "not a prune_env checkpoint (no config/state_dict)")
    check_format_version(path, payload.get("format_version"), FORMAT_VERSION)
    if not isinstance(payload["config"], dict) or "name" not in payload["config"]:
        raise CheckpointError(path, f"not a prune_env checkpoint: config must be a dict with a backbone name, "
                                    f"got {payload['config']!r:.80}")
    if not isinstance(payload["state_dict"], dict):
        raise CheckpointError(path, "not a prune_env checkpoint: state_dict is not a dict of tensors")
    bad = next((k for k, v in payload["state_dict"].items()
                if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if bad is not None:
        raise CheckpointError(path, f"its weights hold NaN or inf ({bad}): the training that wrote it diverged, or "
                                    "the file was edited; use an earlier checkpoint")
    return payload


def check_input_shape(path: str | os.PathLike, payload: dict, dataset: str, data_root: str | os.PathLike | None = None) -> None:
    """A CheckpointError when the images of ``dataset`` differ in shape from those the checkpoint was trained on."""
    saved = payload.get("input_shape")
    if saved is None or dataset == payload.get("dataset"):
        return
    from prune_env.data import load_dataset

    shape = tuple(int(n) for n in load_dataset(dataset, data_root).input_shape)
    if tuple(int(n) for n in saved) != shape:
        def text(s):
            return "x".join(map(str, s))

        raise CheckpointError(path, f"trained on {text(saved)} inputs ({payload.get('dataset')!r}) but dataset={dataset!r} "
                                    f"gives {text(shape)} images: pass the checkpoint's dataset or a checkpoint trained on "
                                    f"{dataset!r}")


def state_dict_mismatch(expected: dict, given: dict, limit: int = 3) -> str:
    """The first ``limit`` missing, unexpected and wrongly shaped keys of ``given``, in words ("" if none)."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [f"{k} [file {tuple(given[k].shape)}, network {tuple(expected[k].shape)}]" for k in expected
              if k in given and hasattr(given[k], "shape") and tuple(given[k].shape) != tuple(expected[k].shape)]
    parts = [f"{label} ({len(keys)}): {', '.join(keys[:limit])}{', ...' if len(keys) > limit else ''}"
             for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes))
             if keys]
    return "; ".join(parts)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu", *,
                    models: tuple = ()) -> tuple[GatedNet, dict]:
    """Rebuild the network stored at ``path``; returns ``(net, checkpoint dict)``.

    A converted network is rebuilt only by a builder among ``models`` (import paths, callables or
    modules the caller names, :func:`prune_env.nets.models.rebuild_gated`): a file never makes
    this import anything.

    Raises:
        FileNotFoundError: nothing at ``path``.
        CheckpointError: see :func:`read_checkpoint`; also an unknown backbone in the config, or
            weights that do not fit it (a forged or mixed-up file), naming the first mismatching keys.
    """
    payload = read_checkpoint(path)
    try:
        net = rebuild_net(payload["config"], models)
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(path, f"its config {payload['config']!r} does not build a network: {exc}") from None
    try:
        net.load_state_dict(payload["state_dict"])
    except RuntimeError:
        mismatch = state_dict_mismatch(net.state_dict(), payload["state_dict"]) or "values of the wrong type"
        raise CheckpointError(path, f"its weights do not fit its config ({payload['config'].get('name')!r}): "
                                    f"{mismatch}") from None
    net.gate_config = GateConfig(**payload.get("gate_config", {}))
    return net.to(device), payload
