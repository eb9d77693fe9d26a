# The one place that turns a board file (boards/*.json, kept on the node as /board.json) into buses, sensors
# and a radio. Everything else receives these objects; only this module and main.py touch `machine`.
import json

from micropython import const

from cnode.channels import by_name
from cnode.drivers.errors import SensorAbsent, SensorError
from cnode.sampler import Slot

BOARD_FILE = "/board.json"
_I2C_DRIVERS = ("bme280", "sht4x", "scd4x", "dnms", "qmc5883l", "vl53l1x")
_UART_DRIVERS = ("sds011", "sps30", "pms5003", "nmea")
_UART_BAUD = {"sds011": 9600, "pms5003": 9600, "sps30": 115200, "nmea": 9600}
_CLASS = {"bme280": "BME280", "sht4x": "SHT4x", "scd4x": "SCD4x", "dnms": "DNMS", "qmc5883l": "QMC5883L",
          "vl53l1x": "VL53L1X", "sds011": "SDS011", "sps30": "SPS30", "pms5003": "PMS5003", "nmea": "NMEA",
          "pulse": "PulseCounter", "blecount": "BleCounter", "battery": "Battery"}
_ALIAS = {"gps_nmea": "nmea", "pir_counter": "pulse", "pir": "pulse", "radar": "pulse"}
# channels of each driver, known before it is built (a missing sensor still has its channels flagged)
_CHANNELS = {"bme280": ("temperature", "humidity", "pressure"), "sht4x": ("temperature", "humidity"),
             "scd4x": ("co2",), "dnms": ("noise_laeq", "noise_lamax"), "qmc5883l": ("parked", "vehicles"),
             "vl53l1x": ("distance", "occupancy"), "sds011": ("pm2_5", "pm10"), "sps30": ("pm1", "pm2_5", "pm10"),
             "pms5003": ("pm1", "pm2_5", "pm10"), "nmea": ("latitude", "longitude"), "blecount": ("pedestrians",),
             "battery": ("battery",)}
# a blecount entry's keys: the counter's, then the scan's (board-file key, start() argument); a key the file
# leaves out keeps the driver's default (cnode.drivers.blecount: k_min 5, a 30 ms window every 300 ms)
_BLE_COUNTER_KEYS = ("capacity", "rssi_min", "k_min")
_BLE_SCAN_KEYS = (("scan_interval_us", "interval_us"), ("scan_window_us", "window_us"))
WDT_MS = const(120000)  # longer than the longest cycle (30 s warm-up, join windows, sends)


class BoardError(ValueError):
    """The board file names something this firmware cannot build (driver, bus, pin)."""


def load(fs_open=open, path=BOARD_FILE):
    """The board file: /board.json on a board; board.json in the current folder on the unix port."""
    try:
        f = fs_open(path)
    except OSError:
        f = fs_open(path.lstrip("/"))
    with f:
        return json.load(f)


def _num(v):
    return int(v, 0) if isinstance(v, str) else int(v)


class Absent:
    """Stands in for a sensor that did not answer at start-up: its channels read as missing, and every
    read tries to bring the real driver up again (a sensor plugged in later, a slow power rail)."""

    def __init__(self, name, make, err, counts=False):
        self.name = name
        self.channels = _CHANNELS.get(name, ())
        self.values = [None] * len(self.channels)
        self.warmup_ms = 0
        self.error = err
        self._make = make
        self.real = None
        # a counter keeps the node awake even while it is absent, so that once it comes up it counts whole
        # windows (cnode.runner.sleep_deep asks at boot)
        self.keeps_count_in_ram = counts

    def read(self):
        if self.real is None:
            try:
                self.real = self._make()
            except (SensorError, OSError) as e:
                self.error = e
                raise SensorAbsent("%s: %s" % (self.name, e))
            if self.keeps_count_in_ram:  # it counted nothing of this window: missing, not a count of 0
                raise SensorAbsent("%s: up again, counting from now" % self.name)
        self.real.read()
        for i in range(len(self.values)):
            self.values[i] = self.real.values[i]


