# Sensirion SCD4x CO2 (I2C 0x62), periodic or (SCD41) single shot: CO2 ppm (+ optional T/RH), CRC-checked,
# bounded waits.
#
# Datasheet: Sensirion SCD4x v1.4. Commands 3.5-3.9 (Table 9): start_periodic_measurement 0x21B1 (a new
# result every 5 s, the first one 5 s after the start), read_measurement 0xEC05 (1 ms; words CO2 ppm,
# T, RH), stop_periodic_measurement 0x3F86 (500 ms), get_data_ready_status 0xE4B8 (1 ms; not ready
# when the low 11 bits of the word are 0), set_ambient_pressure 0xE000 (1 ms; argument in hPa),
# get_serial_number 0x3682 (1 ms, idle only). Low power single shot, SCD41 only (3.10): measure_single_shot
# 0x219D (5000 ms), power_down 0x36E0 (1 ms, from idle), wake_up 0x36F6 (never acknowledged; 20 ms in DS v1.3
# Table 31, 30 ms as Sensirion's embedded-i2c-scd4x waits); "the first reading obtained using
# measure_single_shot after waking up the sensor should be discarded" (3.10.4). Conversion 3.6:
# T = -45 + 175 * w / 2**16 degC, RH = 100 * w / 2**16 %RH (as embedded-i2c-scd4x: (21875 * w) >> 13 mdegC).
from micropython import const

from cnode.drivers.errors import SensorAbsent, SensorTimeout, count_stuck, same_bytes
from cnode.drivers.sensirion import SensirionDevice

ADDR = const(0x62)
_CMD_START_PERIODIC = const(0x21B1)
_CMD_READ_MEASUREMENT = const(0xEC05)
_CMD_STOP_PERIODIC = const(0x3F86)
_CMD_DATA_READY = const(0xE4B8)
_CMD_SET_AMBIENT_PRESSURE = const(0xE000)
_CMD_GET_SERIAL = const(0x3682)
_CMD_MS = const(1)
_STOP_MS = const(500)
PERIOD_MS = const(5000)
_READY_BOUND_MS = const(5500)  # one period plus 10 %
_POLL_MS = const(100)
_CMD_SINGLE_SHOT = const(0x219D)
_CMD_POWER_DOWN = const(0x36E0)
_CMD_WAKE_UP = const(0x36F6)
_SHOT_MS = const(5000)
_WAKE_MS = const(30)
_POWER_UP_MS = const(1000)


def temperature_centi(w):
    """w -> 0.01 degC: 17500 * w / 65536 = 4375 * w / 16384, rounded."""
    return ((4375 * w + 8192) >> 14) - 4500


def humidity_deci(w):
    """w -> 0.1 %RH: 1000 * w / 65536 = 125 * w / 8192, rounded, at most 1000."""
    v = (125 * w + 4096) >> 13
    return 1000 if v > 1000 else v


