"""CPU latency of deployed policy pairs, measured in one process, interleaved, median of repeats.

:func:`measure_latency` times, for the report of :mod:`prune_env.evaluation.report`:

* ``dense``: the plain backbone (gating off, eager PyTorch): what one deploys without pruning;
* every policy pair: the deployed model, :func:`~prune_env.deploy.export_static` with the pair's
  static keep ratios (permanent sets removed) run by :class:`~prune_env.deploy.RuntimeExecutor`
  with the runtime keep ratios the pair's policy chose for each input (computed beforehand by a
  rollout on the masked network, so the agent's own decision time is *not* included);
* ``dense_executor``: the unpruned network through the executor at keep 1 (BN folded).

Before timing, the executor's logits and kept-channel counts are checked against the masked
network's for every timed input (``max_abs_diff``, ``kept_match``).
"""

from __future__ import annotations

import copy
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch

from prune_env.envs.task import PruningTask


@dataclass
class LatencyConfig:
    """How latency is measured: ``batch`` images per call, ``inputs`` distinct test inputs cycled
    through, ``warmup`` + ``repeats`` rounds (all configurations called once per round)."""

    repeats: int = 50
    warmup: int = 5
    batch: int = 1
    inputs: int = 32

    def validate(self) -> None:
        for name in ("repeats", "batch", "inputs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"latency {name} must be >= 1, got {getattr(self, name)!r}")
        if int(self.warmup) < 0:
            raise ValueError(f"latency warmup must be >= 0, got {self.warmup!r}")


def runtime_ratios(task: PruningTask, runtime_policy: Any, static_ratios: Any, images: torch.Tensor):
    """``(N, L)`` runtime keep ratios the policy picks for ``images`` (clipped, as applied), and the
    masked network's final :class:`~prune_env.nets.gated.StepState` (logits, kept counts)."""
    with torch.no_grad():
        state = task.rollout(images, runtime_policy, np.asarray(static_ratios, dtype=np.float64))
    n = images.shape[0]
    cols = [torch.as_tensor(r, dtype=torch.float64).reshape(-1).expand(n) for r in state.runtime_ratios]
    return torch.stack(cols, 1).cpu().numpy(), state


def time_interleaved(fns: Mapping[str, Callable[[int], object]], rounds: int, warmup: int) -> dict[str, dict]:
    """Median wall-clock and thread-CPU milliseconds per call, with the wall clock's quartiles
    (``p25_ms``, ``p75_ms``: the spread); ``fns[k](i)`` is call ``i``, round-robin."""
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    with torch.inference_mode():
        for i in range(warmup + rounds):
            for name, fn in fns.items():
                start, start_cpu = time.perf_counter(), time.thread_time()
                fn(i)
                elapsed, elapsed_cpu = time.perf_counter() - start, time.thread_time() - start_cpu
                if i >= warmup:
                    wall[name].append(1e3 * elapsed)
                    cpu[name].append(1e3 * elapsed_cpu)
    return {k: {"median_ms": statistics.median(wall[k]), "cpu_median_ms": statistics.median(cpu[k]),
                "min_ms": min(wall[k]), "p25_ms": _quantile(wall[k], 0.25), "p75_ms": _quantile(wall[k], 0.75),
                "samples": len(wall[k])} for k in fns}


def _quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (linear interpolation)."""
    return float(np.quantile(np.asarray(values, dtype=np.float64), q))


def measure_latency(task: PruningTask, pairs: Mapping[str, tuple[Any, Any]], cfg: LatencyConfig | None = None) -> dict:
    """CPU latency of the dense backbone and of each deployed policy pair (see the module docstring).

    ``pairs`` maps a row name to ``(runtime_policy, static_ratios)``. Returns ``{"configs": {name:
    {median_ms, cpu_median_ms, min_ms, samples, max_abs_diff, kept_match}}, "settings": ...}``
    with the configs ``dense`` (plain backbone), ``dense_executor`` and one per pair.
    """
    from prune_env.deploy import RuntimeExecutor, export_static

    cfg = cfg or LatencyConfig()
    cfg.validate()
    n = min(int(cfg.inputs), len(task.source))
    batch = int(cfg.batch)
    images, _ = task.source.get(np.arange(n))
    # batches of ``batch`` consecutive inputs, cycling through the ``n`` images
    starts = list(range(0, n, batch))
    chunks = [np.arange(s, s + batch) % n for s in starts]

    plain = copy.deepcopy(task.net).eval().configure(gating=False)
    fns: dict[str, Callable[[int], object]] = {}
    configs: dict[str, dict] = {}

    def chunk(i: int) -> torch.Tensor:
        return images[torch.as_tensor(chunks[i % len(chunks)])]

    fns["dense"] = lambda i: plain(chunk(i))
    configs["dense"] = {"what": "plain backbone, gating off (eager PyTorch)"}
    dense_exec = RuntimeExecutor(export_static(task.net, 1.0))
    fns["dense_executor"] = lambda i: dense_exec(chunk(i), 1.0)
    configs["dense_executor"] = {"what": "export_static(d_s = 1) + RuntimeExecutor at d_r = 1"}
    for name, (policy, static) in pairs.items():
        static = np.asarray(static, dtype=np.float64).reshape(-1)
        ratios, state = runtime_ratios(task, policy, static, images)
        executor = RuntimeExecutor(export_static(task.net, static.tolist()))
        got_logits, got_kept = [], []
        with torch.inference_mode():
            for s in range(0, n, batch):
                idx = torch.arange(s, min(s + batch, n))
                logits, kept = executor.run(images[idx], torch.as_tensor(ratios[idx.numpy()]))
                got_logits.append(logits)
                got_kept.append(kept)
        diff = float((torch.cat(got_logits) - state.logits).abs().max())
        kept_match = bool(torch.equal(torch.cat(got_kept), state.kept.cpu()))
        per_chunk = [torch.as_tensor(ratios[c]) for c in chunks]
        fns[name] = (lambda ex, pc: (lambda i: ex(chunk(i), pc[i % len(pc)])))(executor, per_chunk)
        configs[name] = {
            "what": "export_static(d_s) + RuntimeExecutor with the policy's per-input d_r",
            "max_abs_diff": diff, "kept_match": kept_match,
            "deployed_backbone_params": int(executor.model.backbone_param_count()),
            "deployed_overhead_params": int(executor.model.overhead_param_count()),
            "stored_channels": list(executor.model.stored_channels),
        }
    timings = time_interleaved(fns, int(cfg.repeats), int(cfg.warmup))
    for name, t in timings.items():
        configs[name].update(t)
    return {
        "configs": configs,
        "settings": {**asdict(cfg), "inputs": n, "threads": torch.get_num_threads(), "torch": torch.__version__,
                     "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                     "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
                     "note": "median of interleaved repeats after warm-up; agent decision time excluded"},
    }
