"""A virtual node for the flash tests: the MicroPython unix port on a pty, with a temp directory as its flash.

`VirtualNode(i2c=[0x76]).start()` gives `.port` (a /dev/pts path that mpremote opens like a USB serial port) and
`.fs` (the node's filesystem: the unix port's working directory). The node "reboots" when MicroPython exits (as
it does on Ctrl-D in raw REPL, or on machine.reset()): the supervisor starts it again on the same pty, running
main.py if there is one (`micropython -i main.py`, so Ctrl-C lands in the REPL, as on a board). As on a board, a
Ctrl-C from the host interrupts running code (the relay turns it into SIGINT while the program takes it) and is an
ordinary character at the REPL. `reset()` resets the chip as esptool does after writing an image.

The node's `machine` module is the hardware double (citynode.sim.hwsim.machine) whose I2C buses acknowledge the
addresses given in `i2c` (a sensor that is absent is simply not listed). CPython only (pty, subprocess).
"""
from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import subprocess
import tempfile
import threading
import tty
from pathlib import Path

from citynode.sim.runtime import micropython_exe

HOST_DIR = Path(__file__).resolve().parents[3]

# The node's `machine`: the hardware double, plus I2C devices that acknowledge (listed in vnode_hw.json).
_MACHINE_SHIM = """\
# machine for the virtual node: the citynode.sim.hwsim double with the I2C devices of vnode_hw.json attached
import json
from citynode.sim.hwsim import machine as _m
from citynode.sim.hwsim.machine import *

try:
    with open(_HW_PATH) as _f:
        _HW = json.load(_f)
except OSError:
    _HW = {}

# the chip the node was flashed as (its board.json): the ESP32-S3's pins are not the ESP32's
try:
    with open("board.json") as _f:
        _m._state["chip"] = _m._CHIPS.get(json.load(_f).get("chip"), _m._CHIPS["esp32"])
except (OSError, ValueError):
    pass


class _Ack:
    def write(self, data):
        pass

    def read(self, n):
        return bytes(n)


class _RealClock:
    # the twins' clock on the virtual node: the unix port's own ticks, since its firmware waits in real time
    def monotonic_ms(self):
        import time
        return time.ticks_ms()

    def ticks_ms(self):
        import time
        return time.ticks_ms()

    def ticks_diff(self, a, b):
        import time
        return time.ticks_diff(a, b)

    def sleep_ms(self, ms):
        import time
        time.sleep_ms(ms)

    def time(self):
        import time
        return time.time()


_TWINS = _HW.get("twins") or {}
if _TWINS:
    _m._state["clock"] = _RealClock()


class I2C(_m.I2C):
    def __init__(self, *args, **kw):
        _m.I2C.__init__(self, *args, **kw)
        for addr in _HW.get("i2c", ()):
            self.attach(addr, _Ack())
        if "bme280" in _TWINS:
            from citynode.sim.hwsim.twin_bme280 import BME280Twin
            self.attach(_TWINS["bme280"], BME280Twin(_RealClock()))


class UART(_m.UART):
    def __init__(self, id=1, *args, **kw):
        _m.UART.__init__(self, id, *args, **kw)
        if _TWINS.get("sds011") == id:
            from citynode.sim.hwsim.twin_uart_pm import SDS011Twin
            self.attach(SDS011Twin(_RealClock(), lambda ms: {"pm2_5": 7.5, "pm10": 12.5}))


class ADC(_m.ADC):
    def __init__(self, pin, *args, **kw):
        _m.ADC.__init__(self, pin, *args, **kw)
        self.uv = _TWINS.get("adc_uv", 0)


# RTC memory and the reset cause live through a reboot (reset, deep sleep, watchdog), not a power-on (start())
_RTC_PATH = _HW_PATH.replace("vnode_hw.json", "vnode_rtc.json")
try:
    with open(_RTC_PATH) as _f:
        _rtc = json.load(_f)
    from binascii import unhexlify as _uhx
    _m._state["rtc_memory"] = _uhx(_rtc["mem"])
    _m._state["reset_cause"] = _rtc["cause"]
except (OSError, ValueError, KeyError):
    _rtc = None


def _reboot(cause, wait_ms=0):
    # the chip restarts: RTC memory and the cause are kept for the next process, which the supervisor starts;
    # a deep sleep or a crash delay passes in real time, at most 2 s (a technician watches the console)
    from binascii import hexlify as _hx
    import micropython as _mp
    import time as _t
    _mp.kbd_intr(-1)  # a chip going into deep sleep or a reset takes no Ctrl-C (its UART is off, then reset)
    _m._state["wdt"] = None  # the watchdog stops with the chip
    with open(_RTC_PATH, "w") as f:
        json.dump({"mem": _hx(_m._state["rtc_memory"]).decode(), "cause": cause}, f)
    if wait_ms > 0:
        _t.sleep_ms(min(wait_ms, 2000))
    open(_RTC_PATH + ".reboot", "w").close()  # the supervisor ends this process and starts the next boot
    while True:  # (sys.exit would drop into the REPL of `micropython -i main.py`: a board never does)
        _t.sleep_ms(100)


def reset():
    _reboot(HARD_RESET)


def deepsleep(*args):
    _m._positional(args, 1)
    _reboot(DEEPSLEEP_RESET, args[0] if args else 0)


# The radio chip of the board this node is flashed as (its board.json, once `citynode flash` wrote it): the
# SX1276/SX1262 twin on its pins, on an air of its own, unless vnode_hw.json says "radio_chip": false.
_RADIO_AIR = None
if not _HW.get("board") and _HW.get("radio_chip", True):
    try:
        with open("board.json") as _f:
            _r = json.load(_f).get("radio") or {}
    except (OSError, ValueError):
        _r = {}
    if _r.get("type") in ("sx1276", "sx1262"):
        from citynode.sim.hwsim.radio import Air as _Air
        from citynode.sim.hwsim.clock import VirtualClock as _VC2
        if _m._state["clock"] is None:
            _m._state["clock"] = _VC2()
        _RADIO_AIR = _Air(_m._state["clock"])
        _p = _r["pins"]
        if _r["type"] == "sx1276":
            from citynode.sim.hwsim.twin_sx127x import SX1276Twin as _T
            _T(_m._state["clock"], _RADIO_AIR, _p["sck"], _p["cs"], reset=_p.get("reset"), dio0=_p.get("dio0"),
               dio1=_p.get("dio1"), pa_pin=_r.get("tx_ant", "PA_BOOST"))
        else:
            from citynode.sim.hwsim.twin_sx126x import SX1262Twin as _T
            _T(_m._state["clock"], _RADIO_AIR, _p["sck"], _p["cs"], _p["busy"], dio1=_p.get("dio1"),
               reset=_p.get("reset"), tcxo_mv=_r.get("dio3_tcxo_millivolts"))


# A whole board file on the pty (vnode_hw.json "board"): its twins wired as the file says, the radio chip's twin
# on its SPI pins, an air with a gateway and a network server that knows dev_eui/app_key, and virtual time
# (`time` is the board's clock: the firmware's waits cost nothing). Every accepted uplink is printed as a JSON
# line; after "stop_after" of them the node prints a last line and idles (in real time) until stopped.
_BOARD = _HW.get("board")
if _BOARD:
    import time as _realtime
    from binascii import unhexlify as _ux
    from citynode.sim.hwsim.clock import VirtualClock as _VC
    from citynode.sim.hwsim import virtual_board as _vb

    _me = sys.modules.get("machine")
    _clock = _VC(start_s=_HW.get("start_s", 0))  # an ESP32 after power-on: the clock counts from 2000
    _seen = [0]

    def _out(line):
        print(line)
        _seen[0] += 1
        if _seen[0] >= _HW.get("stop_after", 0) > 0:
            print("WORLD|" + json.dumps(WORLD.summary()))
            print("virtual node: %d uplinks at %d s, stopped" % (_seen[0], _clock.monotonic_ms() // 1000))
            while True:
                _realtime.sleep(1)

    WORLD = _vb.VirtualBoard(_BOARD, _clock, _ux(_HW["dev_eui"]), _ux(_HW["app_key"]), out=_out,
                             revision=_HW.get("revision"))
    try:
        from citynode.sim.hwsim import lora_lib as _ll
        _ll.load(_clock)  # micropython-lib's driver, as flashed into /lib, on the board's clock
    except ImportError:
        pass  # not installed: the firmware's own `import lora` says so
    sys.modules["machine"] = _me  # the double's use() installed itself; the node sees this module
    sys.modules["time"] = _clock
    if _rtc is not None:  # a reboot: this process's network server is new, so the node must join again
        from citynode.sim.hwsim.virtual_board import _fresh_network
        _fresh_network()


def unique_id():
    return bytes(_HW.get("uid", [0x24, 0x0A, 0xC4, 0x12, 0x34, 0x56]))
"""


