# Simulated Sensirion-protocol I2C devices: SHT4x (0x44), SCD4x (0x62) and the DNMS noise module (0x55).
#
# Each twin parses the command bytes the node writes, answers reads with big-endian words each followed by
# the Sensirion CRC-8, NACKs a read while the result is not ready (or when there is none), and NACKs
# unknown commands. Values come from a series(ms) -> dict (default: twin_bme280.diurnal) at the moment a
# measurement completes; twin.target holds those values, twin.words the words sent.
# Faults: fault("crc", n) flips the first CRC byte of the next n replies; fault("stuck", n) repeats the last
# measurement's words n times; fault("never_ready", n) - SHT4x: n measurements never finish (reads NACK),
# SCD4x: data ready stays 0 and no data for n results (periodic or single shot), DNMS: n LEQ calculations
# never get ready.
# n=None means until clear_faults(). NACK, stuck bus, disconnect mid-read: machine.I2C.inject.
# noise: T/RH words move by a seeded pseudo-random -noise..+noise LSB (about 0.003 degC), as on a real
# sensor, so a constant series does not look stuck; CO2 ppm and DNMS levels are sent as computed.
import struct

from citynode.sim.hwsim.power import Powered
from citynode.sim.hwsim.twin_bme280 import diurnal

ENODEV = 19


def crc8(data):
    crc = 0xFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def frame(words):
    """Words -> reply bytes: msb, lsb, crc per word."""
    out = bytearray()
    for w in words:
        pair = bytes(((w >> 8) & 0xFF, w & 0xFF))
        out += pair
        out.append(crc8(pair))
    return bytes(out)


def _clamp16(x):
    x = int(x + 0.5) if x >= 0 else 0
    return 65535 if x > 65535 else x


class _Twin(Powered):
    def __init__(self, clock, series, noise=1, seed=4):
        self.clock = clock
        self.power_state = "idle"  # after power-up (SHT4x, SCD4x: 1 s) every Sensirion sensor here idles
        self.noise = noise
        self._rng = seed & 0x7FFFFFFF
        self.series = series if series is not None else diurnal
        self.writes = []  # every write transfer, for wire-exact tests
        self.reply = None  # bytes the next read returns
        self.ready_us = 0  # reply readable from this time; NACK before
        self.target = None
        self.words = None
        self.faults = {"crc": 0, "stuck": 0, "never_ready": 0}

    def jitter(self, w):
        if not self.noise:
            return w
        self._rng = (1103515245 * self._rng + 12345) & 0x7FFFFFFF
        w += (self._rng >> 16) % (2 * self.noise + 1) - self.noise
        return 0 if w < 0 else (65535 if w > 65535 else w)

    def fault(self, kind, count=1):
        if kind not in self.faults:
            raise ValueError("twin fault: " + kind)
        self.faults[kind] = -1 if count is None else count

    def clear_faults(self):
        for k in self.faults:
            self.faults[k] = 0

    def _take(self, kind):
        n = self.faults[kind]
        if n == 0:
            return False
        if n > 0:
            self.faults[kind] = n - 1
        return True

    def now_us(self):
        c = self.clock
        return c.us if hasattr(c, "us") else c.monotonic_ms() * 1000

    def _answer(self, words, delay_us=0):
        data = bytearray(frame(words))
        if self._take("crc"):
            data[2] ^= 0xFF
        self.reply = bytes(data)
        self.ready_us = self.now_us() + delay_us

    def write(self, data):
        data = bytes(data)
        self.writes.append(data)
        if len(self.writes) > 512:  # a long run keeps the recent transfers only
            del self.writes[:256]
        if not self.command(data):
            raise OSError(ENODEV)  # command not acknowledged

    def read(self, n):
        self.poll()
        if self.reply is None or self.now_us() < self.ready_us:
            raise OSError(ENODEV)  # read header NACKed: busy or nothing to send
        out = self.reply
        self.reply = None
        if len(out) < n:
            out = out + b"\xff" * (n - len(out))  # the bus reads idle-high past the end
        return out[:n]

    def poll(self):
        pass

    def command(self, data):
        return False


