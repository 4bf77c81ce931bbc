"""What the environments accept as an action: real numbers, one keep ratio per episode.

Python ints and floats, NumPy integer and floating scalars or arrays, sequences of them and
torch tensors of such dtypes are accepted. Strings (even ``"0.5"``), bytes, booleans, complex
numbers, ``None``, dicts, sets and other objects are refused with a ``TypeError`` that names the
action and what is accepted: silently reading ``"0.5"`` or ``True`` as a keep ratio would hide
an agent's bug.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

ACCEPTED = "a real number or an array of real numbers (keep ratios, clipped to [alpha, 1])"
#: NumPy dtype kinds that hold real numbers: signed / unsigned integers and floats
REAL_KINDS = "iuf"


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def as_keep_ratios(action: Any, name: str = "action") -> np.ndarray:
    """``action`` as a float64 array of the same shape.

    Raises:
        TypeError: ``action`` is, or holds, something other than real numbers; the message
            names ``name``, what was given and what is accepted.
        ValueError: a ragged nesting of sequences (no array shape).
    """
    if hasattr(action, "detach") and hasattr(action, "cpu"):  # a torch tensor
        action = action.detach().cpu().numpy()
    if isinstance(action, (str, bytes, dict, set, frozenset)) or action is None or isinstance(action, (bool, np.bool_)):
        raise TypeError(f"{name} must be {ACCEPTED}, got {_describe(action)}")
    try:
        array = np.asarray(action)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} must be {ACCEPTED} with an array shape, got {_describe(action)} ({exc})") from None
    kind = array.dtype.kind
    if kind == "O":
        bad = [v for v in array.reshape(-1).tolist() if not _is_real(v)]
        if bad:
            raise TypeError(f"{name} must be {ACCEPTED}, got {_describe(action)} (holding {_describe(bad[0])})")
    elif kind not in REAL_KINDS:
        what = {"b": "booleans", "c": "complex numbers", "U": "strings", "S": "bytes"}.get(kind, f"dtype {array.dtype}")
        raise TypeError(f"{name} must be {ACCEPTED}, got {what}: {_describe(action)}")
    return array.astype(np.float64)
