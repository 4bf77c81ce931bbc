"""prune_env: Gymnasium environments for runtime and static channel pruning of CNNs by RL."""

__version__ = "0.1.0"
