"""Algorithm registry: name -> stable-baselines3 / sb3-contrib class and default hyper-parameters per env.

Defaults are plain Python dicts. ``fast`` settings learn in about a minute and a half on the
embedded default (digitnet on digits, 2 CPU cores; recurrent PPO's runtime agent trains on the
training split, see its entry); the ``paper`` preset of ``recurrent_ppo`` holds the
paper's settings (Adam, learning rate 1e-6, batch 128; Sec. 4.1 and the rebuttal). Any
SB3-compatible class can also be named as ``"module:Class"``.
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass, field
from typing import Any

import sb3_contrib
import stable_baselines3 as sb3

from agents.ars import BatchedARS, NormalizedLinearPolicy
from agents.policies import LayerEncoderExtractor, RegularizedLstmPolicy, RegularizedMlpPolicy, ShapeEncoderExtractor
from prune_env.ids import ENV_IDS, RUNTIME, STATIC  # defined once there; the agents' side imports them from here


@dataclass
class AlgoSpec:
    """How to build one algorithm on the pruning environments.

    Attributes:
        cls: the algorithm class.
        policy: the policy (class or SB3 name).
        discrete: True if the algorithm needs the discrete-action wrapper.
        hyperparams: per env id, keyword arguments of ``cls`` (``policy_kwargs`` included).
        env_kwargs: per env id, environment keywords the algorithm expects (e.g. raw observations).
        presets: named alternative hyper-parameters per env id (e.g. ``"paper"``).
        timesteps: per env id, the default training length.
    """

    cls: type
    policy: Any = "MlpPolicy"
    discrete: bool = False
    hyperparams: dict[str, dict] = field(default_factory=dict)
    env_kwargs: dict[str, dict] = field(default_factory=dict)
    presets: dict[str, dict[str, dict]] = field(default_factory=dict)
    timesteps: dict[str, int] = field(default_factory=lambda: {RUNTIME: 100_000, STATIC: 8_000})
    #: whether the policy takes the Eq. 13 keywords and the initial-action setting
    regularized: bool = False


_ON_POLICY_COMMON = dict(gamma=1.0, gae_lambda=0.95, ent_coef=0.0, clip_range=0.2, max_grad_norm=0.5)

def _recurrent(extractor: type, policy: dict | None = None, **settings) -> dict:
    """Recurrent PPO as in the paper: ``extractor`` to 128 features, one LSTM of 128 shared by actor and
    critic; ``policy`` adds to (or, with None values, removes from) the policy keywords."""
    policy_kwargs = dict(
        features_extractor_class=extractor, features_extractor_kwargs=dict(features_dim=128),
        lstm_hidden_size=128, n_lstm_layers=1, shared_lstm=True, enable_critic_lstm=False,
        net_arch=dict(pi=[], vf=[]), action_reg_coef=1.0, **{"log_std_init": -1.5, **(policy or {})},
    )
    return dict(_ON_POLICY_COMMON, **settings, policy_kwargs={k: v for k, v in policy_kwargs.items() if v is not None})


#: The runtime agent (docs/results/benchmarks.md, "Runtime agents that adapt"): the LSTM and the layer
#: encoders trained by the value loss too (``critic_trains_lstm``: sb3-contrib's ``shared_lstm``
#: detaches the critic's input), exploration scaled to the budget (``relative_std``: the initial
#: std of the Gaussian is 0.3 x the budget's keep ratio, so that a small budget is not drowned in
#: noise; ``policy_kwargs.log_std_init`` overrides it) and a learning rate of 1e-3.
_RECURRENT_RUNTIME = _recurrent(LayerEncoderExtractor, policy=dict(critic_trains_lstm=True, log_std_init=None),
                                learning_rate=1e-3, n_steps=32, batch_size=512, n_epochs=5, relative_std=0.3)
_RECURRENT_STATIC = _recurrent(ShapeEncoderExtractor, learning_rate=1e-3, n_steps=16, batch_size=128, n_epochs=5)


def _paper(base: dict) -> dict:
    """The paper's agent settings (Sec. 4.1, rebuttal): Adam, learning rate 1e-6, batch 128."""
    return dict(base, learning_rate=1e-6, batch_size=128)


_PPO = dict(_ON_POLICY_COMMON, learning_rate=1e-3, n_steps=32, batch_size=512, n_epochs=5,
            policy_kwargs=dict(net_arch=[64, 64], log_std_init=-1.5, action_reg_coef=1.0))
