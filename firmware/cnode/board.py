# A board file (boards/*.json, kept on the node as /board.json) made into buses, pins, sensors and the AT modem's
# UART. Who uses `machine`, and for what: this module and cnode.loraradio build buses and pins (I2C, UARTs, ADC,
# sensor and power-rail pins here; the radio chip's SPI and pins there), cnode.boardrev reads pins and the ADC to
# tell board revisions apart in the self-test, and cnode.runner uses it for the board's life (watchdog, RTC,
# reset cause, reset, light and deep sleep); main.py imports it and hands it to cnode.runner. Drivers never
# import or receive it: they get ready buses and pins and a clock.
import json

from micropython import const

from cnode.channels import by_name
from cnode.drivers.errors import SensorAbsent, SensorError
from cnode.sampler import Slot

BOARD_FILE = "/board.json"
# One row per driver, one string each: "module class bus baud channels option:type ..." (fields split by spaces)
# - module: in cnode.drivers, the name a sensors entry's "driver" gives (or an _ALIAS of it); class: the driver's
# - bus: i2c, uart, pin or ble (the chip's own radio), as a sensors entry's "bus"; adc: the battery, which has
#   its own section of the board file, not a sensors entry
# - baud: its UART's, where the board file's uarts entry gives none ("-": no UART)
# - channels: what it reads, in order, known before it is built (a sensor missing at start-up has them flagged)
# - options: the keys a sensors entry may add besides _ENTRY_KEYS, each passed to the driver's constructor as the
#   keyword argument of that name (blecount: scan_* to its start()). Types: bool (true or false); bool+a,b (true
#   adds channels a and b after the row's); lo..hi (an integer in that range); x|y (one of these strings). A
#   "channel" option names the one channel the driver reads (pulse).
# Strings, not tuples of fields: in a tuple each string is an object of its own on the node's heap (the table
# took 6.5 KB as tuples against 1.7 KB as strings, measured on the unix port), and rows are read only at boot.
_DRIVERS = (
    "bme280 BME280 i2c - temperature,humidity,pressure osrs:1..5 p64:bool stuck_reads:0..65535",
    "sht4x SHT4x i2c - temperature,humidity stuck_reads:0..65535",
    "scd4x SCD4x i2c - co2 th:bool+temperature,humidity mode:periodic|single_shot stuck_reads:0..65535",
    "dnms DNMS i2c - noise_laeq,noise_lamax offset:-200..200 stuck_reads:0..65535",
    "qmc5883l QMC5883L i2c - parked,vehicles ctrl1:0..255 enter_lsb:1..32767 leave_lsb:0..32766 dwell_ms:0..3600000"
    " ema_shift:0..15 drdy_timeout_ms:1..60000 stuck_reads:0..65535",
    "vl53l1x VL53L1X i2c - distance,occupancy occupied_below_mm:1..4000 timeout_ms:1..60000",
    "sds011 SDS011 uart 9600 pm2_5,pm10 mode:0..1 target:0..65535 timeout_ms:1..60000 stuck_after:0..65535",
    "sps30 SPS30 uart 115200 pm1,pm2_5,pm10 timeout_ms:1..60000 read_timeout_ms:1..60000 stuck_after:0..65535",
    "pms5003 PMS5003 uart 9600 pm1,pm2_5,pm10 passive:bool timeout_ms:0..60000 stuck_after:0..65535",
    "nmea NMEA uart 9600 latitude,longitude silent_ms:1..600000 max_fix_age_ms:1..600000",
    "pulse PulseCounter pin - pedestrians channel:pedestrians|bikes|vehicles dead_ms:0..3600000",
    "blecount BleCounter ble - pedestrians capacity:1..4096 rssi_min:-127..0 k_min:0..4096"
    " scan_interval_us:2500..10240000 scan_window_us:2500..10240000",
    "battery Battery adc - battery",
)
_NAME = const(0)
_CLS = const(1)
_BUS = const(2)
_BAUD = const(3)
_CH = const(4)
_OPTS = const(5)  # the first option
_ALIAS = {"gps_nmea": "nmea", "pir_counter": "pulse", "pir": "pulse", "radar": "pulse"}
# the keys of a sensors entry that are not its driver's options: wiring, sampling (cnode.sampler.Slot), and what
# only the host reads (a note, the model, maker and datasheet the data platform names)
_ENTRY_KEYS = "driver bus address uart pin every reads spacing_ms note model maker datasheet"
WDT_MS = const(120000)  # longer than the longest cycle (30 s warm-up, join windows, sends)


