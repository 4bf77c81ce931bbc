"""The errors a user's input raises: what the scripts turn into a usage error (exit 2, one line).

A :class:`UsageError` names the option, keyword or file at fault and what is accepted; any other
exception escaping a script is a bug and keeps its traceback. :class:`NonFiniteError` is the one
for NaN or infinite numbers where finite ones are needed (a checkpoint's weights, a training loss).
``prune_env.CheckpointError`` (a damaged or unsafe checkpoint) is a ``ValueError`` handled alike.
"""

from __future__ import annotations


class UsageError(ValueError):
    """A value, path or file given by the user that cannot be used; the message names it."""


class NonFiniteError(UsageError):
    """NaN or infinite numbers where finite ones are needed; the message names the file or the step."""


__all__ = ["NonFiniteError", "UsageError"]
