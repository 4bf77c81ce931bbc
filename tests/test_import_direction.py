"""The package's tiers: imports point down only, and no module imports itself back.

``prune_env`` is built in tiers, each a folder (or a module) that may import its own tier and those
below it, never those above:

====  =====================================================================================
0     core: ``nets/``, ``costs``, ``rewards``, ``data``, ``checkpoint``, ``io``, ``policies``,
      ``cnn/``, ``deploy/`` and the small utilities (``ids``, ``version``, ``progress``, ...)
1     ``envs/``: the Gymnasium environments over the core
2     ``evaluation/``: policies scored on a split, references, reports
3     ``benchmark/``: the RL benchmark's scores, records, statistics, leaderboards
4     ``cli``: argument types of the scripts
====  =====================================================================================

``prune_env`` never imports ``agents``, not even lazily: an environment that needs the other
agent's actions takes a callable, and the scripts load saved agents and pass them in. Lazy imports
inside functions count as imports here: they are how cycles hide.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import prune_env

PACKAGE = Path(prune_env.__file__).parent
REPO = PACKAGE.parent
FILES = sorted(PACKAGE.rglob("*.py"))
TIERS = {"envs": 1, "evaluation": 2, "benchmark": 3, "cli": 4}  # every other prune_env module: 0


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, module)`` of every import anywhere in ``tree`` (inside functions and classes too),
    relative imports resolved, including ``importlib.import_module("...")`` and ``__import__("...")``
    with a literal name. ``from a import b`` counts as ``a.b`` (a module or a name of ``a``)."""
    found = []
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def tier(module: str) -> int | None:
    """The tier of a ``prune_env`` module (None for anything else and for the package root)."""
    parts = module.split(".")
    if parts[0] != "prune_env" or len(parts) == 1:
        return None
    return TIERS.get(parts[1], 0)


def import_graph(packages: tuple[str, ...] = ("prune_env", "agents")) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports (lazy imports included)."""
    paths = {module_name(p): p for pkg in packages for p in (REPO / pkg).rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in paths:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in paths.items():
        targets = {resolve(imported) for _, imported in imports_of(ast.parse(path.read_text()), name, path.name == "__init__.py")}
        graph[name] = {t for t in targets if t and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_files_to_check():
    assert len(FILES) > 20 and PACKAGE / "envs" / "runtime.py" in FILES
    assert {tier(module_name(p)) for p in FILES} == {None, 0, 1, 2, 3, 4}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_prune_env_imports_point_down_and_never_to_agents(path):
    module = module_name(path)
    imported = imports_of(ast.parse(path.read_text()), module, path.name == "__init__.py")
    to_agents = [(line, name) for line, name in imported if name == "agents" or name.startswith("agents.")]
    assert not to_agents, f"{module} imports agents: {to_agents}"
    own = tier(module)
    if own is None:
        return
    upward = [(line, name) for line, name in imported if (tier(name) or 0) > own]
    assert not upward, f"{module} (tier {own}) imports a higher tier: {upward}"


def test_no_import_cycles_in_prune_env_or_agents():
    assert cycles(import_graph()) == []


def test_the_checks_see_lazy_relative_and_dynamic_imports():
    source = '''
import os
from prune_env import io
from . import rewards
def f():
    from agents.training import run
    import agents
    importlib.import_module("agents.registry")
class C:
    def g(self):
        __import__("prune_env.benchmark.leaderboard")
'''
    found = imports_of(ast.parse(source), "prune_env.envs.runtime", False)
    assert found == [(2, "os"), (3, "prune_env.io"), (4, "prune_env.envs.rewards"), (6, "agents.training.run"),
                     (7, "agents"), (8, "agents.registry"), (11, "prune_env.benchmark.leaderboard")]
    assert [tier(name) for _, name in found] == [None, 0, 1, None, None, None, 3]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_gym_make_does_not_load_stable_baselines3():
    code = ("import gymnasium as gym, sys, prune_env; gym.make('RuntimePrune-v0'); gym.make('StaticPrune-v0'); "
            "assert 'stable_baselines3' not in sys.modules, sorted(m for m in sys.modules if 'stable' in m)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_benchmark_scripts_import_the_installed_package():
    scripts = sorted((REPO / "benchmarks").glob("*.py"))
    assert scripts
    offenders = [p.name for p in scripts if "sys.path.insert" in p.read_text()]
    assert not offenders, f"{offenders} edit sys.path instead of importing the installed package"

