"""The benchmark's runs as Ray tasks: ``python -m agents.benchmark run --backend ray [--address ADDRESS]``.

Each :class:`agents.benchmark.jobs.Job` becomes one Ray task that reserves ``cpus_per_run`` CPUs (and
``gpus_per_run`` GPUs) and *returns* its result; the driver writes the result file itself, atomically,
exactly where and as the local pool writes it (``<out>/<suite>/runs/<method>/seed<k>.json``). So the
results, the resume rule (a run whose file exists is skipped) and the leaderboard are the same
whichever backend ran them, and the cluster's nodes need no shared file system for the results
(they do need the suite's inputs: a ``--checkpoint`` path must exist on every node, e.g. on a shared
mount; the embedded default ships with the package).

On a cluster (``pip install -e ".[ray]"`` on every node, the same versions)::

    ray start --head                                  # on the head node
    ray start --address HEAD_IP:6379                  # on each worker node
    python -m agents.benchmark run --suite default --backend ray --address auto

Without ``--address`` the driver starts a local Ray instance (the test does, with the smoke suite).
Ray is an optional dependency: this module imports it only when called. It takes jobs
(:mod:`agents.benchmark.jobs`) as the local pool does (:mod:`agents.benchmark.pool`); the command line
(:mod:`agents.benchmark.cli`) chooses between them.
"""

from __future__ import annotations

import time
import traceback
from typing import Any, Callable, Sequence

from agents.benchmark.jobs import Job, Outcome, compute_result, outcome_line, prepare_worker
from prune_env.io import write_json

#: what ``--backend ray`` says when Ray is missing
MISSING = "the ray backend needs Ray: pip install -e \".[ray]\" (or pip install 'ray>=2.9')"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - exercised where ray is missing
        raise SystemExit(MISSING) from exc
    return ray


def _execute(job: Job, threads: int) -> tuple[dict | None, str | None, float]:
    """In the Ray worker: one thread (or ``threads``) for torch, run the job, return ``(result, error, seconds)``."""
    prepare_worker(threads)
    start = time.time()
    try:
        return compute_result(job), None, time.time() - start
    except Exception:  # noqa: BLE001  (one failed run must not stop the others)
        return None, traceback.format_exc(), time.time() - start


def run_jobs_ray(jobs: Sequence[Job], *, address: str | None = None, cpus_per_run: float = 1.0, gpus_per_run: float = 0.0,
                 threads: int = 1, log: Callable[[str], None] = print, init_kwargs: dict | None = None) -> list[Outcome]:
    """Run ``jobs`` as Ray tasks (joining the cluster at ``address``, or a local instance) and write each
    result as it arrives; returns ``(method, seed, error or None, seconds)`` per job, as the local pool does."""
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **(init_kwargs or {}))
    try:
        remote = ray.remote(_execute).options(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=0)
        pending = {remote.remote(job, threads): job for job in jobs}
        outcomes: list[Outcome] = []
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done[0])
            try:
                result, error, seconds = ray.get(done[0])
            except Exception:  # noqa: BLE001  (a worker that died: report it, keep the others)
                result, error, seconds = None, traceback.format_exc(), float("nan")
            if result is not None:
                write_json(result, job.path)
            outcome = (job.algo, job.seed, error, seconds)
            outcomes.append(outcome)
            log(outcome_line(outcome))
        return outcomes
    finally:
        if started_here:
            ray.shutdown()
