# cnode: the citynode node firmware (MicroPython; also importable under CPython for tests and host tools).
try:
    import micropython  # noqa: F401
except ImportError:  # CPython: give modules `from micropython import const` and the few helpers they use
    import sys

    class _MicroPythonShim:
        @staticmethod
        def const(x):
            return x

        @staticmethod
        def native(f):
            return f

        @staticmethod
        def viper(f):
            return f

    sys.modules["micropython"] = _MicroPythonShim  # type: ignore
