"""The package as the README describes it: every module in the layers contract and in the README's
table once, each module short, and importing a module changes no other module's state."""

import ast
import importlib
import re
import sys
import tomllib

import pytest

from lc_utils.settings import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "lc_utils"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
MAX_LINES = 500


def _contract_modules() -> list[str]:
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    names = []
    for contract in config["tool"]["importlinter"]["contracts"]:
        if contract["type"] == "layers":
            for layer in contract["layers"]:
                names += [name.strip().removeprefix("lc_utils.") for name in re.split(r"[|:]", layer)]
    return names


def _readme_table_modules() -> list[str]:
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("## How the package is organised", 1)[1].split("\n## ", 1)[0]
    names = []
    for line in section.splitlines():
        cells = line.split("|")
        if line.startswith("|") and len(cells) > 3:  # the modules column; the header has no backticks
            names += re.findall(r"`([a-z_]+)`", cells[2])
    return names


def test_every_module_is_in_the_layers_contract_once() -> None:
    listed = _contract_modules()
    assert sorted(listed) == MODULES, {"twice": sorted({m for m in listed if listed.count(m) > 1}),
                                       "missing": sorted(set(MODULES) - set(listed)),
                                       "unknown": sorted(set(listed) - set(MODULES))}


def test_every_module_is_in_the_readme_table_once() -> None:
    listed = _readme_table_modules()
    assert sorted(listed) == MODULES, {"twice": sorted({m for m in listed if listed.count(m) > 1}),
                                       "missing": sorted(set(MODULES) - set(listed)),
                                       "unknown": sorted(set(listed) - set(MODULES))}


@pytest.mark.parametrize("module", MODULES)
def test_no_module_holds_more_than_one_idea_of_500_lines(module: str) -> None:
    lines = len((PACKAGE / f"{module}.py").read_text().splitlines())
    assert lines <= MAX_LINES, f"lc_utils/{module}.py has {lines} lines: split it by idea"


def _state(module: object) -> dict[str, str]:
    """What a module holds that another module's import could change: its mutable globals."""
    return {name: repr(value) for name, value in vars(module).items()
            if isinstance(value, dict | list | set) and not name.startswith("__")}


def test_importing_a_module_changes_no_other_module() -> None:
    """Each module imported in turn, after the ones before it: the mutable globals of every module
    loaded already are as they were (how a resume behaves cannot depend on what was imported)."""
    for name in MODULES:
        loaded = {key: _state(module) for key, module in sys.modules.items()
                  if key.startswith("lc_utils.") and module is not None}
        importlib.import_module(f"lc_utils.{name}")
        changed = [key for key, before in loaded.items() if _state(sys.modules[key]) != before]
        assert not changed, f"importing lc_utils.{name} changed {changed}"


def _side_effects(tree: ast.Module) -> list[str]:
    """Top-level statements that act on something beyond the module's own names: a bare call
    (``register(...)``) or an assignment into another object (``other.X = ...``, ``table[k] = ...``)."""
    found = []
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            found.append(f"line {node.lineno}: {ast.unparse(node)[:60]}")
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found += [f"line {node.lineno}: {ast.unparse(node)[:60]}" for target in targets
                      if isinstance(target, ast.Attribute | ast.Subscript)]
    return found


@pytest.mark.parametrize("module", MODULES)
def test_a_module_does_nothing_to_others_when_imported(module: str) -> None:
    """No top-level statement of a module calls into or assigns to another object: what it holds
    is defined where it is declared, never filled in by whoever imports it."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    assert not _side_effects(tree), f"lc_utils/{module}.py at import: {_side_effects(tree)}"


def test_the_side_effect_check_finds_the_kind_it_looks_for() -> None:
    source = "import x\nA = 1\nx.register(A)\nx.TABLE['a'] = A\nif __name__ == '__main__':\n    x.run()\n"
    tree = ast.parse(source)
    assert [line.split(":")[0] for line in _side_effects(tree)] == ["line 3", "line 4"]
