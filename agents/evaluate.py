"""Evaluate trained agents on the held-out test split: at the end of a training run, and a run directory later.

* At the end of a run (:func:`evaluate_run`, :func:`evaluate_any_budget`): the agent beside every
  reference at the same budget (uniform at equal MACs, the best static allocation, its shuffled
  allocations, the label oracle), a table, ``metrics.json``, ``references.json`` and pictures.
* A run directory (:func:`evaluate_run_dir`, ``evaluate_run.py``): find its network and agents, build
  the paper-style report, write it.

This module never imports the trainer (:mod:`agents.training` imports it).


Accepted directories (what :func:`inspect_run` recognises):

* ``runtime`` / ``static``: a ``train_agents.py`` run (``model.zip`` + ``run.json``) of one agent;
* ``joint``: ``train_agents.py --joint`` (``runtime/`` and ``static/``, each with its model);
* ``algorithm1``: ``finetune_cnn.py algorithm1`` / ``method`` output (``cnn.pt`` + ``runtime/`` +
  ``static/``): the fine-tuned CNN is evaluated, not the checkpoint the agents started from.

The network is the checkpoint named in ``run.json``'s ``env_kwargs`` (the shipped default when
none is named) or, for Algorithm 1, ``cnn.pt``. Agents are loaded with
:func:`agents.saved.load_agent` and run deterministically (:func:`agents.saved.agent_policy`).
The evaluation itself is :func:`prune_env.evaluation.report.build_report` on the test split.

Where a single-agent run trained against a fixed partner (``--static-agent`` /
``--runtime-agent``), the partner's path is read from ``run.json`` (keys ``static_agent`` /
``runtime_agent`` when present, else the recorded ``command``); a static partner whose directory
is gone falls back to the static keep ratios recorded in ``metrics.json``.
"""

from __future__ import annotations

import os
import shlex
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

from agents.config import RunConfig
from agents.registry import RUNTIME, STATIC, env_kwargs_for
from agents.run_files import FINITE_NUMBER, LEVELS, RunFileError, check_fields, read_metrics, read_run_record
from agents.saved import CHECKPOINT_FILE, MODEL_FILE, RUN_FILE, agent_policy, load_agent
from prune_env.checkpoint import CheckpointError
from prune_env.envs.budgets import BudgetRange
from prune_env.envs.task import STATIC_TRADEOFF_RATE, PruningTask, TaskConfig
from prune_env.evaluation.latency import LatencyConfig
from prune_env.evaluation.plots import plot_adaptation, plot_keep_ratios
from prune_env.evaluation.references import headroom_report
from prune_env.evaluation.report import PolicyPair, build_report, write_report
from prune_env.evaluation.split import reference_metrics, rollout_split, summarize
from prune_env.evaluation.tables import format_reference_table, format_text
from prune_env.io import write_json

KINDS = ("runtime", "static", "joint", "algorithm1")
CNN_FILE = "cnn.pt"


@dataclass
class LoadedRun:
    """What a run directory evaluates: the test task, the policies, and where they came from."""

    run_dir: Path
    kind: str
    task: PruningTask
    pair: PolicyPair
    info: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- discovery
