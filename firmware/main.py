# main.py: start the citynode firmware on a board (the board file is /board.json, keys are in NVS).
# Ctrl-C goes off first. A node provisioned in production mode (`citynode provision --production`: i32 "prod" = 1
# in NVS namespace cn_keys, beside the keys) keeps it off, says so on the console at every boot, and never falls
# to the REPL: whatever escapes the app resets the board. Any other node turns Ctrl-C back on, so that citynode
# flash and provision can stop the app and reach the REPL. A reflash erases NVS, and production mode with the
# keys (docs/security.md). Whatever fails, the board never stays in the REPL without a reset: cnode.runner records
# crashes and resets; if even the firmware cannot be imported (a broken install), this records it and retries in
# a minute. The flag is read here, without cnode, so that a broken install cannot open a production node.
from micropython import kbd_intr

kbd_intr(-1)
PRODUCTION = None  # not known yet


def _production():
    try:
        try:
            import esp32

            nvs = esp32.NVS("cn_keys")
        except ImportError:  # the unix port: the file-backed stand-in
            from cnode.nvsfile import NVS  # type: ignore

            nvs = NVS("cn_keys")
        return nvs.get_i32("prod") == 1
    except Exception:  # noqa: BLE001 (not set: ESP_ERR_NVS_NOT_FOUND)
        return False


def _start(machine, time):
    try:
        from cnode import runner
    except Exception as e:  # noqa: BLE001 (ImportError, MemoryError, SyntaxError of a damaged .mpy)
        try:
            with open("crash.log", "ab") as f:
                f.write(("t=%d import: %s: %s\n" % (time.time(), type(e).__name__, e)).encode())
        except Exception:  # noqa: BLE001
            pass
        print("cannot start the firmware: %s: %s; reset in 60 s" % (type(e).__name__, e))
        machine.deepsleep(60000)
        return
    runner.main(machine, time, production=PRODUCTION is True)


# Everything from here on is inside the try: a Ctrl-C taken just before kbd_intr(-1) is raised at the first jump
# the VM makes (py/vm.c), and lands in the handler below, which resets a node in production mode.
try:
    import machine
    import time

    PRODUCTION = _production()
    if PRODUCTION:
        print("citynode: production mode: REPL closed; to use this board again: citynode flash (erases its keys), "
              "then citynode provision")
    else:
        kbd_intr(3)
    _start(machine, time)
except (KeyboardInterrupt, SystemExit, GeneratorExit, Exception):  # every exception class of MicroPython
    if PRODUCTION is None:
        PRODUCTION = _production()
    if not PRODUCTION:
        raise
    import machine

    machine.reset()
