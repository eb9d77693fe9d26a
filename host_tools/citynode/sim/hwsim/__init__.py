# hwsim: a hardware double of MicroPython's `machine` and of time's ticks, plus simulated sensor twins.
# Everything here runs under CPython and under the MicroPython unix port (no CPython-only modules).
