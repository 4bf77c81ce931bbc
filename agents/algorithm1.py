"""The whole of the paper's Algorithm 1 (Appendix B; schedule from the rebuttal).

From a checkpoint that went through pre-training and importance learning (lines 1-7), repeat K
times: train the runtime and the static agent for N1 batches with the CNN frozen (lines 12-15),
then fine-tune the CNN, ``f`` and ``u_s`` for N2 batches with the agents frozen, the masks
coming from their deterministic actions (lines 16-19). Each iteration's train / test accuracy,
MAC ratio and parameter ratio go to ``history.csv`` and a figure like the paper's Fig. 5.

How the agents learn in lines 12-15 (``agent_update``):

* ``"joint"`` (the paper): both agents act in the same episodes, static ratios for the network
  and runtime ratios per input, and one reward batch updates both (line 13 forwards the entire
  model, line 14 computes ``R^r`` and ``R^s`` from it, line 15 updates both by their PPO losses;
  :mod:`agents.joint`). A batch forwards ``batch_size`` images once, shared by its
  ``static_episodes`` static episodes (``joint_group_images`` each): the runtime agent learns from
  as many images as in alternation, the static agent from as many episodes, on one forward pass.
* ``"alternating"``: the runtime agent trains for N1 batches of ``batch_size`` images against the
  static agent's frozen policy (in the first iteration: the budget's uniform static ratio), then
  the static agent for N1 batches of ``static_episodes`` episodes against the runtime agent's.

One runtime agent for a range of MAC budgets (``budget="0.3:0.7"`` or a list): the
runtime agent trains over the range (each episode draws its budget, ``agent_update="alternating"``,
the default of a range), the static agent at the range's middle (:func:`check_reachable`: under
``R_r`` a layer keeps about ``R_r d_r + (1 - R_r) d_s`` of its channels where the runtime agent keeps
fewer than the static one, and ``d_s + R_r (d_r - d_s)`` where it keeps more, so one static ratio
must let every budget of the range be reached), and the CNN fine-tunes under
a mix of budgets as slimmable networks do: each batch is split into ``budget_mix`` groups, the
first at the lowest budget, the second at the highest and the others at budgets drawn from the
range (the sandwich rule of Yu & Huang, "Universally Slimmable Networks", 2019). Every iteration
is evaluated at ``eval_budgets`` (``history_budgets.png``) and the run ends with the agent's sweep
over them (``any_budget.{json,csv,png}``: the agent beside uniform, the best static allocation and
the calibrated agent at each budget, on the fine-tuned network).

Nothing trained is lost to an interruption: Ctrl-C in the agents' phase saves the agents where
they are, Ctrl-C in the CNN phase saves the fine-tuning in progress (``cnn_phase.pt``, see
:func:`prune_env.cnn.train_stage`), and ``resume=True`` continues both from there (the agents
train only the steps the iteration had left); a kill without warning resumes from the last
finished iteration.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from agents.config import RunConfig, run_record
from agents.evaluate import evaluate_any_budget, evaluate_run, test_task
from agents.joint import AGENT_UPDATES, JointTrainer, resolve_agent_update, rollout_batches  # noqa: F401 (AGENT_UPDATES: re-exported)
from agents.registry import RUNTIME, STATIC
from agents.saved import CHECKPOINT_FILE, MODEL_FILE, STATE_FILE, agent_policy, atomic_model_save, reward_state
from agents.training import build_joint_trainer, joint_env_kwargs, learn, learn_jointly, prepare_agent
from prune_env.checkpoint import load_checkpoint, read_checkpoint
from prune_env.checkpoint import save_checkpoint as save_cnn_checkpoint
from prune_env.cnn import epochs_for_batches, train_stage
from prune_env.data import load_dataset
from prune_env.envs.budgets import BudgetRange
from prune_env.envs.task import JOINT_TRADEOFF_RATE, PruningTask
from prune_env.evaluation.at_budget import budgeted_policy, keep_ratios_at_budget
from prune_env.evaluation.split import evaluate_policies
from prune_env.io import write_csv, write_json
from prune_env.nets.gated import GatedNet
from prune_env.policies import KeepRatioPolicy

#: K iterations, N1 agent batches, N2 CNN batches per iteration (rebuttal: CIFAR-10 and ImageNet),
#: plus small settings for the embedded default. ``static_episodes`` is the number of static
#: episodes per agent batch (the paper's is one; small datasets need more to learn in few batches).
PRESETS: dict[str, dict[str, Any]] = {
    "cifar10": dict(iterations=40, agent_batches=1560, cnn_batches=780, batch_size=128, lr=1e-3, static_episodes=1),
    "imagenet": dict(iterations=64, agent_batches=1200, cnn_batches=600, batch_size=128, lr=1e-4, static_episodes=1,
                     final_cnn_batches=200_000),
    "fashion-mnist": dict(iterations=6, agent_batches=120, cnn_batches=200, batch_size=128, lr=1e-3, static_episodes=4),
    "digits": dict(iterations=4, agent_batches=100, cnn_batches=60, batch_size=64, lr=1e-3, static_episodes=8),
}
ALGORITHM1_STATE = "algorithm1_state.json"
#: the CNN phase of the iteration in progress (removed once the iteration is saved)
CNN_PHASE = "cnn_phase.pt"
#: static episodes run together (each one evaluates a batch of images)
STATIC_ENVS = 8


@dataclass
class Algorithm1Config:
    """Settings of one Algorithm 1 run (see :data:`PRESETS` for the schedules)."""

    checkpoint: str
    out: str = "runs/algorithm1"
    iterations: int = 4
    agent_batches: int = 100
    cnn_batches: int = 60
    batch_size: int = 64
    lr: float = 1e-3
    static_episodes: int = 8
    final_cnn_batches: int = 0
    #: the budget (a sparsity, or ``budget_kind`` units): one number, or a range ``"low:high"`` /
    #: ``(low, high)`` / a list of values for one any-budget runtime agent (module docstring)
    budget: float | str | tuple | list = 0.5
    tradeoff_rate: float = JOINT_TRADEOFF_RATE
    algo: str = "recurrent_ppo"
    preset: str = "fast"
    seed: int = 0
    n_envs: int = 64
    device: str = "cpu"
    agent_device: str | None = None  # the agents' networks (default: ``device``)
    data_on_device: bool = False  # CNN batches indexed from a tensor on ``device`` (see train_stage)
    data_root: str | None = None
    env_kwargs: dict = field(default_factory=dict)
    resume: bool = False
    progress: bool = True
    command: str = ""
    #: lines 12-15: ``"joint"`` (both agents in one episode, one reward batch updates both; the
    #: default: as accurate as the alternation on digits, never over the MAC budget there, with one
    #: forward pass for both agents, docs/results/algorithm1.md) or ``"alternating"`` (each agent against
    #: the other's frozen policy)
    agent_update: str | None = None  # None: "joint" for one budget, "alternating" for a range
    #: joint batches per update of both agents (None: as many as fill the static agent's rollout
    #: in alternation, ``n_steps x n_envs`` of its hyper-parameters; see :func:`joint_batches_per_update`)
    joint_update_batches: int | None = None
    #: images per static episode in a joint batch (None: ``batch_size // static_episodes``, so that a
    #: batch forwards ``batch_size`` images as in the paper; ``batch_size`` gives each static episode
    #: the images it evaluates in alternation, at ``static_episodes`` times the forward passes)
    joint_group_images: int | None = None
    #: a budget range: groups of each CNN batch, each pruned at its own budget (lowest, highest, then
    #: drawn from the range: the sandwich rule)
    budget_mix: int = 4
    #: a budget range: the budgets each iteration is evaluated at and the final sweep covers (None:
    #: five evenly spaced over the range, or a list's values)
    eval_budgets: list[float] | None = None

    def __post_init__(self) -> None:
        budget_range = BudgetRange.parse(self.budget)
        if budget_range is not None:
            self.budget = budget_range.to_json()
            if self.eval_budgets is not None:
                self.eval_budgets = [budget_range.check(b, "eval_budgets") for b in self.eval_budgets]
        elif self.eval_budgets is not None:
            raise ValueError(f"eval_budgets is for a budget range, got budget={self.budget!r}")
        # an off-policy algo with "joint" (the default of one budget) is refused when the agents are built
        self.agent_update = resolve_agent_update(self.agent_update, budget_range=None if budget_range is None else self.budget)
        if isinstance(self.budget_mix, bool) or not isinstance(self.budget_mix, (int, np.integer)) or self.budget_mix < 1:
            raise ValueError(f"budget_mix must be an integer >= 1, got {self.budget_mix!r}")
        for name in ("joint_update_batches", "joint_group_images"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value!r}")


def mixed_budgets(budget_range: BudgetRange, groups: int, rng: np.random.Generator) -> list[float]:
    """The budgets of one CNN batch's ``groups`` groups: the range's lowest, its highest, then budgets
    drawn from it (the sandwich rule); one group: a drawn budget."""
    if groups == 1:
        return [budget_range.sample(rng)]
    return [budget_range.low, budget_range.high, *(budget_range.sample(rng) for _ in range(groups - 2))]


def agent_ratio_fn(task: PruningTask, runtime_policy: KeepRatioPolicy, static_ratios: Any, *,
                   budget_mix: int = 4, seed: int = 0):
    """A ``ratio_fn`` for :func:`prune_env.cnn.train_stage`: the frozen agents' deterministic keep ratios.

    The runtime agent observes the network being fine-tuned (its current weights), as it will at
    deployment; the static ratios are fixed. An any-budget runtime agent (``task.budget_range``)
    prunes each batch in ``budget_mix`` groups of consecutive images, each at a budget of
    :func:`mixed_budgets` (drawn from a generator seeded with ``seed``): the CNN learns under a mix
    of budgets, each group's observations carrying its budget as in the environment.
    """
    static = [float(r) for r in np.asarray(static_ratios).reshape(-1)]
    budget_range = task.budget_range
    rng = np.random.default_rng(seed)

    def ratio_fn(net: GatedNet, images: Tensor) -> tuple[Tensor, list[float]]:
        frozen, task.net = task.net, net
        try:
            with torch.no_grad():
                if budget_range is None:
                    state = task.rollout(images, runtime_policy, static)
                    rows = [torch.as_tensor(r, dtype=torch.float32).expand(images.shape[0]) for r in state.runtime_ratios]
                    ratios = torch.stack(rows, 1)
                else:
                    groups = torch.arange(images.shape[0]).tensor_split(min(budget_mix, images.shape[0]))
                    budgets = mixed_budgets(budget_range, len(groups), rng)
                    ratios = torch.cat([torch.as_tensor(keep_ratios_at_budget(task, runtime_policy, images[g], b, static),
                                                        dtype=torch.float32) for g, b in zip(groups, budgets)])
        finally:
            task.net = frozen
        return ratios.to(images.device), static

    return ratio_fn


def check_reachable(task: PruningTask, static_ratio: float) -> None:
    """A ValueError naming ``budget`` and ``tradeoff_rate`` when the uniform ``static_ratio`` does not let
    the runtime agent reach both ends of ``task``'s budget range under its ``R_r``: the kept fraction of
    a layer runs from ``(1 - R_r) d_s + R_r alpha`` (runtime keep ratio ``alpha``) to ``d_s + R_r (1 - d_s)``
    (keep ratio 1), nested importance orders assumed."""
    rate, alpha = task.tradeoff_rate, task.cfg.alpha
    low, high = (1 - rate) * static_ratio + rate * alpha, static_ratio + rate * (1 - static_ratio)
    need_low, need_high = task.keep_ratio_of(task.budget_range.low), task.keep_ratio_of(task.budget_range.high)
    if need_low < low - 1e-6 or need_high > high + 1e-6:
        raise ValueError(f"budget={task.cfg.budget!r} with tradeoff_rate={rate:g}: a static keep ratio of {static_ratio:.3f} "
                         f"(the range's middle) lets the runtime agent keep {low:.3f}-{high:.3f} of the channels, not "
                         f"{need_low:.3f}-{need_high:.3f}; narrow the range or raise tradeoff_rate (1: pure runtime pruning)")


def _sync_weights(net: GatedNet, *tasks: PruningTask) -> None:
    """Copy the fine-tuned CNN into the environments' frozen copies."""
    state = net.state_dict()
    for task in tasks:
        task.net.load_state_dict(state)


