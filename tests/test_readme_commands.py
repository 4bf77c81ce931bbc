"""Every command of the README's and the guide's code blocks runs, so that the docs cannot drift from the code.

The README and the guide pages (:data:`PAGES`, in this order) are parsed here: every line of their
``bash`` blocks is a command and every ``python`` block a script (``sh`` / ``py`` blocks are shown,
not run), run in page order in one scratch directory (so ``--static-agent runs/staticprune-ppo-s0``
finds what the command before it trained) that links the repository's scripts. To keep the test at
a couple of minutes, step counts are made small by :data:`SMALL`, the one documented mapping from a
command to the options added to it (later options win over the README's own, e.g. ``--timesteps``);
placeholders are replaced by :data:`PLACEHOLDERS`. Commands that cannot run here are skipped with the
reason in :data:`SKIP` (a download, a GPU, the test suite itself); the test prints them.

Marked ``readme`` and left out of the plain ``python -m pytest -q`` (setup.cfg's addopts: ``-m "not readme"``):
run it with ``python -m pytest -q -m readme``, as .ci/run does in a step of its own. A command repeated
later in the README runs once.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the pages whose commands run, in order: later commands read what earlier ones wrote
PAGES = tuple(ROOT / page for page in (
    "README.md", "docs/guide/environments.md", "docs/guide/training.md", "docs/guide/any_budget.md",
    "docs/guide/cnn_phase.md", "docs/guide/evaluation.md",
))

#: (pattern of the command, reason): commands not run here
SKIP = (
    (r"^pip install", "installs the package, which the tests already run from"),
    (r"^python -m pytest", "the test suite itself"),
    (r"--dataset cifar10|--schedule cifar10", "downloads CIFAR-10"),
    (r"--checkpoint runs/(pre|imp)\.pt", "needs the CIFAR-10 checkpoints of the commands above"),
    (r"--device cuda", "needs a GPU"),
    (r"finetune_cnn\.py method", "minutes of CNN stages (no step option); tests/test_algorithm1.py runs them small"),
    (r'dataset="cifar10"', "downloads CIFAR-10 (a line of the python block, left out)"),
)
#: (pattern of the command, options appended): small step counts, documented here once
SMALL = (
    (r"train_agents\.py", ["--timesteps", "64", "--n-envs", "8", "--overwrite", "--no-progress"]),
    (r"evaluate_run\.py", ["--repeats", "2", "--warmup", "0", "--latency-inputs", "4", "--no-progress"]),
    (r"agents\.benchmark run", ["--algos", "ppo", "--baselines", "uniform", "--seeds", "0", "--timesteps", "64",
                                "--n-envs", "8", "--workers", "1"]),
    (r"rl_zoo3\.train", ["-n", "256", "--log-folder", "zoo_logs"]),
    (r"cleanrl_ppo\.py", ["--total-timesteps", "256", "--num-envs", "4", "--num-steps", "32"]),
    (r"env_throughput\.py", ["--models", "default", "--n-envs", "1", "8", "--seconds", "0.05", "--repeats", "1",
                             "--max-round-seconds", "2"]),
    (r"latency\.py", ["--models", "digitnet", "--batches", "1", "--keep", "0.5", "--repeats", "2", "--warmup", "0"]),
    (r"tradeoff_sweep\.py", ["--rates", "0", "1", "--out", "runs/tradeoff_sweep"]),
    (r"order_accuracy\.py", ["--budgets", "0.4", "--configs", "importance", "static/8", "--search-images", "64"]),
)
#: placeholders of the README and what stands in for them
PLACEHOLDERS = {"my_package.my_module:MyAlgo": "stable_baselines3:PPO"}
#: what the scratch directory links from the repository
LINKED = ("train_agents.py", "finetune_cnn.py", "evaluate_run.py", "benchmarks", "hyperparams")


def readme_commands() -> list[tuple[str, str]]:
    """``(kind, text)`` in page order: ``("bash", one command)`` or ``("python", one block)``."""
    out = []
    blocks = [block for page in PAGES for block in re.findall(r"```(bash|python)\n(.*?)```", page.read_text(), re.S)]
    for lang, body in blocks:
        if lang == "python":
            out.append(("python", body))
            continue
        for line in body.splitlines():
            if line.strip():
                out.append(("bash", " ".join(shlex.split(line, comments=True))))
    return out


def skip_reason(text: str) -> str | None:
    return next((reason for pattern, reason in SKIP if re.search(pattern, text)), None)


def prepared(text: str) -> list[str]:
    """The argv a README command runs as here: placeholders replaced, the small settings appended."""
    for old, new in PLACEHOLDERS.items():
        text = text.replace(old, new)
    argv = shlex.split(text)
    for pattern, extra in SMALL:
        if re.search(pattern, text):
            argv += extra
    return [sys.executable if a == "python" else a for a in argv]


COMMANDS = readme_commands()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = tmp_path_factory.mktemp("readme")
    for name in LINKED:
        (work / name).symlink_to(ROOT / name)
    return work


def test_readme_has_commands():
    kinds = [k for k, _ in COMMANDS]
    assert kinds.count("bash") >= 20 and kinds.count("python") >= 3
    assert any("train_agents.py --env RuntimePrune-v0" in text for _, text in COMMANDS)


def run_command(index: int, workdir: Path) -> str | None:
    """Run README command ``index`` in ``workdir``; returns the skip reason, if it is skipped."""
    kind, text = COMMANDS[index]
    first = COMMANDS.index((kind, text))
    if first < index:  # e.g. the quick start's training command, shown again where training is explained
        return f"{text}: the same command as number {first} above (run once; again, it would only overwrite its output)"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "100"}
    if kind == "python":
        kept = [line for line in text.splitlines() if not skip_reason(line)]
        script = workdir / f"readme_block_{index}.py"
        script.write_text("import torch\ntorch.set_num_threads(1)\n" + "\n".join(kept) + "\n")
        argv = [sys.executable, str(script)]
    else:
        reason = skip_reason(text)
        if reason:
            return f"{text}: {reason}"
        argv = prepared(text)
    proc = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{text}\n-> {' '.join(argv)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return None


@pytest.mark.readme
def test_readme_commands_run_in_order(workdir, capsys):
    """Every command of the README's code blocks, in README order, in one scratch directory.

    One test rather than one per command: a command reads what an earlier one wrote (a run directory,
    a checkpoint), so they must run in order and in one place, also under pytest-xdist, which would
    spread parametrised tests over its workers. The skipped commands and their reasons are printed.
    """
    skipped = [reason for index in range(len(COMMANDS)) if (reason := run_command(index, workdir))]
    with capsys.disabled():
        print(f"\nREADME commands: {len(COMMANDS) - len(skipped)} run, {len(skipped)} skipped:")
        for reason in skipped:
            print(f"  skipped: {reason}")
    assert len(skipped) < len(COMMANDS) // 2
