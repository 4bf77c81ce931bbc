"""The configuration of a training run, resolved once: what ``train_agents.py`` passes to :func:`agents.training.run`.

:class:`RunConfig` holds the command line's options; its :attr:`RunConfig.spec` is the algorithm's
registry entry (:class:`agents.registry.AlgoSpec`), looked up once per configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from agents.registry import RUNTIME, AlgoSpec, as_spec, env_kwargs_for, get_spec
from prune_env.envs.budgets import BudgetRange
from prune_env.envs.wrappers import DEFAULT_LEVELS
from prune_env.io import versions

#: the main job's runtime environment, under the user's ``--env-kwargs``: a budget with headroom
#: (on the embedded default, uniform keep 0.3 scores 90.8% against dense 98.9%, while at the paper's
#: 0.5 uniform is 3 images from dense) held on *average* over inputs, so that compute can move from
#: easy inputs to hard ones. ``budget=0.5 budget_mode=per_input`` is the paper's setting.
MAIN_JOB_ENV_KWARGS = {RUNTIME: {"budget": 0.3, "budget_mode": "average"}}


#: keywords only StaticPrune-v0 takes (dropped for the runtime env in joint runs)
STATIC_ONLY = ("eval_batch",)

@dataclass
class RunConfig:
    """Everything a training run needs (the command line's options)."""

    env_id: str = RUNTIME
    algo: str = "recurrent_ppo"
    timesteps: int | None = None
    seed: int = 0
    n_envs: int = 64
    env_kwargs: dict = field(default_factory=dict)
    hyperparams: dict = field(default_factory=dict)
    preset: str = "fast"
    out: str = "runs/agent"
    device: str = "auto"
    resume: bool = False
    static_agent: str | None = None
    runtime_agent: str | None = None
    joint: bool = False
    #: ``joint``: how the two agents learn, ``"joint"`` (one reward batch updates both, Algorithm 1's
    #: lines 12-15 as the paper runs them) or ``"alternating"`` (four rounds, each agent's ``learn()``
    #: against the other's frozen policy); None: :func:`joint_agent_update`'s default
    agent_update: str | None = None
    #: ``joint`` with the joint update: static episodes per joint batch, the ``n_envs`` images split
    #: among them (None: :func:`joint_plan`'s choice)
    joint_groups: int | None = None
    progress: bool = True
    checkpoint_every: int = 20_000
    command: str = ""
    #: score a runtime agent beside every headroom reference (static search, oracle, controls)
    references: bool = True
    #: rounds of the best-static-allocation search (each tries every ordered pair of layers)
    search_rounds: int = 40
    #: an any-budget agent (``budget`` a range): the budgets its evaluation sweeps (None: evenly spaced)
    sweep_budgets: list[float] | None = None
    #: ... how many evenly spaced ones (both ends of the range included)
    sweep_points: int = 5
    #: ... and the one-budget runs (directories) put beside it on the curve
    per_budget_runs: list[str] = field(default_factory=list)
    #: ... with the agent calibrated to each budget too (an offset search per budget on the training split)
    sweep_calibrate: bool = True
    #: a runtime agent's supervised start (:mod:`agents.supervised_start`): behaviour cloning of the label
    #: oracle's keep ratios on the training split before the reinforcement learning, the oracle's
    #: objective ``"loss"`` or ``"accuracy"``; None: none (the paper's start)
    supervised_start: str | None = None
    #: ... the allocations its oracle chooses among: ``"uniform"`` keep ratios or the ``"best_static"``
    #: allocation scaled (:data:`agents.supervised_start.FAMILIES`)
    supervised_family: str = "uniform"
    #: ... the uniform keep ratios of that family (None: the oracle's, ``ORACLE_LEVELS``)
    supervised_levels: list[float] | None = None

    @cached_property
    def spec(self) -> AlgoSpec:
        """The registry entry of :attr:`algo` (its class, policy, defaults), resolved once."""
        return get_spec(self.algo)

    def __getstate__(self) -> dict:
        """Pickled (for worker processes) without the resolved spec, which is looked up again there."""
        return {k: v for k, v in self.__dict__.items() if k != "spec"}


def default_timesteps(cfg: RunConfig, env_id: str) -> int:
    """The steps a run trains ``env_id``'s agent for: ``--timesteps`` or the algorithm's default."""
    return cfg.timesteps if cfg.timesteps is not None else cfg.spec.timesteps[env_id]


def on_policy(algo: str | AlgoSpec) -> bool:
    """Whether ``algo``'s class (a name or its resolved spec) is an SB3 on-policy algorithm (what the
    joint update can train)."""
    cls = as_spec(algo).cls
    return isinstance(cls, type) and issubclass(cls, OnPolicyAlgorithm)


def json_budget(env_kwargs: dict) -> dict:
    """``env_kwargs`` with a budget range in the form JSON keeps (``"low:high"`` or a list; a tuple
    would come back from ``run.json`` / ``env_spec.json`` as a list, a set of values)."""
    if "budget" not in env_kwargs:
        return env_kwargs
    budget_range = BudgetRange.parse(env_kwargs["budget"])
    return env_kwargs if budget_range is None else {**env_kwargs, "budget": budget_range.to_json()}


def run_record(cfg: RunConfig, env_id: str, env_kwargs: dict) -> dict:
    """What ``run.json`` records of a run: the environment, the algorithm, its settings and the versions."""
    spec = cfg.spec
    return {
        "env_id": env_id, "algo": cfg.algo, "seed": cfg.seed, "n_envs": cfg.n_envs, "preset": cfg.preset,
        "env_kwargs": json_budget(env_kwargs_for(spec, env_id, env_kwargs)), "hyperparams": cfg.hyperparams,
        "levels": list(DEFAULT_LEVELS) if spec.discrete else None, "command": cfg.command,
        "static_agent": cfg.static_agent, "runtime_agent": cfg.runtime_agent,
        **({"agent_update": cfg.agent_update} if cfg.joint else {}),
        **({"supervised_start": {"objective": cfg.supervised_start, "family": cfg.supervised_family,
                                 "levels": cfg.supervised_levels}} if cfg.supervised_start else {}),
        "versions": versions(),
    }


__all__ = ["MAIN_JOB_ENV_KWARGS", "STATIC_ONLY", "RunConfig", "default_timesteps", "json_budget", "on_policy", "run_record"]