def inspect_run(run_dir: str | Path) -> str:
    """The kind of run directory (one of :data:`KINDS`); ``ValueError`` when it is none of them."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        raise ValueError(f"{str(run_dir)!r} is a file, not a run directory: give the directory that holds it "
                         f"({str(run_dir.parent)!r}), one with run.json (train_agents.py) or cnn.pt + runtime/ + static/ "
                         f"(finetune_cnn.py algorithm1)")
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {str(run_dir)!r} does not exist")
    sub = all((run_dir / s / RUN_FILE).is_file() for s in ("runtime", "static"))
    if sub and (run_dir / CNN_FILE).is_file():
        return "algorithm1"
    if sub:
        return "joint"
    meta_path = run_dir / RUN_FILE
    if meta_path.is_file():
        env_id = read_run_record(meta_path)["env_id"]
        if env_id == RUNTIME:
            return "runtime"
        if env_id == STATIC:
            return "static"
        raise RunFileError(meta_path, "a joint run's record without its runtime/ and static/ agents", "env_id")
    raise ValueError(f"{str(run_dir)!r} is not a run directory: expected run.json (train_agents.py) or "
                     f"cnn.pt + runtime/ + static/ (finetune_cnn.py algorithm1)")


def _agent(path: Path, device: str) -> tuple[Any, dict, Path]:
    """Load the agent of a directory; an interrupted run's last checkpoint when ``model.zip`` is missing."""
    path = Path(path)
    if path.is_dir() and not (path / MODEL_FILE).is_file() and (path / CHECKPOINT_FILE).is_file():
        warnings.warn(f"{path}: no {MODEL_FILE} (run interrupted?); evaluating its last {CHECKPOINT_FILE}", stacklevel=2)
        path = path / CHECKPOINT_FILE
    model, meta = load_agent(path, device=device)
    return agent_policy(model, meta), meta, path


def _task_config(env_kwargs: dict, **overrides: Any) -> TaskConfig:
    names = {f.name for f in fields(TaskConfig)}
    kwargs = {k: v for k, v in env_kwargs.items() if k in names}
    return TaskConfig(**{**kwargs, "split": "test", "device": "cpu", **overrides})


def _task(env_kwargs: dict, source: Path, **overrides: Any) -> PruningTask:
    """The task of a run's recorded keywords (read from ``source``); a keyword the task refuses is a
    RunFileError naming ``source`` (a checkpoint's own CheckpointError names the checkpoint)."""
    try:
        return PruningTask(_task_config(env_kwargs, **overrides))
    except (CheckpointError, FileNotFoundError):
        raise
    except (ValueError, TypeError) as exc:
        raise RunFileError(source, f"its keywords do not make the run's task: {exc}", "env_kwargs") from None


def _check_observations(policy: Any, dim: int, source: Path, what: str) -> None:
    """A RunFileError naming ``source`` when the agent behind ``policy`` takes observations of another size than ``dim``."""
    model = getattr(policy, "model", None)
    shape = getattr(getattr(model, "observation_space", None), "shape", None)
    if shape is not None and tuple(shape) != (dim,):
        from prune_env.policies import describe_trained_on

        raise RunFileError(source, f"gives {what} observations of shape ({dim},), but the agent was trained on "
                                   f"{describe_trained_on(getattr(model, 'trained_on', None))} with observations of "
                                   f"shape {tuple(shape)}: another network, dataset or observation mode")


def _command_option(meta: dict, key: str, option: str) -> str | None:
    """The value of ``option`` in ``meta[key]`` or the recorded command line."""
    if meta.get(key):
        return str(meta[key])
    try:
        argv = shlex.split(meta.get("command") or "")
    except ValueError:
        return None
    for i, arg in enumerate(argv):
        if arg == option and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


def _resolve(path: str, run_dir: Path) -> Path | None:
    """An agent path as recorded: as given (relative to the working directory), else beside the run."""
    for candidate in (Path(path), run_dir.parent / Path(path).name):
        if candidate.exists():
            return candidate
    return None


def _recorded(run_dir: Path) -> dict | None:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    m = read_metrics(path)
    if "accuracy" in m:
        check_fields(path, m, {k: (FINITE_NUMBER, k in ("accuracy", "macs_ratio")) for k in ("accuracy", "macs_ratio")})
    if "static_keep_ratios" in m:
        check_fields(path, m, {"static_keep_ratios": (LEVELS, True)})
    keys = ("accuracy", "macs_ratio", "params_ratio", "static_keep_ratios")
    return {k: m[k] for k in keys if k in m} if "accuracy" in m else None


