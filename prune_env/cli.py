"""Argument types shared by the command-line scripts: each rejects bad input naming the accepted range."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path
from typing import Any, Sequence


def _number(kind: type, text: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None


def positive_int(text: str) -> int:
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = _number(float, text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(float, text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def fraction(text: str) -> float:
    """A number in ``(0, 1]``: a keep ratio, a decay factor."""
    value = _number(float, text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def unit_interval(text: str) -> float:
    value = _number(float, text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def parse_key_values(items: list[str] | None, option: str) -> dict:
    """``key=value`` pairs; values are Python literals where they parse as one, else strings."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"{option}: expected key=value, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


# --------------------------------------------------------------------------- outputs
#: what a started or finished ``train_agents.py`` run leaves in its directory
RUN_FILES = ("model.zip", "checkpoint.zip", "run.json", "metrics.json")
#: what a started or finished ``finetune_cnn.py algorithm1`` / ``method`` run leaves in its directory
ALGORITHM1_FILES = ("cnn.pt", "cnn_phase.pt", "algorithm1_state.json", "metrics.json", "history.csv", "pretrain.pt",
                    "importance.pt", "warmup.pt", *(f"{agent}/{name}" for agent in ("runtime", "static") for name in RUN_FILES))


def refuse_overwrite(out: str | Path, *, kind: str = "dir", markers: Sequence[str] = RUN_FILES, resume: bool = False,
                     overwrite: bool = False, option: str = "--out") -> str | None:
    """Why writing to ``out`` would lose earlier work, as the message to exit with; None when it would not.

    ``kind="dir"``: ``out`` is a run directory; it must not be a file, and it must not hold any of
    ``markers`` (a started or finished run) unless ``resume`` (continue it) or ``overwrite``
    (replace it) is set. ``kind="file"``: ``out`` is a checkpoint file; it must not be a
    directory, and must not exist unless ``resume`` or ``overwrite`` is set. The message names
    ``--resume``, a new path and ``--overwrite``.
    """
    out = Path(out)
    if kind not in ("dir", "file"):
        raise ValueError(f"kind must be 'dir' or 'file', got {kind!r}")
    if kind == "dir" and out.exists() and not out.is_dir():
        return f"{option} {out} is a file; give a run directory"
    if kind == "file" and out.is_dir():
        return f"{option} {out} is a directory; give the checkpoint file to write"
    if resume or overwrite:
        return None
    found = [m for m in markers if (out / m).exists()] if kind == "dir" else ([out.name] if out.exists() else [])
    if not found:
        return None
    what = f"holds a started or finished run ({', '.join(found)})" if kind == "dir" else "exists (a checkpoint)"
    new = "a new directory" if kind == "dir" else "a new file"
    return (f"{option} {out} {what}: continue it with --resume, choose {new}, "
            f"or pass --overwrite to replace it (its files are overwritten as the new run writes them)")


def add_output_options(parser: argparse.ArgumentParser, resume_help: str) -> None:
    """``--resume`` and ``--overwrite``, which exclude each other."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help=resume_help)
    group.add_argument("--overwrite", action="store_true",
                       help="write into --out even though it holds an earlier run (which is then replaced)")