class BoardError(ValueError):
    """The board file names something this firmware cannot build (driver, bus, pin, option)."""


def _row(name):
    """The driver's row split into its fields (name as in a board file, aliases included), or None."""
    name = _ALIAS.get(name, name)
    for r in _DRIVERS:
        r = r.split()
        if r[_NAME] == name:
            return r
    return None


def check(s, where):
    """The driver's row for a sensors entry `s` and the entry's options as keyword arguments for the driver, once
    every key of the entry is one a sensors entry may have (_ENTRY_KEYS) or one of its driver's options, of the
    option's type and in its range, and its bus (if it names one) is the driver's. Raises BoardError naming `where`
    (the host: "sensors[1]"), the driver and the key."""
    row = _row(s.get("driver"))
    if row is None or row[_BUS] == "adc":
        raise BoardError("%s: unknown driver %r" % (where, s.get("driver")))
    if s.get("bus", row[_BUS]) != row[_BUS]:
        raise BoardError("%s (%s): bus %r, but it is on %s" % (where, row[_NAME], s["bus"], row[_BUS]))
    keys = _ENTRY_KEYS.split()
    kw = {}
    for k in s:
        if k in keys:
            continue
        v = s[k]
        for o in row[_OPTS:]:
            n, t = o.split(":")
            if n == k:
                break
        else:
            raise BoardError("%s (%s): unknown option %r (options: %s)" % (
                where, row[_NAME], k, " ".join(row[_OPTS:]) or "none"))
        if t.split("+")[0] == "bool":
            ok, want = v is True or v is False, "true or false"
        elif ".." in t:
            lo, hi = t.split("..")
            ok = isinstance(v, int) and v is not True and v is not False and int(lo) <= v <= int(hi)
            want = "an integer " + t
        else:
            ok, want = isinstance(v, str) and v in t.split("|"), "one of " + t
        if not ok:
            raise BoardError("%s (%s): option %r: expected %s, got %s" % (where, row[_NAME], k, want, json.dumps(v)))
        kw[k] = v
    return row, kw


def channels(s, row=None):
    """The channels a sensors entry's driver reads, in order, known before it is built: its row's and those an
    option adds (scd4x "th": true), or the one its "channel" option names (pulse); () for a driver this firmware
    lacks."""
    row = row or _row(s.get("driver"))
    if row is None:
        return ()
    ch = row[_CH].split(",")
    for o in row[_OPTS:]:
        n, t = o.split(":")
        if n == "channel":
            ch = [s.get(n, ch[0])]
        elif "+" in t and s.get(n) is True:
            ch += t.split("+")[1].split(",")
    return tuple(ch)


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

    def __init__(self, name, channels, make, err, counts=False):
        self.name = name
        self.channels = channels
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


def _ble_counter(cls, kw, clock):
    """A BLE counter (cnode.drivers.blecount) on the chip's own radio, scanning as the board file says (`kw`: the
    entry's options)."""
    try:
        import bluetooth
    except ImportError:
        raise SensorAbsent("blecount: this MicroPython has no bluetooth module")
    kw = dict(kw)  # a copy: make() runs again while the radio is missing
    scan = {}
    for k in ("scan_interval_us", "scan_window_us"):  # start()'s interval_us and window_us
        if k in kw:
            scan[k[5:]] = kw.pop(k)
    c = cls(clock, **kw)
    c.start(bluetooth.BLE(), **scan)
    return c


