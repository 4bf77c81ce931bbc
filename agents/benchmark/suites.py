"""What the benchmark runs: its named environment configurations (*suites*) and its methods.

* :class:`Suite` / :data:`SUITES` / :func:`get_suite`: a named environment configuration with its
  step budget, default seeds, methods, baselines and references, and hyper-parameter overrides
  (``default``, ``default-per-input``, ``sparsity05``, ``sparsity05-per-input``, ``fashion-mnist``,
  ``legacy``, ``legacy-fixed-beta``, ``smoke``);
* :class:`BenchAlgo` / :func:`bench_algos`: how the benchmark trains each method (the registry
  algorithm, the environment, discrete levels, AMC's wrapper, the method's hyper-parameters);
* :data:`BASELINE_DESCRIPTIONS` / :data:`REFERENCE_DESCRIPTIONS`: the rows scored without training.

Nothing here runs anything (:mod:`agents.benchmark.jobs` does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from prune_env.envs.wrappers import DEFAULT_LEVELS, PURL_LEVELS
from prune_env.ids import RUNTIME, STATIC


# --------------------------------------------------------------------------- methods
@dataclass(frozen=True)
class BenchAlgo:
    """How the benchmark trains one method.

    Attributes:
        name: the benchmark's name.
        algo: the ``agents.registry`` algorithm it builds (hyper-parameters from there).
        env_id: the environment it trains on.
        env_kwargs: environment keywords on top of the suite's (e.g. the dense reward).
        levels: keep-ratio levels of a discrete-action agent (None: continuous).
        amc: wrap the environment in :class:`prune_env.envs.wrappers.VecAMCWrapper` (AMC state, clamping).
        hyperparams: overrides of the registry's hyper-parameters that make the method (e.g. AMC's
            exploration noise ``action_noise_std``); the suite's overrides go on top.
        description: one line, with the method it follows.
    """

    name: str
    algo: str
    env_id: str = RUNTIME
    env_kwargs: dict = field(default_factory=dict)
    levels: tuple[float, ...] | None = None
    amc: bool = False
    hyperparams: dict = field(default_factory=dict)
    description: str = ""


def bench_algos() -> dict[str, BenchAlgo]:
    """Every trained method of the benchmark by name (``python -m agents.benchmark list``)."""
    plain = {
        "recurrent_ppo": "the paper's agent: sb3-contrib RecurrentPPO (LSTM), layer encoders on raw GAP features, Eq. 13",
        "ppo": "PPO, MLP policy with Eq. 13", "a2c": "A2C, MLP policy with Eq. 13", "trpo": "TRPO (sb3-contrib)",
        "sac": "SAC", "td3": "TD3", "ddpg": "DDPG", "tqc": "TQC (sb3-contrib)",
        "ars": "ARS V2 (sb3-contrib ARS; linear policy on states normalised by running statistics)",
        "crossq": "CrossQ (sb3-contrib)",
    }
    algos = {name: BenchAlgo(name, name, description=text) for name, text in plain.items()}
    # deterministic actors explore only through action noise: the registry's TD3 / DDPG settings add
    # rl_zoo3's usual Gaussian noise, std 0.1 (``action_noise_std``, applied once, by build_model)
    for name in ("td3", "ddpg"):
        algos[name] = BenchAlgo(name, name, description=f"{plain[name]}, Gaussian action noise std 0.1")
    algos["dqn"] = BenchAlgo("dqn", "dqn", levels=tuple(DEFAULT_LEVELS), description="DQN on 4 keep-ratio levels, sparse reward")
    algos["qrdqn"] = BenchAlgo("qrdqn", "qrdqn", levels=tuple(DEFAULT_LEVELS),
                               description="QR-DQN on 4 keep-ratio levels, sparse reward (= the RNP-style agent)")
    algos["rnp"] = BenchAlgo("rnp", "qrdqn", levels=tuple(DEFAULT_LEVELS),
                             description="RNP-style (Lin et al. 2017): k = 4 keep-ratio levels per layer, Q-learning (QR-DQN) "
                                         "on the runtime features, sparse reward")
    algos["purl_dqn"] = BenchAlgo("purl_dqn", "dqn", env_kwargs={"reward": "dense"}, levels=PURL_LEVELS,
                                  description="PuRL-style (Gupta et al. 2020): DQN, dense per-layer rewards, "
                                              "keep ratios 0.1..1.0 in steps of 0.1")
    algos["amc_ddpg"] = BenchAlgo("amc_ddpg", "ddpg", env_id=STATIC, amc=True, hyperparams={"action_noise_std": 0.3},
                                  description="AMC-style (He et al. 2018): DDPG on StaticPrune-v0, AMC layer-embedding state, "
                                              "action clamping to the budget")
    return algos


BASELINE_DESCRIPTIONS = {
    "uniform": "uniform runtime keep ratio meeting the MAC budget, learned u_r ranking (FBS-like)",
    "l1_static": "uniform static keep ratio meeting the parameter budget, filter L1 ranking (Li et al. 2017)",
    "bn_static": "uniform static keep ratio meeting the parameter budget, BN |gamma| ranking (Network Slimming)",
    "static_uniform": "uniform static keep ratio meeting the parameter budget, learned u_s ranking",
    "random": "random keep ratio per layer and input, expected MACs = budget",
}


REFERENCE_DESCRIPTIONS = {
    "best_static": "best per-layer keep ratios, the same for every input, searched on the suite's training split "
                   "(coordinate exchange under the MAC budget): the best a non-adaptive agent can do",
    "oracle": "per-input oracle with the labels: one uniform level per input under the mean MAC budget "
              "(multiple-choice knapsack); top-1 of the accuracy knapsack, objective of the loss knapsack: an upper bound",
}


def is_baseline(name: str) -> bool:
    return name in BASELINE_DESCRIPTIONS


def is_reference(name: str) -> bool:
    return name in REFERENCE_DESCRIPTIONS


# --------------------------------------------------------------------------- suites
#: tiny hyper-parameters so that every algorithm makes a few updates in a smoke run
_SMOKE_ON_POLICY = {"n_steps": 8, "batch_size": 32, "n_epochs": 2}
_SMOKE_OFF_POLICY = {"learning_starts": 16, "batch_size": 16, "buffer_size": 2_000, "gradient_steps": 1}


def smoke_hyperparams(algo: str) -> dict:
    """Tiny overrides for ``algo`` (a registry name) that keep a smoke run to seconds."""
    if algo in ("ppo", "recurrent_ppo", "trpo"):
        return {k: v for k, v in _SMOKE_ON_POLICY.items() if not (algo == "trpo" and k == "n_epochs")}
    if algo == "a2c":
        return {"n_steps": 4}
    if algo == "ars":
        return {"n_delta": 2, "n_top": 1}
    return dict(_SMOKE_OFF_POLICY)



@dataclass
class Suite:
    """A named environment configuration with its step budget and defaults.

    Attributes:
        name: the suite's name.
        description: what it is.
        env_kwargs: environment keywords shared by every run (``RuntimePrune-v0`` keywords; the
            ``StaticPrune-v0`` runs add ``static_env_kwargs``).
        timesteps: environment steps (layer decisions) per training run.
        seeds: default seeds.
        algos: default algorithms.
        baselines: baselines evaluated without training.
        references: references evaluated without training (:data:`REFERENCE_DESCRIPTIONS`).
        n_envs: episodes run together in the batched VecEnv.
        last_n: training episodes the final return averages over.
        static_env_kwargs: extra keywords for ``StaticPrune-v0``.
        hyperparams: per registry algorithm, overrides of the registry's ``fast`` preset (a
            callable ``algo -> dict`` or a dict).
        needs_checkpoint: the suite needs ``--checkpoint`` (skipped with a message without it).
        search_rounds: rounds of the best-static-allocation search.
    """

    name: str
    description: str
    env_kwargs: dict
    timesteps: int
    seeds: tuple[int, ...] = (0, 1, 2)
    algos: tuple[str, ...] = ()
    baselines: tuple[str, ...] = ("uniform", "l1_static", "bn_static", "static_uniform", "random")
    references: tuple[str, ...] = ()
    n_envs: int = 64
    last_n: int = 500
    static_env_kwargs: dict = field(default_factory=lambda: {"eval_batch": 64})
    hyperparams: Callable[[str], dict] | dict = field(default_factory=dict)
    needs_checkpoint: bool = False
    search_rounds: int = 40

    def overrides(self, algo: str) -> dict:
        hp = self.hyperparams(algo) if callable(self.hyperparams) else self.hyperparams.get(algo, {})
        return dict(hp)


#: overrides of the registry's fast preset in the full-size suites: QR-DQN's default 200 quantiles
#: make its pairwise quantile loss (batch x 200 x 200) cost ~0.5 s per gradient step on one CPU
#: thread, about 25 minutes per 50k-step run; 25 quantiles (TQC's default) cost 64 times less.
#: CrossQ's sb3-contrib default critics are 2048 units wide with batch renormalisation: more than 16 minutes for
#: 20k steps on one loaded CPU thread; the suites give it the 64 x 64 networks of every other off-policy method.
FULL_SUITE_HYPERPARAMS = {"qrdqn": {"policy_kwargs.n_quantiles": 25}, "crossq": {"policy_kwargs.net_arch": [64, 64]}}

DEFAULT_ALGOS = ("recurrent_ppo", "ppo", "a2c", "sac", "td3", "ddpg", "tqc", "dqn", "qrdqn", "purl_dqn", "amc_ddpg")
#: the suites with headroom: every registered algorithm, the named methods (AMC, PuRL, RNP = qrdqn)
ALL_ALGOS = ("recurrent_ppo", "ppo", "a2c", "trpo", "ars", "sac", "td3", "ddpg", "tqc", "crossq", "dqn", "qrdqn",
             "purl_dqn", "amc_ddpg")
REFERENCES = ("best_static", "oracle")

#: every algorithm of a legacy suite computes its rewards on the same split (the registry's defaults may
#: name another for the main job: recurrent PPO's runtime agent trains on the training split)
SAME_DATA = {"split": "val"}
#: the suites with headroom train every algorithm on the training split, as the main job does (the
#: 144-image validation split of the embedded default is overfitted, docs/results/benchmarks.md section 1)
TRAIN_DATA = {"split": "train"}
#: steps of the suites with headroom: the main job's (recurrent PPO needs them at keep 0.3)
HEADROOM_STEPS = 300_000


def _headroom_suite(name: str, description: str, **env: Any) -> Suite:
    return Suite(name, description, env_kwargs={**TRAIN_DATA, **env}, timesteps=HEADROOM_STEPS, seeds=(0, 1, 2, 3, 4),
                 algos=ALL_ALGOS, references=REFERENCES, hyperparams=FULL_SUITE_HYPERPARAMS)


SUITES: dict[str, Suite] = {
    "default": _headroom_suite("default", "digitnet on scikit-learn digits at the main job's budget: keep 0.3 "
                               "(0.1005 of dense MACs) held on average over the inputs", budget=0.3, budget_mode="average"),
    "default-per-input": _headroom_suite("default-per-input", "as default with the paper's per-input budget (Eq. 10, "
                                         "moving beta)", budget=0.3, budget_mode="per_input"),
    "sparsity05": _headroom_suite("sparsity05", "digitnet on digits at the paper's sparsity 0.5 (0.2533 of dense MACs), "
                                  "average budget", budget=0.5, budget_mode="average"),
    "sparsity05-per-input": _headroom_suite("sparsity05-per-input", "digitnet on digits at sparsity 0.5, the paper's "
                                            "per-input budget", budget=0.5, budget_mode="per_input"),
    "fashion-mnist": Suite("fashion-mnist", "M-CifarNet (width from the checkpoint, 0.25 intended) on Fashion-MNIST from "
                           "--checkpoint, keep 0.4 (0.177 of dense MACs) on average over the inputs",
                           env_kwargs={"model": "mcifarnet", "dataset": "fashion-mnist", **TRAIN_DATA, "budget": 0.4,
                                       "budget_mode": "average"},
                           timesteps=HEADROOM_STEPS, seeds=(0, 1, 2, 3, 4), algos=ALL_ALGOS, references=REFERENCES,
                           needs_checkpoint=True, hyperparams=FULL_SUITE_HYPERPARAMS, search_rounds=8),
    "legacy": Suite("legacy", "digitnet on digits, the environments' defaults (keep-0.5 budgets per input, R_r = 1), "
                    "rewards on the validation split (the former default suite)",
                    env_kwargs=dict(SAME_DATA), timesteps=50_000, algos=DEFAULT_ALGOS, hyperparams=FULL_SUITE_HYPERPARAMS),
    "legacy-fixed-beta": Suite("legacy-fixed-beta", "as legacy, with the loss scale beta frozen at its calibrated value "
                               "(loss_lambda = 1): the return no longer follows the agent's own loss",
                               env_kwargs={"loss_lambda": 1.0, **SAME_DATA}, timesteps=50_000, algos=DEFAULT_ALGOS,
                               hyperparams=FULL_SUITE_HYPERPARAMS),
    "smoke": Suite("smoke", "the default suite's environment at tiny step budgets, for tests",
                   env_kwargs={**TRAIN_DATA, "budget": 0.3, "budget_mode": "average"}, timesteps=256,
                   seeds=(0, 1), algos=("ppo", "dqn"), baselines=("uniform", "random"), references=REFERENCES, n_envs=8,
                   last_n=16, static_env_kwargs={"eval_batch": 16}, hyperparams=smoke_hyperparams, search_rounds=1),
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise ValueError(f"suite must be one of {sorted(SUITES)}, got {name!r}")
    return SUITES[name]