def _ble_counter(cls, s, clock):
    """A BLE counter (cnode.drivers.blecount) on the chip's own radio, scanning as the board file says."""
    try:
        import bluetooth
    except ImportError:
        raise SensorAbsent("blecount: this MicroPython has no bluetooth module")
    kw = {}
    for k in _BLE_COUNTER_KEYS:
        if k in s:
            kw[k] = s[k]
    c = cls(clock, **kw)
    scan = {}
    for k, arg in _BLE_SCAN_KEYS:
        if k in s:
            scan[arg] = s[k]
    c.start(bluetooth.BLE(), **scan)
    return c


def _driver_class(name):
    if name not in _CLASS:
        raise BoardError("unknown driver %r in the board file" % (name,))
    mod = __import__("cnode.drivers." + name, None, None, (_CLASS[name],))
    return mod, getattr(mod, _CLASS[name])


class Hardware:
    """Buses of one board, built on demand from its file with the given `machine` module."""

    def __init__(self, board, machine):
        self.board = board
        self.machine = machine
        self._i2c = None
        self._uarts = {}
        self.pmic = None  # the power-management chip's driver, where the board has one (T-Beam: AXP192)
        self.pmic_error = None

    def i2c(self):
        if self._i2c is None:
            c = self.board.get("i2c")
            if not c:
                raise BoardError("the board has no i2c section")
            m = self.machine
            self._i2c = m.I2C(c.get("id", 0), scl=m.Pin(c["scl"]), sda=m.Pin(c["sda"]), freq=c.get("freq", 400000))
        return self._i2c

    def uart(self, uid, baud):
        if uid not in self._uarts:
            for u in self.board.get("uarts", ()):
                if u["id"] == uid:
                    self._uarts[uid] = self.machine.UART(uid, u.get("baud", baud), tx=u["tx"], rx=u["rx"],
                                                         timeout=0)
                    break
            else:
                raise BoardError("the board has no uart %d" % uid)
        return self._uarts[uid]

    def power_on(self, clock=None):
        """Switch the sensors' supply rail on where the board has one (Heltec Vext is active low), and the
        radio and GPS rails where a power chip feeds them (T-Beam: AXP192 LDO2 and LDO3). A power chip that
        does not answer is kept in pmic_error: the radio behind it will not answer either, and says so."""
        power = self.board.get("power", {})
        p = power.get("vext")
        if p:  # hold=False: release the hold power_off() set for deep sleep
            self.machine.Pin(p["pin"], self.machine.Pin.OUT, value=p.get("active", 0), hold=False)
        pm = power.get("pmic")
        if pm:
            if pm.get("type") != "axp192":
                raise BoardError("power.pmic: %r is not supported (axp192)" % (pm.get("type"),))
            from cnode.drivers.axp192 import AXP192

            try:
                self.pmic = AXP192(self.i2c(), clock, _num(pm.get("address", 0x34)))
                self.pmic.rails(lora=True, gps=True)
            except (SensorError, OSError) as e:
                self.pmic = None
                self.pmic_error = e

    def power_off(self):
        """Before deep sleep: the sensors' rail off and held off while the chip sleeps (an enable pin left
        floating could switch it on again), the power chip's radio and GPS rails off."""
        m = self.machine
        p = self.board.get("power", {}).get("vext")
        if p:
            m.Pin(p["pin"], m.Pin.OUT, value=0 if p.get("active", 0) else 1, hold=True)
            try:
                import esp32  # type: ignore

                hold = getattr(esp32, "gpio_deep_sleep_hold", None)  # the ESP32 needs it to hold in deep sleep;
                if hold is not None:  # the S3 has no such call (its pad hold lasts through deep sleep)
                    hold(True)
            except ImportError:
                pass
        if self.pmic is not None:
            try:
                self.pmic.rails(lora=False, gps=False)
            except OSError:
                pass

    def _maker(self, name, s, clock, nap):
        mod, cls = _driver_class(name)
        if name in _I2C_DRIVERS:  # their waits (a measurement, an SCD41's 5 s shot) need no CPU: `nap` may be a
            clock = nap  # light sleep; UART drivers keep `clock` (a UART receives nothing in light sleep)
            bus = self.i2c()
            addr = _num(s.get("address", getattr(mod, "ADDR", 0)))
            mode = s.get("mode")  # a driver's operating mode (scd4x: "single_shot" on an SCD41)
            if mode is not None:
                return lambda: cls(bus, clock, addr, mode=mode)
            return lambda: cls(bus, clock, addr)
        if name in _UART_DRIVERS:
            uart = self.uart(s.get("uart", 1), _UART_BAUD[name])
            return lambda: cls(uart, clock)
        if name == "pulse":
            m = self.machine
            pin = m.Pin(s["pin"], m.Pin.IN)
            return lambda: cls(pin, clock, channel=s.get("channel", "pedestrians"), dead_ms=s.get("dead_ms", 2000))
        if name == "blecount":  # the chip's own BLE radio, no bus; its clock is never a light sleep (it scans)
            return lambda: _ble_counter(cls, s, clock)
        raise BoardError("driver %r has no bus rule" % name)

    def slots(self, clock, nap=None):
        """A sampler slot for every sensor the board file lists, plus the battery. I2C drivers wait on `nap` (a
        clock whose sleep_ms is a light sleep on a board that deep-sleeps; default `clock`)."""
        out = []
        for s in self.board.get("sensors", ()):
            name = _ALIAS.get(s["driver"], s["driver"])
            make = self._maker(name, s, clock, nap or clock)
            try:
                drv = make()
            except (SensorError, OSError) as e:
                drv = Absent(name, make, e, getattr(_driver_class(name)[1], "keeps_count_in_ram", False))
            warm = getattr(drv, "warmup_ms", 0) or getattr(_driver_class(name)[1], "warmup_ms", 0)
            out.append(Slot(drv, every=s.get("every", 1), warmup_ms=warm, reads=s.get("reads", 1),
                            spacing_ms=s.get("spacing_ms", 1000)))
        b = self.board.get("battery")
        if b and b.get("pmic") and self.pmic is not None:  # measured by the power chip (T-Beam)
            out.append(Slot(self.pmic, every=b.get("every", 12)))
        if b and "adc" in b:
            en = b.get("enable")
            if en:
                self.machine.Pin(en["pin"], self.machine.Pin.OUT, value=en.get("active", 1))
            cls = _driver_class("battery")[1]
            adc = self.machine.ADC(self.machine.Pin(b["adc"]))
            if hasattr(adc, "atten"):
                adc.atten(3)  # 11 dB: pin range up to about 3.1 V
            out.append(Slot(cls(adc, b["r1"], b["r2"]), every=b.get("every", 12)))
        return out


