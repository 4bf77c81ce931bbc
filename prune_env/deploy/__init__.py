"""Deployment: static export with the permanent sets removed (Sec. 3.4), a runtime executor that
computes only the kept channels and ONNX export of the static part (an any-budget agent held at one budget:
:mod:`prune_env.evaluation.at_budget`)."""

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
    "DeployedNet", "DeployedOutput", "RuntimeExecutor", "StaticGraph",
    "assemble", "export_onnx", "export_static", "load_deployed", "save_deployed",
]
