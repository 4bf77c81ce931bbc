"""The pruning environments as a benchmark for RL methods: ``python -m agents.benchmark`` (:mod:`agents.benchmark.cli`).

The package, its imports pointing down (nothing below ``cli`` imports it):

* :mod:`~agents.benchmark.suites`: the named environment configurations (*suites*) and the methods,
  baselines and references they run;
* :mod:`~agents.benchmark.jobs`: one job, ``(algorithm, seed, suite)``: what it runs and the record it
  writes (scores, curves, the recorded test episode, the per-input actions that re-derive the headline);
* :mod:`~agents.benchmark.pool`: jobs run in-process or in a pool of spawned worker processes;
* :mod:`~agents.benchmark.ray_backend`: jobs run as Ray tasks, the same records;
* :mod:`~agents.benchmark.cli`: the command line, ``run`` / ``report`` / ``validate`` / ``list``
  (``validate``: :mod:`prune_env.benchmark.validate`).

The names below are those the tests and scripts import.
"""

from agents.benchmark.cli import build_parser, main
from agents.benchmark.jobs import (
    DETERMINISTIC,
    EpisodeLog,
    Job,
    Outcome,
    build_jobs,
    compute_result,
    deterministic_copy,
    run_agent,
    run_baseline,
    run_job,
    run_reference,
)
from agents.benchmark.pool import run_jobs
from agents.benchmark.ray_backend import run_jobs_ray
from agents.benchmark.suites import (
    BASELINE_DESCRIPTIONS,
    REFERENCE_DESCRIPTIONS,
    SUITES,
    BenchAlgo,
    Suite,
    bench_algos,
    get_suite,
)

__all__ = [
    "BASELINE_DESCRIPTIONS", "DETERMINISTIC", "REFERENCE_DESCRIPTIONS", "SUITES", "BenchAlgo", "EpisodeLog", "Job",
    "Outcome", "Suite", "bench_algos", "build_jobs", "build_parser", "compute_result", "deterministic_copy",
    "get_suite", "main", "run_agent", "run_baseline", "run_job", "run_jobs", "run_jobs_ray", "run_reference",
]
