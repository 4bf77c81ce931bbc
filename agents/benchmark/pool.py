"""The benchmark's jobs run locally: in-process, or in a pool of spawned worker processes.

``python -m agents.benchmark run --workers N`` (the default backend, ``--backend local``): each job
(:class:`agents.benchmark.jobs.Job`) runs in one of ``N`` spawned processes (one torch thread each
unless ``--threads``) and writes its own record (:func:`agents.benchmark.jobs.run_job`); with ``N = 1`` the
jobs run one after another in the driver. One failed job is reported (its traceback) and does not stop
the others. The Ray backend beside it (:mod:`agents.benchmark.ray_backend`) runs the same jobs on a
cluster and writes the same records.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import time
import traceback
from typing import Callable

from agents.benchmark.jobs import Job, Outcome, outcome_line, prepare_worker, run_job


def _run_job_safely(job: Job) -> Outcome:
    """For the process pool: run a job, report ``(algo, seed, error or None, seconds)``."""
    start = time.time()
    try:
        run_job(job)
        return job.algo, job.seed, None, time.time() - start
    except Exception:  # noqa: BLE001  (one failed run must not stop the others)
        return job.algo, job.seed, traceback.format_exc(), time.time() - start


def run_jobs(jobs: list[Job], workers: int, *, log: Callable[[str], None] = print, threads: int = 1) -> list[Outcome]:
    """Run the jobs (in ``workers`` spawned processes when ``workers > 1``, ``threads`` torch threads each);
    returns per-job outcomes."""
    outcomes = []
    if workers <= 1:
        prepare_worker(threads)
        for job in jobs:
            outcome = _run_job_safely(job)
            outcomes.append(outcome)
            log(outcome_line(outcome))
        return outcomes
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=prepare_worker,
                                initargs=(threads,)) as pool:
        futures = [pool.submit(_run_job_safely, job) for job in jobs]
        for future in cf.as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            log(outcome_line(outcome))
    return outcomes