class SCD4x(SensirionDevice):
    """channels ("co2",) or, with th=True, ("co2", "temperature", "humidity"); raw = the three words.

    mode "periodic": read() starts periodic measurement if needed (the sensor then draws its measuring
    current for good), waits for the first result (5 s after the start), then polls get_data_ready_status
    every 100 ms for at most 5.5 s before raising SensorTimeout.
    mode "single_shot" (SCD41 only; board file "mode": "single_shot"): every read() sends wake_up, one
    measure_single_shot to discard and one to keep (5 s each), reads the result as above and sends
    power_down, also when the read failed: the sensor sleeps between readings. Blocks for about 10.1 s.
    """

    NAME = "SCD4x"

    def __init__(self, i2c, clock, addr=ADDR, th=False, stuck_reads=20, mode="periodic"):
        SensirionDevice.__init__(self, i2c, clock, addr)
        if mode != "periodic" and mode != "single_shot":
            raise ValueError("SCD4x: mode %r" % (mode,))
        self.channels = ("co2", "temperature", "humidity") if th else ("co2",)
        self.values = [None] * len(self.channels)  # type: list
        self._th = th
        self.raw = [0, 0, 0]
        self.temperature = None  # 0.01 degC, also when th is False
        self.humidity = None  # 0.1 %RH
        self.running = False
        self._t_start = 0
        self._last = bytearray(9)
        self._same = 0
        self._stuck_n = stuck_reads
        self._shot = mode == "single_shot"
        # single shot on a switched rail (Heltec Vext): the sensor is powered up at every wake and answers 1000 ms
        # later (datasheet: power-up time); the sampler waits this out as a warm-up, in light sleep on a board
        self.warmup_ms = _POWER_UP_MS if self._shot else 0

    def recover(self):
        """Bring the sensor to idle from whatever an earlier program left it in: a reset of the board (a reflash,
        Ctrl-C, the watchdog) does not reset the sensor. Asleep after power_down: wake_up (never acknowledged,
        DS 3.10.4); measuring periodically: stop_periodic_measurement (500 ms); in the middle of a single shot it
        acknowledges nothing for up to 5 s (DS 3.3), so stop is tried again until it is taken, within one shot's
        time and a margin. As Sensirion's embedded-i2c-scd4x example starts ("clean up potential SCD40 states")."""
        clock = self._clock
        t0 = clock.ticks_ms()
        while True:
            try:
                self.write_cmd(_CMD_WAKE_UP)
            except SensorAbsent:
                pass  # never acknowledged
            clock.sleep_ms(_WAKE_MS)
            try:
                self.write_cmd(_CMD_STOP_PERIODIC)
                break
            except SensorAbsent:
                if clock.ticks_diff(clock.ticks_ms(), t0) >= _SHOT_MS + _STOP_MS:
                    raise
                clock.sleep_ms(_POLL_MS)
        clock.sleep_ms(_STOP_MS)
        self.running = False

    def start(self):
        self.write_cmd(_CMD_START_PERIODIC)
        self._t_start = self._clock.ticks_ms()
        self.running = True

    def stop(self):
        self.write_cmd(_CMD_STOP_PERIODIC)
        self._clock.sleep_ms(_STOP_MS)
        self.running = False

    def serial_number(self):
        """48-bit serial (idle mode only). Allocates a big int on 32-bit ports: not for the read path."""
        self.query(_CMD_GET_SERIAL, 3, _CMD_MS)
        w = self.words
        return (w[0] << 32) | (w[1] << 16) | w[2]

    def set_ambient_pressure(self, pa):
        """Pressure compensation (allowed during periodic measurement); pa in pascal, sent in hPa."""
        self.write_cmd_arg(_CMD_SET_AMBIENT_PRESSURE, (pa + 50) // 100)
        self._clock.sleep_ms(_CMD_MS)

    def data_ready(self):
        self.query(_CMD_DATA_READY, 1, _CMD_MS)
        return (self.words[0] & 0x07FF) != 0

    def read(self):
        if self._shot:
            self._single_shot()
            return
        clock = self._clock
        if not self.running:
            self.start()
        wait = PERIOD_MS - clock.ticks_diff(clock.ticks_ms(), self._t_start)
        if wait > 0:
            clock.sleep_ms(wait)
        self._result()

    def _single_shot(self):
        clock = self._clock
        try:
            self.write_cmd(_CMD_WAKE_UP)
        except SensorAbsent:
            pass  # never acknowledged (DS 3.10.4); a sensor that is gone fails on the next command
        clock.sleep_ms(_WAKE_MS)
        self.write_cmd(_CMD_SINGLE_SHOT)  # the first shot after a wake-up: discarded, never read
        clock.sleep_ms(_SHOT_MS)
        self.write_cmd(_CMD_SINGLE_SHOT)
        clock.sleep_ms(_SHOT_MS)
        try:
            self._result()
        finally:
            self.write_cmd(_CMD_POWER_DOWN)
            clock.sleep_ms(_CMD_MS)

    def _result(self):
        clock = self._clock
        t0 = clock.ticks_ms()
        while not self.data_ready():
            if clock.ticks_diff(clock.ticks_ms(), t0) >= _READY_BOUND_MS:
                raise SensorTimeout("SCD4x: no data ready within %d ms" % _READY_BOUND_MS)
            clock.sleep_ms(_POLL_MS)
        self.query(_CMD_READ_MEASUREMENT, 3, _CMD_MS)
        count_stuck(self, same_bytes(self.rx, self._last, 9), "SCD4x")
        w = self.words
        r = self.raw
        r[0] = w[0]
        r[1] = w[1]
        r[2] = w[2]
        self.temperature = temperature_centi(w[1])
        self.humidity = humidity_deci(w[2])
        v = self.values
        v[0] = w[0]
        if self._th:
            v[1] = self.temperature
            v[2] = self.humidity
