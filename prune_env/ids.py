"""The environment ids, defined once (``prune_env`` registers them; the VecEnv, the agents' registry
and the benchmark name them from here)."""

#: per-input (runtime) channel pruning, Sec. 3.3.1
RUNTIME = "RuntimePrune-v0"
#: deployment-time (static) channel pruning, Sec. 3.3.2
STATIC = "StaticPrune-v0"
ENV_IDS = (RUNTIME, STATIC)
