"""Argument types shared by the command-line scripts: each rejects bad input naming the accepted range."""

from __future__ import annotations

import argparse
import ast
import difflib
import re
from pathlib import Path
from typing import Any, Iterable, Sequence


def _parse_number(kind: type, text: str) -> Any:
    """``text`` as ``kind`` (int or float), else the ``argparse.ArgumentTypeError`` that says which was expected."""
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None


def positive_int(text: str) -> int:
    value = _parse_number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _parse_number(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def seed_value(text: str) -> int:
    """A random seed: an integer in ``[0, 2**32)``, what NumPy's and torch's generators take."""
    value = _parse_number(int, text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2**32), got {text}")
    return value


def positive_float(text: str) -> float:
    value = _parse_number(float, text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _parse_number(float, text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def fraction(text: str) -> float:
    """A number in ``(0, 1]``: a keep ratio, a decay factor."""
    value = _parse_number(float, text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def budget_value(text: str) -> float | str:
    """One budget in ``(0, 1]``, or a range ``low:high`` / a list ``b1,b2,...`` of them (an any-budget
    agent, :class:`prune_env.envs.budgets.BudgetRange`), written back in the form JSON keeps."""
    from prune_env.envs.budgets import BudgetRange

    try:
        budget_range = BudgetRange.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if budget_range is None:
        return fraction(text)
    for v in (budget_range.low, budget_range.high):
        if not 0 < v <= 1:
            raise argparse.ArgumentTypeError(f"every budget must be in (0, 1], got {text}")
    return budget_range.to_json()


def unit_interval(text: str) -> float:
    value = _parse_number(float, text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


_KEY_VALUE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*[=:](.*)$", re.S)


def parse_key_values(items: list[str] | None, option: str) -> dict:
    """``KEY=VALUE`` pairs, or RL Zoo's ``KEY:VALUE``; values are Python literals where they parse as one, else strings.

    The separator is the first ``=`` or ``:`` after the key (a key is a Python name, dots allowed
    for nested keys such as ``policy_kwargs.lstm_hidden_size``), so ``checkpoint=runs/a:b.pt``
    keeps its colon.
    """
    out = {}
    for item in items or []:
        match = _KEY_VALUE.match(item)
        if match is None:
            raise argparse.ArgumentTypeError(f"{option}: expected KEY=VALUE (or KEY:VALUE), got {item!r}")
        key, value = match.group(1), match.group(2)
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def suggest(word: str, accepted: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``accepted`` (:func:`difflib.get_close_matches`), else ``""``."""
    close = difflib.get_close_matches(word, list(accepted), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_keys(given: Iterable[str], accepted: Iterable[str], option: str) -> None:
    """Raise ``argparse.ArgumentTypeError`` naming the first key of ``given`` not in ``accepted``, the
    accepted ones and the closest match; nothing when all are accepted."""
    accepted = sorted(set(accepted))
    for key in given:
        if key not in accepted:
            raise argparse.ArgumentTypeError(f"{option}: unknown key {key!r}{suggest(key, accepted)}; "
                                             f"accepted: {', '.join(accepted)}")


def check_choice(value: str, accepted: Iterable[str], option: str) -> str:
    """``value`` when in ``accepted``, else ``argparse.ArgumentTypeError`` naming them and the closest match."""
    accepted = list(accepted)
    if value not in accepted:
        raise argparse.ArgumentTypeError(f"{option}: unknown value {value!r}{suggest(value, accepted)}; "
                                         f"accepted: {', '.join(accepted)}")
    return value


def env_keywords(env_id: str) -> list[str]:
    """The keyword arguments ``gym.make(env_id, ...)`` accepts: the environment class's own
    and, where it passes the rest on, :class:`~prune_env.envs.task.TaskConfig`'s fields."""
    import dataclasses
    import inspect

    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    from prune_env.envs.task import TaskConfig

    creator = load_env_creator(gym.spec(env_id.split(":")[-1]).entry_point)
    params = list(inspect.signature(creator).parameters.values())
    names = [p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        names += [f.name for f in dataclasses.fields(TaskConfig)]
    return sorted(set(names))


def device(text: str) -> str:
    """A torch device usable here, or ``auto`` (CUDA when available, else CPU): ``--device cuda`` on a
    machine without a GPU is refused when the arguments are read, naming what torch found."""
    if text == "auto":
        return text
    from prune_env.envs.task import check_device

    try:
        return check_device("--device", text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).replace("--device=", "")) from None


#: one meaning for ``--threads`` in every script
THREADS_HELP = ("torch CPU threads (default %(default)s: the small networks here run fastest on one thread, and "
                "threads that compete for a busy machine's cores slow them down; 0: torch's own choice)")


def add_threads_option(parser: Any, default: int = 1) -> None:
    """``--threads N`` with the one meaning and default every script shares (:func:`set_threads` applies it)."""
    parser.add_argument("--threads", type=non_negative_int, default=default, help=THREADS_HELP)


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)``; 0 or None leaves torch's own choice."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))


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
