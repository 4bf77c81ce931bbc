"""The pruning environments as a benchmark for RL methods: ``python -m agents.benchmark``.

Algorithms x seeds x named environment configurations (*suites*), each at a fixed step budget::

    python -m agents.benchmark run --suite default --algos recurrent_ppo ppo --seeds 0 1 2 3 4   # main job's budget
    python -m agents.benchmark run --suite smoke --algos ppo dqn --seeds 0 1 --out /tmp/bench
    python -m agents.benchmark run --suite fashion-mnist --checkpoint fm/warm.pt
    python -m agents.benchmark run --suite default --backend ray --address auto    # runs as Ray tasks on a cluster
    python -m agents.benchmark validate benchmark_results/default/runs/ppo/seed0.json
    python -m agents.benchmark report --suite default                   # re-aggregate only
    python -m agents.benchmark list

Subcommands (``run`` is the default when the first argument is an option):

* ``run``: builds the jobs of the suite's (or the given) methods, baselines and references x seeds
  (:func:`agents.benchmark.jobs.build_jobs`), skips every job whose record exists (``--force`` reruns),
  runs the rest on a local process pool (``--workers``, :mod:`agents.benchmark.pool`) or as Ray tasks
  (``--backend ray``, :mod:`agents.benchmark.ray_backend`), each writing
  ``<out>/<suite>/runs/<method>/seed<k>.json`` (:mod:`agents.benchmark.jobs`; the record names this
  exact command), then aggregates the suite (:func:`prune_env.benchmark.leaderboard.write_report`):
  ``results.csv``, ``summary.csv`` / ``summary.json``, ``pairwise.csv`` (Welch tests, Holm-adjusted),
  ``leaderboard.md``, ``learning_curves.png`` / ``learning_curves.csv``;
* ``report``: the aggregation alone;
* ``validate RESULT.json ...``: per record, ``OK`` or ``FAIL`` with what was checked
  (:mod:`prune_env.benchmark.validate`): that the network is the file the record ran on (sha256), that
  the recorded test episode replays, and that the headline figures (test top-1, mean MAC ratio, loss,
  fixed-β objective, parameter ratio, inputs within budget, β0, uniform at the same MACs, the shuffled
  control) are what the stored per-input actions give when the network is run again at exactly those
  keep ratios; a figure that differs is named with both values. Records written before per-input
  actions were stored (every record published under ``benchmark_results/`` so far) say ``record
  predates per-input actions: headline not re-derived`` and are checked by their episode as before.
  Exit status 1 when any record fails;
* ``list``: the suites, methods, baselines and references.

This runner trains agents, so it lives on the agents' side (DESIGN.md: imports point down;
``prune_env`` never imports ``agents``); the library keeps what is about results (scoring,
intervals, significance, tables, plots, replay and validation).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from agents.arguments import check_env_kwargs, check_hyperparams
from agents.benchmark.jobs import build_jobs
from agents.benchmark.pool import run_jobs
from agents.benchmark.ray_backend import run_jobs_ray
from agents.benchmark.suites import BASELINE_DESCRIPTIONS, REFERENCE_DESCRIPTIONS, SUITES, bench_algos, get_suite
from prune_env.benchmark.leaderboard import write_report
from prune_env.benchmark.validate import validate_result
from prune_env.cli import add_threads_option, check_choice, parse_key_values, positive_int, seed_value
from prune_env.ids import ENV_IDS

DEFAULT_OUT = "benchmark_results"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m agents.benchmark", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run a suite (skipping finished runs), then write the report")
    run.add_argument("--suite", default="default", help=f"one of {sorted(SUITES)} (default: %(default)s)")
    run.add_argument("--algos", nargs="*", default=None,
                     help="algorithms, baselines, references (default: the suite's; none with an empty list)")
    run.add_argument("--baselines", nargs="*", default=None, help="baselines (default: the suite's; none with an empty list)")
    run.add_argument("--references", nargs="*", default=None,
                     help=f"references {sorted(REFERENCE_DESCRIPTIONS)} (default: the suite's; none with an empty list)")
    run.add_argument("--seeds", nargs="+", type=seed_value, default=None, help="seeds (default: the suite's)")
    run.add_argument("--timesteps", type=positive_int, default=None, help="steps per training run (default: the suite's)")
    run.add_argument("--n-envs", type=positive_int, default=None, help="episodes run together (default: the suite's)")
    run.add_argument("--last-n", type=positive_int, default=None,
                     help="episodes the final return averages (default: the suite's)")
    run.add_argument("--env-kwargs", nargs="*", default=None, metavar="KEY=VALUE",
                     help="environment keywords on top of the suite's (e.g. data_root=data/); the suite's name stays, "
                          "so give such runs their own --out")
    run.add_argument("--hyperparams", nargs="*", default=None, metavar="KEY=VALUE",
                     help="hyper-parameters on top of every agent's (e.g. learning_rate=3e-4)")
    run.add_argument("--workers", type=positive_int, default=1, help="local processes (default: 1, in-process)")
    run.add_argument("--backend", choices=("local", "ray"), default="local",
                     help="local: a process pool of --workers; ray: one Ray task per run (pip install -e '.[ray]')")
    run.add_argument("--address", default=None,
                     help="Ray cluster to join (e.g. auto after `ray start --head`; default: a local Ray instance)")
    run.add_argument("--cpus-per-run", type=float, default=None,
                     help="Ray: CPUs each run reserves (default: --threads)")
    run.add_argument("--gpus-per-run", type=float, default=0.0,
                     help="Ray: GPUs each run reserves; above 0 the agents' networks go to cuda (default: 0)")
    add_threads_option(run)
    run.add_argument("--out", default=DEFAULT_OUT, help="results directory (default: %(default)s)")
    run.add_argument("--checkpoint", default=None, help="network checkpoint (needed by the fashion-mnist suite)")
    run.add_argument("--data-root", default=None, help="dataset root (fashion-mnist)")
    run.add_argument("--force", action="store_true", help="rerun finished runs")
    run.add_argument("--figure", default=None, help="also copy the learning-curve PNG here")
    rep = sub.add_parser("report", help="aggregate finished runs into CSV / JSON / markdown / PNG")
    rep.add_argument("--suite", default="default")
    rep.add_argument("--out", default=DEFAULT_OUT)
    rep.add_argument("--figure", default=None)
    val = sub.add_parser("validate", help="check result JSON files: replay the recorded test episode, re-derive the "
                                          "headline figures from the stored per-input actions (prune_env.benchmark.validate)")
    val.add_argument("results", nargs="+", metavar="RESULT.json")
    val.add_argument("--rtol", type=float, default=1e-5,
                     help="relative tolerance of the replay and of each re-derived figure (default: %(default)s)")
    sub.add_parser("list", help="list suites, algorithms, baselines and references")
    return p


def _list() -> None:
    for s in SUITES.values():
        print(f"suite {s.name}: {s.description}; {s.timesteps} steps, seeds {list(s.seeds)}, algos {list(s.algos)}, "
              f"baselines {list(s.baselines)}, references {list(s.references)}")
    for a in bench_algos().values():
        print(f"algo {a.name}: {a.description} [{a.env_id}]")
    for name, text in BASELINE_DESCRIPTIONS.items():
        print(f"baseline {name}: {text}")
    for name, text in REFERENCE_DESCRIPTIONS.items():
        print(f"reference {name}: {text}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["run", *argv]
    args = build_parser().parse_args(argv)
    command = shlex.join(["python", "-m", "agents.benchmark", *argv])
    if args.command == "list":
        _list()
        return 0
    if args.command == "validate":
        from prune_env.checkpoint import CheckpointError
        from prune_env.errors import UsageError

        ok_all = True
        for path in args.results:
            try:  # a record is user input: one that cannot be read is a usage error naming it
                ok, message = validate_result(path, args.rtol)
            except (UsageError, CheckpointError, FileNotFoundError) as exc:
                build_parser().error(str(exc))
            print(("OK   " if ok else "FAIL ") + message)
            ok_all &= ok
        return 0 if ok_all else 1
    if args.command in ("report", "run"):
        try:
            check_choice(args.suite, sorted(SUITES), "--suite")
        except argparse.ArgumentTypeError as exc:
            build_parser().error(str(exc))
    if args.command == "report":
        paths = write_report(args.out, args.suite, description=get_suite(args.suite).description, figure=args.figure)
        print(Path(paths["leaderboard_md"]).read_text())
        return 0
    suite = get_suite(args.suite)
    env_kwargs = dict(suite.env_kwargs)
    if suite.needs_checkpoint:
        if not args.checkpoint:
            print(f"suite {suite.name!r} skipped: it needs a trained network, pass --checkpoint PATH "
                  f"(e.g. from finetune_cnn.py on {suite.env_kwargs.get('dataset')})", file=sys.stderr)
            return 0
        env_kwargs["checkpoint"] = args.checkpoint
    elif args.checkpoint:
        env_kwargs["checkpoint"] = args.checkpoint
    if args.data_root:
        env_kwargs["data_root"] = args.data_root
    try:  # a typo is a usage error before anything is written
        extra_env = parse_key_values(args.env_kwargs, "--env-kwargs")
        check_env_kwargs(ENV_IDS, extra_env)
        extra_hp = parse_key_values(args.hyperparams, "--hyperparams")
        known = {*bench_algos(), *BASELINE_DESCRIPTIONS, *REFERENCE_DESCRIPTIONS}
        for option, given in (("--algos", args.algos), ("--baselines", args.baselines), ("--references", args.references)):
            for name in given or []:
                check_choice(name, sorted(known), option)
        for name in {a.algo for n, a in bench_algos().items() if n in (args.algos or suite.algos)}:
            check_hyperparams(name, extra_hp)
    except argparse.ArgumentTypeError as exc:
        build_parser().error(str(exc))
    env_kwargs.update(extra_env)
    baselines = list(suite.baselines if args.baselines is None else args.baselines)
    references = list(suite.references if args.references is None else args.references)
    algos = list(suite.algos if args.algos is None else args.algos)
    names = algos + [b for b in baselines + references if b not in algos]
    seeds = list(suite.seeds if args.seeds is None else args.seeds)
    device = "cuda" if args.backend == "ray" and args.gpus_per_run > 0 else "cpu"
    jobs = build_jobs(suite, names, seeds, args.out, timesteps=args.timesteps or suite.timesteps,
                      n_envs=args.n_envs or suite.n_envs, last_n=args.last_n or suite.last_n, env_kwargs=env_kwargs,
                      command=command, device=device, hyperparams=extra_hp)
    todo = [j for j in jobs if args.force or not j.path.is_file()]
    where = (f"Ray ({args.address or 'a local instance'})" if args.backend == "ray" else f"{args.workers} worker(s)")
    print(f"suite {suite.name}: {len(jobs)} runs ({len(names)} methods x {len(seeds)} seeds), "
          f"{len(jobs) - len(todo)} already finished (skipped), {len(todo)} to run on {where}")
    start = time.time()
    if args.backend == "ray":
        outcomes = run_jobs_ray(todo, address=args.address, cpus_per_run=args.cpus_per_run or float(max(args.threads, 1)),
                                gpus_per_run=args.gpus_per_run, threads=max(args.threads, 1))
    else:
        outcomes = run_jobs(todo, args.workers, threads=args.threads)
    failed = [o for o in outcomes if o[2]]
    print(f"ran {len(outcomes)} runs in {time.time() - start:.1f}s ({len(failed)} failed)")
    paths = write_report(args.out, suite.name, description=suite.description, command=command, figure=args.figure)
    print(Path(paths["leaderboard_md"]).read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