def _plot_history(rows: list[dict], path: Path) -> None:
    """Accuracy per iteration under the agents' masks (the paper's Fig. 5): train, validation and test,
    beside the dense network's test accuracy; and the MAC and parameter ratios against both budgets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    it = [r["iteration"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    ax1.plot(it, [100 * r["train_accuracy"] for r in rows], "o-", color="tab:blue", label="train (last CNN epoch)")
    if all(r.get("val_accuracy") is not None for r in rows):
        ax1.plot(it, [100 * r["val_accuracy"] for r in rows], "^-", color="tab:green", label="validation")
    ax1.plot(it, [100 * r["test_accuracy"] for r in rows], "s-", color="tab:orange", label="test")
    if all(r.get("dense_test_accuracy") is not None for r in rows):
        ax1.plot(it, [100 * r["dense_test_accuracy"] for r in rows], "--", color="0.3", label="test, dense (nothing pruned)")
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("top-1 accuracy (%)")
    ax1.set_title("accuracy under the agents' masks", fontsize=10)
    ax1.legend(fontsize=8, loc="best")
    ax2.plot(it, [r["macs_ratio"] for r in rows], "o-", color="tab:purple", label="MAC ratio (mean over inputs)")
    ax2.plot(it, [r["params_ratio"] for r in rows], "s-", color="tab:brown", label="stored-parameter ratio")
    ax2.axhline(rows[-1]["budget"], color="tab:purple", ls="--", lw=1, label=f"MAC budget ({rows[-1]['budget']:.3f})")
    if rows[-1].get("params_budget") is not None:
        ax2.axhline(rows[-1]["params_budget"], color="tab:brown", ls=":", lw=1.5,
                    label=f"parameter budget ({rows[-1]['params_budget']:.3f})")
    ax2.set_xlabel("iteration")
    ax2.set_ylim(0, 1.05)
    ax2.set_title("cost (fraction of dense)", fontsize=10)
    ax2.legend(fontsize=8, loc="upper right")
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def budget_columns(test: PruningTask, runtime_policy: Any, static_ratios: Any, budgets: list[float]) -> dict:
    """An any-budget runtime agent on ``test`` at each budget: ``test_accuracy@B``, ``macs_ratio@B``,
    ``macs_budget@B`` and ``within_budget@B`` (the fraction of inputs within it), ``B`` as ``%g``."""
    columns = {}
    for b in budgets:
        held = budgeted_policy(test, runtime_policy, b)
        with test.at_budget(b):
            m = evaluate_policies(test, held, static_ratios)
        columns.update({f"test_accuracy@{b:g}": m["accuracy"], f"macs_ratio@{b:g}": m["macs_ratio"],
                        f"macs_budget@{b:g}": m["budget"], f"within_budget@{b:g}": m["within_budget"]})
    return columns


def _plot_budget_history(rows: list[dict], path: Path) -> None:
    """An any-budget run per iteration: test accuracy at each evaluated budget, and each budget's
    mean MAC ratio as a fraction of that budget (1 = on budget)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    budgets = [k.split("@", 1)[1] for k in rows[-1] if k.startswith("test_accuracy@")]
    it = [r["iteration"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    colors = plt.cm.viridis(np.linspace(0.05, 0.9, len(budgets)))
    for b, color in zip(budgets, colors):
        ax1.plot(it, [100 * r[f"test_accuracy@{b}"] for r in rows], "o-", color=color, label=f"budget {b}")
        ax2.plot(it, [r[f"macs_ratio@{b}"] / r[f"macs_budget@{b}"] for r in rows], "o-", color=color,
                 label=f"budget {b} (MAC budget {rows[-1][f'macs_budget@{b}']:.3f})")
    ax1.set_ylabel("test top-1 (%)")
    ax1.set_title("one runtime agent at each budget", fontsize=10)
    ax2.axhline(1.0, color="0.3", ls="--", lw=1)
    ax2.axhline(1.01, color="0.3", ls=":", lw=1, label="budget + 1%")
    ax2.set_ylabel("mean MACs / MAC budget")
    ax2.set_title("budget compliance", fontsize=10)
    for ax in (ax1, ax2):
        ax.set_xlabel("iteration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _write_history(rows: list[dict], out: Path) -> None:
    write_csv(rows, out / "history.csv", fieldnames=list(dict.fromkeys(k for r in rows for k in r)))  # resumed: old + new keys
    write_json(rows, out / "history.json")
    _plot_history(rows, out / "history.png")
    if any(k.startswith("test_accuracy@") for k in rows[-1]):
        _plot_budget_history(rows, out / "history_budgets.png")


def joint_group_images(cfg: Algorithm1Config) -> int:
    """Images per static episode of a joint batch: ``cfg.joint_group_images``, or the batch's
    ``batch_size`` images shared by its ``static_episodes`` static episodes (the paper's batch of
    128 images with one static episode when ``static_episodes = 1``)."""
    if cfg.joint_group_images is not None:
        return int(cfg.joint_group_images)
    return max(1, cfg.batch_size // cfg.static_episodes)


def joint_batches_per_update(cfg: Algorithm1Config, static_model: Any, num_layers: int) -> int:
    """Joint batches per update: ``cfg.joint_update_batches``, or as many as hold the static
    agent's rollout in alternation (its ``n_steps x n_envs`` steps, ``static_episodes x L`` a batch),
    so that the static agent learns from as many episodes per update in both modes."""
    if cfg.joint_update_batches is not None:
        return int(cfg.joint_update_batches)
    return rollout_batches(static_model, cfg.static_episodes, num_layers)


def _joint_trainer(cfg: Algorithm1Config, models: dict, venvs: dict) -> JointTrainer:
    """The joint update's trainer over the runtime environment's task; the reward states (``beta``,
    ``lambda``) are the two environments' own objects, so they are saved and restored as in alternation."""
    layers = venvs[RUNTIME].unwrapped.env.task.num_layers
    return build_joint_trainer(models, venvs, algo=cfg.algo, groups=cfg.static_episodes, images=joint_group_images(cfg),
                               batches_per_update=joint_batches_per_update(cfg, models[STATIC], layers), seed=cfg.seed)


def run_algorithm1(cfg: Algorithm1Config) -> dict:
    """Run (or resume) Algorithm 1; returns the final metrics (also in ``out/metrics.json``)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cnn_path = out / "cnn.pt"
    state_path = out / ALGORITHM1_STATE
    done, rows, bases = 0, [], {}
    checkpoint = cfg.checkpoint
    if cfg.resume and state_path.is_file():
        saved = json.loads(state_path.read_text())
        started = saved.get("config", {}).get("agent_update", "alternating")  # runs before the joint update alternated
        if started != cfg.agent_update:
            raise ValueError(f"resume: {str(out)!r} was started with agent_update={started!r}, not {cfg.agent_update!r}")
        done, rows = saved["iterations_done"], saved["history"]
        bases = saved.get("agent_timesteps", {})  # the agents' steps when that iteration finished
        checkpoint = str(cnn_path)
    # the environments are built from the starting checkpoint, whatever the iteration: their
    # observation encoders and reward scale stay calibrated as the agents first saw them
    # rewards on the validation split (Algorithm 1 fine-tunes the CNN on the training split)
    env_kwargs = {"budget": cfg.budget, "tradeoff_rate": cfg.tradeoff_rate, "device": cfg.device, "split": "val",
                  **cfg.env_kwargs, "checkpoint": cfg.checkpoint}
    if cfg.data_root is not None:
        env_kwargs["data_root"] = cfg.data_root
    run_cfg = RunConfig(algo=cfg.algo, preset=cfg.preset, seed=cfg.seed, n_envs=cfg.n_envs,
                        device=cfg.agent_device or cfg.device,
                        resume=cfg.resume, progress=False, checkpoint_every=10**9, command=cfg.command)
    # a static episode evaluates a whole batch of images, so fewer of them run together
    static_cfg = RunConfig(**{**asdict(run_cfg), "n_envs": min(cfg.n_envs, STATIC_ENVS)})
    models, venvs = {}, {}
    per_env = joint_env_kwargs(cfg.algo, {**env_kwargs, "eval_batch": cfg.batch_size})
    budget_range = BudgetRange.parse(cfg.budget)
    if budget_range is not None:  # one static agent, at the range's middle, serves every budget
        per_env[STATIC]["budget"] = budget_range.reference
    for env_id, sub, rc in ((RUNTIME, "runtime", run_cfg), (STATIC, "static", static_cfg)):
        (out / sub).mkdir(exist_ok=True)
        kwargs = per_env[env_id]
        write_json(run_record(rc, env_id, kwargs), out / sub / "run.json")
        models[env_id], venvs[env_id], _ = prepare_agent(rc, env_id, out / sub, kwargs)
    runtime_env, static_env = venvs[RUNTIME].unwrapped.env, venvs[STATIC].unwrapped.env
    runtime_policy = agent_policy(models[RUNTIME], {"algo": cfg.algo})
    # an any-budget runtime agent partners the static agent at the static agent's budget
    static_env.set_runtime_policy(runtime_policy if budget_range is None
                                  else budgeted_policy(runtime_env.task, runtime_policy, budget_range.reference))
    if budget_range is not None:
        check_reachable(runtime_env.task, static_env.task.static_budget_keep_ratio)
    # before the static agent has acted, runtime episodes run under the budget's uniform static
    # ratio (a range: its middle's), so that the MAC budget is reachable for any R_r
    runtime_env.set_static_policy(agent_policy(models[STATIC], {"algo": cfg.algo}) if done > 0
                                 else static_env.task.static_budget_keep_ratio)

    joint = _joint_trainer(cfg, models, venvs) if cfg.agent_update == "joint" else None

    net, _ = load_checkpoint(checkpoint, device=cfg.device)
    splits = load_dataset(runtime_env.task.dataset, cfg.data_root)
    test = test_task(runtime_env.task)
    _sync_weights(net, runtime_env.task, static_env.task, test)
    layers = runtime_env.task.num_layers
    eval_budgets = None
    if budget_range is not None:
        from prune_env.evaluation.budget_sweep import sweep_budgets

        eval_budgets = cfg.eval_budgets or sweep_budgets(budget_range)
    runtime_steps = cfg.agent_batches * cfg.batch_size * layers
    static_steps = cfg.agent_batches * cfg.static_episodes * layers
    start = time.time()
    from prune_env.progress import bar as progress_bar

    bar = progress_bar(cfg.iterations, "Algorithm 1", "iteration", initial=done, disable=not cfg.progress)
    for k in range(done + 1, cfg.iterations + 1):
        # lines 12-15: the agents learn on the frozen CNN
        phase_start = time.time()
        if joint is not None:
            base = bases.get(RUNTIME, models[RUNTIME].num_timesteps if k > 1 else 0)
            per_batch = joint.steps_per_batch["runtime"]  # a resumed iteration trains the batches it had left
            learn_jointly(joint, models, venvs, out, cfg.agent_batches - (models[RUNTIME].num_timesteps - base) // per_batch)
        else:
            for env_id, sub, steps in ((RUNTIME, "runtime", runtime_steps), (STATIC, "static", static_steps)):
                # up to the steps at the end of the last iteration plus N1's: a resumed iteration trains what it had left
                base = bases.get(env_id, models[env_id].num_timesteps if k > 1 else 0)
                learn(models[env_id], venvs[env_id], out / sub, base + steps, run_cfg, reset=False,
                      prefix=env_id.split("-")[0])
        agent_seconds = time.time() - phase_start
        static_ratios = runtime_env.set_static_policy(agent_policy(models[STATIC], {"algo": cfg.algo}))
        # lines 16-19: the CNN, f and u_s learn under the frozen agents' masks
        batches = cfg.cnn_batches + (cfg.final_cnn_batches if k == cfg.iterations else 0)
        # N2 may be longer than an epoch (CIFAR-10: 780 batches of 128 = 2 epochs)
        epochs, per_epoch = epochs_for_batches(batches, len(splits.train), cfg.batch_size)
        phase_path = out / CNN_PHASE  # continued when an interrupted run of this iteration saved it
        resume_phase = cfg.resume and phase_path.is_file() and read_checkpoint(phase_path).get("iteration") == k
        history = train_stage(net, "finetune", splits, epochs=epochs, steps_per_epoch=per_epoch, lr=cfg.lr,
                              batch_size=cfg.batch_size, device=cfg.device, seed=cfg.seed + k, progress=False,
                              ratio_fn=agent_ratio_fn(runtime_env.task, runtime_policy, static_ratios,
                                                      budget_mix=cfg.budget_mix, seed=cfg.seed + k),
                              tradeoff_rate=cfg.tradeoff_rate, data_on_device=cfg.data_on_device,
                              checkpoint_path=phase_path, resume=resume_phase, checkpoint_extra={"iteration": k})
        net.eval()
        _sync_weights(net, runtime_env.task, static_env.task, test)
        metrics = evaluate_policies(test, runtime_policy, static_ratios)  # a range: at its reference (the middle)
        dense = evaluate_policies(test, 1.0, np.ones(layers))  # this iteration's CNN, nothing pruned
        per_budget = {} if eval_budgets is None else budget_columns(test, runtime_policy, static_ratios, eval_budgets)
        rows.append({
            "iteration": k, "train_accuracy": history[-1]["train_acc"], "val_accuracy": history[-1]["val_acc"],
            "test_accuracy": metrics["accuracy"], "macs_ratio": metrics["macs_ratio"], "params_ratio": metrics["params_ratio"],
            "budget": metrics["budget"], "within_budget": metrics["within_budget"], "seconds": time.time() - start,
            "params_budget": metrics["params_budget"], "dense_test_accuracy": dense["accuracy"],
            "agent_update": cfg.agent_update, "agent_seconds": agent_seconds,
            "runtime_timesteps": int(models[RUNTIME].num_timesteps), "static_timesteps": int(models[STATIC].num_timesteps),
            **{f"static_ratio_{t}": float(r) for t, r in enumerate(static_ratios)}, **per_budget,
        })
        # a finished iteration is durable: CNN, agents, reward scales, history
        save_cnn_checkpoint(cnn_path, net, dataset=runtime_env.task.dataset_name, input_shape=runtime_env.task.input_shape,
                        stage="algorithm1", iteration=k)
        for env_id, sub in ((RUNTIME, "runtime"), (STATIC, "static")):
            atomic_model_save(models[env_id], out / sub / CHECKPOINT_FILE)
            write_json({"num_timesteps": models[env_id].num_timesteps, **reward_state(venvs[env_id])}, out / sub / STATE_FILE)
        _write_history(rows, out)
        bases = {env_id: int(model.num_timesteps) for env_id, model in models.items()}
        write_json({"iterations_done": k, "history": rows, "config": asdict(cfg), "agent_timesteps": bases}, state_path)
        phase_path.unlink(missing_ok=True)
        bar.update(1)
        bar.set_postfix(test=f"{100 * metrics['accuracy']:.2f}%", macs=f"{metrics['macs_ratio']:.3f}")
    bar.close()
    for env_id, sub in ((RUNTIME, "runtime"), (STATIC, "static")):
        atomic_model_save(models[env_id], out / sub / MODEL_FILE)
    if budget_range is None:
        final = evaluate_run(RunConfig(algo=cfg.algo, env_id="Algorithm 1", joint=True), test,
                             runtime_policy=runtime_policy, static_ratios=runtime_env.static_ratios, out=out)
    else:  # the sweep on the fine-tuned network; best static searched and offsets calibrated on the val split
        final = evaluate_any_budget(RunConfig(algo=cfg.algo, env_id="Algorithm 1", joint=True, seed=cfg.seed,
                                              sweep_budgets=list(eval_budgets)),
                                    runtime_env.task, runtime_policy=runtime_policy,
                                    static_ratios=runtime_env.static_ratios, out=out, test=test)
        final.update(params_ratio=rows[-1]["params_ratio"], params_budget=rows[-1]["params_budget"],
                     static_ratios=[float(r) for r in runtime_env.static_ratios])
    final.update(iterations=len(rows), seconds=time.time() - start, history=rows)
    write_json(final, out / "metrics.json")
    for v in venvs.values():
        v.close()
    return final