class SHT4xTwin(_Twin):
    ADDR = 0x44
    # command -> max duration in us (SHT4x datasheet Table 4)
    MEASURE = {0xFD: 8300, 0xF6: 4500, 0xE0: 1600}

    def __init__(self, clock, series=None, serial=0x0C2F3A51, noise=1, seed=4):
        _Twin.__init__(self, clock, series, noise, seed)
        self.serial = serial
        self._pending = None  # (due_us, words) of the running measurement

    def command(self, data):
        if len(data) != 1:
            return False
        c = data[0]
        self.reply = None
        self._pending = None
        if c in self.MEASURE:
            if self._take("never_ready"):
                self._power("measure")  # a measurement that never ends draws its current on
                return True
            due = self.now_us() + self.MEASURE[c]
            if self._take("stuck") and self.words is not None:
                words = self.words
            else:
                self.target = self.series(due // 1000)
                st, srh = self.raw_for(self.target)
                words = (self.jitter(st), self.jitter(srh))
            self.words = words
            self._answer(words, self.MEASURE[c])
            self._power("measure", for_us=self.MEASURE[c], then="idle")  # DS Table 4: max durations
            return True
        if c == 0x89:
            self._idle()
            self._answer((self.serial >> 16, self.serial & 0xFFFF))
            return True
        if c == 0x94:  # soft reset
            self._idle()
            return True
        return False  # heater commands (0x39 .. 0x15) are not modelled: NACKed

    def _idle(self):
        if self.power_state != "idle":  # a never-ending measurement (fault) ends with the next command
            self._power("idle")

    @staticmethod
    def raw_for(v):
        return (_clamp16((v["temperature"] + 45.0) * 65535.0 / 175.0),
                _clamp16((v["humidity"] + 6.0) * 65535.0 / 125.0))


class SCD4xTwin(_Twin):
    ADDR = 0x62
    PERIOD_US = 5000000
    PERIODIC_OK = (0xEC05, 0xE4B8, 0x3F86, 0xE000)  # accepted during periodic measurement
    LOW_POWER_PERIOD_US = 30000000  # start_low_power_periodic_measurement: a result every 30 s
    SINGLE_SHOT_US = 5000000  # measure_single_shot (SCD41 only): the result 5000 ms later

    def __init__(self, clock, series=None, serial=(0xF896, 0x9F07, 0x3BB3), noise=1, seed=40):
        _Twin.__init__(self, clock, series, noise, seed)
        self.serial = serial
        self.periodic = False
        self.t0_us = 0
        self.k_done = 0  # index of the last completed periodic result
        self.fresh = False  # a result not yet read out
        self.idle_from_us = 0  # after stop_periodic_measurement: busy for 500 ms
        self.ambient_hpa = None
        self.results = 0
        self.period_us = self.PERIOD_US
        self.asleep = False  # power_down (SCD41 only): nothing but wake_up is heard
        self.shot_due_us = None  # a single shot's result is readable from then

    def poll(self):
        due = self.shot_due_us
        if due is not None and self.now_us() >= due:
            self.shot_due_us = None
            if self._take("never_ready"):
                return
            if not (self._take("stuck") and self.words is not None):
                self.target = self.series(due // 1000)
                co2, wt, wrh = self.raw_for(self.target)
                self.words = (co2, self.jitter(wt), self.jitter(wrh))
            self.fresh = True
            self.results += 1
        if not self.periodic:
            return
        k = (self.now_us() - self.t0_us) // self.period_us
        if k > self.k_done:
            self.k_done = k
            if self._take("never_ready"):
                self.fresh = False
                return
            if self._take("stuck") and self.words is not None:
                words = self.words
            else:
                self.target = self.series((self.t0_us + k * self.period_us) // 1000)
                co2, wt, wrh = self.raw_for(self.target)
                words = (co2, self.jitter(wt), self.jitter(wrh))
            self.words = words
            self.fresh = True
            self.results += 1

    @staticmethod
    def raw_for(v):
        co2 = int(v["co2"] + 0.5)
        return (co2 if co2 < 40000 else 40000,
                _clamp16((v["temperature"] + 45.0) * 65536.0 / 175.0),
                _clamp16(v["humidity"] * 65536.0 / 100.0))

    def command(self, data):
        if len(data) not in (2, 5):
            return False
        self.poll()
        if self.now_us() < self.idle_from_us:
            return False  # still stopping
        c = (data[0] << 8) | data[1]
        self.reply = None
        if self.asleep:
            if c == 0x36F6:  # wake_up (DS 3.10.4): never acknowledged; idle within 20 ms (DS v1.3 Table 31),
                # 30 ms as Sensirion's embedded-i2c-scd4x waits: busy until then
                self.asleep = False
                self.idle_from_us = self.now_us() + 30000
                self._power("idle")
            return False
        if self.shot_due_us is not None:
            return False  # measuring a single shot: busy for its 5000 ms (DS 3.3: no command meanwhile)
        if self.periodic and c not in self.PERIODIC_OK:
            return False
        if c in (0x21B1, 0x21AC):  # start_periodic / start_low_power_periodic_measurement
            self.periodic = True
            self.period_us = self.PERIOD_US if c == 0x21B1 else self.LOW_POWER_PERIOD_US
            self.t0_us = self.now_us()
            self.k_done = 0
            self.fresh = False
            self._power("periodic" if c == 0x21B1 else "low_power_periodic")
            return True
        if c == 0x3F86:
            self.periodic = False
            self.fresh = False
            self.idle_from_us = self.now_us() + 500000
            self._power("idle")
            return True
        if c == 0x219D:  # measure_single_shot (SCD41)
            self.fresh = False
            self.shot_due_us = self.now_us() + self.SINGLE_SHOT_US
            self._power("single_shot", for_us=self.SINGLE_SHOT_US, then="idle")
            return True
        if c == 0x36E0:  # power_down (SCD41)
            self.asleep = True
            self.fresh = False
            self._power("power_down")
            return True
        if c == 0xE4B8:
            self._answer((0x8006 if self.fresh else 0x8000,), 1000)
            return True
        if c == 0xEC05:
            if self.fresh:
                self.fresh = False
                self._answer(self.words, 1000)
            return True  # without data the read header is NACKed
        if c == 0xE000:
            if len(data) != 5 or crc8(data[2:4]) != data[4]:
                return False
            self.ambient_hpa = (data[2] << 8) | data[3]
            return True
        if c == 0x3682:
            self._answer(self.serial, 1000)
            return True
        return False


def f32_words(x):
    b = struct.pack(">f", x)
    return (b[0] << 8) | b[1], (b[2] << 8) | b[3]


class DNMSTwin(_Twin):
    """The DNMS module: levels in 125 ms fast-weighting blocks; 0x0003 closes the interval, data ready is
    set at the end of the block in progress; LAeq is the energy mean of the block levels, LAmin/LAmax
    their extremes (the twin samples at most 120 blocks per interval)."""

    ADDR = 0x55
    BLOCK_US = 125000
    VERSION = "DNMS Version 2.4.5"

    def __init__(self, clock, series=None):
        _Twin.__init__(self, clock, series, 0)
        self.t_reset_us = self.now_us()
        self.t_from_us = self.t_reset_us  # start of the open interval
        self.data_ready = 0
        self.ready_at_us = None
        self.levels = (0.0, 0.0, 0.0)  # LAeq, LAmin, LAmax of the last closed interval (float32 on the wire)
        self.calcs = 0

    def _close(self, end_us):
        import math
        a, b = self.t_from_us, end_us
        nblocks = max(1, (b - a) // self.BLOCK_US)
        step = max(1, nblocks // 120) * self.BLOCK_US
        vals = []
        t = a + self.BLOCK_US
        while t <= b:
            vals.append(self.series(t // 1000)["noise_la"])
            t += step
        if not vals:
            vals.append(self.series(b // 1000)["noise_la"])
        e = sum(10.0 ** (v / 10.0) for v in vals) / len(vals)
        self.levels = (10.0 * math.log10(e), min(vals), max(vals))
        self.target = {"noise_laeq": self.levels[0], "noise_lamin": self.levels[1], "noise_lamax": self.levels[2]}
        self.t_from_us = end_us

    def poll(self):
        if self.ready_at_us is not None and self.now_us() >= self.ready_at_us:
            end = self.ready_at_us
            self.ready_at_us = None
            if self._take("stuck") and self.words is not None:
                self.t_from_us = end
            else:
                self._close(end)
                w = []
                for x in self.levels:
                    w.extend(f32_words(x))
                self.words = tuple(w)
            self.data_ready = 1

    def command(self, data):
        if len(data) != 2:
            return False
        self.poll()
        c = (data[0] << 8) | data[1]
        self.reply = None
        if c == 0x0001:
            self.t_reset_us = self.now_us()
            self.t_from_us = self.t_reset_us
            self.data_ready = 0
            self.ready_at_us = None
            return True
        if c == 0x0002:
            s = self.VERSION.encode()
            if len(s) % 2:
                s += b"\x00"
            self._answer(tuple((s[i] << 8) | s[i + 1] for i in range(0, len(s), 2)))
            return True
        if c == 0x0003:
            self.calcs += 1
            self.data_ready = 0
            if self._take("never_ready"):
                self.ready_at_us = None
                return True
            now = self.now_us()
            k = (now - self.t_reset_us) // self.BLOCK_US + 1
            self.ready_at_us = self.t_reset_us + k * self.BLOCK_US
            return True
        if c == 0x0004:
            self._answer((self.data_ready,))
            return True
        if c == 0x0005:
            if self.words is not None:
                self._answer(self.words)
            self.data_ready = 0
            return True
        return False
