# main.py: start the citynode firmware on a board (the board file is /board.json, keys are in NVS).
# Whatever fails, the board never stays in the REPL: cnode.runner records crashes and resets; if even the
# firmware cannot be imported (a broken install), this records it and retries in a minute.
import machine
import time

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
else:
    runner.main(machine, time)
