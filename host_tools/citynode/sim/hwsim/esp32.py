# A double of the ESP32 port's `esp32` module as a node uses it: NVS, wake sources, deep-sleep pin hold.
#
# Opt-in (install()): with it, cnode.runner.nvs() takes this NVS (hwsim/nvs.py) instead of the unix port's
# file-backed one. Arguments and errors as the port (../shared/docs/esp32-api.md, modesp32.c @ v1.26.1).
import sys

from citynode.sim.hwsim import machine as _m
from citynode.sim.hwsim.nvs import NVS  # noqa: F401  (esp32.NVS)

WAKEUP_ALL_LOW = False
WAKEUP_ANY_HIGH = True
HEAP_DATA = 4
HEAP_EXEC = 1

_state = {"hold": False}
_wake = _m._wake  # the RTC's wake configuration, shared with machine.Pin.irq(wake=)


def install(chip="esp32"):
    """Make `import esp32` give this module (the unix port has none), as on `chip` (esp32 or esp32s3: the
    S3 has no gpio_deep_sleep_hold)."""
    reset()
    g = globals()
    if chip == "esp32s3":
        g.pop("gpio_deep_sleep_hold", None)
    else:
        g["gpio_deep_sleep_hold"] = _gpio_deep_sleep_hold
    sys.modules["esp32"] = sys.modules[__name__]


def uninstall():
    """`import esp32` fails again, as on the unix port (cnode.runner.nvs() then uses its file-backed NVS)."""
    if sys.modules.get("esp32") is sys.modules[__name__]:
        del sys.modules["esp32"]


def reset():
    _state["hold"] = False
    _m.reset_wake()


def _rtc_pin(p):
    g = _m._gpio(p)
    if g not in _m._chip()[2]:
        raise ValueError("invalid pin")
    return g


def wake_on_ext0(*args, **kw):
    """wake_on_ext0(pin=<current>, level=<current>): pin None clears; for light and deep sleep."""
    pin, level = _m._args(args, kw, ("pin", "level"), (_wake["ext0"], _wake["ext0_level"]))
    if _wake["touch"]:
        raise ValueError("no resources")
    _wake["ext0"] = None if pin is None else _rtc_pin(pin)
    _wake["ext0_level"] = 1 if level else 0
    _wake["ext0_types"] = _m.SLEEP | _m.DEEPSLEEP


def wake_on_ext1(*args, **kw):
    """wake_on_ext1(pins=None, level=<current>): None keeps the current pins, [] clears them."""
    pins, level = _m._args(args, kw, ("pins", "level"), (None, _wake["ext1_level"]))
    if pins is not None:
        _wake["ext1"] = tuple(_rtc_pin(p) for p in pins)
    _wake["ext1_level"] = bool(level)


def wake_on_touch(b):
    if _wake["ext0"] is not None:
        raise ValueError("no resources")
    _wake["touch"] = bool(b)


def wake_on_ulp(b):
    if _wake["ext0"] is not None:
        raise ValueError("no resources")
    _wake["ulp"] = bool(b)


def _gpio_deep_sleep_hold(b):
    """ESP32 only (absent on the S3): keep held pads held through deep sleep."""
    _state["hold"] = bool(b)


gpio_deep_sleep_hold = _gpio_deep_sleep_hold


def held():
    """Simulation side: whether pins with hold=True keep their level in deep sleep."""
    return _state["hold"]


def raw_temperature():
    return 128  # degrees Fahrenheit, uncalibrated, as the ESP32's sensor reads at room temperature