def load_run(run_dir: str | Path, *, runtime_agent: str | Path | None = None, static_agent: str | Path | None = None,
             device: str = "cpu") -> LoadedRun:
    """Load a run directory's test task and policies (see the module docstring).

    ``runtime_agent`` / ``static_agent`` override the fixed partner of a single-agent run.
    """
    run_dir = Path(run_dir)
    kind = inspect_run(run_dir)
    info: dict[str, Any] = {"run_dir": str(run_dir), "kind": kind}
    if kind in ("joint", "algorithm1"):
        if runtime_agent is not None or static_agent is not None:
            raise ValueError(f"a {kind} run holds both agents; --runtime-agent / --static-agent apply to single-agent runs")
        rt_policy, rt_meta, rt_path = _agent(run_dir / "runtime", device)
        st_policy, st_meta, st_path = _agent(run_dir / "static", device)
        task = _build_task(run_dir, kind, rt_meta, info)
        source = run_dir / CNN_FILE if kind == "algorithm1" else run_dir / "runtime" / RUN_FILE
        _check_observations(rt_policy, task.runtime_obs_dim, source, "runtime")
        _check_observations(st_policy, task.static_obs_dim, source, "static")
        static = task.static_ratios_of(st_policy)
        info.update(algo=rt_meta.get("algo"), runtime_agent=str(rt_path), static_agent=str(st_path))
        pair = PolicyPair(f"agents ({rt_meta.get('algo')}, runtime + static)", rt_policy, static)
    else:
        policy, meta, path = _agent(run_dir, device)
        task = _build_task(run_dir, kind, meta, info)
        _check_observations(policy, task.runtime_obs_dim if kind == "runtime" else task.static_obs_dim,
                            run_dir / RUN_FILE, kind)
        info.update(algo=meta.get("algo"))
        if kind == "runtime":
            partner = static_agent or _command_option(meta, "static_agent", "--static-agent")
            static, source = np.ones(task.num_layers), "none (d_s = 1)"
            if partner is not None:
                found = Path(partner) if static_agent is not None else _resolve(str(partner), run_dir)
                recorded = _recorded(run_dir) or {}
                if found is not None:
                    st_policy, _, st_path = _agent(found, device)
                    static, source = task.static_ratios_of(st_policy), str(st_path)
                elif "static_keep_ratios" in recorded:
                    static = np.asarray(recorded["static_keep_ratios"], dtype=np.float64)
                    source = f"metrics.json (static agent {partner!r} not found)"
                else:
                    raise FileNotFoundError(f"the static agent {partner!r} this run trained with is gone; "
                                            f"pass --static-agent PATH")
            info.update(runtime_agent=str(path), static_agent=source)
            pair = PolicyPair(f"runtime agent ({meta.get('algo')})", policy, static)
        else:
            partner = runtime_agent or _command_option(meta, "runtime_agent", "--runtime-agent")
            runtime, source = None, "none (d_r = 1)"
            if partner is not None:
                found = Path(partner) if runtime_agent is not None else _resolve(str(partner), run_dir)
                if found is None:
                    raise FileNotFoundError(f"the runtime agent {partner!r} this run trained with is gone; "
                                            f"pass --runtime-agent PATH")
                runtime, _, rt_path = _agent(found, device)
                source = str(rt_path)
            info.update(runtime_agent=source, static_agent=str(path))
            pair = PolicyPair(f"static agent ({meta.get('algo')})", runtime, task.static_ratios_of(policy))
    return LoadedRun(run_dir, kind, task, pair, info)


