"""Tables that do not mislead: a static agent judged on the parameter budget beside the uniform
d_s that meets it; the pruning's latency gain apart from the executor's; tables that fit a terminal;
leaderboard intervals inside the metric's range."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest

import prune_env  # noqa: F401
from agents.config import RunConfig
from agents.evaluate import evaluate_run
from prune_env.evaluation.latency import LatencyConfig
from prune_env.evaluation.report import PolicyPair, build_report
from prune_env.evaluation.tables import format_report_table as format_table
from prune_env.evaluation.tables import format_text


@pytest.fixture(scope="module")
def static_task():
    return gym.make("StaticPrune-v0").unwrapped.task


def test_static_run_is_judged_on_the_parameter_budget(static_task, tmp_path, capsys):
    # a static allocation under the parameter budget but over the MAC budget per input: "in budget" must say yes
    ratios = np.array([0.6, 0.5, 0.45, 0.4])
    metrics = evaluate_run(RunConfig(env_id="StaticPrune-v0", algo="ppo"), static_task, runtime_policy=None,
                           static_ratios=ratios, out=tmp_path)
    assert metrics["within_budget_of"] == "params"
    assert metrics["within_budget"] == float(metrics["params_ratio"] <= metrics["params_budget"] + 1e-9)
    refs = json.loads((tmp_path / "references.json").read_text())
    uniform = refs["uniform"]
    # the static-uniform baseline: the largest uniform d_s meeting the parameter budget
    assert uniform["params_ratio"] <= metrics["params_budget"] + 1e-9 and uniform["within_budget"] == 1.0
    assert uniform["static_keep_ratios"] == [uniform["uniform_static_ratio"]] * 4
    assert refs["dense"]["within_budget"] == 0.0
    printed = capsys.readouterr().out
    assert "in budget: stored parameters within the parameter budget" in printed
    assert (tmp_path / "keep_ratios.png").is_file()


def test_latency_speedup_against_both_dense_paths(static_task):
    task = gym.make("RuntimePrune-v0").unwrapped.task
    pairs = {"agents": PolicyPair("half", 0.5, np.ones(task.num_layers))}
    report = build_report(task, pairs, latency=LatencyConfig(repeats=2, warmup=0, inputs=4))
    configs = report["latency"]["configs"]
    for row in report["rows"]:
        ms = configs[row["name"]]["median_ms"]
        assert row["latency_speedup"] == pytest.approx(configs["dense"]["median_ms"] / ms)
        assert row["latency_speedup_executor"] == pytest.approx(configs["dense_executor"]["median_ms"] / ms)
    text = format_text(report)
    assert "vs eager" in text and "vs dense" in text and "executor" in text


@pytest.mark.parametrize("width", [80, 100, 160])
def test_report_table_fits_the_width(width):
    task = gym.make("RuntimePrune-v0").unwrapped.task
    report = build_report(task, {"agents": PolicyPair("runtime agent (recurrent_ppo)", 0.5, np.ones(task.num_layers))},
                          latency=LatencyConfig(repeats=1, warmup=0, inputs=2))
    table = format_table(report, width)
    assert max(len(line) for line in table.splitlines()) <= width
    for row in report["rows"]:
        assert f"{100 * row['accuracy']:.2f}" in table  # numbers are never broken
        assert f"{row['latency_speedup_executor']:.2f}x" in table
    assert max(len(line) for line in format_text(report, width).splitlines()) <= width
    assert not math.isnan(report["rows"][0]["latency_ms"])


# --------------------------------------------------------------------------- leaderboard
def _result(out, algo, seed, acc, *, kind="agent", env="RuntimePrune-v0", constraint="macs", curve=True):
    from prune_env.benchmark.leaderboard import result_path

    steps = [float(s) for s in np.linspace(10, 400, 8)]
    r = {"status": "done", "suite": "s", "algo": algo, "kind": kind, "env_id": env, "seed": seed, "timesteps": 400,
         "constraint": constraint, "final_return": -1.0 - 0.1 * seed, "final_train_return": -1.0, "train_seconds": 1.0,
         "wall_seconds": 1.0 + seed, "test_return": -1.0,
         "test": {"accuracy": acc, "macs_ratio": 0.25, "params_ratio": 0.25 if constraint == "params" else 1.0,
                  "within_budget": 1.0, "params_within_budget": 1.0, "budget": 0.253, "params_budget": 0.258},
         "curve": {"steps": steps, "return": [-2.0 + 0.1 * i + 0.05 * seed for i in range(8)]} if curve else None}
    path = result_path(out, "s", algo, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(r))


def test_intervals_stay_in_range_and_need_three_seeds():
    from prune_env.benchmark.leaderboard import MIN_SEEDS, bootstrap_interval

    point, lo, hi = bootstrap_interval([0.99, 0.2], bounds=(0.0, 1.0))  # the t-interval of these ran past 0-100%
    assert point == pytest.approx(0.595) and math.isnan(lo) and math.isnan(hi) and MIN_SEEDS == 3
    rng = np.random.default_rng(0)
    for n in (3, 4, 7):
        values = rng.uniform(0, 1, n)
        point, lo, hi = bootstrap_interval(values, bounds=(0.0, 1.0))
        assert values.min() <= lo <= point <= hi <= values.max()
    point, lo, hi = bootstrap_interval([0.1, 0.2, 0.3, 0.4, 0.5, 10.0])  # IQM: the middle half, 0.3..0.4 (and 0.2, 0.5)
    assert point == pytest.approx(np.mean([0.2, 0.3, 0.4, 0.5]))


def test_leaderboard_shows_values_below_three_seeds_and_states_its_ranking(tmp_path):
    from prune_env.benchmark.leaderboard import RANKING_RULE, write_report

    for seed in range(3):
        _result(tmp_path, "ppo", seed, [0.9, 0.8, 0.95][seed])
    for seed in range(2):
        _result(tmp_path, "sac", seed, [0.99, 0.2][seed])
        _result(tmp_path, "l1_static", seed, 0.9, kind="baseline", constraint="params", curve=False)
    _result(tmp_path, "ppo_static", 0, 0.9, env="StaticPrune-v0", constraint="params")
    paths = write_report(tmp_path, "s")
    md = paths["leaderboard_md"].read_text()
    sac = next(line for line in md.splitlines() if "`sac`" in line)
    assert "99.00 / 20.00" in sac and "±" not in md and "[" not in sac
    ppo = next(line for line in md.splitlines() if "`ppo`" in line)
    assert "88.33 [" in ppo  # three seeds: the IQM (their mean) and its interval
    assert md.rstrip().endswith(RANKING_RULE)
    assert paths["curves_png"].stat().st_size > 5_000


def test_history_of_a_resumed_run_keeps_old_rows(tmp_path):
    from agents.algorithm1 import _write_history

    old = {"iteration": 1, "train_accuracy": 0.9, "val_accuracy": 0.88, "test_accuracy": 0.87, "macs_ratio": 0.3,
           "params_ratio": 0.6, "budget": 0.25, "within_budget": 0.5, "seconds": 1.0}
    new = {**old, "iteration": 2, "params_budget": 0.56, "dense_test_accuracy": 0.95}
    _write_history([old, new], tmp_path)
    header = (tmp_path / "history.csv").read_text().splitlines()[0].split(",")
    assert "dense_test_accuracy" in header and "params_budget" in header
    assert (tmp_path / "history.png").stat().st_size > 5_000
