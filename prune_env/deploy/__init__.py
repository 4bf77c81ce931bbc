"""Deployment: static export with the permanent sets removed (Sec. 3.4), a runtime executor that
computes only the kept channels, and ONNX export of the static part; an any-budget agent's budget
as a deployment-time argument (:mod:`prune_env.deploy.budget`)."""

from prune_env.deploy.budget import BudgetedPolicy, budgeted_policy, keep_ratios_at_budget, run_at_budget
from prune_env.deploy.executor import RuntimeExecutor
from prune_env.deploy.export import (
    DeployedNet,
    DeployedOutput,
    assemble,
    export_static,
    load_deployed,
    save_deployed,
)
from prune_env.deploy.onnx_export import StaticGraph, export_onnx

__all__ = [
    "BudgetedPolicy", "DeployedNet", "DeployedOutput", "RuntimeExecutor", "StaticGraph",
    "assemble", "budgeted_policy", "export_onnx", "export_static", "keep_ratios_at_budget", "load_deployed",
    "run_at_budget", "save_deployed",
]
