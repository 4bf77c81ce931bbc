"""The benchmark's Ray backend (agents.benchmark.ray_backend) on a local Ray instance with the smoke suite: the same result
files as the local pool, resumed the same way, the same leaderboard.

Ray is an optional extra (``pip install -e ".[ray]"``, an 80 MB wheel), not in ``.[test]``: without it these
tests are skipped."""

import json

import pytest

ray = pytest.importorskip("ray", reason="the ray backend is an optional extra: pip install -e '.[ray]'")

from agents.benchmark import main  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

ARGS = ["run", "--suite", "smoke", "--algos", "ppo", "--seeds", "0", "1", "--baselines", "uniform", "--references"]

#: what may differ between two runs of the same job: clocks, paths
VOLATILE = {"wall_seconds", "train_seconds", "finished", "command", "curves", "copied_from_seed"}


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The same jobs through the local pool and as Ray tasks on a local instance of 2 CPUs."""
    local, remote = tmp_path_factory.mktemp("local"), tmp_path_factory.mktemp("ray")
    assert main([*ARGS, "--out", str(local)]) == 0
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main([*ARGS, "--out", str(remote), "--backend", "ray"]) == 0
        yield local, remote
    finally:
        ray.shutdown()


def _stable(path):
    data = json.loads(path.read_text())
    return {k: v for k, v in data.items() if k not in VOLATILE}


def test_ray_writes_the_results_the_local_pool_writes(both):
    local, remote = both
    names = sorted(p.relative_to(local).as_posix() for p in local.rglob("seed*.json"))
    assert names == sorted(p.relative_to(remote).as_posix() for p in remote.rglob("seed*.json"))
    assert names == [f"smoke/runs/{m}/seed{k}.json" for m in ("ppo", "uniform") for k in (0, 1)]
    for name in names:  # the same jobs, the same numbers (one torch thread each, seeded)
        mine, theirs = _stable(local / name), _stable(remote / name)
        if json.loads((local / name).read_text()).get("copied_from_seed") is not None:
            # the local runner copies a deterministic row's first seed (its training-env returns and recorded
            # episode are that seed's); the test scores are the same
            mine, theirs = ({k: d[k] for k in ("test", "objective", "iso_mac", "beta0")} for d in (mine, theirs))
        assert mine == theirs, name


def test_ray_resumes_and_reports_like_the_local_pool(both, capsys):
    local, remote = both
    paths = sorted(remote.rglob("seed*.json"))
    stamps = [p.stat().st_mtime_ns for p in paths]
    capsys.readouterr()
    assert main([*ARGS, "--out", str(remote), "--backend", "ray"]) == 0
    printed = capsys.readouterr().out
    assert "4 already finished (skipped), 0 to run on Ray" in printed
    assert [p.stat().st_mtime_ns for p in paths] == stamps
    table = lambda root: [line.split("|")[1:7] for line in (root / "smoke" / "leaderboard.md").read_text().splitlines()  # noqa: E731
                          if line.startswith("| ")]
    assert table(local) == table(remote)  # rank, method, kind, steps, seeds, top-1
