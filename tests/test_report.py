"""evaluate_run.py / agents.evaluate / prune_env.evaluation.report, and the trade-off sweep's --quick mode."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import evaluate_run
import train_agents
from agents.algorithm1 import Algorithm1Config, run_algorithm1
from agents.evaluate import evaluate_run_dir, inspect_run
from prune_env.assets import default_checkpoint_path
from prune_env.cnn import epochs_for_batches
from prune_env.data import load_dataset
from prune_env.envs.task import PruningTask, TaskConfig
from prune_env.evaluation.latency import LatencyConfig
from prune_env.evaluation.report import ROW_KEYS, PolicyPair, build_report
from prune_env.evaluation.tables import format_markdown, format_text

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
ROOT = Path(__file__).resolve().parents[1]
TINY_AGENT = ["--n-envs", "8", "--algo", "ppo", "--no-progress", "--hyperparams", "n_steps=8", "batch_size=64"]
FAST_LATENCY = ["--latency", "--repeats", "3", "--warmup", "1", "--latency-inputs", "4"]


@pytest.fixture(scope="module")
def runtime_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "runtime"
    train_agents.main(["--timesteps", "256", "--out", str(out), *TINY_AGENT])
    return out


def _check_rows(report: dict) -> dict[str, dict]:
    rows = {r["name"]: r for r in report["rows"]}
    assert [name for name in rows if name != "uniform_static"] == ["dense", "uniform", "agents"]
    for row in rows.values():
        assert set(ROW_KEYS) <= set(row)
        assert row["speedup"] == pytest.approx(1.0 / row["macs_ratio"])
        assert row["stored_params"] == pytest.approx(row["params_ratio"] * report["task"]["dense_params"])
        assert row["delta_pp"] == pytest.approx(100 * (row["accuracy"] - rows["dense"]["accuracy"]))
        assert 0.0 <= row["accuracy"] <= 1.0
    dense = rows["dense"]
    assert dense["delta_pp"] == 0.0
    assert dense["macs_ratio"] == pytest.approx(1.0) and dense["params_ratio"] == pytest.approx(1.0)
    assert dense["overhead_params"] == 0.0
    return rows


def test_evaluate_run_writes_consistent_report(runtime_run, capsys, monkeypatch):
    from prune_env.evaluation.tables import TEXT_WIDTH

    monkeypatch.setenv("COLUMNS", str(TEXT_WIDTH))  # the terminal's width is the file's: the printed text is the file's
    assert inspect_run(runtime_run) == "runtime"
    report = evaluate_run.main([str(runtime_run)])
    printed = capsys.readouterr().out
    rows = _check_rows(report)
    assert report["latency"] is None and rows["agents"]["latency_ms"] is None
    # the training-time evaluation (metrics.json) is reproduced from the saved agent
    recorded = json.loads((runtime_run / "metrics.json").read_text())
    assert rows["agents"]["accuracy"] == pytest.approx(recorded["accuracy"], abs=1e-12)
    assert rows["agents"]["macs_ratio"] == pytest.approx(recorded["macs_ratio"], abs=1e-12)
    assert report["run"]["reproduces_recorded"] is True
    assert report["task"]["split"] == "test" and report["task"]["num_images"] == recorded["num_images"]
    assert rows["uniform"]["macs_ratio"] <= report["task"]["macs_budget"] + 1e-9
    # the three files, with the same numbers
    saved = json.loads((runtime_run / "report.json").read_text())
    assert [r["name"] for r in saved["rows"]] == ["dense", "uniform", "agents"]
    assert saved["rows"][2]["accuracy"] == rows["agents"]["accuracy"]
    md = (runtime_run / "report.md").read_text()
    txt = (runtime_run / "report.txt").read_text()
    assert "| policy | top-1 % |" in md and "dense baseline" in md
    assert md.count("\n| ") == 5  # header, separator, three rows
    assert f"{100 * rows['agents']['accuracy']:.2f}" in txt and f"{100 * rows['agents']['accuracy']:.2f}" in md
    assert txt.rstrip() in printed
    # the headroom references, as train_agents.py computed them (same agent, same splits)
    refs = json.loads((runtime_run / "references.json").read_text())
    assert report["references"]["rows"]["best_static"]["accuracy"] == pytest.approx(refs["best_static"]["accuracy"])
    assert report["references"]["rows"]["oracle_accuracy"]["accuracy"] >= rows["uniform"]["accuracy"]
    assert "best static" in printed and "adaptation gain" in printed
    assert "references" in saved


def test_latency_measures_dense_and_the_deployed_model(runtime_run):
    report = evaluate_run.main([str(runtime_run), *FAST_LATENCY, "--latency-batch", "2", "--no-write"])
    rows = _check_rows(report)
    lat = report["latency"]
    assert set(lat["configs"]) == {"dense", "dense_executor", "uniform", "agents"}
    assert lat["settings"]["batch"] == 2 and lat["settings"]["repeats"] == 3 and lat["settings"]["threads"] == 1
    for name in ("uniform", "agents"):
        cfg = lat["configs"][name]
        assert cfg["kept_match"] and cfg["max_abs_diff"] < 1e-4  # the executor computes what was evaluated
        assert cfg["samples"] == 3
        assert cfg["deployed_backbone_params"] == pytest.approx(rows[name]["stored_params"])
    for row in rows.values():
        assert row["latency_ms"] > 0
        assert row["latency_speedup"] == pytest.approx(rows["dense"]["latency_ms"] / row["latency_ms"])
    assert rows["dense"]["latency_speedup"] == pytest.approx(1.0)
    assert "ms (b2)" in format_text(report) and "latency ms (b2)" in format_markdown(report)


def test_static_run_with_its_runtime_partner(runtime_run, tmp_path):
    out = tmp_path / "static"
    train_agents.main(["--env", "StaticPrune-v0", "--timesteps", "64", "--runtime-agent", str(runtime_run),
                       "--env-kwargs", "eval_batch=32", "--out", str(out), *TINY_AGENT])
    report = evaluate_run_dir(out, echo=None)
    assert report["run"]["kind"] == "static"
    assert report["run"]["runtime_agent"] == str(runtime_run)
    assert report["run"]["reproduces_recorded"] is True
    rows = _check_rows(report)
    # the static agent's ratios are what the stored parameters count; the uniform reference is
    # FBS-like pure runtime pruning, which stores every parameter
    static = report["metrics"]["agents"]["static_keep_ratios"]
    assert rows["agents"]["params_ratio"] < 1.0 or min(static) == 1.0
    assert report["metrics"]["uniform"]["static_keep_ratios"] == [1.0] * len(static)
    assert rows["uniform"]["params_ratio"] == 1.0
    # a static agent is held to the parameter budget, beside the uniform d_s that meets it
    budget = report["task"]["params_budget"]
    assert report["task"]["within_budget_of"] == "params"
    assert rows["uniform"]["within_budget"] == 0.0 and rows["dense"]["within_budget"] == 0.0
    assert rows["uniform_static"]["params_ratio"] <= budget + 1e-9 and rows["uniform_static"]["within_budget"] == 1.0
    assert rows["agents"]["within_budget"] == float(rows["agents"]["params_ratio"] <= budget + 1e-9)


def test_algorithm1_run_dir_evaluates_the_finetuned_cnn(tmp_path):
    out = tmp_path / "a1"
    final = run_algorithm1(Algorithm1Config(checkpoint=str(default_checkpoint_path()), out=str(out), algo="ppo",
                                            iterations=1, agent_batches=1, cnn_batches=2, batch_size=16, n_envs=8,
                                            static_episodes=2, budget=0.45, progress=False))
    assert inspect_run(out) == "algorithm1"
    report = evaluate_run.main([str(out), *FAST_LATENCY])
    rows = _check_rows(report)
    assert report["task"]["checkpoint"] == str(out / "cnn.pt")
    assert report["run"]["encoder_calibration"] == str(default_checkpoint_path())
    assert rows["agents"]["accuracy"] == pytest.approx(final["accuracy"], abs=1e-12)
    assert rows["dense"]["accuracy"] == pytest.approx(final["dense_accuracy"], abs=1e-12)
    assert rows["agents"]["params_ratio"] < 1.0  # R_r = 0.5 with a static agent: channels removed for good
    assert report["latency"]["configs"]["agents"]["kept_match"]
    assert (out / "report.md").is_file() and (out / "report.txt").is_file()


def test_build_report_with_plain_policies():
    task = PruningTask(TaskConfig(split="test", tradeoff_rate=0.0, budget=0.5))
    static = np.full(task.num_layers, 0.5)
    report = build_report(task, {"half": PolicyPair("static 0.5", 1.0, static)}, batch_size=128,
                          latency=LatencyConfig(repeats=2, warmup=0, inputs=2))
    rows = {r["name"]: r for r in report["rows"]}
    # the uniform reference is FBS-like pure runtime pruning within the MAC budget, storing everything
    assert rows["uniform"]["macs_ratio"] <= task.macs_budget + 1e-9 and rows["uniform"]["params_ratio"] == 1.0
    assert rows["half"]["params_ratio"] < 0.5 and rows["half"]["macs_ratio"] < 0.5
    assert report["latency"]["configs"]["half"]["kept_match"]
    with pytest.raises(ValueError, match="reserved"):
        build_report(task, {"dense": PolicyPair("x", 1.0, static)})


def test_evaluate_run_rejects_what_is_not_a_run_dir(tmp_path):
    with pytest.raises(SystemExit):
        evaluate_run.main([str(tmp_path)])
    with pytest.raises(SystemExit):
        evaluate_run.main([str(tmp_path / "missing")])


def _benchmark_module(name: str):
    """A script of benchmarks/ imported as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


