"""Checkpoints of gated networks: self-describing and written atomically.

A checkpoint is a ``torch.save`` dict holding the network's ``config`` (backbone name and
keyword arguments), its ``state_dict``, the gate mode, the dataset it was trained on, its
input shape and dense cost figures, plus anything a training stage adds (optimizer state,
epoch, history). The environments and scripts rebuild the network from it with nothing else.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch

from prune_env.nets.backbones import rebuild_net
from prune_env.nets.gated import GateConfig, GatedNet

FORMAT_VERSION = 1


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Write a file through ``write(f)`` into a temporary file in the same directory, then rename.

    An interrupted write never leaves a truncated file where a good one was; the file gets the
    usual permissions (``0666`` less the umask), not the temporary file's private ones.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def save_checkpoint(path: str | os.PathLike, net: GatedNet, *, dataset: str, input_shape: tuple[int, int, int], **extra: Any) -> Path:
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


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The raw checkpoint dict (clear error when the file is missing or not ours)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no file at {str(path)!r}")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or "config" not in payload or "state_dict" not in payload:
        raise ValueError(f"checkpoint: {str(path)!r} is not a prune_env checkpoint (no config/state_dict)")
    return payload


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[GatedNet, dict]:
    """Rebuild the network stored at ``path``; returns ``(net, checkpoint dict)``."""
    payload = read_checkpoint(path)
    net = rebuild_net(payload["config"])
    net.load_state_dict(payload["state_dict"])
    net.gate_config = GateConfig(**payload.get("gate_config", {}))
    return net.to(device), payload