class VirtualNode:
    def __init__(self, i2c=(), fs: str | os.PathLike | None = None, heap: str = "2M", twins: dict | None = None,
                 board: dict | None = None, revision: dict | None = None):
        self._tmp = tempfile.TemporaryDirectory(prefix="citynode-vnode-")
        root = Path(self._tmp.name)
        self.fs = Path(fs) if fs is not None else root / "fs"
        self.fs.mkdir(parents=True, exist_ok=True)
        (self.fs / "lib").mkdir(exist_ok=True)
        self._sys = root / "sys"  # the "hardware": not part of the node's filesystem
        self._sys.mkdir()
        self.hw = {"i2c": list(i2c), "twins": dict(twins or {})}
        if board is not None:  # the whole board file's hardware (see the shim): keys come with use_keys()
            self.hw.update(board=board, dev_eui="00" * 8, app_key="00" * 16, revision=revision or {})
        self._write_hw()
        (self._sys / "machine.py").write_text(
            f"_HW_PATH = {str(self._sys / 'vnode_hw.json')!r}\n" + _MACHINE_SHIM)
        self.heap = heap
        self.boots = 0
        # Two ptys joined by a relay: MicroPython sits on one, the host opens the other's slave path.
        self._master, self._slave = pty.openpty()
        self._hmaster, self._hslave = pty.openpty()
        for fd in (self._master, self._slave, self._hmaster, self._hslave):
            tty.setraw(fd)
        self.port = os.ttyname(self._hslave)
        self._proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="vnode", daemon=True)
        self._booted = threading.Event()
        self._ready = threading.Event()

    def _write_hw(self) -> None:
        import json
        (self._sys / "vnode_hw.json").write_text(json.dumps(self.hw))

    def use_keys(self, dev_eui: str, app_key: str, stop_after: int = 0) -> None:
        """The network server on the virtual board knows this device (as after a registry export); the node
        stops after `stop_after` accepted uplinks. Takes effect at the next boot."""
        self.hw.update(dev_eui=dev_eui, app_key=app_key, stop_after=stop_after)
        self._write_hw()

    def start(self) -> VirtualNode:
        (self._sys / "vnode_rtc.json").unlink(missing_ok=True)  # power-on: RTC memory is cleared
        self._thread.start()
        self._booted.wait(10)
        self._ready.wait(10)
        return self

    def reset(self, timeout: float = 10) -> bool:
        """Reset the chip (EN low, as esptool does after writing an image): the running program ends and the
        node boots again from its filesystem, as after a power-on for the chip (RTC memory is lost). The parts
        of the board stay powered. Returns whether the new boot printed something within `timeout`."""
        (self._sys / "vnode_rtc.json").unlink(missing_ok=True)
        proc = self._proc
        self._ready.clear()
        self._booted.clear()
        if proc is not None and proc.poll() is None:
            proc.kill()  # the supervisor starts the next boot
        self._booted.wait(timeout)
        return self._ready.wait(timeout)

    def _spawn(self) -> subprocess.Popen:
        # sys.path of a board: '' (the cwd = flash root) and lib; then the hardware and the host package.
        env = dict(os.environ, MICROPYPATH=os.pathsep.join(
            (".", str(self.fs / "lib"), str(self._sys), str(HOST_DIR))))
        args = [micropython_exe(), "-X", f"heapsize={self.heap}"]
        if (self.fs / "main.py").exists():
            args += ["-i", "main.py"]
        self.boots += 1
        self._ready.clear()
        return subprocess.Popen(args, stdin=self._slave, stdout=self._slave, stderr=self._slave,
                                cwd=self.fs, env=env, close_fds=True)

    def _takes_ctrl_c(self) -> bool:
        """Whether the node is running code with Ctrl-C as its interrupt character. On a board the UART (or USB)
        receive handler raises KeyboardInterrupt in the running program when that character arrives (ports/esp32
        uart.c, mp_interrupt_char); at the REPL, or after micropython.kbd_intr(-1), it is an ordinary character.
        The unix port reads nothing from its terminal while a script runs, and takes SIGINT instead, with a
        handler installed exactly while the character is set (unix_mphal.c mp_hal_set_interrupt_char): the
        relay sends SIGINT then."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return False
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                for line in f:
                    if line.startswith("SigCgt:"):
                        return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
        except OSError:
            pass
        return False

    def _relay(self) -> None:
        pairs = {self._master: self._hmaster, self._hmaster: self._master}
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select(list(pairs), [], [], 0.05)
                for fd in ready:
                    data = os.read(fd, 4096)
                    if data:
                        if fd == self._master:
                            self._ready.set()  # the node has printed something: it is up
                        interrupt = fd == self._hmaster and b"\x03" in data and self._takes_ctrl_c()
                        if interrupt:  # the port's UART handler takes the interrupt character out of the input
                            data = data.replace(b"\x03", b"")
                        if data:
                            os.write(pairs[fd], data)
                        if interrupt and self._proc is not None:
                            with contextlib.suppress(OSError):
                                os.kill(self._proc.pid, signal.SIGINT)
            except OSError:
                if self._stop.is_set():
                    return
                continue

    def _supervise(self) -> None:
        threading.Thread(target=self._relay, name="vnode-relay", daemon=True).start()
        while not self._stop.is_set():
            self._proc = self._spawn()
            self._booted.set()
            flag = self._sys / "vnode_rtc.json.reboot"
            while self._proc.poll() is None:
                if self._stop.wait(0.05):
                    break
                if flag.exists():  # the node reset itself (reset(), deep sleep, a crash): a new boot
                    flag.unlink()
                    self._proc.kill()
                    self._proc.wait()
                    break

    def stop(self) -> None:
        self._stop.set()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._thread.join(5)
        for fd in (self._master, self._slave, self._hmaster, self._hslave):
            try:
                os.close(fd)
            except OSError:
                pass
        self._tmp.cleanup()

    def __enter__(self) -> VirtualNode:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
