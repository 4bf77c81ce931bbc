"""Files the package writes, written atomically, and the versions stamped on results.

Every file is written into a temporary file in its own directory, flushed to disk and renamed over
the target (:func:`atomic_write`): a kill, a crash or a full disk never leaves a truncated file where
a good one was, and readers see the old file or the new one, nothing in between. The other writers
are :func:`atomic_write` with a given content: what to write first, then where (as ``json.dump``
and ``torch.save`` take them).

This is the one place of atomic writes: checkpoints (:func:`prune_env.checkpoint.atomic_save`),
agents (``agents.saved.atomic_model_save``), JSON, CSV, text and ONNX files all go through it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Mapping, Sequence


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Write a file through ``write(f)`` into a temporary file in the same directory, then rename.

    An interrupted write never leaves a truncated file where a good one was; the file gets the
    usual permissions (``0666`` less the umask), not the temporary file's private ones.
    A write that fails with an ``OSError`` (disk full, quota, I/O error) raises an ``OSError`` of
    the same ``errno`` that names the file and says that the previous file, if any, is unchanged.
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
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            kept = "the previous file there is unchanged" if path.exists() else "no file was written there"
            message = f"could not write {str(path)!r} ({exc.strerror or exc}); {kept}"
            raise (OSError(exc.errno, message) if exc.errno is not None else OSError(message)) from exc
        raise
    return path


def write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """``data`` to ``path``, atomically."""
    return atomic_write(path, lambda f: f.write(data))


def write_text(text: str, path: str | os.PathLike, encoding: str = "utf-8") -> Path:
    """``text`` to ``path`` (no newline translation), atomically."""
    return write_bytes(text.encode(encoding), path)


def write_json(obj: Any, path: str | os.PathLike, *, indent: int | None = 2, sort_keys: bool = True,
               default: Callable[[Any], Any] | None = None) -> Path:
    """``obj`` as JSON (``json.dumps`` with these options), atomically."""
    return write_text(json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default), path)


def write_csv(rows: Iterable[Sequence[Any]] | Iterable[Mapping[str, Any]], path: str | os.PathLike, *,
              fieldnames: Sequence[str] | None = None) -> Path:
    """Rows as CSV (``csv``'s default dialect), atomically.

    Without ``fieldnames`` each row is a sequence of cells, the header (if any) first; with them each
    row is a mapping, the header is ``fieldnames`` and keys not in it are left out.
    """
    buffer = io.StringIO(newline="")
    if fieldnames is None:
        csv.writer(buffer).writerows(rows)
    else:
        writer = csv.DictWriter(buffer, fieldnames=list(fieldnames), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return write_text(buffer.getvalue(), path)


def file_sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes (which network a result was scored on)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def versions() -> dict[str, str]:
    """Versions of what produced a result (the package, its main dependencies, Python)."""
    import gymnasium
    import numpy
    import sb3_contrib
    import stable_baselines3
    import torch

    from prune_env.version import __version__

    return {"prune_env": __version__, "torch": torch.__version__, "stable_baselines3": stable_baselines3.__version__,
            "sb3_contrib": sb3_contrib.__version__, "gymnasium": gymnasium.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


__all__ = ["atomic_write", "versions", "write_bytes", "write_csv", "write_json", "write_text"]
