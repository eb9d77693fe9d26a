# Production mode (docs/security.md): main.py turns Ctrl-C off before anything else, reads the flag from NVS, and a
# node in production mode resets on whatever escapes the app instead of falling to the REPL. main.py itself runs
# here (exec of its source, under CPython and under the MicroPython unix port) against logging stand-ins for
# micropython, machine, esp32 and cnode.runner; runner.main's own guard runs with a logging machine.
import sys

import fwtest
from cnode import crash, runner

_BANNER = "citynode: production mode"  # what citynode's host tools look for (citynode.device.production.MARK)


class _Reset(BaseException):
    """A board's machine.reset() never returns: here it ends the boot under test."""


class _Slept(BaseException):
    """The same for machine.deepsleep(ms)."""

    def __init__(self, ms):
        super().__init__(ms)
        self.ms = ms


class _Rtc:
    def __init__(self, log, fail=None):
        self.log, self.fail, self.m = log, fail, b""

    def memory(self, data=None):
        if self.fail is not None:
            e, self.fail = self.fail, None
            raise e
        if data is None:
            return self.m
        self.m = bytes(data)


class _Wdt:
    def __init__(self, log):
        self.log = log

    def feed(self):
        pass


class _Machine:
    """machine as runner.main and main.py use it; every call is logged in order."""

    DEEPSLEEP_RESET = 4

    def __init__(self, log, cause=1, wdt_raises=None, rtc_fails=None):
        self.log, self.cause, self.wdt_raises, self.rtc_fails = log, cause, wdt_raises, rtc_fails

    def WDT(self, timeout=5000):
        self.log.append(("WDT", timeout))
        if self.wdt_raises is not None:
            raise self.wdt_raises
        return _Wdt(self.log)

    def RTC(self):
        return _Rtc(self.log, self.rtc_fails)

    def reset_cause(self):
        return self.cause

    def reset(self):
        self.log.append(("reset",))
        raise _Reset()

    def deepsleep(self, ms=0):
        self.log.append(("deepsleep", ms))
        raise _Slept(ms)


class _Micropython:
    def __init__(self, log):
        self.log = log

    def kbd_intr(self, c):
        self.log.append(("kbd_intr", c))


class _Esp32:
    """esp32 with NVS("cn_keys") holding i32 "prod" = `prod` (None: not set). `interrupt`: the first NVS() raises
    KeyboardInterrupt, as a Ctrl-C taken just before kbd_intr(-1) would at the VM's first jump."""

    def __init__(self, log, prod, interrupt=False):
        self.log, self.prod, self.interrupt = log, prod, interrupt
        esp = self

        class NVS:
            def __init__(self, ns):
                esp.log.append(("nvs", ns))
                if esp.interrupt:
                    esp.interrupt = False
                    raise KeyboardInterrupt()

            def get_i32(self, key):
                esp.log.append(("get_i32", key))
                if esp.prod is None:
                    raise OSError(-0x1102, "ESP_ERR_NVS_NOT_FOUND")
                return esp.prod

        self.NVS = NVS


class _Runner:
    """cnode.runner for main.py: main() logs and raises `exc` (None: returns)."""

    def __init__(self, log, exc):
        self.log, self.exc = log, exc

    def main(self, machine, time, production=False):
        self.log.append(("runner.main", production))
        if self.exc is not None:
            raise self.exc


def _boot(prod, exc, interrupt=False):
    """Run firmware/main.py with the stand-ins; returns (log, what ended the boot or None)."""
    import cnode

    log = []
    with open(fwtest.root() + "/firmware/main.py") as f:
        src = f.read()
    saved = {}
    for name in ("micropython", "machine", "esp32"):
        saved[name] = sys.modules.get(name)
    had_runner = getattr(cnode, "runner", None)
    sys.modules["micropython"] = _Micropython(log)
    sys.modules["machine"] = _Machine(log)
    sys.modules["esp32"] = _Esp32(log, prod, interrupt)
    cnode.runner = _Runner(log, exc)
    ended = None
    try:
        exec(src, {"__name__": "__main__"})
    except BaseException as e:  # noqa: BLE001 (what left main.py is the result)
        ended = e
    finally:
        for name in saved:
            if saved[name] is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = saved[name]
        cnode.runner = had_runner
    return log, ended


def test_main_py_turns_ctrl_c_off_with_its_first_statement():
    with open(fwtest.root() + "/firmware/main.py") as f:
        code = [x.strip() for x in f.read().split("\n") if x.strip() and not x.strip().startswith("#")]
    assert code[:2] == ["from micropython import kbd_intr", "kbd_intr(-1)"], code[:2]
    with open(fwtest.root() + "/firmware/main.py") as f:
        assert _BANNER in f.read()


def test_a_production_node_keeps_ctrl_c_off_and_starts_the_app_in_production_mode():
    log, ended = _boot(1, None)
    assert ended is None
    assert log[0] == ("kbd_intr", -1)  # before NVS, machine or the app
    assert log[1:] == [("nvs", "cn_keys"), ("get_i32", "prod"), ("runner.main", True)], log
    assert ("kbd_intr", 3) not in log


def test_a_node_not_in_production_mode_turns_ctrl_c_back_on_and_ctrl_c_reaches_the_repl():
    for prod in (None, 0):
        log, ended = _boot(prod, KeyboardInterrupt())
        assert log == [("kbd_intr", -1), ("nvs", "cn_keys"), ("get_i32", "prod"), ("kbd_intr", 3),
                       ("runner.main", False)], log
        assert isinstance(ended, KeyboardInterrupt)  # main.py ends: the REPL, for citynode flash and provision