_PPO_STATIC = dict(_PPO, n_steps=16, batch_size=128)
_A2C = dict(gamma=1.0, learning_rate=1e-3, n_steps=8, ent_coef=0.0,
            policy_kwargs=dict(net_arch=[64, 64], log_std_init=-1.5, action_reg_coef=1.0))
_OFF_POLICY = dict(gamma=1.0, learning_rate=1e-3, buffer_size=100_000, learning_starts=1_000, batch_size=256,
                   train_freq=1, gradient_steps=4, policy_kwargs=dict(net_arch=[64, 64]))
_DQN = dict(gamma=1.0, learning_rate=1e-3, buffer_size=100_000, learning_starts=1_000, batch_size=256,
            train_freq=1, gradient_steps=4, target_update_interval=500, exploration_fraction=0.3,
            policy_kwargs=dict(net_arch=[64, 64]))


def _both(runtime: dict, static: dict | None = None) -> dict[str, dict]:
    return {RUNTIME: runtime, STATIC: static if static is not None else runtime}


ALGORITHMS: dict[str, AlgoSpec] = {
    "recurrent_ppo": AlgoSpec(
        sb3_contrib.RecurrentPPO, RegularizedLstmPolicy, regularized=True,
        timesteps={RUNTIME: 300_000, STATIC: 8_000},
        hyperparams=_both(_RECURRENT_RUNTIME, _RECURRENT_STATIC),
        # rewards on the training split: on the embedded default the validation split has 144
        # images, and the allocations of lowest loss there score worst on the test split
        # (docs/results/benchmarks.md, section 1); the training split's 1,293 images generalise
        env_kwargs={RUNTIME: {"observation": "raw", "split": "train"}},
        presets={"paper": _both(_paper(_RECURRENT_RUNTIME), _paper(_RECURRENT_STATIC))},
    ),
    "ppo": AlgoSpec(sb3.PPO, RegularizedMlpPolicy, regularized=True, hyperparams=_both(_PPO, _PPO_STATIC)),
    "a2c": AlgoSpec(sb3.A2C, RegularizedMlpPolicy, regularized=True, hyperparams=_both(_A2C)),
    "trpo": AlgoSpec(sb3_contrib.TRPO, hyperparams=_both(dict(gamma=1.0, learning_rate=1e-3, n_steps=32, batch_size=512,
                                                              policy_kwargs=dict(net_arch=[64, 64], log_std_init=-1.5)))),
    "sac": AlgoSpec(sb3.SAC, hyperparams=_both(_OFF_POLICY)),
    "td3": AlgoSpec(sb3.TD3, hyperparams=_both(dict(_OFF_POLICY, action_noise_std=0.1))),
    "ddpg": AlgoSpec(sb3.DDPG, hyperparams=_both(dict(_OFF_POLICY, action_noise_std=0.1))),
    "tqc": AlgoSpec(sb3_contrib.TQC, hyperparams=_both(_OFF_POLICY)),
    # sb3-contrib's ARS, each candidate scored on one episode per environment, states normalised (ARS V2,
    # agents/ars.py)
    "ars": AlgoSpec(BatchedARS, NormalizedLinearPolicy,
                    hyperparams=_both(dict(n_delta=8, n_top=4, learning_rate=0.02, delta_std=0.05))),
    "dqn": AlgoSpec(sb3.DQN, discrete=True, hyperparams=_both(_DQN)),
    # 25 quantiles instead of 200: each gradient step is ~8x cheaper on a CPU, with no loss here
    "qrdqn": AlgoSpec(sb3_contrib.QRDQN, discrete=True,
                      hyperparams=_both(dict(_DQN, policy_kwargs=dict(net_arch=[64, 64], n_quantiles=25)))),
}
if hasattr(sb3_contrib, "CrossQ"):
    ALGORITHMS["crossq"] = AlgoSpec(sb3_contrib.CrossQ, hyperparams=_both(dict(gamma=1.0, learning_rate=1e-3, buffer_size=100_000,
                                                                             learning_starts=1_000, batch_size=256, train_freq=1,
                                                                             gradient_steps=4)))

DEFAULT_ALGO = "recurrent_ppo"


def env_kwargs_for(algo: str | AlgoSpec, env_id: str, user_kwargs: dict | None = None) -> dict:
    """The environment keywords ``algo`` (a name or its resolved spec) trains ``env_id`` with: the
    registry's (e.g. raw observations for the paper's layer encoders), then the user's on top."""
    return {**as_spec(algo).env_kwargs.get(env_id.split(":")[-1], {}), **(user_kwargs or {})}


