"""What the training scripts accept, checked before anything is created.

A typo in ``--hyperparams``, ``--env-kwargs`` or ``--preset`` must end in a usage error (exit 2)
that names the key, the accepted ones and the closest match, not in a traceback after the run
directory was made. :func:`check_run_arguments` does that for :class:`agents.config.RunConfig`'s
fields; ``train_agents.py``, ``finetune_cnn.py algorithm1`` and ``python -m agents.benchmark``
call it (or its parts) before writing anything.
"""

from __future__ import annotations

import argparse
import inspect
from typing import Any, Iterable

from agents.registry import ENV_IDS, get_spec
from prune_env.cli import check_choice, check_keys, env_keywords

#: hyper-parameters the registry's drivers read themselves (not the algorithm's constructor):
#: the initial std relative to the budget's keep ratio, the Gaussian exploration noise of deterministic actors
DRIVER_KEYS = ("relative_std", "action_noise_std")
#: keyword arguments the driver passes itself; an override would collide with them
RESERVED_KEYS = ("env", "policy", "seed", "device", "verbose", "tensorboard_log")


def init_keywords(cls: type) -> list[str]:
    """The keyword names ``cls(...)`` accepts, following ``**kwargs`` up the class hierarchy."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())
        names.update(p.name for p in params
                     if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self" and not p.name.startswith("_"))
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return sorted(names)


def _policy_class(spec: Any) -> type | None:
    policy = spec.policy
    if isinstance(policy, str):
        return getattr(spec.cls, "policy_aliases", {}).get(policy)
    return policy if isinstance(policy, type) else None


def hyperparameter_keys(algo: str) -> list[str]:
    """The ``--hyperparams`` keys ``algo`` accepts: its constructor's keywords and the driver's own."""
    spec = get_spec(algo)
    return sorted(set(init_keywords(spec.cls)) - set(RESERVED_KEYS) | set(DRIVER_KEYS))


def check_hyperparams(algo: str, hyperparams: dict, option: str = "--hyperparams") -> None:
    """Unknown keys (and ``policy_kwargs.KEY`` unknown to the policy class) as ``argparse.ArgumentTypeError``."""
    top = [key.split(".")[0] for key in hyperparams]
    check_keys(top, hyperparameter_keys(algo), option)
    policy = _policy_class(get_spec(algo))
    nested = [key.split(".", 1)[1] for key in hyperparams if key.startswith("policy_kwargs.")]
    if policy is not None and nested:
        accepted = set(init_keywords(policy)) - {"observation_space", "action_space", "lr_schedule"}
        check_keys([key.split(".")[0] for key in nested], accepted, f"{option} policy_kwargs")
    if isinstance(hyperparams.get("policy_kwargs"), dict) and policy is not None:
        accepted = set(init_keywords(policy)) - {"observation_space", "action_space", "lr_schedule"}
        check_keys(hyperparams["policy_kwargs"], accepted, f"{option} policy_kwargs")


def check_env_kwargs(env_ids: Iterable[str], env_kwargs: dict, option: str = "--env-kwargs") -> None:
    """Keys no environment of ``env_ids`` takes as ``argparse.ArgumentTypeError``."""
    accepted: set[str] = set()
    for env_id in env_ids:
        accepted.update(env_keywords(env_id))
    check_keys(env_kwargs, accepted - {"normalizer", "dual"}, option)


def check_budget_range(env_kwargs: dict, *, joint: bool = False, sweep_budgets: list[float] | None = None,
                       option: str = "--env-kwargs") -> None:
    """A budget range (``budget=0.3:0.7``, ``budget=[0.3,0.5]``) that parses, sweep budgets inside it, and
    no range where it is not supported (``--joint``); ``argparse.ArgumentTypeError`` naming the option."""
    from prune_env.envs.budgets import BudgetRange

    try:
        budget_range = BudgetRange.parse(env_kwargs.get("budget", 0.5), f"{option} budget")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if budget_range is None:
        if sweep_budgets:
            raise argparse.ArgumentTypeError("--sweep-budgets applies to an any-budget agent: give a budget range, "
                                             "e.g. --env-kwargs budget=0.3:0.7")
        return
    if joint:
        raise argparse.ArgumentTypeError(f"{option} budget={env_kwargs['budget']!r}: a budget range trains one runtime or "
                                         "static agent (--env); --joint takes one budget")
    for b in sweep_budgets or []:
        try:
            budget_range.check(b, "--sweep-budgets")
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None


def presets(algo: str) -> list[str]:
    return ["fast", *get_spec(algo).presets]


def check_run_arguments(*, algo: str, env_id: str | None, hyperparams: dict, env_kwargs: dict, preset: str,
                        joint: bool = False) -> None:
    """Every check above for one training run; ``argparse.ArgumentTypeError`` naming the option at fault.

    ``--algo`` itself must already have been resolved (:func:`agents.registry.get_spec`).
    """
    check_choice(preset, presets(algo), f"--preset (for --algo {algo})")
    check_hyperparams(algo, hyperparams)
    env_ids = list(ENV_IDS) if joint or env_id is None else [env_id.split(":")[-1]]
    check_env_kwargs(env_ids, env_kwargs)


__all__ = ["check_budget_range", "check_env_kwargs", "check_hyperparams", "check_run_arguments", "hyperparameter_keys",
           "init_keywords", "presets"]