def _sweep_module():
    return _benchmark_module("tradeoff_sweep")


def test_tradeoff_sweep_quick_writes_csv_json_png_and_resumes(tmp_path, capsys):
    sweep = _sweep_module()
    args = ["--quick", "--rates", "0", "1", "--out", str(tmp_path / "sweep"), "--figures", str(tmp_path / "fig")]
    result = sweep.main(args)
    with open(tmp_path / "sweep" / "tradeoff.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["rate"]) for r in rows] == [0.0, 1.0]
    by_rate = {r["rate"]: r for r in result["rows"]}
    # R_r = 1 is pure runtime pruning: nothing removed for good; R_r = 0 removes channels
    assert by_rate[1.0]["params_ratio"] == pytest.approx(1.0)
    assert by_rate[0.0]["params_ratio"] < by_rate[1.0]["params_ratio"]
    for r in result["rows"]:
        assert r["speedup"] == pytest.approx(1.0 / r["macs_ratio"]) and not math.isnan(r["accuracy"])
    for name in ("tradeoff_params.png", "tradeoff_rate.png"):
        assert (tmp_path / "fig" / name).stat().st_size > 5_000
    saved = json.loads((tmp_path / "sweep" / "tradeoff.json").read_text())
    assert len(saved["rows"]) == 2 and len(saved["summary"]) == 2 and 0 < saved["starting_accuracy"] <= 1
    # resumable: a second call skips both rates
    row_file = tmp_path / "sweep" / "rr0.00-s0" / sweep.ROW_FILE
    before = row_file.stat().st_mtime_ns
    capsys.readouterr()
    again = sweep.main(args)
    assert "skipped" in capsys.readouterr().out
    assert row_file.stat().st_mtime_ns == before
    assert [r["accuracy"] for r in again["rows"]] == [r["accuracy"] for r in result["rows"]]


def test_paper_tables_quick_grid_rows_files_and_resume(tmp_path, capsys):
    tables = _benchmark_module("paper_tables")
    out = tmp_path / "tables"
    args = ["--quick", "--sparsities", "0.5", "--rates", "1", "0", "--workers", "2", "--out", str(out)]
    rows = tables.main(args)
    assert [(r["method"].split(" ")[0], r["sparsity"], r["tradeoff_rate"]) for r in rows] == [
        ("dense", None, None), ("uniform", 0.5, 1.0), ("ours,", 0.5, 1.0), ("ours,", 0.5, 0.0)]
    dense, uniform, runtime, static = rows
    assert dense["params_ratio"] == 1.0 and dense["macs_ratio"] == pytest.approx(1.0) and dense["delta_pp"] == 0.0
    # the uniform reference keeps half of every layer's channels and stores everything
    assert uniform["macs_ratio"] == pytest.approx(uniform["macs_budget"]) and uniform["params_ratio"] == 1.0
    assert runtime["params_ratio"] == 1.0 and static["params_ratio"] < 1.0  # R_r = 0 removes channels for good
    for r in rows:
        assert r["delta_pp"] == pytest.approx(100 * (r["accuracy"] - dense["accuracy"]))
        assert r["speedup"] == pytest.approx(1 / r["macs_ratio"])
    # the uniform reference was fine-tuned for as many CNN batches as an Algorithm 1 run
    ckpt = torch.load(out / "s0.5-uniform.pt", map_location="cpu", weights_only=False)
    s = tables.settings_of(tables.build_parser().parse_args(args))
    train_size = len(load_dataset("digits").train)
    assert ckpt["hparams"]["keep"] == 0.5
    assert (ckpt["hparams"]["epochs"], ckpt["hparams"]["steps_per_epoch"]) == epochs_for_batches(
        tables.cnn_batches_total(s), train_size, s["batch_size"])
    assert (out / "table.png").stat().st_size > 5_000
    with open(out / "table.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    assert "| 0.5 | ours, runtime + static" not in (out / "table.md").read_text()  # R_r = 0 is "static only"
    # every step is done: a second call only re-reads the results
    marker = (out / "s0.5-rr0" / "metrics.json").stat().st_mtime_ns
    capsys.readouterr()
    again = tables.main(args)
    printed = capsys.readouterr().out
    assert "pretrain: done" in printed and "s0.5-rr0: done" in printed
    assert (out / "s0.5-rr0" / "metrics.json").stat().st_mtime_ns == marker
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]
