"""Tables that do not mislead (issue 16): a static agent judged on the parameter budget beside the uniform
d_s that meets it; the pruning's latency gain apart from the executor's; tables that fit a terminal;
leaderboard intervals inside the metric's range."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest

import prune_env  # noqa: F401
from agents.training import RunConfig, evaluate_run
from prune_env.report import LatencyConfig, PolicyPair, build_report, format_table, format_text


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