def _driver_class(row):
    """The driver's module and class (imported now: a board loads only the drivers its file lists)."""
    mod = __import__("cnode.drivers." + row[_NAME], None, None, (row[_CLS],))
    return mod, getattr(mod, row[_CLS])


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

    def modem_uart(self, r):
        """The UART to the board's AT-command LoRaWAN modem (`r`: the radio section, type lora-e5 or rak3172): at the
        section's baud or the modem's factory default, with room for a downlink line (about 500 B)."""
        p = r.get("pins", {})
        return self.machine.UART(r.get("uart", 2), r.get("baud", 9600 if r.get("type") == "lora-e5" else 115200),
                                 tx=p["tx"], rx=p["rx"], timeout=0, rxbuf=1024)

    def _maker(self, row, s, kw, clock, nap):
        """fn() that builds the driver of a checked sensors entry on its bus, with the entry's options `kw`."""
        mod, cls = _driver_class(row)
        bus = row[_BUS]
        if bus == "i2c":  # their waits (a measurement, an SCD41's 5 s shot) need no CPU: `nap` may be a light
            clock = nap  # sleep; UART drivers keep `clock` (a UART receives nothing in light sleep)
            i2c = self.i2c()
            addr = _num(s.get("address", getattr(mod, "ADDR", 0)))
            return lambda: cls(i2c, clock, addr, **kw)
        if bus == "uart":
            uart = self.uart(s.get("uart", 1), int(row[_BAUD]))
            return lambda: cls(uart, clock, **kw)
        if bus == "pin":
            m = self.machine
            pin = m.Pin(s["pin"], m.Pin.IN)
            return lambda: cls(pin, clock, **kw)
        # ble: the chip's own radio, no bus; its clock is never a light sleep (it scans)
        return lambda: _ble_counter(cls, kw, clock)

    def slots(self, clock, nap=None):
        """A sampler slot for every sensor the board file lists, plus the battery. I2C drivers wait on `nap` (a
        clock whose sleep_ms is a light sleep on a board that deep-sleeps; default `clock`). A sensors entry the
        firmware cannot build as written (driver, option, wiring) is a BoardError that names the file and the entry;
        a sensor that does not answer is an Absent, tried again at every read."""
        out = []
        sensors = self.board.get("sensors", ())
        name = self.board.get("name")
        for i in range(len(sensors)):
            s = sensors[i]
            where = "board file %s%s: sensors[%d]" % (BOARD_FILE, " (%s)" % name if name else "", i)
            row, kw = check(s, where)
            make = self._maker(row, s, kw, clock, nap or clock)
            cls = _driver_class(row)[1]
            try:
                drv = make()
            except (SensorError, OSError) as e:
                drv = Absent(row[_NAME], channels(s, row), make, e, getattr(cls, "keeps_count_in_ram", False))
            except ValueError as e:  # the driver refused its options (qmc5883l: leave_lsb not below enter_lsb)
                raise BoardError("%s (%s): %s" % (where, row[_NAME], e))
            warm = getattr(drv, "warmup_ms", 0) or getattr(cls, "warmup_ms", 0)
            out.append(Slot(drv, every=s.get("every", 1), warmup_ms=warm, reads=s.get("reads", 1),
                            spacing_ms=s.get("spacing_ms", 1000)))
        b = self.board.get("battery")
        if b and b.get("pmic") and self.pmic is not None:  # measured by the power chip (T-Beam)
            out.append(Slot(self.pmic, every=b.get("every", 12)))
        if b and "adc" in b:
            en = b.get("enable")
            if en:
                self.machine.Pin(en["pin"], self.machine.Pin.OUT, value=en.get("active", 1))
            cls = _driver_class(_row("battery"))[1]
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
