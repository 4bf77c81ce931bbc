"""The environments: ``RuntimePrune-v0`` and ``StaticPrune-v0``, single and natively batched."""

from prune_env.envs.runtime import RuntimePruneEnv
from prune_env.envs.static import StaticPruneEnv
from prune_env.envs.vec_env import BatchedPruneVecEnv, EpisodeMonitor, make_vec_env
from prune_env.envs.wrappers import AMCWrapper, DiscreteKeepRatio, VecAMCWrapper, VecDiscreteKeepRatio

__all__ = [
    "RuntimePruneEnv", "StaticPruneEnv", "BatchedPruneVecEnv", "EpisodeMonitor", "make_vec_env",
    "DiscreteKeepRatio", "VecDiscreteKeepRatio", "AMCWrapper", "VecAMCWrapper",
]
