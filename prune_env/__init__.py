"""prune_env: Gymnasium environments for runtime and static channel pruning of CNNs by RL.

Importing the package registers ``RuntimePrune-v0`` and ``StaticPrune-v0`` with Gymnasium.
"""

from gymnasium.envs.registration import register, registry

from prune_env.ids import RUNTIME, STATIC
from prune_env.version import __version__

# ``vector_entry_point``: ``gym.make_vec(id, n, vectorization_mode="vector_entry_point")`` runs the n
# episodes as one batch (prune_env/envs/gym_vector.py), as Gymnasium's CartPole registers its own
for _id, _entry, _vector in (
    (RUNTIME, "prune_env.envs.runtime:RuntimePruneEnv", "prune_env.envs.gym_vector:RuntimePruneVectorEnv"),
    (STATIC, "prune_env.envs.static:StaticPruneEnv", "prune_env.envs.gym_vector:StaticPruneVectorEnv"),
):
    if _id not in registry:
        register(id=_id, entry_point=_entry, vector_entry_point=_vector)


def make_vec_env(env_id: str, n_envs: int = 1, **kwargs):
    """A natively batched, monitored SB3 VecEnv (see :func:`prune_env.envs.vec_env.make_vec_env`)."""
    from prune_env.envs.vec_env import make_vec_env as _make

    return _make(env_id, n_envs, **kwargs)


def __getattr__(name: str):
    """``prune_env.CheckpointError``, imported on first use (the package import stays light)."""
    if name == "CheckpointError":
        from prune_env.checkpoint import CheckpointError

        return CheckpointError
    raise AttributeError(f"module 'prune_env' has no attribute {name!r}")


__all__ = ["CheckpointError", "make_vec_env", "__version__"]
