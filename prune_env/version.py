"""The package's version, stamped on every result it writes (:func:`prune_env.io.versions`)."""

__version__ = "0.1.0"
