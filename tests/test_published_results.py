"""The benchmark's published records and the leaderboards that docs/results/rl_methods.md quotes agree.

``benchmark_results/<suite>/runs/<method>/seed<k>.json`` are tracked in git (the trained models beside
them are not): every leaderboard in the docs must be what ``python -m agents.benchmark report`` makes of
them, and each method's test episode must replay to the reward it states (``validate``). So a
leaderboard cannot drift from its data, and the data outlives the machine that ran it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agents.benchmark import get_suite
from prune_env.benchmark.leaderboard import load_results, suite_leaderboard
from prune_env.benchmark.validate import checkpoint_mismatch, validate_result

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmark_results"
DOCS = ROOT / "docs" / "results" / "rl_methods.md"


def published_suites() -> list[str]:
    """Suites with at least one tracked record."""
    return sorted({path.parents[2].name for path in RESULTS.glob("*/runs/*/seed*.json")})


def docs_block(suite: str) -> str:
    """The text between ``<!-- BEGIN suite -->`` and ``<!-- END suite -->`` in docs/results/rl_methods.md."""
    match = re.search(rf"<!-- BEGIN {re.escape(suite)} -->\n(.*?)<!-- END {re.escape(suite)} -->", DOCS.read_text(), re.S)
    assert match, f"docs/results/rl_methods.md has no block for suite {suite!r}"
    return match.group(1)


SUITES = published_suites()


def test_records_are_published():
    assert SUITES, "no benchmark records are tracked under benchmark_results/"


@pytest.mark.parametrize("suite", SUITES)
def test_docs_leaderboard_is_the_report_of_the_records(suite):
    expected = suite_leaderboard(RESULTS, suite, get_suite(suite).description).strip()
    block = docs_block(suite)
    assert expected in block, (f"the leaderboard of {suite!r} in docs/results/rl_methods.md is not the report of "
                               f"benchmark_results/{suite}: rerun its report command")


@pytest.mark.parametrize("suite", SUITES)
def test_records_are_complete_and_replay(suite):
    results = load_results(RESULTS, suite)
    assert results, f"no finished run of {suite!r}"
    for path in sorted((RESULTS / suite / "runs").glob("*/seed*.json")):
        assert json.loads(path.read_text())["status"] == "done", f"{path} is not a finished run"
    # seed 0 of every method replays its test episode to the stated reward (all seeds: about a minute a suite)
    replayed = [r for r in results if r["seed"] == 0 and r.get("episode_record")]
    assert replayed, f"no record of {suite!r} at seed 0 stores its test episode"
    # a suite on a user-built checkpoint (fashion-mnist: fm/warm.pt, docs/results/benchmarks.md section 9) replays
    # only on the very file its runs scored (sha256 in the record): training is not bit-reproducible across
    # CPUs, so a rebuilt checkpoint is another network; the records' completeness is checked above either way
    mismatches = sorted({m for r in replayed
                         if (m := checkpoint_mismatch(r.get("env_kwargs", {}).get("checkpoint"), r.get("checkpoint_sha256")))})
    if mismatches:
        pytest.skip(f"{suite!r} replays on a user-built checkpoint (docs/results/benchmarks.md section 9): {mismatches}")
    for result in replayed:
        ok, message = validate_result(result["_path"])
        assert ok, message
