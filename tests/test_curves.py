"""Learning-curve figure: the y range keeps every method's end in view (a collapsed method is not clipped away)."""

from __future__ import annotations

import numpy as np
import pytest

import prune_env.benchmark.curves as curves


def test_y_range_clips_exploration_but_not_a_methods_end():
    # 100 points of methods that learn, and one low point: below the 2nd percentile, so clipped...
    points = list(np.linspace(0.0, 1.0, 100)) + [-10.0]
    low, high = curves.y_range(points, [])
    assert low > -10.0 and high > 1.0
    # ...unless it is where a method ends
    low, high = curves.y_range(points, [1.0, -10.0])
    assert low < -10.0 < 1.0 < high


def _run(algo: str, seed: int, objective: list[float]) -> dict:
    x = list(range(1, len(objective) + 1))
    macs = [0.3] * len(objective)
    return {"kind": "agent", "algo": algo, "seed": seed, "test": {"budget": 0.3},
            "curves": {"steps": {"x": x, "objective": objective, "macs_ratio": macs},
                       "seconds": {"x": x, "objective": objective, "macs_ratio": macs}}}


def test_plot_curves_passes_each_methods_last_mean(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    seen = []
    real = curves.y_range
    monkeypatch.setattr(curves, "y_range", lambda points, finals: seen.append(list(finals)) or real(points, finals))
    results = [_run("good", s, [-1.0, -0.5, -0.2, -0.1]) for s in (0, 1)]
    results += [_run("collapsed", s, [-1.0, -5.0, -8.0, -9.0 - s]) for s in (0, 1)]
    path = curves.plot_curves(results, tmp_path / "curves.png")
    assert path.stat().st_size > 5_000
    objective_finals = seen[0]  # the objective panels are set first, then the MAC panels
    assert sorted(objective_finals) == pytest.approx([-9.5, -0.1])


def test_method_styles_are_distinct_stable_and_avoid_the_budget_red():
    names = list(curves.METHOD_ORDER) + [f"extra{i}" for i in range(18)]  # 32 methods
    styles = [curves.method_style(a, names) for a in names]
    assert len({(s["color"], str(s["ls"])) for s in styles}) == len(names) == 32
    assert all(s["color"] not in ("#d62728", "red") for s in styles)
    # a method keeps its style whichever other methods a suite has
    assert curves.method_style("sac", ["sac"]) == curves.method_style("sac", names)
    assert curves.method_style("recurrent_ppo")["lw"] > curves.method_style("ppo")["lw"]
    # a method outside the registered ones takes the next free style, not a registered method's
    registered = {(s["color"], str(s["ls"])) for s in styles[:len(curves.METHOD_ORDER)]}
    mine = curves.method_style("my_algo", ["my_algo", "sac"])
    assert (mine["color"], str(mine["ls"])) not in registered
