# micropython-lib's `lora` package (as mip installed it) on a virtual clock: the unmodified driver, whose
# `time` calls go to the simulation's clock. MicroPython-compatible (the unix port runs it the same way).
import sys

_MODULES = ("lora.modem", "lora.sync_modem", "lora.sx127x", "lora.sx126x")


def load(clock, lib_dir=None):
    """Import `lora` (from lib_dir, if given, else from the import path) and bind its modules' `time` to
    `clock` (a VirtualClock or any object with ticks_ms/ticks_us/ticks_add/ticks_diff/sleep_ms/sleep_us).
    The machine double must be installed first (machine.use(clock)): the driver imports Pin from it."""
    if lib_dir is not None and lib_dir not in sys.path:
        sys.path.insert(0, lib_dir)
    if sys.implementation.name != "micropython" and "lora.stm32wl5" not in sys.modules:
        # lora/__init__ skips a missing chip package only if the ImportError says "no module named" in
        # MicroPython's lower case; CPython capitalises it. The STM32WL5 package is never installed: an empty one.
        sys.modules["lora.stm32wl5"] = type(sys)("lora.stm32wl5")
    # micropython-lib, installed as a board gets it (lib_dir); never part of this project nor of its venv
    import lora  # noqa: F401  # pyright: ignore[reportMissingImports]

    for name in _MODULES:
        m = sys.modules.get(name)
        if m is not None:
            m.time = clock  # pyright: ignore[reportAttributeAccessIssue]  # the module's global, rebound
    return lora
