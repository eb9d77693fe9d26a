"""The environment drivers' integer maths never leaves MicroPython's small-int range on a 32-bit port.

On the ESP32 a MicroPython int outside -2**30 .. 2**30-1 becomes a heap-allocated big int. The unix port
used for our MicroPython tests has 63-bit small ints and cannot show this, so here every intermediate
result is checked by running the conversion functions on an int subclass that fails on any value out of
range. Inputs cover the sensors' specified ranges (BME280: -40..85 degC, 300..1100 hPa, 0..100 %RH with
the datasheet calibration; Sensirion words: all 65536 values).
"""
from __future__ import annotations

import struct

import cnode  # noqa: F401
from cnode.drivers import bme280, dnms, scd4x, sht4x
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.twin_bme280 import VECTOR_H, VECTOR_P, VECTOR_T, BME280Twin

LIMIT = 1 << 30


class Small(int):
    """An int whose every arithmetic result must stay a MicroPython small int on a 32-bit port."""

    def __new__(cls, v):
        if not -LIMIT <= int(v) < LIMIT:
            raise OverflowError(f"intermediate {int(v)} is not a 31-bit small int")
        return int.__new__(cls, v)


def _wrap(name):
    op = getattr(int, name)

    def f(self, *args):
        r = op(int(self), *(int(a) for a in args))
        return r if r is NotImplemented else Small(r)

    return f


for _n in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__floordiv__", "__rfloordiv__",
           "__rshift__", "__rrshift__", "__lshift__", "__rlshift__", "__and__", "__rand__", "__or__", "__ror__",
           "__neg__", "__mod__", "__rmod__"):
    setattr(Small, _n, _wrap(_n))


def test_small_checker_catches_overflow():
    try:
        Small(40000) * 40000
    except OverflowError:
        return
    raise AssertionError("Small did not catch 1.6e9")


def test_bme280_int32_paths_stay_small():
    cal = [Small(v) for v in list(VECTOR_T) + list(VECTOR_P) + list(VECTOR_H)]
    twin = BME280Twin(VirtualClock())
    n = 0
    for t in range(-40, 86, 5):
        for p in range(30000, 110001, 5000):
            for h in (0.0, 1.0, 10.0, 35.0, 60.0, 85.0, 99.0, 100.0):
                at, ap, ah = twin.raw_for({"temperature": float(t), "pressure": float(p), "humidity": h})
                tf = bme280.t_fine(cal, Small(at))
                assert isinstance(tf, Small)
                bme280.temperature_centi(tf)
                bme280.pressure_pa(cal, Small(ap), tf)
                q = bme280.humidity_q10(cal, Small(ah), tf)
                (q * 10 + 512) >> 10
                n += 1
    assert n > 2000


def test_bme280_64bit_pressure_does_need_big_ints():
    # documents why the driver offers p64=False: the datasheet's 64-bit formula cannot stay small
    cal = [Small(v) for v in list(VECTOR_T) + list(VECTOR_P) + list(VECTOR_H)]
    try:
        bme280.pressure_q24_8(cal, Small(415148), Small(128422))
    except OverflowError:
        return
    raise AssertionError("expected big-int intermediates")


def test_sensirion_conversions_stay_small():
    for w in range(65536):
        s = Small(w)
        sht4x.temperature_centi(s)
        sht4x.humidity_deci(s)
        scd4x.temperature_centi(s)
        scd4x.humidity_deci(s)


def test_float_decoding_stays_small_and_matches_struct():
    for x in (0.0, 0.04, 0.05, 0.06, 1.0, 20.35, 35.25, 55.55, 99.94, 99.95, 120.0, 139.99, 1e6, 8388607.0):
        b = struct.pack(">f", x)
        hi, lo = Small((b[0] << 8) | b[1]), Small((b[2] << 8) | b[3])
        got = dnms.f32_tenths(hi, lo)
        f = struct.unpack(">f", b)[0]
        assert got == int(f * 10 + 0.5), (x, got)
