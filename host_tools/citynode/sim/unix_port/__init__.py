"""Scripts that run under the MicroPython unix port (not imported by CPython code)."""
