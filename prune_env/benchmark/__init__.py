"""The environments as a benchmark for RL methods: scores, records, statistics, leaderboards.

* :mod:`~prune_env.benchmark.scoring`: one method's run scored on the test split, one scale for all, and
  re-scored from the per-input actions its record stores;
* :mod:`~prune_env.benchmark.replay`: episodes recorded and replayed to validate a result;
* :mod:`~prune_env.benchmark.validate`: whether a record's figures hold (its network, its episode, its
  headline re-derived);
* :mod:`~prune_env.benchmark.curves`: learning curves against steps and wall-clock time;
* :mod:`~prune_env.benchmark.statistics`: the t-interval over seeds, Welch's test, Holm's correction;
* :mod:`~prune_env.benchmark.leaderboard`: the suites' tables.

The runner that trains the methods lives on the agents' side (``python -m agents.benchmark``).
"""