def test_in_production_mode_whatever_escapes_the_app_resets_the_board():
    for exc in (KeyboardInterrupt(), SystemExit(0), ValueError("x"), MemoryError()):
        log, ended = _boot(1, exc)
        assert isinstance(ended, _Reset), (exc, ended)
        assert log[0] == ("kbd_intr", -1) and log[-2:] == [("runner.main", True), ("reset",)], log


def test_a_ctrl_c_that_surfaces_before_the_flag_is_read_resets_a_production_node_and_stops_any_other():
    log, ended = _boot(1, None, interrupt=True)
    assert isinstance(ended, _Reset) and log[0] == ("kbd_intr", -1) and log[-1] == ("reset",), log
    assert ("runner.main", True) not in log and ("kbd_intr", 3) not in log
    log, ended = _boot(None, None, interrupt=True)
    assert isinstance(ended, KeyboardInterrupt) and ("reset",) not in log  # the REPL, as Ctrl-C should


def test_in_production_mode_a_broken_firmware_still_ends_in_a_reset():
    import cnode

    class _Broken:
        def __getattr__(self, name):
            raise KeyboardInterrupt()

    log = []
    with open(fwtest.root() + "/firmware/main.py") as f:
        src = f.read()
    saved = [sys.modules.get(n) for n in ("micropython", "machine", "esp32")]
    had_runner = getattr(cnode, "runner", None)
    sys.modules["micropython"] = _Micropython(log)
    sys.modules["machine"] = _Machine(log)
    sys.modules["esp32"] = _Esp32(log, 1)
    cnode.runner = _Broken()
    try:
        e = fwtest.raises(_Reset, exec, src, {"__name__": "__main__"})
    finally:
        for n, m in zip(("micropython", "machine", "esp32"), saved):
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m
        cnode.runner = had_runner
    assert isinstance(e, _Reset) and log[0] == ("kbd_intr", -1) and log[-1] == ("reset",), log


class _Time:
    def __init__(self, log):
        self.log = log

    def time(self):
        return 1000

    def sleep_ms(self, ms):
        self.log.append(("sleep_ms", ms))


def _recording_crash(log, fail=None):
    real = crash.failed

    def failed(rtc, fs_open, line):
        log.append(("crash", line))
        if fail is not None:
            raise fail
        return 2000

    crash.failed = failed
    return real


def test_runner_main_in_production_mode_resets_where_it_would_leave_the_app():
    for exc in (KeyboardInterrupt(), SystemExit(0)):
        log = []
        real = _recording_crash(log)
        try:
            e = fwtest.raises(_Reset, runner.main, _Machine(log, wdt_raises=exc), _Time(log), production=True)
        finally:
            crash.failed = real
        assert isinstance(e, _Reset)
        assert log[-2][0] == "crash" and ("production mode: %s" % type(exc).__name__) in log[-2][1], log
        assert log[-1] == ("reset",)
        # not in production mode: Ctrl-C ends the app and leaves the REPL, as before
        log = []
        fwtest.raises(type(exc), runner.main, _Machine(log, wdt_raises=exc), _Time(log))
        assert ("reset",) not in log


def test_runner_main_in_production_mode_resets_when_recording_a_crash_fails():
    log = []
    real = _recording_crash(log, fail=MemoryError())
    try:
        m = _Machine(log, rtc_fails=ValueError("rtc"))  # the boot fails at once; recording it fails too
        fwtest.raises(_Reset, runner.main, m, _Time(log), production=True)
    finally:
        crash.failed = real
    assert log[-1] == ("reset",) and ("deepsleep", 2000) not in log


def test_a_failed_boot_still_deep_sleeps_with_its_growing_delay_and_a_simulators_sleep_passes_through():
    log = []
    real = _recording_crash(log)
    try:
        m = _Machine(log, rtc_fails=ValueError("rtc"))
        e = fwtest.raises(_Slept, runner.main, m, _Time(log), production=True)
    finally:
        crash.failed = real
    assert e.ms == 2000 and ("reset",) not in log  # not turned into a reset: only the port's exceptions are


class _Nvs:
    def __init__(self, ns):
        pass

    def get_blob(self, key, buf):
        raise OSError(2)

    def get_i32(self, key):
        raise OSError(2)


def _unprovisioned(cause):
    log = []
    saved = runner.load, runner.nvs
    runner.load = lambda: {"name": "t", "sensors": [], "settings": {"deep_sleep": True}}
    runner.nvs = _Nvs
    try:
        e = fwtest.raises(_Slept, runner.main, _Machine(log, cause=cause), _Time(log))
    finally:
        runner.load, runner.nvs = saved
    return log, e


def test_a_node_without_keys_waits_its_first_interval_awake_after_a_reset_then_deep_sleeps():
    log, e = _unprovisioned(2)  # HARD_RESET: e.g. the reset after citynode flash wrote the image
    waited = 0
    for x in log:
        if x[0] == "sleep_ms":
            waited += x[1]
    assert waited == 600000 and e.ms == 600000
    assert log.index(("deepsleep", 600000)) > log.index(("sleep_ms", 60000))
    log, e = _unprovisioned(4)  # woken from deep sleep: straight back to it
    assert e.ms == 600000 and not [x for x in log if x[0] == "sleep_ms"]
