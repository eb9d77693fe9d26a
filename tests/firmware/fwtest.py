# Helpers for firmware tests that run unchanged under pytest (CPython) and our MicroPython runner.
import json

try:
    _ROOT = __file__.rsplit("/", 3)[0]  # <root>/tests/firmware/fwtest.py
    if _ROOT.endswith(".py"):
        _ROOT = "."
except NameError:
    _ROOT = "."


def root():
    return _ROOT


def load_json(rel):
    with open(_ROOT + "/" + rel) as f:
        return json.load(f)


def raises(exc, fn, *args, **kw):
    """Call fn and return the exception of type `exc` it raised; fail if it raised none."""
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise AssertionError("%s not raised by %s" % (exc.__name__, getattr(fn, "__name__", fn)))


def unhex(s):
    return bytes(int(s[i:i + 2], 16) for i in range(0, len(s), 2))


def tohex(b):
    return "".join("%02x" % x for x in b)


class Lcg:
    """Deterministic pseudo-random numbers, identical under CPython and MicroPython."""

    def __init__(self, seed):
        self.x = seed & 0x7FFFFFFF

    def next(self):
        self.x = (1103515245 * self.x + 12345) & 0x7FFFFFFF
        return self.x

    def randint(self, lo, hi):
        return lo + self.next() % (hi - lo + 1)
