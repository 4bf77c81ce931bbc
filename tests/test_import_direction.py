"""DESIGN.md: imports point down only; ``prune_env`` never imports ``agents``, not even lazily."""

import ast
from pathlib import Path

import pytest

import prune_env

PACKAGE = Path(prune_env.__file__).parent
FILES = sorted(PACKAGE.rglob("*.py"))


def _imports_of_agents(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, module)`` of every import of ``agents`` anywhere in ``tree`` (inside functions and
    classes too), including ``importlib.import_module("agents...")`` and ``__import__("agents...")``."""

    def is_agents(name: str | None) -> bool:
        return bool(name) and (name == "agents" or name.startswith("agents."))

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if is_agents(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and is_agents(node.module):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str) and is_agents(node.args[0].value):
                found.append((node.lineno, node.args[0].value))
    return found


def test_the_package_has_files_to_check():
    assert len(FILES) > 20 and PACKAGE / "envs" / "runtime.py" in FILES


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_prune_env_never_imports_agents(path):
    found = _imports_of_agents(ast.parse(path.read_text(), filename=str(path)))
    assert not found, f"{path.relative_to(PACKAGE.parent)} imports agents at lines {[line for line, _ in found]}: {found}"


def test_the_check_sees_lazy_and_dynamic_imports():
    source = '''
import os
from prune_env import io
def f():
    from agents.training import run
    import agents
    importlib.import_module("agents.registry")
class C:
    def g(self):
        __import__("agents")
'''
    assert [line for line, _ in _imports_of_agents(ast.parse(source))] == [5, 6, 7, 10]
