"""The benchmark runner (agents.benchmark) and its results (prune_env.benchmark.leaderboard): the smoke suite end to end,
the scores of every row (fixed-beta objective, uniform at the same MACs, shuffled control, headroom, references),
resume, validation, intervals, significance marks, learning curves, the exploration noise applied once."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from agents.benchmark import DETERMINISTIC, build_jobs, get_suite, main, run_agent
from prune_env.benchmark.leaderboard import CURVE_BINS, binned_curve, summarize
from prune_env.benchmark.statistics import t_interval
from prune_env.benchmark.validate import validate_result

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """2 algorithms x 2 seeds (+ the uniform baseline) of the smoke suite in 2 spawned workers."""
    out = tmp_path_factory.mktemp("bench")
    code = main(["run", "--suite", "smoke", "--algos", "ppo", "dqn", "--seeds", "0", "1", "--baselines", "uniform",
                 "--workers", "2", "--out", str(out)])
    return out, code


def test_smoke_suite_writes_every_output(smoke):
    out, code = smoke
    assert code == 0
    root = out / "smoke"
    runs = sorted(p.relative_to(root / "runs").as_posix() for p in (root / "runs").glob("*/seed*.json"))
    assert runs == [f"{m}/seed{k}.json" for m in ("best_static", "dqn", "oracle", "ppo", "uniform") for k in (0, 1)]
    with open(root / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 and {r["algo"] for r in rows} == {"ppo", "dqn", "uniform", "best_static", "oracle"}
    for r in rows:
        assert 0.0 <= float(r["accuracy"]) <= 1.0 and 0.0 < float(r["macs_ratio"]) <= 1.0
        assert math.isfinite(float(r["objective"]))
        # a deterministic row's second seed may be a copy of the first (wall time 0, marked in its JSON)
        run = json.loads((root / "runs" / r["algo"] / f"seed{r['seed']}.json").read_text())
        assert float(r["wall_seconds"]) > 0 or (r["algo"] in DETERMINISTIC and run["copied_from_seed"] != run["seed"])
    summary = json.loads((root / "summary.json").read_text())
    assert summary["interval"].startswith("mean over seeds") and "Ranking:" in summary["ranking"]
    by_algo = {r["algo"]: r for r in summary["rows"]}
    assert set(by_algo) == {"ppo", "dqn", "uniform", "best_static", "oracle"} and all(r["n"] == 2 for r in by_algo.values())
    ppo = by_algo["ppo"]
    accs = [float(r["accuracy"]) for r in rows if r["algo"] == "ppo"]
    # two seeds: the mean (the IQM of two) and the values, no interval
    assert ppo["accuracy"] == pytest.approx(np.mean(accs)) and math.isnan(ppo["accuracy_low"])
    assert sorted(ppo["accuracy_values"]) == pytest.approx(sorted(accs))
    uniform = by_algo["uniform"]
    assert uniform["macs_ratio"] <= uniform["budget"] + 1e-9 and uniform["budget_met"]
    assert uniform["accuracy_values"][0] == pytest.approx(uniform["accuracy_values"][1])  # deterministic
    md = (root / "leaderboard.md").read_text()
    assert "| `ppo` |" in md and "| `uniform` |" in md and "test top-1 (%)" in md and "--suite smoke" in md
    assert "Δ top-1 vs uniform" in md and "Holm" in md and "one image is 0.28 points" in md
    assert (root / "learning_curves.png").stat().st_size > 5_000
    assert (root / "summary.csv").read_text().startswith("algo,")
    with open(root / "pairwise.csv") as f:
        pairs = list(csv.DictReader(f))
    assert len(pairs) == 2 * 10  # 5 methods: 10 pairs, on top-1 and on the objective
    with open(root / "learning_curves.csv") as f:
        curves = list(csv.DictReader(f))
    assert {(c["algo"], c["axis"]) for c in curves} == {(a, x) for a in ("ppo", "dqn") for x in ("steps", "seconds")}


def test_result_json_records_versions_seed_command_and_curve(smoke):
    out, _ = smoke
    result = json.loads((out / "smoke" / "runs" / "dqn" / "seed1.json").read_text())
    assert result["seed"] == 1 and result["algo"] == "dqn" and result["suite"] == "smoke"
    assert result["command"].startswith("python -m agents.benchmark run --suite smoke")
    assert {"torch", "stable_baselines3", "sb3_contrib", "gymnasium", "prune_env"} <= set(result["versions"])
    assert result["timesteps"] >= 256 and result["levels"] == [0.25, 0.5, 0.75, 1.0]
    curve = result["curve"]
    assert len(curve["steps"]) == len(curve["return"]) == CURVE_BINS and curve["steps"][-1] == 256
    assert result["final_episodes"] == 16 and math.isfinite(result["final_return"])
    for axis in ("steps", "seconds"):
        c = result["curves"][axis]
        assert len(c["x"]) == len(c["objective"]) == len(c["macs_ratio"]) == CURVE_BINS
    assert result["curves"]["steps"]["x"][-1] == 256 and 0 < result["curves"]["seconds"]["x"][-1] <= result["train_seconds"]
    assert (out / "smoke" / "runs" / "dqn" / result["model"]).is_file()  # the agent, to score it again
    record = result["episode_record"]
    assert record["env_id"] == "RuntimePrune-v0" and record["env_kwargs"]["split"] == "test"
    assert len(record["actions"]) == 4 and set(record["actions"]) <= {0.25, 0.5, 0.75, 1.0}


def test_rerun_skips_finished_runs(smoke, capsys):
    out, _ = smoke
    paths = sorted((out / "smoke" / "runs").glob("*/seed*.json"))
    stamps = [p.stat().st_mtime_ns for p in paths]
    capsys.readouterr()
    code = main(["run", "--suite", "smoke", "--algos", "ppo", "dqn", "--seeds", "0", "1", "--baselines", "uniform",
                 "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "10 already finished (skipped), 0 to run" in printed and "ran 0 runs" in printed
    assert [p.stat().st_mtime_ns for p in paths] == stamps


def test_validate_replays_a_claimed_result(smoke, tmp_path, capsys):
    out, _ = smoke
    path = out / "smoke" / "runs" / "ppo" / "seed0.json"
    ok, message = validate_result(path)
    assert ok, message
    assert main(["validate", str(path), str(out / "smoke" / "runs" / "uniform" / "seed1.json")]) == 0
    tampered = json.loads(path.read_text())
    tampered["episode_record"]["info"]["loss"] *= 0.5  # claim a better loss than the actions give
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(tampered))
    assert main(["validate", str(bad)]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_a_new_record_stores_every_test_inputs_actions_and_its_headline_re_derives(smoke, capsys):
    from prune_env.benchmark.scoring import decode_array

    out, _ = smoke
    path = out / "smoke" / "runs" / "ppo" / "seed0.json"
    result = json.loads(path.read_text())
    per_input = result["per_input"]
    actions = decode_array(per_input["actions"])
    assert actions.shape == (result["test"]["num_images"], 4) == (360, 4)
    assert per_input["actions"]["dtype"] in ("<f4", "<f8") and np.all((actions >= 0.1) & (actions <= 1.0))
    assert per_input["static_ratios"] == [1.0] * 4 and per_input["shuffle_seed"] == 0
    assert per_input["task"]["split"] == "test"
    ok, message = validate_result(path)
    assert ok and "replays exactly" in message and "headline re-derived from the stored actions of 360 test inputs" in message
    capsys.readouterr()
    assert main(["validate", str(path), str(out / "smoke" / "runs" / "dqn" / "seed1.json")]) == 0
    assert capsys.readouterr().out.count("OK   ") == 2


def _tampered(path, tmp_path, edit):
    data = json.loads(path.read_text())
    edit(data)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    return bad


def test_validate_rejects_a_headline_the_stored_actions_do_not_give(smoke, tmp_path, capsys):
    from prune_env.benchmark.scoring import decode_array, encode_array

    out, _ = smoke
    path = out / "smoke" / "runs" / "ppo" / "seed0.json"
    claimed = json.loads(path.read_text())["test"]["accuracy"]

    def better(data):  # one more image right than the actions give
        data["test"]["accuracy"] += 1 / 360

    ok, message = validate_result(_tampered(path, tmp_path, better))
    assert not ok and "replays exactly" in message  # the episode alone does not see it
    assert f"test top-1 recorded {claimed + 1 / 360:.6g}, re-derived {claimed:.6g}" in message

    def other_action(data):  # the first input run at another keep ratio in its first layer
        actions = decode_array(data["per_input"]["actions"]).copy()
        actions[0, 0] = 1.0 if actions[0, 0] < 1.0 else 0.25
        data["per_input"]["actions"] = encode_array(actions)

    ok, message = validate_result(_tampered(path, tmp_path, other_action))
    assert not ok and "headline differs" in message and "mean MAC ratio recorded" in message
    capsys.readouterr()
    assert main(["validate", str(tmp_path / "bad.json")]) == 1
    assert "FAIL smoke/ppo/seed0" in capsys.readouterr().out


def test_a_record_without_per_input_actions_is_replayed_and_says_its_headline_is_not_re_derived(smoke, tmp_path):
    from prune_env.benchmark.validate import PREDATES

    out, _ = smoke
    old = _tampered(out / "smoke" / "runs" / "uniform" / "seed0.json", tmp_path, lambda data: data.pop("per_input"))
    ok, message = validate_result(old)
    assert ok and "replays exactly" in message and message.endswith(PREDATES)
    # the published records predate per-input actions: their figures stay as published, their episodes replay
    published = Path(__file__).resolve().parents[1] / "benchmark_results" / "default" / "runs" / "uniform" / "seed0.json"
    data = json.loads(published.read_text())
    assert "per_input" not in data
    ok, message = validate_result(published)
    assert ok and message.endswith(PREDATES), message


def test_validate_names_a_checkpoint_that_is_not_the_one_the_record_ran_on(tmp_path, monkeypatch):
    import shutil

    import prune_env.assets

    monkeypatch.chdir(tmp_path)  # the record names the checkpoint by the relative path it was given
    shutil.copyfile(Path(prune_env.assets.__file__).with_name("digitnet_digits.pt"), "net.pt")
    assert main(["run", "--suite", "smoke", "--algos", "uniform", "--seeds", "0", "--checkpoint", "net.pt",
                 "--out", "bench"]) == 0
    path = tmp_path / "bench" / "smoke" / "runs" / "uniform" / "seed0.json"
    assert json.loads(path.read_text())["episode_record"]["env_kwargs"]["checkpoint"] == "net.pt"
    ok, message = validate_result(path)
    assert ok, message
    with open("net.pt", "ab") as f:  # another file at that path (a retrained network, say)
        f.write(b"\0")
    ok, message = validate_result(path)
    assert not ok and "net.pt is not the file the record ran on" in message
    Path("net.pt").unlink()
    ok, message = validate_result(path)
    assert not ok and "which is not here" in message


def test_checkpoint_suite_is_skipped_with_a_message_without_a_checkpoint(tmp_path, capsys):
    assert main(["run", "--suite", "fashion-mnist", "--out", str(tmp_path)]) == 0
    assert "needs a trained network, pass --checkpoint" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_t_interval_and_binned_curve():
    mean, lo, hi = t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and (hi - lo) / 2 == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)  # t(0.975, 2) * s / sqrt(n)
    assert math.isnan(t_interval([1.0])[1]) and t_interval([1.0])[0] == 1.0
    curve = binned_curve([10, 20, 60, 90], [1.0, 3.0, 5.0, 7.0], total=100, bins=4)
    assert curve["steps"] == [25.0, 50.0, 75.0, 100.0]
    assert curve["return"] == [2.0, 2.0, 5.0, 7.0]  # the empty second bin carries the first forward


def test_summary_ranks_budget_meeting_methods_first():
    def result(algo, acc, macs, constraint="macs", params=1.0):
        return {"algo": algo, "kind": "agent", "env_id": "RuntimePrune-v0", "timesteps": 1, "seed": 0, "constraint": constraint,
                "final_return": -1.0, "wall_seconds": 1.0,
                "test": {"accuracy": acc, "macs_ratio": macs, "params_ratio": params, "within_budget": 1.0,
                         "params_within_budget": 1.0, "budget": 0.25, "params_budget": 0.26}}

    rows = summarize([result("greedy", 0.99, 0.9), result("ok", 0.90, 0.2), result("better", 0.95, 0.25),
                      result("static", 0.97, 0.5, "params", 0.2)])
    assert [r["algo"] for r in rows] == ["static", "better", "ok", "greedy"]
    assert [r["budget_met"] for r in rows] == [True, True, True, False]


def test_exploration_noise_is_applied_once(monkeypatch, tmp_path):
    """TD3 / DDPG explore with the registry's Gaussian noise (std 0.1); AMC-style DDPG's std 0.3 overrides it in
    the hyper-parameters, so that ``build_model`` makes the one noise object the model trains with."""
    from stable_baselines3.common import noise

    made = []

    class Spy(noise.NormalActionNoise):
        def __init__(self, mean, sigma, **kwargs):
            super().__init__(mean, sigma, **kwargs)
            made.append(self)

    monkeypatch.setattr(noise, "NormalActionNoise", Spy)
    suite = get_suite("smoke")
    td3, amc = build_jobs(suite, ["td3", "amc_ddpg"], [0], str(tmp_path), timesteps=8, n_envs=2, last_n=2,
                          env_kwargs=dict(suite.env_kwargs), command="test")
    assert "action_noise_std" not in td3.hyperparams  # the registry's 0.1 applies
    assert amc.hyperparams["action_noise_std"] == 0.3
    run_agent(amc)
    assert len(made) == 1 and np.allclose(made[0]._sigma, 0.3)


def test_every_row_is_scored_on_one_scale(smoke):
    """The fixed-beta objective is -mean(L) / beta0 with one beta0 for the suite; uniform at the same MACs is
    uniform itself for the uniform row; the oracle tops the headroom, uniform is its floor; agents carry
    their shuffled control."""
    out, _ = smoke
    runs = out / "smoke" / "runs"
    load = lambda algo, seed=0: json.loads((runs / algo / f"seed{seed}.json").read_text())  # noqa: E731
    uniform, oracle, static, ppo = load("uniform"), load("oracle"), load("best_static"), load("ppo")
    assert len({r["beta0"] for r in (uniform, oracle, static, ppo)}) == 1
    assert uniform["objective"] == pytest.approx(-uniform["test"]["loss"] / uniform["beta0"])
    assert uniform["iso_mac"]["accuracy"] == uniform["test"]["accuracy"]
    assert uniform["iso_mac"]["keep_ratio"] == pytest.approx(uniform["test"]["uniform_keep_ratio"])
    assert oracle["test"]["accuracy"] >= static["test"]["accuracy"] >= uniform["test"]["accuracy"]
    assert oracle["objective"] >= uniform["objective"]
    for ref in (oracle, static):  # within the mean MAC budget
        assert ref["test"]["macs_ratio"] <= ref["test"]["budget"] + 1e-9
    adaptation = ppo["adaptation"]
    assert adaptation["gain_accuracy"] == pytest.approx(ppo["test"]["accuracy"] - adaptation["shuffled_accuracy"])
    assert adaptation["shuffled_macs_ratio"] == pytest.approx(ppo["test"]["macs_ratio"], rel=1e-9)  # same allocations
    assert ppo["iso_mac"]["macs_ratio"] <= ppo["test"]["macs_ratio"] + 1e-9
    rows = {r["algo"]: r for r in json.loads((out / "smoke" / "summary.json").read_text())["rows"]}
    assert rows["uniform"]["headroom_accuracy"] == 0.0 and rows["oracle"]["headroom_accuracy"] == 1.0
    gap = rows["oracle"]["accuracy"] - rows["uniform"]["accuracy"]
    assert rows["ppo"]["headroom_accuracy"] == pytest.approx((rows["ppo"]["accuracy"] - rows["uniform"]["accuracy"]) / gap)
    assert validate_result(runs / "best_static" / "seed0.json")[0]  # a fixed allocation replays
    # the oracle uses the labels: no episode replays, but its headline re-derives from its per-input levels
    ok, message = validate_result(runs / "oracle" / "seed0.json")
    assert ok and "no episode record (not replayable" in message and "headline re-derived" in message


def _result(algo, seed, acc, *, macs=0.1, kind="agent", objective=None):
    return {"algo": algo, "kind": kind, "env_id": "RuntimePrune-v0", "timesteps": 1, "seed": seed, "constraint": "macs",
            "final_return": -1.0, "wall_seconds": 1.0, "objective": -1.0 + acc if objective is None else objective,
            "test": {"accuracy": acc, "macs_ratio": macs, "params_ratio": 1.0, "within_budget": 1.0,
                     "params_within_budget": 1.0, "budget": 0.1, "params_budget": 0.1, "num_images": 360}}


def test_marks_show_which_methods_beat_uniform_significantly():
    from prune_env.benchmark.leaderboard import leaderboard_markdown

    results = [_result("uniform", s, 0.9083, kind="baseline") for s in range(5)]
    results += [_result("agent", s, a) for s, a in enumerate([0.936, 0.942, 0.950, 0.947, 0.947])]  # +3.6 points
    results += [_result("noisy", s, a) for s, a in enumerate([0.85, 0.97, 0.90, 0.93, 0.96])]  # within its noise
    results += [_result("worse", s, a) for s, a in enumerate([0.80, 0.81, 0.79, 0.80, 0.82])]
    rows = {r["algo"]: r for r in summarize(results)}
    assert rows["agent"]["vs_uniform"]["accuracy"]["p_holm"] < 0.05 < rows["noisy"]["vs_uniform"]["accuracy"]["p_holm"]
    md = leaderboard_markdown(summarize(results))
    line = {name: next(x for x in md.splitlines() if f"`{name}`" in x) for name in ("agent", "noisy", "worse")}
    assert "▲" in line["agent"] and "▲" not in line["noisy"] and "▼" not in line["noisy"] and "▼" in line["worse"]
    assert "+3.61 ▲" in line["agent"]  # the difference of the means in points, then the mark
    assert "94.44 [" in line["agent"]  # the mean and its 95% t-interval


def test_equal_budget_has_a_one_percent_tolerance_and_ranks_by_objective():
    results = [_result("within", 0, 0.90, macs=0.1009, objective=-1.0), _result("over", 0, 0.99, macs=0.1011, objective=0.0),
               _result("best", 0, 0.91, macs=0.09, objective=-0.5)]
    rows = summarize(results)
    assert [r["algo"] for r in rows] == ["best", "within", "over"]  # objective within budget first, then over it
    assert [r["budget_met"] for r in rows] == [True, True, False]


@pytest.mark.parametrize("option", [["--env-kwargs", "budgte=0.3"], ["--hyperparams", "learnin_rate=0.1"]])
def test_a_typo_is_a_usage_error_before_anything_is_written(tmp_path, capsys, option):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--suite", "smoke", "--out", str(tmp_path), *option])
    assert exit_.value.code == 2 and "did you mean" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_a_deterministic_row_is_scored_once_and_copied_to_the_other_seeds(smoke, tmp_path):
    from agents.benchmark import deterministic_copy, run_job

    out, _ = smoke
    suite = get_suite("smoke")
    source = out / "smoke" / "runs" / "uniform"
    target = tmp_path / "smoke" / "runs" / "uniform"
    target.mkdir(parents=True)
    (target / "seed0.json").write_text((source / "seed0.json").read_text())
    job, = build_jobs(suite, ["uniform"], [3], str(tmp_path), timesteps=8, n_envs=2, last_n=2,
                      env_kwargs=dict(suite.env_kwargs), command="test")
    result = run_job(job)
    first = json.loads((source / "seed0.json").read_text())
    assert result["seed"] == 3 and result["copied_from_seed"] == 0 and result["test"] == first["test"]
    assert json.loads((target / "seed3.json").read_text())["copied_from_seed"] == 0
    other, = build_jobs(suite, ["uniform"], [4], str(tmp_path), timesteps=8, n_envs=2, last_n=2,
                        env_kwargs={**suite.env_kwargs, "budget": 0.5}, command="test")
    assert deterministic_copy(other) is None  # another environment: scored afresh
    random_job, = build_jobs(suite, ["random"], [4], str(out), timesteps=8, n_envs=2, last_n=2,
                             env_kwargs=dict(suite.env_kwargs), command="test")
    assert deterministic_copy(random_job) is None  # seeded: never copied


def test_rows_scored_on_different_networks_are_flagged():
    from prune_env.benchmark.leaderboard import leaderboard_markdown

    results = [{**_result("uniform", s, 0.9, kind="baseline"), "beta0": 0.52} for s in range(3)]
    results += [{**_result("agent", s, 0.95), "beta0": 0.44} for s in range(3)]
    assert "Warning: the rows were scored with 2 different β0" in leaderboard_markdown(summarize(results))
    same = [{**r, "beta0": 0.44} for r in results]
    assert "Warning" not in leaderboard_markdown(summarize(same))
