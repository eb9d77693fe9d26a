# A double of the ESP32 port's `esp32` module as a node uses it: NVS, wake sources, deep-sleep pin hold.
#
# Opt-in (install()): with it, cnode.runner.nvs() takes this NVS (hwsim/nvs.py) instead of the unix port's
# file-backed one. Arguments and errors as the port (../shared/docs/esp32-api.md, modesp32.c @ v1.26.1).
import sys

from citynode.hwsim import machine as _m
from citynode.hwsim.nvs import NVS  # noqa: F401  (esp32.NVS)

WAKEUP_ALL_LOW = False
WAKEUP_ANY_HIGH = True
HEAP_DATA = 4
HEAP_EXEC = 1

_state = {"ext0": None, "ext1": (), "ext1_level": False, "touch": False, "ulp": False, "hold": False}


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
    _state.update(ext0=None, ext1=(), ext1_level=False, touch=False, ulp=False, hold=False)


def _rtc_pin(p):
    g = _m._gpio(p)
    if g not in _m._chip()[2]:
        raise ValueError("invalid pin")
    return g


def wake_on_ext0(*args, **kw):
    """wake_on_ext0(pin=<current>, level=<current>): pin None clears."""
    _m._positional(args, 2)
    pin = args[0] if args else kw.pop("pin", _state["ext0"])
    level = args[1] if len(args) > 1 else kw.pop("level", None)
    _m._no_extra(kw)
    if pin is not None:
        if _state["touch"]:
            raise ValueError("no resources")
        _state["ext0"] = (_rtc_pin(pin), level)
    else:
        _state["ext0"] = None


def wake_on_ext1(*args, **kw):
    """wake_on_ext1(pins=None, level=<current>): None keeps the current pins, [] clears them."""
    _m._positional(args, 2)
    pins = args[0] if args else kw.pop("pins", None)
    level = args[1] if len(args) > 1 else kw.pop("level", _state["ext1_level"])
    _m._no_extra(kw)
    if pins is not None:
        _state["ext1"] = tuple(_rtc_pin(p) for p in pins)
    _state["ext1_level"] = bool(level)


def wake_on_touch(b):
    if _state["ext0"] is not None:
        raise ValueError("no resources")
    _state["touch"] = bool(b)


def wake_on_ulp(b):
    if _state["ext0"] is not None:
        raise ValueError("no resources")
    _state["ulp"] = bool(b)


def _gpio_deep_sleep_hold(b):
    """ESP32 only (absent on the S3): keep held pads held through deep sleep."""
    _state["hold"] = bool(b)


gpio_deep_sleep_hold = _gpio_deep_sleep_hold


def held():
    """Simulation side: whether pins with hold=True keep their level in deep sleep."""
    return _state["hold"]


def raw_temperature():
    return 128  # degrees Fahrenheit, uncalibrated, as the ESP32's sensor reads at room temperature
