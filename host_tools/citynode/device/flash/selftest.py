"""The node's self-test: the script run on the node after an install, and its result."""
from __future__ import annotations

from dataclasses import dataclass, field

from citynode.device.flash.errors import FlashError

CONFIG_FILE = "board.json"  # the board file, where firmware/cnode/board.py reads it (/board.json)

# Runs on the node (MicroPython): checks the app imports and every I2C sensor of the board answers.
SELFTEST_PY = f"""\
import json, sys
_rows = []
def _row(item, ok, detail):
    _rows.append((item, ok, detail))
with open({CONFIG_FILE!r}) as _f:
    _cfg = json.load(_f)
_v = sys.implementation.version
_row("micropython", True, "%s %d.%d.%d" % (sys.implementation.name, _v[0], _v[1], _v[2]))
try:
    import cnode
    _row("app", True, "cnode imports")
except Exception as e:
    _row("app", False, "cnode: %r" % (e,))
# micropython-lib's radio driver (installed by citynode.device.mip): the board's chip class must be there
_rt = _cfg.get("radio", {{}}).get("type")
_rc = {{"sx1276": ("SX1276", "sx127x"), "sx1262": ("SX1262", "sx126x")}}.get(_rt)
if _rc is None:
    _row("radio driver", None, "%s: no micropython-lib driver needed" % _rt)
else:
    try:
        import lora
        if not hasattr(lora, _rc[0]):
            raise ImportError("lora has no %s (lora-sync or lora-%s missing)" % _rc)
        _dv = getattr(sys.modules.get("lora." + _rc[1]), "__version__", "?")
        _row("radio driver", True, "lora %s, lora.%s %s" % (getattr(lora, "__version__", "?"), _rc[1], _dv))
    except Exception as e:
        _row("radio driver", False, "import lora: %s: %s" % (type(e).__name__, e))
_found = None
try:
    import machine
    import time
    _vext = _cfg.get("power", {{}}).get("vext")
    if _vext:  # sensors and OLED on the switched rail: power them first
        machine.Pin(_vext["pin"], machine.Pin.OUT, value=_vext["active"])
        time.sleep_ms(50)
    _c = _cfg["i2c"]
    _bus = machine.I2C(_c.get("id", 0), scl=machine.Pin(_c["scl"]), sda=machine.Pin(_c["sda"]))
    _found = _bus.scan()
    _row("i2c", True, "scl %d sda %d: %d device(s)" % (_c["scl"], _c["sda"], len(_found)))
except Exception as e:
    _row("i2c", False, "%r" % (e,))
for _s in _cfg["sensors"]:
    if _s["bus"] == "i2c":
        _ok = _found is not None and _s["address"] in _found
        _row(_s["driver"], _ok, "i2c 0x%02x %s" % (_s["address"], "answers" if _ok else "does not answer"))
    else:
        _row(_s["driver"], None, "%s: not checked by the self-test" % _s["bus"])
# the firmware's own self-test (cnode.board): reads every sensor once through its driver
try:
    from cnode import board as _board
except ImportError as e:
    _row("sensors", None, "no cnode.board in this app: %s" % (e,))
else:
    try:
        import machine
        import time
        _hw = _board.Hardware(_cfg, machine)
        _hw.power_on(time)
        _lines = []
        _failed = _board.selftest(_hw.slots(time), out=_lines.append)
        for _l in _lines:
            print("TABLE|" + _l)
        _row("sensors", _failed == 0, "firmware self-test: %d failed" % _failed)
    except Exception as e:
        _row("sensors", False, "firmware self-test: %r" % (e,))
# the radio chip through that driver, set up as the firmware does (after power_on: the T-Beam's LoRa rail)
try:
    from cnode.loraradio import radio as _radio
except ImportError as e:
    _radio = None
    if _rc is not None:
        _row("radio", None, "no cnode.loraradio in this app: %s" % (e,))
if _rc is not None and _radio is not None:
    try:
        import machine
        _m = _radio(_cfg["radio"], machine)
        _m.sleep()
        _row("radio", True, "%s answers on SPI, image calibrated for 863-870 MHz%s" % (_rc[0], (
            ", TCXO %d mV on DIO3" % _cfg["radio"]["dio3_tcxo_millivolts"]) if "dio3_tcxo_millivolts" in _cfg["radio"]
            else (", transmits on " + _cfg["radio"].get("tx_ant", "?"))))
    except Exception as e:
        _row("radio", False, "%s: %s: %s" % (_rc[0], type(e).__name__, e))
# facts that differ between revisions of the board (the board file's "revisions"): what this one is
try:
    from cnode import boardrev as _rev
except ImportError:
    _rev = None
if _rev is not None and _cfg.get("revisions"):
    import machine
    import time
    for _f, _found, _what, _seen, _want in _rev.probe(_cfg, machine, time):
        if _found is None:
            _row("revision", None, "%s: %s (%s)" % (_f, _what, _seen))
        elif _found == _want:
            _row("revision", True, "%s: %s (%s)" % (_f, _what, _seen))
        else:
            _row("revision", False, "%s: this board is %s (%s), the board file assumes %s: change the board file"
                 % (_f, _what, _seen, _want))
# what the firmware left when a boot failed (cnode.crash): shown, not failed (the board resets and retries)
try:
    from cnode import crash as _crash
except ImportError:
    _crash = None
if _crash is not None:
    _last = _crash.last(open)
    _row("crash log", True if _last is None else None, "no crash recorded" if _last is None else "last: " + _last)
for _r in _rows:
    print("SELFTEST|%s|%s|%s" % (_r[0], {{True: "ok", False: "FAIL", None: "skip"}}[_r[1]], _r[2]))
print("SELFTEST-END")
"""


@dataclass
class SelfTest:
    rows: list  # (item, result, detail)
    firmware_table: list = field(default_factory=list)  # lines of cnode.board.selftest, if the app has it

    @property
    def failures(self) -> list:
        return [r for r in self.rows if r[1] == "FAIL"]

    def table(self) -> str:
        w = max([len(r[0]) for r in self.rows] + [5])
        lines = [f"{'check':<{w}}  result  detail"]
        lines += [f"{item:<{w}}  {res:<6}  {detail}" for item, res, detail in self.rows]
        if self.firmware_table:
            lines += [""] + self.firmware_table
        return "\n".join(lines)


def parse_selftest(out: str) -> SelfTest:
    if "SELFTEST-END" not in out:
        tail = out.strip().splitlines()[-1:] or ["no output"]
        raise FlashError(f"self-test did not finish on the node: {tail[0]}")
    rows, table = [], []
    for line in out.splitlines():
        line = line.rstrip("\r")
        if line.startswith("SELFTEST|"):
            _, item, res, detail = line.split("|", 3)
            rows.append((item, res, detail))
        elif line.startswith("TABLE|"):
            table.append(line[6:])
    return SelfTest(rows, table)