def value_text(channel, v):
    """A reading as `citynode decode` gives it, with its unit: the integer at the channel's resolution as a decimal
    number, then the unit, both from the channel registry (cnode.channels) that the decoder reads ("7.41 Cel",
    "101325 Pa", "3.9 V"). No floats: exact on a port with single-precision floats."""
    if v is None:
        return "-"
    row = by_name(channel)
    if row is None or not isinstance(v, int):
        return str(v)
    exp = row[3]
    if exp < 0:
        digits = str(abs(v) % 10 ** -exp)
        digits = ("0" * (-exp - len(digits)) + digits).rstrip("0") or "0"
        text = "%s%d.%s" % ("-" if v < 0 else "", abs(v) // 10 ** -exp, digits)
    else:
        text = str(v * 10 ** exp)
    return text + " " + row[2] if row[2] else text


def selftest(slots, out=print):
    """Read every sensor once and print a table of its values with their units; returns the number of sensors
    that failed. A sensor is first brought out of any state a program before this one left it in (a reset of the
    board resets the ESP32, not its sensors): recover() where the driver has one (SCD4x), wake() for a sensor
    with a warm-up (SDS011, PMS5003, SPS30 asleep), and every driver set up anew (BME280: a soft reset)."""
    failed = 0
    out("%-10s %-14s %s" % ("sensor", "channel", "value"))
    for s in slots:
        d = s.driver
        name = type(d).__name__
        try:
            if hasattr(d, "recover"):  # the state the app left the chip in outlives a reset of the board
                d.recover()
            if s.warmup_ms and hasattr(d, "wake"):
                d.wake()
            d.read()
            for i in range(len(d.channels)):
                out("%-10s %-14s %s" % (name, d.channels[i], value_text(d.channels[i], d.values[i])))
        except Exception as e:  # the table shows every failure; the caller decides what a failure means
            failed += 1
            out("%-10s %-14s FAILED: %s" % (name, "-", e))
    out("selftest: %d sensors, %d failed" % (len(slots), failed))
    return failed
