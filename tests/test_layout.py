"""The layout's rules, checked on the source: core imports neither backbone nor detector, the
detector takes only the network from backbone, files and functions stay a readable size, and
``backbone.googlenet`` is the module."""

from __future__ import annotations

import ast
import glob
import importlib
import os
import types

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETWORK_MODULES = {"backbone", "backbone.googlenet", "backbone.weights", "backbone.aux", "backbone.layers",
                   "backbone.init"}


def sources(*packages: str) -> list[str]:
    return sorted(f for p in packages for f in glob.glob(os.path.join(ROOT, p, "**", "*.py"), recursive=True))


def imported(path: str) -> set[str]:
    """Absolute module names ``path`` imports (relative imports are inside its own package)."""
    names = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_core_imports_neither_backbone_nor_detector():
    bad = {os.path.relpath(f, ROOT): sorted(m for m in imported(f) if m.split(".")[0] in ("backbone", "detector"))
           for f in sources("core")}
    assert not {f: m for f, m in bad.items() if m}


def test_detector_takes_only_the_network_from_backbone():
    bad = {os.path.relpath(f, ROOT): sorted(m for m in imported(f)
                                            if m.split(".")[0] == "backbone" and m not in NETWORK_MODULES)
           for f in sources("detector")}
    assert not {f: m for f, m in bad.items() if m}


def test_files_and_functions_stay_readable():
    too_long = []
    for f in sources("core", "backbone", "detector", "tools"):
        src = open(f, encoding="utf-8").read()
        if src.count("\n") > 400:
            too_long.append(f"{os.path.relpath(f, ROOT)}: {src.count(chr(10))} lines")
        for n in ast.walk(ast.parse(src)):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60:
                too_long.append(f"{os.path.relpath(f, ROOT)}:{n.lineno} {n.name}()")
    assert not too_long


@pytest.mark.parametrize("name", ["backbone.googlenet", "backbone.pretrain", "detector.eval_map", "core.config"])
def test_dotted_imports_reach_modules(name):
    assert isinstance(importlib.import_module(name), types.ModuleType)
    parent, _, child = name.rpartition(".")
    assert isinstance(getattr(importlib.import_module(parent), child), types.ModuleType)  # not shadowed


def test_tools_do_not_edit_sys_path():
    assert not [f for f in sources("tools") if "sys.path" in open(f, encoding="utf-8").read()]


def test_the_data_pipeline_takes_nothing_from_the_packages_above_it():
    """detector.data reads, transforms and batches; it may use box_ops and core, never the model,
    inference, scoring or proposal-making packages that are built on it."""
    allowed = ("detector.data", "detector.box_ops")
    bad = {}
    for f in sources(os.path.join("detector", "data")):
        tree = ast.parse(open(f, encoding="utf-8").read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:  # relative: resolve against detector/data
                package = "detector.data" if node.level == 1 else "detector"
                target = f"{package}.{node.module}" if node.module else package
                if not target.startswith(allowed):
                    bad.setdefault(os.path.relpath(f, ROOT), []).append(target)
        bad_abs = [m for m in imported(f) if m.startswith("detector") and not m.startswith(allowed)]
        if bad_abs:
            bad.setdefault(os.path.relpath(f, ROOT), []).extend(bad_abs)
    assert not bad


def test_the_readme_is_a_map_that_names_every_module():
    """README.md: at most 400 lines, a contents list at the top, and a layout table in which every
    module of core, backbone, detector and tools appears in its folder's row."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert text.count("\n") <= 400
    assert "## Contents" in text[:3000]
    rows = {}
    for line in text.split("## Layout", 1)[1].split("\n## ", 1)[0].splitlines():
        cells = line.split("|")
        if len(cells) > 2 and cells[1].strip().startswith("`"):
            rows[cells[1].strip().strip("`").rstrip("/")] = cells[2]
    missing = []
    for f in sources("core", "backbone", "detector", "tools"):
        folder, name = os.path.split(os.path.relpath(f, ROOT))
        if name != "__init__.py" and f"`{name}`" not in rows.get(folder, ""):
            missing.append(os.path.join(folder, name))
    assert not missing, f"modules the README's layout table does not name in their folder's row: {missing}"
