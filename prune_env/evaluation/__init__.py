"""Evaluation of pruning policies on a whole split, beside the references that give it meaning.

* :mod:`~prune_env.evaluation.split`: roll a (runtime policy, static keep ratios) pair over a split
  and summarise it (top-1, MAC speed-up, stored parameters);
* :mod:`~prune_env.evaluation.references`: uniform at equal MACs, the best static allocation, the
  agent's shuffled allocations, the per-input label oracle;
* :mod:`~prune_env.evaluation.baselines`: non-RL policies under the same budget;
* :mod:`~prune_env.evaluation.budget_sweep`: an any-budget agent's accuracy-cost curve;
* :mod:`~prune_env.evaluation.at_budget`: an any-budget agent held at one budget at deployment;
* :mod:`~prune_env.evaluation.report`: the paper-style report (Tables 1-3), built and written;
* :mod:`~prune_env.evaluation.latency`: the CPU latency of deployed policy pairs, for the report;
* :mod:`~prune_env.evaluation.tables`: the report's tables and the reference table, as text;
* :mod:`~prune_env.evaluation.plots`: the evaluation's figures and the shared matplotlib setup.

This tier builds on the environments (:mod:`prune_env.envs`) and never on the benchmark tier.
"""
