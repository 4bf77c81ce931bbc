"""The JSON files of a run directory, read as untrusted input: every problem names the file and the key.

A run directory is a user's file like any other: it is shared, copied, edited and damaged. Its
JSON files (``run.json``, ``checkpoint_state.json``, ``metrics.json``, ``env_spec.json``) are
read here and checked against what the code expects of them; anything else is a
:class:`RunFileError` (a :class:`prune_env.errors.UsageError`, which the scripts turn into exit 2)
that names the file, the key and what is accepted. Nothing read here is imported or called:
``env_spec.json`` is checked by :func:`agents.saved.read_env_spec`, which accepts only this
package's registered environments.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable

from prune_env.errors import UsageError
from prune_env.ids import ENV_IDS


class RunFileError(UsageError):
    """A file of a run directory that cannot be used: names the file (and the key) and what is wrong."""

    def __init__(self, path: str | os.PathLike, problem: str, key: str | None = None):
        self.path, self.key, self.problem = str(path), key, problem
        super().__init__(f"run file {self.path!r}" + (f", key {key!r}" if key else "") + f": {problem}")


def read_json(path: str | os.PathLike) -> dict:
    """The JSON object in ``path``, or a :class:`RunFileError` naming it (missing, empty, not UTF-8,
    not JSON, too deeply nested, or not an object)."""
    path = Path(path)
    if not path.is_file():
        raise RunFileError(path, "no such file" if not path.exists() else "not a file")
    raw = path.read_bytes()
    if not raw.strip():
        raise RunFileError(path, f"empty ({len(raw)} bytes); was its writing interrupted?")
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise RunFileError(path, "not UTF-8 text (random bytes or another format)") from None
    except json.JSONDecodeError as exc:
        raise RunFileError(path, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                                 "truncated or edited?") from None
    except RecursionError:
        raise RunFileError(path, "nested too deeply to be a run file") from None
    if not isinstance(value, dict):
        raise RunFileError(path, f"expected a JSON object, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------- what a value may be
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _plain(v: Any, depth: int = 0) -> bool:
    """JSON data: numbers, strings, booleans, None, lists and objects of them."""
    if depth > 20:
        return False
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    if isinstance(v, list):
        return all(_plain(x, depth + 1) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _plain(x, depth + 1) for k, x in v.items())
    return False


Check = tuple[Callable[[Any], bool], str]
STRING: Check = (lambda v: isinstance(v, str), "a string")
OPTIONAL_STRING: Check = (lambda v: v is None or isinstance(v, str), "a string or null")
INT: Check = (_is_int, "an integer")
NON_NEGATIVE_INT: Check = (lambda v: _is_int(v) and v >= 0, "an integer >= 0")
SEED: Check = (lambda v: _is_int(v) and 0 <= v < 2**32, "an integer in [0, 2**32)")
POSITIVE_INT: Check = (lambda v: _is_int(v) and v >= 1, "an integer >= 1")
NUMBER: Check = (_is_number, "a number")
FINITE_NUMBER: Check = (lambda v: _is_number(v) and math.isfinite(v), "a finite number")
OBJECT: Check = (lambda v: isinstance(v, dict) and _plain(v), "a JSON object")
LEVELS: Check = (lambda v: v is None or (isinstance(v, list) and 1 <= len(v) <= 1000
                                           and all(_is_number(x) and 0 < x <= 1 for x in v)),
                 "null or a list of keep ratios in (0, 1]")
ENV_ID: Check = (lambda v: v in ENV_IDS, f"one of {list(ENV_IDS)}")
RUN_ENV_ID: Check = (lambda v: v in (*ENV_IDS, "joint"), f"one of {[*ENV_IDS, 'joint']}")


def check_fields(path: str | os.PathLike, data: dict, schema: dict[str, tuple[Check, bool]]) -> dict:
    """``data`` when each key of ``schema`` present in it passes its check and every required one is
    there; a :class:`RunFileError` naming the file and the first key at fault otherwise."""
    for key, ((ok, accepted), required) in schema.items():
        if key not in data:
            if required:
                raise RunFileError(path, f"missing (expected {accepted})", key)
            continue
        if not ok(data[key]):
            raise RunFileError(path, f"expected {accepted}, got {short(data[key])}", key)
    return data


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, with its type."""
    text = repr(value)
    return f"{type(value).__name__} {text[:limit]}{'...' if len(text) > limit else ''}"


# --------------------------------------------------------------------------- the files
#: ``run.json`` (:func:`agents.config.run_record`, plus ``status`` and what the end of a run adds)
RUN_SCHEMA: dict[str, tuple[Check, bool]] = {
    "env_id": (RUN_ENV_ID, False), "algo": (STRING, True), "seed": (SEED, False), "n_envs": (POSITIVE_INT, False),
    "preset": (STRING, False), "env_kwargs": (OBJECT, False), "hyperparams": (OBJECT, False), "levels": (LEVELS, False),
    "command": (STRING, False), "static_agent": (OPTIONAL_STRING, False), "runtime_agent": (OPTIONAL_STRING, False),
    "status": (STRING, False), "timesteps": (NON_NEGATIVE_INT, False), "train_seconds": (NUMBER, False),
    "agent_update": (OPTIONAL_STRING, False), "versions": (OBJECT, False),
}
#: ``checkpoint_state.json``: the steps and the environments' reward state (numbers, lists and objects of them)
STATE_SCHEMA: dict[str, tuple[Check, bool]] = {"num_timesteps": (NON_NEGATIVE_INT, True)}


def read_run_record(path: str | os.PathLike) -> dict:
    """``run.json`` checked against :data:`RUN_SCHEMA`."""
    return check_fields(path, read_json(path), RUN_SCHEMA)


def read_state(path: str | os.PathLike) -> dict:
    """``checkpoint_state.json``: ``num_timesteps`` and the reward state, JSON numbers throughout."""
    data = check_fields(path, read_json(path), STATE_SCHEMA)
    for key, value in data.items():
        if not _plain(value) or isinstance(value, str):
            raise RunFileError(path, f"expected numbers, got {short(value)}", key)
    return data


def read_metrics(path: str | os.PathLike, numbers: tuple[str, ...] = ()) -> dict:
    """``metrics.json``, each key of ``numbers`` present and a finite number."""
    return check_fields(path, read_json(path), {key: (FINITE_NUMBER, True) for key in numbers})


__all__ = ["RunFileError", "check_fields", "read_json", "read_metrics", "read_run_record", "read_state", "short"]