def _build_task(run_dir: Path, kind: str, meta: dict, info: dict, split: str = "test") -> PruningTask:
    """The ``split`` task of a run (default: the test split). For Algorithm 1 the network is ``cnn.pt``;
    the observation encoders are calibrated, as during the run, on the checkpoint the agents started
    from when it still exists (the runtime agent was trained on those observations), else on ``cnn.pt``."""
    env_kwargs = {**meta.get("env_kwargs", {}), "split": split}
    source = run_dir / ("runtime" if kind in ("joint", "algorithm1") else ".") / RUN_FILE
    if kind == "static":  # StaticPrune-v0's own default (pure static pruning), not TaskConfig's
        env_kwargs.setdefault("tradeoff_rate", STATIC_TRADEOFF_RATE)
    if kind != "algorithm1":
        task = _task(env_kwargs, source, split=split)
        info["checkpoint"] = task.cfg.checkpoint or "shipped default"
        return task
    from prune_env.checkpoint import load_checkpoint

    cnn = run_dir / CNN_FILE
    start = env_kwargs.get("checkpoint")
    if start and Path(start).is_file() and Path(start).resolve() != cnn.resolve():
        task = _task(env_kwargs, source, checkpoint=str(start), split=split)
        net, _ = load_checkpoint(cnn)
        try:
            task.net.load_state_dict(net.state_dict())
        except RuntimeError:
            raise RunFileError(cnn, f"holds a {net.config.get('name')!r} that is not the network the agents started "
                                    f"from ({task.net.config.get('name')!r} of {str(start)!r})") from None
        info["encoder_calibration"] = str(start)
    else:
        task = _task(env_kwargs, source, checkpoint=str(cnn), split=split)
        info["encoder_calibration"] = str(cnn)
    task.cfg.checkpoint = str(cnn)
    info["checkpoint"] = str(cnn)
    return task


def evaluate_any_budget_pair(run_dir: str | Path, cfg: RunConfig) -> dict:
    """An ``algorithm1`` (or ``joint``) run whose runtime agent trained over a budget range, at
    ``cfg.sweep_budgets`` on the test split (:func:`evaluate_any_budget`, on the run's
    fine-tuned network): the best static allocation searched and the offsets calibrated on the
    validation split, the static agent's ratios as the run deployed them."""
    run = load_run(run_dir)
    meta = read_run_record(run.run_dir / "runtime" / RUN_FILE)
    search = _build_task(run.run_dir, run.kind, meta, {}, split="val")
    return evaluate_any_budget(cfg, search, runtime_policy=run.pair.runtime_policy, static_ratios=run.pair.static_ratios,
                               out=Path(cfg.out), test=run.task)


# --------------------------------------------------------------------------- the whole job
def headroom_references(run: LoadedRun) -> dict:
    """A runtime run's agent beside every headroom reference (:func:`prune_env.evaluation.references.headroom_report`):
    the static allocation searched and the offset calibrated on the split the agent trained on."""
    from prune_env.evaluation.references import headroom_report
    from prune_env.evaluation.split import rollout_split

    path = run.run_dir / RUN_FILE
    meta = read_run_record(path) if path.is_file() else {}
    env_kwargs = env_kwargs_for(meta.get("algo", "ppo"), RUNTIME, meta.get("env_kwargs", {}))
    split = env_kwargs.get("split", "val")
    search = _task(env_kwargs, path, split="val" if split == "test" else split)
    pair = run.pair
    agent = rollout_split(run.task, pair.runtime_policy, pair.static_ratios)
    return headroom_report(run.task, agent, pair.static_ratios, search=search, policy=pair.runtime_policy, calibrate=True,
                           seed=int(meta.get("seed", 0)))


