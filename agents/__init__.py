"""Agents for the pruning environments: the SB3 algorithm registry and the paper's policies (Sec. 3.3)."""

from agents.policies import (
    LayerEncoderExtractor,
    RegularizedLstmPolicy,
    RegularizedMlpPolicy,
    ShapeEncoderExtractor,
    action_regularizer,
)
from agents.registry import ALGORITHMS, available_algorithms, get_spec, hyperparameters
from agents.saved import load_agent_and_env

__all__ = [
    "ALGORITHMS", "available_algorithms", "get_spec", "hyperparameters",
    "load_agent_and_env",
    "LayerEncoderExtractor", "ShapeEncoderExtractor", "RegularizedLstmPolicy", "RegularizedMlpPolicy", "action_regularizer",
]
