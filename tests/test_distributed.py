"""Data-parallel training: two gloo processes on CPU take the same steps as one process.

What is compared: :func:`prune_env.cnn.train_stage` with a global batch of 32 run by one
process, and by two processes (16 samples each) under ``DistributedDataParallel``. The data
order does not depend on the number of processes, and DDP averages the two per-rank
mean-loss gradients, which equals the gradient of the mean loss over the 32 samples. BatchNorm
in train mode would normalise each half-batch with its own statistics (a real difference, not
a bug; SyncBatchNorm would remove it but PyTorch supports it on CUDA only), so the
equivalence runs use ``freeze_bn=True``: BN normalises with its running statistics, while its
affine parameters, the convolutions, the head, the predictors ``f`` and ``u_s`` all train.
All three stages run (the importance stage switches from ``u_s`` held at 1 to ``u_s`` free,
which re-wraps the model), and every parameter must agree to 1e-5.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo is not available"
)

ROOT = Path(__file__).resolve().parents[1]
GLOBAL_BATCH = 32


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_schedule(freeze_bn: bool) -> dict[str, torch.Tensor]:
    """A few steps of every stage on digits; returns the final state dict."""
    from prune_env.cnn import train_stage
    from prune_env.data import load_dataset
    from prune_env.nets import build_net

    splits = load_dataset("digits")
    torch.manual_seed(0)
    net = build_net("digitnet")
    common = dict(batch_size=GLOBAL_BATCH, device="cpu", progress=False, seed=5, freeze_bn=freeze_bn)
    train_stage(net, "pretrain", splits, epochs=1, lr=3e-3, steps_per_epoch=6, **common)
    train_stage(net, "importance", splits, epochs=2, lr=1e-3, steps_per_epoch=3, **common)
    history = train_stage(net, "finetune", splits, epochs=1, lr=1e-3, keep=0.5, steps_per_epoch=3, **common)
    assert history[0]["val_kept_fraction"][0] < 1.0
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        for freeze_bn in (True, False):
            state = run_schedule(freeze_bn)
            torch.save(state, Path(out_dir) / f"rank{rank}_freeze{int(freeze_bn)}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_states(tmp_path_factory) -> dict[bool, list[dict[str, torch.Tensor]]]:
    """Final states of both ranks of a 2-process gloo run, with BN frozen and in train mode."""
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    return {f: [torch.load(out / f"rank{r}_freeze{int(f)}.pt") for r in range(2)] for f in (True, False)}


def test_two_processes_equal_one_on_the_same_global_batch(two_process_states, one_thread):
    rank0, rank1 = two_process_states[True]
    single = run_schedule(freeze_bn=True)
    assert not dist.is_initialized()
    for name, value in single.items():
        assert torch.equal(rank0[name], rank1[name]), f"ranks disagree on {name}"
        diff = (rank0[name].float() - value.float()).abs().max().item() if value.numel() else 0.0
        print(f"{name}: max |DDP - one process| = {diff:.2e}")
        assert torch.allclose(rank0[name].float(), value.float(), atol=1e-5, rtol=0), f"{name}: DDP != one process"
    # the runs really trained (u_s left 1 and the predictor left its zero init)
    u_s = [k for k in single if k.endswith("static_importance")]
    assert any(not torch.allclose(single[k], torch.ones_like(single[k])) for k in u_s)


def test_ranks_stay_in_sync_with_batchnorm_in_train_mode(two_process_states):
    rank0, rank1 = two_process_states[False]
    for name in rank0:  # parameters by DDP's all-reduce, BN statistics by the broadcast from rank 0
        assert torch.equal(rank0[name], rank1[name]), f"ranks disagree on {name}"


def test_torchrun_command_line(tmp_path):
    out = tmp_path / "pre.pt"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
        str(ROOT / "finetune_cnn.py"), "pretrain", "--epochs", "1", "--steps-per-epoch", "4", "--batch-size", "32",
        "--out", str(out), "--no-progress", "--device", "cpu", "--threads", "1",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 process(es)" in proc.stdout
    assert proc.stdout.count("done: pretrain") == 1  # only rank 0 prints
    from prune_env.checkpoint import load_checkpoint

    _, payload = load_checkpoint(out)
    assert payload["epoch"] == 1 and payload["hparams"]["world_size"] == 2