def evaluate_run_dir(run_dir: str | Path, *, latency: bool | LatencyConfig = False, batch_size: int = 512,
                     runtime_agent: str | Path | None = None, static_agent: str | Path | None = None,
                     write: bool = True, echo: Callable[[str], Any] | None = print, out: str | Path | None = None,
                     progress: bool = False, references: bool = True) -> dict:
    """Evaluate ``run_dir`` on the test split, write ``report.{json,md,txt,png}`` into ``out`` (default:
    ``run_dir``), print the table (as wide as the terminal).

    ``latency``: True (default :class:`~prune_env.evaluation.report.LatencyConfig`) or a config measures CPU
    latency of dense vs the deployed model. A ``static`` run's "in budget" is judged on the parameter
    budget. ``progress`` reports each step on standard error. With ``references``, a runtime run is
    also scored beside every headroom reference (:func:`headroom_references`, ``report["references"]``).
    Returns the report dict (see :mod:`prune_env.evaluation.report`).
    """
    from prune_env.progress import steps

    say = steps(f"evaluate {run_dir}", disable=not progress)
    say("loading the run")
    run = load_run(run_dir, runtime_agent=runtime_agent, static_agent=static_agent)
    recorded = _recorded(run.run_dir)
    lat_cfg = LatencyConfig() if latency is True else (latency or None)
    report = build_report(run.task, {"agents": run.pair}, batch_size=batch_size, latency=lat_cfg,
                          info={**run.info, "recorded": recorded}, within="params" if run.kind == "static" else "macs",
                          progress=say)
    if recorded:
        row = next(r for r in report["rows"] if r["name"] == "agents")
        report["run"]["reproduces_recorded"] = bool(
            abs(row["accuracy"] - recorded["accuracy"]) < 1e-9 and abs(row["macs_ratio"] - recorded["macs_ratio"]) < 1e-9)
    headroom = None
    if references and run.kind == "runtime":
        say("headroom references (best static allocation, oracle, controls, calibration)")
        headroom = headroom_references(run)
        report["references"] = {"summary": headroom["summary"], "rows": headroom["rows"],
                                "static_search": headroom.get("static_search"), "oracle": headroom["oracle"]}
    if write:
        say("writing the report")
        report["files"] = {k: str(v) for k, v in write_report(report, Path(out) if out else run.run_dir).items()}
    if echo is not None:
        echo(format_text(report, width=None).rstrip())
        if headroom is not None:
            rows = headroom["rows"]
            echo("\nBeside every reference at the same budget (test split):")
            echo(format_reference_table({label: rows[key] for key, label in TABLE_ROWS if key in rows}))
            s = headroom["summary"]
            captured = s["headroom_captured_accuracy"]
            echo(f"adaptation gain: {100 * s['adaptation_gain_shuffled']:+.2f} points over the agent's shuffled allocations, "
                 f"{100 * s['adaptation_gain_layer_mean']:+.2f} over its layer means; headroom captured (accuracy): "
                 + ("n/a" if captured is None else f"{100 * captured:.0f}%"))
        if write:
            echo(f"written: {', '.join(report['files'].values())}")
    return report


# --------------------------------------------------------------------------- at the end of a training run
def evaluate_any_budget(cfg: RunConfig, task: PruningTask, *, runtime_policy: Any, static_ratios: Any, out: Path,
                        static_policy: Any = None, progress: Any = None, test: PruningTask | None = None) -> dict:
    """An any-budget agent's curve on the test split (:mod:`prune_env.evaluation.budget_sweep`): at each of
    ``cfg.sweep_budgets`` (default ``cfg.sweep_points`` evenly spaced over the range), the agent
    beside uniform, the best static allocation and the calibrated agent (a runtime agent; a static one:
    beside the uniform static keep ratio), and the one-budget runs of ``cfg.per_budget_runs``.
    Writes ``any_budget.{json,csv,png}`` into ``out``, prints the table; returns the metrics.
    ``test``: the task on the test split (default: built from ``task``'s configuration, or ``task``
    itself when it is on the test split; give it when ``task``'s network is not its checkpoint's, as
    in Algorithm 1).
    """
    from prune_env.evaluation import budget_sweep

    test = test if test is not None else task if task.cfg.split == "test" else test_task(task)
    budgets = cfg.sweep_budgets or budget_sweep.sweep_budgets(task.budget_range, cfg.sweep_points)
    if static_policy is not None:
        budgets = [test.check_budget(b) for b in budgets]
        points = [budget_sweep.evaluate_static_at_budget(test, b, static_policy, runtime_policy) for b in budgets]
        result = {"budget_range": str(test.budget_range), "budget_kind": test.cfg.budget_kind, "split": "test",
                  "points": points, "per_budget_runs": [], "summary": {}}
    else:
        search = task if task.cfg.split != "test" else None
        result = budget_sweep.sweep(test, budgets, runtime_policy, static_ratios, search=search,
                                    calibrate=cfg.sweep_calibrate, search_rounds=cfg.search_rounds, seed=cfg.seed,
                                    per_budget_runs=cfg.per_budget_runs, progress=progress)
    title = f"{cfg.algo} on {cfg.env_id}, budgets {test.budget_range} (test split)"
    files = budget_sweep.write_sweep(result, out, title=title)
    print()
    print(f"One agent for budgets {test.budget_range} ({test.cfg.budget_kind}), test split:")
    print(budget_sweep.format_sweep(result))
    print(f"results in {out}/ ({', '.join(Path(f).name for f in files.values())})")
    return {"any_budget": True, "budget_range": result["budget_range"], "budget_kind": result["budget_kind"],
            "sweep": [{"budget": p["budget"], **{m: r for m, r in p["rows"].items()}} for p in result["points"]],
            "summary": result["summary"]}


