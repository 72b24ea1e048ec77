"""The one-way house (DESIGN.md section 2): every import in launch/, experiments/, analysis/ and
mdm/, including imports inside functions, points down the layer list, and analysis/ takes only
the pure-Python run contract from mdm/. The layer order is read from DESIGN.md (and from
docs/architecture.md, which must agree), not restated here."""
from __future__ import annotations

import ast
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DESIGN = os.path.join(os.path.dirname(REPO), "shared", "DESIGN.md")
ARCH = os.path.join(REPO, "docs", "architecture.md")
NOT_IMPORTABLE = ("tests", "benchmarks")          # no layer may import these
ANALYSIS_MAY_IMPORT_FROM_MDM = ("mdm.run_contract",)


def layer_list(path: str) -> list[str]:
    """The package names of the 'Layers, top to bottom:' sentence, top first."""
    text = open(path, encoding="utf-8").read()
    m = re.search(r"Layers, top to bottom:(.*?)An import may only point down", text, re.S)
    assert m, f"{path}: no 'Layers, top to bottom: ... An import may only point down' sentence"
    names = re.findall(r"`(\w+)/`", m.group(1))
    assert len(names) >= 4, names
    return names


def layers() -> list[str]:
    arch = layer_list(ARCH)
    if os.path.exists(DESIGN):
        assert layer_list(DESIGN) == arch, "docs/architecture.md's layers differ from DESIGN.md"
    return arch


def imports(path: str, repo: str = REPO) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement anywhere in the file."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    pkg = os.path.relpath(os.path.dirname(path), repo).replace(os.sep, ".")
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [f"{mod}.{a.name}" for a in node.names] if node.module in (None, "mdm") or \
                (node.level and not node.module) else [mod]
            out += [(node.lineno, n) for n in names]
    return out


def violations(repo: str = REPO, order: list[str] | None = None) -> list[str]:
    order = order or layers()
    rank = {name: i for i, name in enumerate(order)}
    bad = []
    for top in order:
        for dirpath, _, files in os.walk(os.path.join(repo, top)):
            for f in sorted(files):
                if not f.endswith(".py"):
                    continue
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, repo)
                for line, mod in imports(path, repo):
                    root = mod.split(".")[0]
                    if root in NOT_IMPORTABLE:
                        bad.append(f"{rel}:{line} imports {mod} (tests / benchmarks)")
                    elif root in rank and rank[root] < rank[top]:
                        bad.append(f"{rel}:{line} imports {mod}: {top}/ may not import the layer "
                                   f"above it ({root}/)")
                    elif top == "analysis" and root == "mdm" and not mod.startswith(
                            ANALYSIS_MAY_IMPORT_FROM_MDM):
                        bad.append(f"{rel}:{line} imports {mod}: analysis/ takes only "
                                   f"{ANALYSIS_MAY_IMPORT_FROM_MDM} from mdm/")
    return bad


def test_layer_list_is_launch_experiments_analysis_mdm():
    assert layers() == ["launch", "experiments", "analysis", "mdm"]


def test_no_import_points_up_the_layers():
    bad = violations()
    assert not bad, "upward imports:\n" + "\n".join(bad)


@pytest.mark.parametrize("where,source,expect", [
    ("mdm", "import analysis\n", "may not import the layer above"),
    ("mdm", "def f():\n    from launch import cli\n", "may not import the layer above"),
    ("mdm/data", "from experiments.sweep import Point\n", "may not import the layer above"),
    ("analysis", "from mdm.trainer import train\n", "takes only"),
    ("experiments", "from launch.sweeps import expand\n", "may not import the layer above"),
    ("launch", "import tests.conftest\n", "tests / benchmarks"),
    ("mdm", "from mdm import samplers\n", None),              # same layer: fine
    ("analysis", "from . import stats\nfrom mdm.run_contract import MODALITIES\n", None),
])
def test_the_checker_sees_a_planted_import(tmp_path, where, source, expect):
    """A module planted in a scratch tree of the four packages is flagged (or not)."""
    order = layers()
    for top in order:
        os.makedirs(tmp_path / top, exist_ok=True)
    os.makedirs(tmp_path / where, exist_ok=True)
    (tmp_path / where / "planted.py").write_text(source)
    found = violations(str(tmp_path), order)
    if expect is None:
        assert found == []
    else:
        assert len(found) == 1 and expect in found[0] and "planted.py" in found[0], found
