"""Boundaries that hold the architecture together, checked on every import statement (ast, not grep): the node
firmware never imports the host package (a board has no citynode), and no driver imports machine (hardware is
passed in)."""
from __future__ import annotations

import ast
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__" and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            yield node.lineno, node.args[0].value


def _offenders(files, banned: str) -> list[str]:
    return [f"{f.relative_to(FIRMWARE)}:{line} imports {name}" for f in files for line, name in _imports(f)
            if name == banned or name.startswith(banned + ".")]


def test_no_firmware_module_imports_citynode():
    files = sorted(FIRMWARE.rglob("*.py"))
    assert len(files) > 40
    assert _offenders(files, "citynode") == []


def test_no_driver_imports_machine():
    files = sorted((FIRMWARE / "cnode" / "drivers").rglob("*.py"))
    assert files
    assert _offenders(files, "machine") == []


def test_the_walk_sees_every_form_of_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import citynode.hwsim\nfrom citynode import x\n__import__('citynode.y')\ndef g():\n"
                 "    from citynode.hwsim.virtual_board import run  # type: ignore\n")
    assert [n for _, n in _imports(f)] == ["citynode.hwsim", "citynode", "citynode.y", "citynode.hwsim.virtual_board"]