def trained_budget_range(run_dir: str | os.PathLike) -> BudgetRange | None:
    """The budget range a ``train_agents.py`` run trained its agent over (``run.json``; an Algorithm 1 or
    joint run: its runtime agent's, ``runtime/run.json``), None for one budget."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        path = Path(run_dir) / "runtime" / RUN_FILE
    if not path.is_file():
        return None
    budget = read_run_record(path).get("env_kwargs", {}).get("budget", 0.5)
    try:
        return BudgetRange.parse(budget)
    except (ValueError, TypeError) as exc:
        raise RunFileError(path, f"budget {budget!r}: {exc}", "env_kwargs") from None


def evaluate_any_budget_run(run_dir: str | os.PathLike, *, budgets: list[float] | None = None,
                            per_budget_runs: list[str] = (), out: str | os.PathLike | None = None,
                            static_agent: str | os.PathLike | None = None,
                            runtime_agent: str | os.PathLike | None = None, calibrate: bool = True) -> dict:
    """The curve of a saved any-budget agent (a ``train_agents.py`` run over a budget range) at
    ``budgets`` (default: five evenly spaced over its range) on the test split, as its training run
    writes it (:func:`evaluate_any_budget`), into ``out`` (default ``run_dir``). A budget outside the
    range, or a run trained at one budget, is a ValueError naming the range.

    The other agent: ``static_agent`` / ``runtime_agent`` where given, else the one the run recorded.
    ``calibrate=False`` skips the calibrated agent (an offset search per budget).
    """
    run_dir = Path(run_dir)
    meta = read_run_record(run_dir / RUN_FILE) if (run_dir / RUN_FILE).is_file() else {}
    budget_range = trained_budget_range(run_dir)
    if budget_range is None:
        raise ValueError(f"{str(run_dir)!r} holds an agent trained at one budget "
                         f"({meta.get('env_kwargs', {}).get('budget', 0.5)!r}), not over a range: evaluate it without --budget")
    budgets = [budget_range.check(b) for b in budgets] if budgets else None
    if not (run_dir / RUN_FILE).is_file():  # finetune_cnn.py algorithm1 (or --joint): both agents and the CNN
        if static_agent is not None or runtime_agent is not None:
            raise ValueError("an Algorithm 1 run holds both agents; --runtime-agent / --static-agent apply to single-agent runs")
        rt_meta = read_run_record(run_dir / "runtime" / RUN_FILE)
        cfg = RunConfig(env_id=RUNTIME, algo=rt_meta["algo"], seed=int(rt_meta.get("seed", 0)), out=str(out or run_dir),
                        sweep_budgets=budgets, per_budget_runs=list(per_budget_runs),
                        sweep_calibrate=calibrate)
        return evaluate_any_budget_pair(run_dir, cfg)
    env_id = meta["env_id"]
    model, meta = load_agent(run_dir if (run_dir / MODEL_FILE).is_file() else run_dir / CHECKPOINT_FILE)
    policy = agent_policy(model, meta)
    env_kwargs = env_kwargs_for(meta["algo"], env_id, meta.get("env_kwargs", {}))
    names = {f.name for f in fields(TaskConfig)}
    config = {k: v for k, v in env_kwargs.items() if k in names}
    if env_id == STATIC:
        config.setdefault("tradeoff_rate", STATIC_TRADEOFF_RATE)
    config.update(device="cpu", split="val" if config.get("split") == "test" else config.get("split", "val"))
    task = _task(config, run_dir / RUN_FILE, split=config["split"])
    cfg = RunConfig(env_id=env_id, algo=meta["algo"], seed=int(meta.get("seed", 0)), out=str(out or run_dir),
                    sweep_budgets=budgets, per_budget_runs=list(per_budget_runs), sweep_calibrate=calibrate)
    partner = static_agent or meta.get("static_agent") if env_id == RUNTIME else runtime_agent or meta.get("runtime_agent")
    other = None
    if partner is not None:
        other_model, other_meta = load_agent(partner)
        other = agent_policy(other_model, other_meta)
    if env_id == STATIC:
        return evaluate_any_budget(cfg, task, runtime_policy=other, static_ratios=None, static_policy=policy,
                                   out=Path(cfg.out))
    static = np.ones(task.num_layers) if other is None else task.static_ratios_of(other)
    return evaluate_any_budget(cfg, task, runtime_policy=policy, static_ratios=static, out=Path(cfg.out))


def static_references(test: PruningTask, runtime_policy: Any) -> dict[str, dict]:
    """What a static agent is compared with: the dense network and the largest uniform static keep ratio
    meeting the parameter budget (with the agent's runtime partner, at the task's ``R_r``), both judged
    on the parameter budget (``within_budget``)."""
    ones = np.ones(test.num_layers)
    ratio = test.uniform_static_ratio()
    uniform = np.full(test.num_layers, ratio)
    refs = {"dense": summarize(test, rollout_split(test, 1.0, ones), ones, within="params"),
            "uniform": summarize(test, rollout_split(test, runtime_policy, uniform), uniform, within="params")}
    refs["uniform"].update(uniform_keep_ratio=ratio, uniform_static_ratio=ratio)
    return refs


def test_task(task: PruningTask) -> PruningTask:
    """The same task on the held-out test split (the agents never saw it)."""
    cfg = TaskConfig(**{**asdict(task.cfg), "split": "test"})
    return PruningTask(cfg)


#: the rows of the evaluation table of a runtime agent, in order, with their labels
TABLE_ROWS = (
    ("agent", "agent"), ("agent_calibrated", "agent, calibrated"), ("uniform", "uniform @ budget"),
    ("uniform_iso_mac", "uniform @ agent MACs"), ("best_static", "best static"), ("shuffled", "agent shuffled"),
    ("layer_mean", "agent layer mean"), ("cascade", "confidence cascade"), ("oracle_accuracy", "oracle (labels)"),
    ("dense", "dense"),
)


def evaluate_run(cfg: RunConfig, task: PruningTask, *, runtime_policy: Any, static_ratios: Any, out: Path) -> dict:
    """Deterministic evaluation on the test split: table, ``metrics.json``, ``references.json``, pictures.

    A runtime agent is scored beside every reference of :func:`prune_env.evaluation.references.headroom_report`
    (the static allocation searched and the offset calibrated on the split it trained on).
    """
    test = task if task.cfg.split == "test" else test_task(task)
    agent = rollout_split(test, runtime_policy, static_ratios)
    runtime_run = cfg.env_id.split(":")[-1] != STATIC or cfg.joint
    # a static agent is held to the parameter budget ("in budget"), a runtime one to the MAC budget
    metrics = summarize(test, agent, static_ratios, within="macs" if runtime_run else "params")
    if runtime_run and cfg.references:
        search = task if task.cfg.split != "test" else None
        report = headroom_report(test, agent, static_ratios, search=search, policy=runtime_policy, calibrate=True,
                                 search_rounds=cfg.search_rounds, seed=cfg.seed)
        rows = report["rows"]
        metrics.update(report["summary"])
        if "agent_calibrated" in rows:
            calibrated = rows["agent_calibrated"]
            metrics.update(calibrated_accuracy=calibrated["accuracy"], calibrated_macs_ratio=calibrated["macs_ratio"],
                           calibration_offset=calibrated["offset"])
        references = {**{k: v for k, v in report.items() if k != "rows"}, **{k: v for k, v in rows.items() if k != "agent"}}
    elif runtime_run:
        references = reference_metrics(test)
        rows = {"agent": metrics, **references}
    else:  # static: against the uniform d_s meeting the parameter budget, same runtime partner and R_r
        references = static_references(test, runtime_policy)
        rows = {"agent": metrics, **references}
    metrics["dense_accuracy"] = rows["dense"]["accuracy"]
    metrics["uniform_accuracy"] = rows["uniform"]["accuracy"]
    metrics["uniform_keep_ratio"] = rows["uniform"]["uniform_keep_ratio"]
    write_json(references, out / "references.json")
    title = f"{cfg.algo} on {cfg.env_id if not cfg.joint else 'joint'} (test split)"
    if runtime_run:
        plot_keep_ratios(agent.keep, out / "keep_ratios.png", uniform=rows["uniform"]["uniform_keep_ratio"], title=title)
    else:  # what the static agent chose: d_s per layer, beside the uniform d_s at the parameter budget
        plot_keep_ratios(np.asarray(static_ratios, dtype=np.float64).reshape(1, -1), out / "keep_ratios.png",
                         uniform=rows["uniform"]["uniform_keep_ratio"], title=f"static keep ratios d_s: {title}")
    if runtime_run:
        difficulty = rollout_split(test, rows["uniform"]["uniform_keep_ratio"], np.ones(test.num_layers)).losses
        plot_adaptation(agent, difficulty, test.macs_budget, out / "adaptation.png", title=title)
    print()
    print(f"Test split ({metrics['num_images']} images), MAC budget {metrics['budget']:.3f} of dense, "
          f"parameter budget {metrics['params_budget']:.3f}:")
    print(format_reference_table({label: rows[key] for key, label in TABLE_ROWS if key in rows}))
    if not runtime_run:
        print(f"in budget: stored parameters within the parameter budget; uniform @ budget: d_s = "
              f"{rows['uniform']['uniform_keep_ratio']:.3f} in every layer, the largest meeting it "
              f"(R_r = {test.tradeoff_rate:g})")
    print("per-layer keep ratio (mean ± std over inputs): " + ", ".join(
        f"{m:.2f}±{s:.2f}" for m, s in zip(metrics["keep_ratio_mean"], metrics["keep_ratio_std"])))
    if "adaptation_gain_shuffled" in metrics:
        captured = metrics["headroom_captured_accuracy"]
        print(f"adaptation gain: {100 * metrics['adaptation_gain_shuffled']:+.2f} points over its shuffled allocations "
              f"(McNemar p = {metrics['adaptation_p_value_shuffled']:.3g}), "
              f"{100 * metrics['adaptation_gain_layer_mean']:+.2f} over its layer means; headroom captured (accuracy): "
              + ("n/a" if captured is None else f"{100 * captured:.0f}%"))
    written = ["metrics.json", "references.json", "keep_ratios.png", "adaptation.png", MODEL_FILE,
               f"runtime/{MODEL_FILE}", f"static/{MODEL_FILE}", "history.csv", "history.png"]
    print(f"results in {out}/ ({', '.join(['metrics.json'] + [f for f in written[1:] if (out / f).exists()])})")
    return metrics


__all__ = [
    "KINDS", "TABLE_ROWS", "LoadedRun", "evaluate_any_budget", "evaluate_any_budget_pair", "evaluate_any_budget_run",
    "evaluate_run", "evaluate_run_dir", "inspect_run", "load_run", "static_references", "test_task", "trained_budget_range",
]