def available_algorithms() -> list[str]:
    return sorted(ALGORITHMS)


def load_class(path: str) -> type:
    """Import ``"module:Class"``: a class with ``learn``, ``save`` and ``load``, as SB3's algorithms have.

    Raises:
        ValueError: not of the form ``module:Class``.
        ImportError: the module does not import.
        AttributeError: the module has no such name.
        TypeError: the name is not such a class (a module, a function, an instance ...).
    """
    module, _, name = path.partition(":")
    if not module or not name:
        raise ValueError(f"algo must be a registry name {available_algorithms()} or 'module:Class', got {path!r}")
    imported = importlib.import_module(module)
    if not hasattr(imported, name):
        raise AttributeError(f"algo {path!r}: module {module!r} has no attribute {name!r}")
    cls = getattr(imported, name)
    if not isinstance(cls, type) or not all(callable(getattr(cls, m, None)) for m in ("learn", "save", "load")):
        raise TypeError(f"algo {path!r} names a {type(cls).__name__}, not an algorithm class: expected a class with "
                        f"learn, save and load, such as a stable-baselines3 algorithm (e.g. 'stable_baselines3:PPO')")
    return cls


def get_spec(algo: str) -> AlgoSpec:
    """The registry entry, or a generic one for a ``module:Class`` name (imported on each call:
    resolve it once, as :attr:`agents.config.RunConfig.spec` does, and pass the spec on)."""
    if algo in ALGORITHMS:
        return ALGORITHMS[algo]
    if ":" in algo:
        cls = load_class(algo)
        return AlgoSpec(cls, hyperparams=_both({}))
    raise ValueError(f"algo must be one of {available_algorithms()} or 'module:Class', got {algo!r}")


def as_spec(algo: str | AlgoSpec) -> AlgoSpec:
    """``algo`` itself when it is a resolved spec, else :func:`get_spec` of the name."""
    return algo if isinstance(algo, AlgoSpec) else get_spec(algo)


class LinearSchedule:
    """``start`` at the beginning of training, ``end`` at its end, linear in between (picklable)."""

    def __init__(self, start: float, end: float = 0.0):
        self.start, self.end = float(start), float(end)

    def __call__(self, progress_remaining: float) -> float:
        return self.end + (self.start - self.end) * progress_remaining

    def __repr__(self) -> str:
        return f"lin_{self.start:g}_{self.end:g}"


#: hyper-parameters that may be schedules of the training progress
SCHEDULED = ("learning_rate", "clip_range", "clip_range_vf")


def resolve_schedules(params: dict) -> dict:
    """Turn RL Zoo-style schedule strings into schedules, in place: ``"lin_3e-4"`` decays linearly
    from 3e-4 to 0 over training, ``"lin_3e-4_3e-5"`` from 3e-4 to 3e-5."""
    for key in SCHEDULED:
        value = params.get(key)
        if isinstance(value, str):
            parts = value.split("_")
            try:
                if parts[0] != "lin" or len(parts) not in (2, 3):
                    raise ValueError
                params[key] = LinearSchedule(*(float(v) for v in parts[1:]))
            except ValueError:
                raise ValueError(f"{key}: expected a number, 'lin_START' or 'lin_START_END', got {value!r}") from None
    return params


def hyperparameters(algo: str | AlgoSpec, env_id: str, preset: str = "fast", overrides: dict | None = None) -> dict:
    """The keyword arguments to build ``algo`` (a name or its resolved spec) on ``env_id``: preset
    defaults, then ``overrides``.

    Overrides may reach into ``policy_kwargs`` with dotted keys, e.g. ``policy_kwargs.lstm_hidden_size``.
    """
    env_id = env_id.split(":")[-1]
    if env_id not in ENV_IDS:
        raise ValueError(f"env must be one of {list(ENV_IDS)}, got {env_id!r}")
    spec = as_spec(algo)
    if preset == "fast":
        params = copy.deepcopy(spec.hyperparams.get(env_id, {}))
    elif preset in spec.presets:
        params = copy.deepcopy(spec.presets[preset][env_id])
    else:
        name = algo if isinstance(algo, str) else spec.cls.__name__
        raise ValueError(f"preset must be one of {['fast', *spec.presets]} for algo {name!r}, got {preset!r}")
    for key, value in (overrides or {}).items():
        target = params
        *parents, leaf = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[leaf] = value
    return params
