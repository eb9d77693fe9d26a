# cnode: the citynode node firmware (MicroPython; also importable under CPython for tests and host tools).
try:
    import micropython  # noqa: F401
except ImportError:  # CPython (tests, host tools): stand-ins for micropython and cryptolib
    from cnode import _cpython  # noqa: F401
