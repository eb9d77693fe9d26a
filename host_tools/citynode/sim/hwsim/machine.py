# A double of MicroPython's `machine` module: I2C, UART, SPI, Pin (with IRQs), ADC, RTC, WDT, deepsleep.
#
# Buses carry bytes to simulated twins (hwsim/twins_*.py). Install it as the `machine` module with
# use(clock); the firmware then runs unchanged. It accepts what the ESP32 port of MicroPython 1.26.1
# accepts and raises what it raises, with the same types and messages (../shared/docs/esp32-api.md, checked
# by tests/host/test_esp32_double.py): unknown keywords, pin numbers, bus ids, UART framing, ADC pins and
# attenuation, addrsize, WDT arguments, CPU frequency. OSError(ENODEV) for an address that does not
# acknowledge, OSError(ETIMEDOUT) for a stuck bus. The watchdog bites in virtual time.
import sys

ENODEV = 19
EIO = 5
ETIMEDOUT = 116

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

_state = {"clock": None, "reset_cause": PWRON_RESET, "rtc_memory": b"", "wires": {}, "spi": {}, "i2c": {},
          "uart": {}, "adc": {}}
# the RTC's wake configuration (machine_rtc_config): Pin.irq(wake=) and the esp32 module's wake_on_* set it
_wake = {}
_IDLE_MAX_US = 10000  # idle() returns at the next interrupt or after one FreeRTOS tick (100 Hz on ESP32)


PIN_WAKE = EXT0_WAKE = 2
EXT1_WAKE = 3
TIMER_WAKE = 4
TOUCHPAD_WAKE = 5
ULP_WAKE = 6
SLEEP = 2  # wake-type bits for Pin.irq(wake=)
DEEPSLEEP = 4

# per chip: GPIOs the port accepts, ADC pins (ADC1 + ADC2), RTC pins (wake), lowest input-only GPIO
_CHIPS = {
    "esp32": (tuple(range(0, 24)) + (25, 26, 27) + tuple(range(32, 40)),
              (32, 33, 34, 35, 36, 37, 38, 39) + (0, 2, 4, 12, 13, 14, 15, 25, 26, 27),
              (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39), 34),
    # ESP32_GENERIC_S3: SPIRAM takes 26, USB CDC takes 19/20, no EXTENDED_IO (47/48)
    "esp32s3": (tuple(range(0, 19)) + (21,) + tuple(range(33, 47)), tuple(range(1, 21)), tuple(range(0, 22)), 99),
}
_FREQS_MHZ = (20, 40, 80, 160, 240)


class DeepSleep(BaseException):
    """Raised by deepsleep(): the simulator catches it, advances the clock and boots the node again. A
    BaseException, as the real reboot: the firmware's `except Exception` cannot swallow it."""

    def __init__(self, ms):
        super().__init__(ms)
        self.ms = ms


class Reset(BaseException):
    """Raised by reset() and by an expired watchdog (cause WDT_RESET)."""

    def __init__(self, cause):
        super().__init__(cause)
        self.cause = cause


def _no_extra(kw):
    """MicroPython's argument check (py/argcheck.c): an unknown keyword is a TypeError with this message."""
    if kw:
        raise TypeError("extra keyword arguments given")


def _positional(args, n):
    if len(args) > n:
        raise TypeError("extra positional arguments given")


def _no_kw(kw):
    """A function of positional arguments only (MP_DEFINE_CONST_FUN_OBJ_*): no keywords at all."""
    if kw:
        raise TypeError("function doesn't take keyword arguments")


def _args(args, kw, names, defaults) -> list:
    """Arguments as mp_arg_parse_all reads them: positional then keyword, by name; unknown keywords and
    extra positionals are TypeErrors with the port's messages. Returns the values in `names` order."""
    _positional(args, len(names))
    out = list(args) + [None] * (len(names) - len(args))
    for i in range(len(names)):
        if i < len(args):
            continue  # a keyword for it as well stays unused: "extra keyword arguments given"
        out[i] = kw.pop(names[i], defaults[i])
    _no_extra(kw)
    return out


def _int(v):
    """mp_obj_get_int: an int (or bool), never a float."""
    if isinstance(v, float):
        raise TypeError("can't convert float to int")
    if not isinstance(v, int):
        raise TypeError("can't convert %s to int" % type(v).__name__)
    return v


def use(clock, chip="esp32"):
    """Bind the double to a virtual clock and install it as `machine` for the firmware; `chip` (a board
    file's "chip": esp32 or esp32s3) sets which pins exist. The board's wiring (wires and SPI peers) starts
    empty: twins attach to pins by number, as they are soldered on a board."""
    _state["clock"] = clock
    _state["chip"] = _CHIPS[chip]
    _state["chip_name"] = chip
    for k in ("wires", "spi", "i2c", "uart", "adc"):
        _state[k] = {}
    _state["wdt"] = None
    _state["cpu"] = None  # fn(state) of an energy meter watching the CPU (lightsleep, deepsleep)
    _state["uarts"] = {}
    reset_wake()
    sys.modules["machine"] = sys.modules[__name__]


def reset_wake():
    """No wake source configured, as after a boot."""
    _wake.update(ext0=None, ext0_level=0, ext0_types=SLEEP | DEEPSLEEP, ext1=(), ext1_level=False, touch=False,
                 ulp=False)


reset_wake()


class Wire:
    """The copper behind one GPIO number: a twin watches what the MCU drives on it (`watch(fn)`, fn(level)) or
    drives it itself (`drive(level)`: the MCU's Pin objects on it read that level and run their IRQ handlers)."""

    def __init__(self, id):
        self.id = id
        self.level = 0
        self.pins = []  # the MCU's Pin objects on this GPIO
        self.watchers = []
        self.driven = False  # True once a twin drives it: the MCU reads the twin's level

    def watch(self, fn):
        self.watchers.append(fn)

    def drive(self, level):
        self.driven = True
        self.level = 1 if level else 0
        for p in self.pins:
            p.drive(self.level)

    def _mcu(self, level):
        if self.driven:
            return
        self.level = level
        for fn in self.watchers:
            fn(level)


def wire(id):
    """The wire at GPIO `id` (created on first use)."""
    w = _state["wires"].get(id)
    if w is None:
        w = _state["wires"][id] = Wire(id)
    return w


def attach_spi(sck, peer):
    """Wire an SPI device (a twin with transfer(bytes) -> bytes) to the bus whose clock is on GPIO `sck`."""
    _state["spi"][sck] = peer
    return peer


def attach_i2c(scl, addr, device):
    """Wire an I2C device (write(bytes)/read(n)) at `addr` on the bus whose SCL is GPIO `scl`."""
    _state["i2c"].setdefault(scl, {})[addr] = device
    return device


def attach_uart(rx, peer):
    """Wire a UART device (on_write(uart, data), pump(uart, ms)) whose TX line reaches GPIO `rx`."""
    _state["uart"][rx] = peer
    return peer


def attach_adc(pin, source):
    """A voltage source (fn(monotonic ms) -> microvolts) on ADC pin `pin`."""
    _state["adc"][pin] = source
    return source


def _gpio(p):
    return p.id if isinstance(p, Pin) else p


def clock():
    return _state["clock"]


def reset_cause():
    return _state["reset_cause"]


def set_reset_cause(cause):
    _state["reset_cause"] = cause


def deepsleep(*args, **kw):
    """deepsleep([ms]): positional only; the chip reboots (the watchdog stops with it)."""
    _no_kw(kw)
    _positional(args, 1)
    if args:
        _int(args[0])
    _state["reset_cause"] = DEEPSLEEP_RESET
    _state["wdt"] = None
    _state["wake_reason"] = TIMER_WAKE if args else 0
    _cpu("deep_sleep")
    raise DeepSleep(args[0] if args else 0)


def lightsleep(*args, **kw):
    """lightsleep([ms]): positional only; the clock runs on, and nothing feeds the watchdog."""
    _no_kw(kw)
    _positional(args, 1)
    c = _state["clock"]
    if args:
        _int(args[0])
        _state["wake_reason"] = TIMER_WAKE
    if c is not None and args:
        _cpu("light_sleep")
        uarts = list(_state.get("uarts", {}).values())
        for u in uarts:
            u._pump()  # what arrived before the sleep stays in the FIFO
        c.sleep_ms(args[0])
        for u in uarts:
            n = len(u._rx)
            u._pump()
            u._rx = u._rx[:n]  # the UART's clock was gated (IDF light sleep): bytes sent meanwhile are lost
        _cpu("idle")


sleep = lightsleep


def _cpu(state):
    """Tell the energy meter (if one watches this chip: _state["cpu"]) the CPU's power state."""
    f = _state.get("cpu")
    if f is not None:
        f(state)


def wake_reason(*args):
    return _state.get("wake_reason", 0)  # the port ignores any arguments


def idle():
    """Wait for the next interrupt, at most one RTOS tick: the clock runs to its next timer (a twin's event)."""
    c = _state["clock"]
    if c is None:
        return
    step = _IDLE_MAX_US
    nxt = c.next_due_us() if hasattr(c, "next_due_us") else None
    if nxt is not None:
        d = nxt - c.monotonic_us()
        if d < step:
            step = d if d > 0 else 0
    c.sleep_us(step)


def reset():
    _state["reset_cause"] = HARD_RESET
    _state["wdt"] = None
    raise Reset(HARD_RESET)


def soft_reset():
    _state["reset_cause"] = SOFT_RESET
    raise Reset(SOFT_RESET)


def disable_irq():
    """Returns the state enable_irq() restores (on a board: interrupts off on this core)."""
    _state["irq_off"] = _state.get("irq_off", 0) + 1
    return 1


def enable_irq(state):
    _state["irq_off"] = max(0, _state.get("irq_off", 0) - 1)


def unique_id():
    return b"\x24\x0a\xc4\x00\x00\x01"


def freq(*args):
    _positional(args, 1)
    if not args:
        return _state.get("freq", 160000000)
    hz = _int(args[0])
    if hz // 1000000 not in _FREQS_MHZ:
        raise ValueError("frequency must be 20MHz, 40MHz, 80Mhz, 160MHz or 240MHz")
    _state["freq"] = hz
    return None


class _PinIRQ:
    def __init__(self, pin):
        self._pin = pin

    def trigger(self, *args):
        """trigger([t]): the trigger it had; with t, set a new one."""
        _positional(args, 1)
        old = self._pin._trigger
        if args:
            self._pin._trigger = _int(args[0])
        return old

    def __call__(self):
        if self._pin._handler is not None:
            self._pin._handler(self._pin)


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_DOWN = 1
    PULL_UP = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5
    DRIVE_0 = 0
    DRIVE_1 = 1
    DRIVE_2 = 2
    DRIVE_3 = 3

    def __init__(self, *args, **kw):
        if not args:
            raise TypeError("function missing 1 required positional arguments")
        id = args[0]
        args = args[1:]
        if isinstance(id, Pin):
            id = id.id
        if not isinstance(id, int) or id not in _chip()[0]:
            raise ValueError("invalid pin")
        self.id = id
        self.mode = None
        self.pull = None
        self.hold = False
        self._v = 0
        self._handler = None
        self._trigger = 0
        w = wire(id)  # the copper behind the pin: what the MCU drives on it is there to see
        self._wire = w
        w.pins.append(self)
        if w.driven:
            self._v = w.level
        self.init(*args, **kw)

    def init(self, *args, **kw):
        """init(mode=None, pull=-1, *, value, drive, hold), as Pin() takes them after the id."""
        _positional(args, 2)
        # drive: 0..3 on an output pin; anything else is silently ignored (machine_pin.c)
        mode, pull, value, drive, hold = _args(args, kw, ("mode", "pull", "value", "drive", "hold"),
                                               (None, -1, None, None, None))
        if mode is not None and mode & 2 and self.id >= _chip()[3]:
            raise ValueError("pin can only be input")
        if pull != -1:
            self.pull = pull
            if pull is not None and not (self._wire is not None and self._wire.driven):
                self._v = 1 if pull & 2 else (0 if pull & 1 else self._v)
        if value is not None:  # set before the mode, as the port does
            self._set(value)
        if mode is not None:
            self.mode = mode
        if hold is not None and self.id < _chip()[3]:
            self.hold = bool(hold)

    def _set(self, v):
        self._v = 1 if v else 0
        if self._wire is not None:
            self._wire._mcu(self._v)

    def value(self, *args):
        _positional(args, 1)
        if not args:
            return self._v
        self._set(args[0])
        return None

    def on(self):
        self._set(1)

    def off(self):
        self._set(0)

    def toggle(self):
        self._set(0 if self._v else 1)

    def __call__(self, *args):
        return self.value(*args)

    def irq(self, *args, **kw):
        """irq(handler=None, trigger=IRQ_FALLING | IRQ_RISING, wake=None): no `hard` (the port schedules
        every pin handler, a soft IRQ). No arguments: the IRQ object only. A WAKE_LOW/WAKE_HIGH trigger with
        `wake` makes the pin the ext0 wake source (the handler is not set)."""
        if not args and not kw:
            return _PinIRQ(self)
        handler, trigger, wake = _args(args, kw, ("handler", "trigger", "wake"), (None, 3, None))
        trigger = _int(trigger)
        w = _wake
        if trigger in (Pin.WAKE_LOW, Pin.WAKE_HIGH) and wake is not None:
            if not isinstance(wake, int) or not 2 <= wake <= 7:
                raise ValueError("bad wake value")
            if w["touch"]:
                raise ValueError("no resources")
            if self.id not in _chip()[2]:
                raise ValueError("invalid pin for wake")
            if w["ext0"] is not None and w["ext0"] != self.id:
                raise ValueError("no resources")
            w["ext0"] = self.id
            w["ext0_level"] = 0 if trigger == Pin.WAKE_LOW else 1
            w["ext0_types"] = wake
            return _PinIRQ(self)
        if w["ext0"] == self.id:
            w["ext0"] = None
        if handler is None:
            trigger = 0
        self._handler = handler
        self._trigger = trigger
        return _PinIRQ(self)

    # simulation side: drive the input as the outside world would
    def drive(self, v):
        v = 1 if v else 0
        old = self._v
        self._v = v
        if self._handler is not None and old != v:
            edge = Pin.IRQ_RISING if v else Pin.IRQ_FALLING
            if self._trigger & edge:
                self._handler(self)


def _chip():
    return _state.get("chip") or _CHIPS["esp32"]


class I2C:
    """I2C(id=0, *, scl, sda, freq=400000, timeout=50000): ids 0 and 1. Without scl the double gives the
    bus its own devices (a test wires them with attach()). As on the port, no positional id or id -1 is the
    deprecated way to a SoftI2C (I2C() needs scl and sda then)."""

    def __init__(self, *args, **kw):
        if not args or args[0] == -1:
            sys.stderr.write("Warning: I2C(-1, ...) is deprecated, use SoftI2C(...) instead\n")
            # as the port does, the deprecated I2C(-1) is a SoftI2C: SoftI2C's init sets up this very object
            SoftI2C.init(self, *args[1:], **kw)  # pyright: ignore[reportArgumentType]
            return
        _positional(args, 1)
        id = _int(args[0])
        if id not in (0, 1):
            raise ValueError("I2C(%d) doesn't exist" % id)
        self._setup(kw.pop("scl", None), kw)

    def _setup(self, scl, kw):
        kw.pop("sda", None)
        kw.pop("freq", None)
        kw.pop("timeout", None)
        _no_extra(kw)
        self.devices = _state["i2c"].setdefault(_gpio(scl), {}) if scl is not None else {}
        self.faults = {}  # addr -> [kind, remaining]
        self.stuck = False
        self.bytes_moved = 0

    def attach(self, addr, device):
        self.devices[addr] = device
        return device

    def detach(self, addr):
        self.devices.pop(addr, None)

    def inject(self, addr, kind, count=1):
        """Fault on the next `count` transfers to addr: 'nack', 'timeout' or 'short' (disconnect mid-read)."""
        self.faults[addr] = [kind, count]

    def _dev(self, addr):
        if self.stuck:
            raise OSError(ETIMEDOUT)
        f = self.faults.get(addr)
        if f is not None and f[1] > 0:
            f[1] -= 1
            if f[0] == "nack":
                raise OSError(ENODEV)
            if f[0] == "timeout":
                raise OSError(ETIMEDOUT)
            if f[0] == "short":
                raise OSError(EIO)
        d = self.devices.get(addr)
        if d is None:
            raise OSError(ENODEV)
        return d

    # the bit-level primitives are SoftI2C's only
    def _unsupported(self, *args, **kw):
        raise OSError("I2C operation not supported")

    init = start = stop = readinto = write = _unsupported

    def scan(self):
        return sorted(a for a in self.devices if 0x08 <= a <= 0x77 and not self.stuck)

    def writeto(self, addr, buf, *args, **kw):
        """writeto(addr, buf, stop=True), positional only: the byte count."""
        _positional(args, 1)
        _no_kw(kw)
        self._dev(addr).write(bytes(buf))
        self.bytes_moved += len(buf)
        return len(buf)

    def writevto(self, addr, vector, *args, **kw):
        _positional(args, 1)
        _no_kw(kw)
        data = b"".join(bytes(b) for b in vector)
        return self.writeto(addr, data)

    def readfrom_into(self, addr, buf, *args, **kw):
        _positional(args, 1)
        _no_kw(kw)
        data = self._dev(addr).read(len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]
        self.bytes_moved += len(buf)

    def readfrom(self, addr, nbytes, *args, **kw):
        _positional(args, 1)
        _no_kw(kw)
        buf = bytearray(nbytes)
        self.readfrom_into(addr, buf)
        return bytes(buf)

    def _mem(self, memaddr, kw):
        addrsize = _args((), kw, ("addrsize",), (8,))[0]
        if addrsize > 32 or addrsize % 8:
            raise ValueError("invalid addrsize")
        return bytes((memaddr >> (addrsize - 8 - 8 * i)) & 0xFF for i in range(addrsize // 8))

    def writeto_mem(self, addr, memaddr, buf, **kw):
        """writeto_mem(addr, memaddr, buf, *, addrsize=8), as readfrom_mem(_into)."""
        a = self._mem(memaddr, kw)
        self._dev(addr).write(a + bytes(buf))
        self.bytes_moved += len(buf) + len(a)

    def readfrom_mem_into(self, addr, memaddr, buf, **kw):
        a = self._mem(memaddr, kw)
        d = self._dev(addr)
        d.write(a)
        data = d.read(len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]
        self.bytes_moved += len(buf) + len(a)

    def readfrom_mem(self, addr, memaddr, nbytes, **kw):
        buf = bytearray(nbytes)
        self.readfrom_mem_into(addr, memaddr, buf, **kw)
        return bytes(buf)


class SoftI2C(I2C):
    """SoftI2C(scl, sda, *, freq=400000, timeout=50000): scl and sda required (positional allowed). The double
    moves whole transfers, not bits: start/stop/readinto/write are not modelled."""

    def __init__(self, *args, **kw):
        self.init(*args, **kw)

    def init(self, *args, **kw):
        _positional(args, 2)
        scl = args[0] if args else kw.pop("scl", None)
        if len(args) > 1:
            kw["sda"] = args[1]
        if scl is None:
            raise TypeError("'scl' argument required")
        if "sda" not in kw:
            raise TypeError("'sda' argument required")
        self._setup(scl, kw)

    def _bits(self, *args, **kw):
        raise NotImplementedError("the double moves whole transfers: use writeto/readfrom")

    start = stop = readinto = write = _bits


class UART:
    """A UART whose far end is a twin: twin.on_write(uart, data) hears what the node sends, and
    twin.pump(uart, now_ms) may call uart.feed(bytes) with what the device has sent by now."""

    _KW = ("baudrate", "bits", "parity", "stop", "tx", "rx", "rts", "cts", "txbuf", "rxbuf", "timeout",
           "timeout_char", "invert", "flow")
    IRQ_RX = 1
    IRQ_BREAK = 2
    IRQ_RXIDLE = 0x1000
    INV_RX = 4
    INV_CTS = 8
    INV_TX = 32
    INV_RTS = 64
    RTS = 1
    CTS = 2

    def __init__(self, *args, **kw):
        """UART(id, baudrate=115200, bits=8, parity=None, stop=1, *, tx, rx, rts, cts, txbuf=256, rxbuf=256,
        timeout=0, timeout_char=0, invert, flow): ids 0..2; UART1 on rx 9/tx 10, UART2 on rx 16/tx 17 unless
        given. The far end is the twin attach_uart() wired to the rx pin, or attach(peer)."""
        if not args:
            raise TypeError("function missing 1 required positional arguments")
        id = args[0]
        args = args[1:]
        if _int(id) not in (0, 1, 2):
            raise ValueError("UART(%d) does not exist" % id)
        self.id = id
        self._irq = None  # [handler, trigger] once irq() was called
        self.baudrate = 115200
        self.timeout = 0
        self.rxbuf = 256
        self.txbuf = 256
        self._rx = bytearray()
        self.overruns = 0
        self.sent = bytearray()
        self.peer = None
        self.init(*args, **kw)
        _state.setdefault("uarts", {})[id] = self  # light sleep gates the UART clocks: what they receive is lost

    def init(self, *args, **kw):
        _positional(args, 4)
        for k in kw:
            if k not in UART._KW or k in UART._KW[:len(args)]:
                raise TypeError("extra keyword arguments given")
        for i in range(len(args)):
            kw[UART._KW[i]] = args[i]
        bits = kw.get("bits", 8)
        if bits and not 5 <= bits <= 8:
            raise ValueError("invalid data bits")
        stop = kw.get("stop", 1)
        if stop and stop not in (1, 2):
            raise ValueError("invalid stop bits")
        if kw.get("invert", 0) & ~(UART.INV_RX | UART.INV_TX | UART.INV_CTS | UART.INV_RTS):
            raise ValueError("invalid inversion mask")
        if kw.get("flow", 0) & ~(UART.RTS | UART.CTS):
            raise ValueError("invalid flow control mask")
        if self.id == 0 and (kw.get("rxbuf", self.rxbuf) != self.rxbuf or kw.get("txbuf", self.txbuf) != self.txbuf):
            raise ValueError("UART buffer size is fixed")  # the REPL's UART on ESP32_GENERIC
        if kw.get("rxbuf", 256) <= 128 or 0 < kw.get("txbuf", 256) <= 128:
            raise OSError(1, "ESP_FAIL")  # ESP-IDF: a buffer must exceed the 128-byte hardware FIFO
        self.baudrate = kw.get("baudrate", self.baudrate)
        self.timeout = kw.get("timeout", self.timeout)
        self.rxbuf = kw.get("rxbuf", self.rxbuf)
        self.txbuf = kw.get("txbuf", self.txbuf)
        rx = kw.get("rx", {1: 9, 2: 16}.get(self.id, 3))
        if self.peer is None:
            self.peer = _state["uart"].get(_gpio(rx))

    def deinit(self):
        pass

    def irq(self, *args, **kw):
        """irq(handler=None, trigger=0, hard=False): the handler (called with the UART) runs when bytes
        arrive for IRQ_RX/IRQ_RXIDLE; UART0 is the REPL's and has none; no hard IRQs."""
        if self.id == 0:
            raise ValueError("UART does not support IRQs")
        if self._irq is None:
            self._irq = [None, 0]
        if args or kw:
            handler, trigger, hard = _args(args, kw, ("handler", "trigger", "hard"), (None, 0, False))
            if handler is not None and not callable(handler):
                raise ValueError("handler must be None or callable")
            bad = _int(trigger) & ~(UART.IRQ_RX | UART.IRQ_BREAK | UART.IRQ_RXIDLE)
            if trigger and bad:
                raise ValueError("trigger 0x%04x unsupported" % bad)
            self._irq[0] = handler
            if hard:
                raise ValueError("hard IRQ is not supported")
            self._irq[1] = trigger
        return _UartIRQ(self)

    def txdone(self):
        return True

    def sendbreak(self):
        pass

    def attach(self, peer):
        self.peer = peer
        return peer

    def feed(self, data):
        self._rx += data
        extra = len(self._rx) - self.rxbuf
        if extra > 0:  # a real UART FIFO drops what does not fit
            self._rx = self._rx[extra:]
            self.overruns += extra
        q = self._irq
        if data and q is not None and q[0] is not None and q[1] & (UART.IRQ_RX | UART.IRQ_RXIDLE):
            q[0](self)

    def _pump(self):
        c = _state["clock"]
        if self.peer is not None and hasattr(self.peer, "pump"):
            self.peer.pump(self, c.monotonic_ms() if c is not None else 0)

    def _wait(self, want):
        self._pump()
        if len(self._rx) >= want or not self.timeout:
            return
        c = _state["clock"]
        if c is None:
            return
        waited = 0
        while len(self._rx) < want and waited < self.timeout:
            step = 1 if self.timeout < 20 else 5
            c.sleep_ms(step)
            waited += step
            self._pump()

    def any(self):
        self._pump()
        return len(self._rx)

    def read(self, *args, **kw):
        """read([nbytes]), positional (a stream method): None when nothing came within the timeout."""
        _positional(args, 1)
        _no_kw(kw)
        nbytes = args[0] if args else None
        self._wait(nbytes or 1)
        if not self._rx:
            return None
        n = len(self._rx) if nbytes is None else min(nbytes, len(self._rx))
        out = bytes(self._rx[:n])
        self._rx = self._rx[n:]
        return out

    def readinto(self, buf, *args, **kw):
        _positional(args, 1)
        _no_kw(kw)
        n = len(buf) if not args else args[0]
        data = self.read(n)
        if not data:
            return None
        for i in range(len(data)):
            buf[i] = data[i]
        return len(data)

    def readline(self):
        self._wait(1)
        i = self._rx.find(b"\n")
        if i < 0:
            if not self._rx:
                return None
            i = len(self._rx) - 1
        out = bytes(self._rx[:i + 1])
        self._rx = self._rx[i + 1:]
        return out

    def write(self, buf):
        data = bytes(buf)
        self.sent += data
        if len(self.sent) > 4096:  # what tests look at is recent: keep the last 4 KiB
            self.sent = self.sent[-2048:]
        if self.peer is not None:
            self.peer.on_write(self, data)
        return len(data)

    def flush(self):
        pass


class _UartIRQ:
    def __init__(self, uart):
        self._u = uart

    def trigger(self, *args):
        _positional(args, 1)
        old = self._u._irq[1]
        if args:
            self._u._irq[1] = _int(args[0])
        return old

    def flags(self):
        return UART.IRQ_RX if self._u._rx else 0

    def __call__(self):
        if self._u._irq[0] is not None:
            self._u._irq[0](self._u)


class SPI:
    """SPI(id, baudrate=500000, *, polarity=0, phase=0, bits=8, firstbit=MSB, sck, mosi, miso): a hardware
    bus (ESP32: id 1 or 2) whose far end is the device wired to its SCK pin (attach_spi) or attach(peer);
    chip select is a plain Pin the device watches on its wire. SPI() and SPI(-1, ...) are a SoftSPI."""
    MSB = 0
    LSB = 1
    _KW = ("polarity", "phase", "bits", "firstbit", "sck", "mosi", "miso")

    def __init__(self, *args, **kw):
        self.peer = None
        if not args or args[0] == -1:
            sys.stderr.write("Warning: SPI(-1, ...) is deprecated, use SoftSPI(...) instead\n")
            # as the port does, the deprecated SPI(-1) is a SoftSPI: SoftSPI's init sets up this very object
            SoftSPI.init(self, *args[1:], **kw)  # pyright: ignore[reportArgumentType]
            return
        id = _int(args[0])
        if id not in (1, 2):
            raise ValueError("SPI(%d) doesn't exist" % id)
        self.init(*args[1:], **kw)

    def init(self, *args, **kw):
        """init(baudrate=500000, *, polarity, phase, bits, firstbit, sck, mosi, miso)."""
        _positional(args, 1)
        for k in kw:
            if k != "baudrate" and k not in SPI._KW:
                raise TypeError("extra keyword arguments given")
        if args and "baudrate" in kw:
            raise TypeError("extra keyword arguments given")
        if _int(kw.get("bits", 8)) <= 0:
            raise ValueError("invalid bits")
        sck = kw.get("sck")
        if sck is not None:
            self.peer = _state["spi"].get(_gpio(sck))
        self._on = True

    def attach(self, peer):
        self.peer = peer
        return peer

    def deinit(self):
        self._on = False

    def _xfer(self, data):
        if not self._on:
            raise OSError("transfer on deinitialized SPI")
        if not data:
            raise ValueError("buffer too short")
        return self.peer.transfer(data) if self.peer is not None else bytes([0xFF]) * len(data)

    def write(self, buf):
        self._xfer(bytes(buf))

    def read(self, nbytes, *args, **kw):
        """read(nbytes, write=0), positional only, as readinto and write_readinto."""
        _positional(args, 1)
        _no_kw(kw)
        return self._xfer(bytes([args[0] if args else 0]) * nbytes)

    def readinto(self, buf, *args, **kw):
        _positional(args, 1)
        _no_kw(kw)
        data = self.read(len(buf), *args)
        for i in range(len(buf)):
            buf[i] = data[i]

    def write_readinto(self, wbuf, rbuf):
        if len(wbuf) != len(rbuf):
            raise ValueError("buffers must be the same length")
        data = self._xfer(bytes(wbuf))
        for i in range(len(rbuf)):
            rbuf[i] = data[i]


class SoftSPI(SPI):
    """SoftSPI(baudrate=500000, *, polarity=0, phase=0, bits=8, firstbit=MSB, sck, mosi, miso): 8 bits, all
    three pins."""

    def __init__(self, *args, **kw):
        self.peer = None
        self.init(*args, **kw)

    def init(self, *args, **kw):
        if kw.get("bits", 8) != 8:
            raise ValueError("bits must be 8")
        if kw.get("sck") is None or kw.get("mosi") is None or kw.get("miso") is None:
            raise ValueError("must specify all of sck/mosi/miso")
        SPI.init(self, *args, **kw)


class ADC:
    """ADC(pin, *, atten=ATTN_11DB): ADC1 and ADC2 pins of the ESP32; the default attenuation is re-applied
    at every construction. The voltage at the pin comes from attach_adc(pin, fn) or .uv."""
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_9BIT = 9
    WIDTH_10BIT = 10
    WIDTH_11BIT = 11
    WIDTH_12BIT = 12

    def __init__(self, pin, *args, **kw):
        _positional(args, 0)
        gpio = _gpio(pin)
        if gpio not in _chip()[1]:
            raise ValueError("invalid pin")
        self.pin = pin
        self.uv = 0  # simulation sets the voltage at the pin, in microvolts
        self.source = _state["adc"].get(gpio)  # or a function of monotonic ms giving microvolts
        self._on = True
        self.init(**kw)

    def init(self, *args, **kw):
        """init(*, atten=ATTN_11DB): the default attenuation again when none is given; width back to 12."""
        _positional(args, 0)
        a = _args((), kw, ("atten",), (3,))[0]
        self._bits = 12
        self.atten(a)

    def atten(self, a):
        if not 0 <= _int(a) <= 3:
            raise ValueError("invalid attenuation")
        self._atten = a

    def width(self, w):
        lo = 12 if _state.get("chip_name") == "esp32s3" else 9  # the S3's ADC is 12-bit only
        if not lo <= _int(w) <= 12:
            raise ValueError("invalid bit-width")
        self._bits = w

    def deinit(self):
        self._on = False

    def _now_uv(self):
        if not self._on:
            raise OSError(1)  # EPERM: the ADC unit was deleted
        if self.source is not None:
            c = _state["clock"]
            self.uv = int(self.source(c.monotonic_ms() if c is not None else 0))
        return self.uv

    def read_uv(self):
        return self._now_uv()

    def read_u16(self):
        v = self._now_uv() * 65535 // 3100000  # 11 dB attenuation: about 0..3.1 V full scale
        return 65535 if v > 65535 else (0 if v < 0 else v)

    def read(self):
        return self.read_u16() >> (16 - self._bits)


class RTC:
    """machine.RTC(), one object: the wall clock (datetime, since 2000) and 2048 bytes of RTC memory that
    survive deep sleep and resets, not power-on (power_on())."""

    def __new__(cls, *args, **kw):
        _no_kw(kw)
        if args:
            raise TypeError("function takes 0 positional arguments but %d were given" % len(args))
        r = _state.get("rtc")
        if r is None:
            r = _state["rtc"] = object.__new__(cls)
        return r

    def __init__(self, *args, **kw):
        pass

    def datetime(self, *args):
        """datetime(): (year, month, day, weekday 0=Monday, hour, minute, second, us); datetime(t) sets it
        (t's weekday ignored)."""
        _positional(args, 1)
        c = _state["clock"]
        if not args:
            from citynode.sim.hwsim.clock import gmtime

            us = (c.start_us + c.us) if c is not None else 0
            t = gmtime(us // 1000000)
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], us % 1000000)
        self._set(args[0], 4)
        return None

    def _set(self, dt, hour):
        if len(dt) != 8:
            raise ValueError("requested length 8 but object has length %d" % len(dt))
        dt = [_int(v) for v in dt]
        c = _state["clock"]
        if c is not None:
            from citynode.sim.hwsim.clock import mktime

            c.set_time(mktime(dt[0], dt[1], dt[2], dt[hour], dt[hour + 1], dt[hour + 2]), dt[7])

    def init(self, dt):
        """init((year, month, day, hour, minute, second, _, us)): the time from item 3, unlike datetime."""
        self._set(dt, 3)

    def memory(self, *args):
        _positional(args, 1)
        if not args:
            return _state["rtc_memory"]
        if len(args[0]) > 2048:
            raise ValueError("buffer too long")
        _state["rtc_memory"] = bytes(args[0])
        return None


def power_on():
    """A power cut and power-on: RTC memory is cleared and the wall clock starts from 0 (2000-01-01)."""
    _state["rtc_memory"] = b""
    _state["reset_cause"] = PWRON_RESET
    _state["wdt"] = None
    reset_wake()
    c = _state["clock"]
    if c is not None and hasattr(c, "set_time"):
        c.set_time(0)


class _Watchdog:
    """The chip's one task watchdog, armed by the first WDT() and stopped only by a reboot."""

    def __init__(self, timeout):
        self.timeout = timeout
        self._armed = False
        self.due_us = 0

    def feed(self):
        c = _state["clock"]
        if c is None or not hasattr(c, "monotonic_us"):
            return  # no virtual time (the pty node's real clock): nothing to measure against
        self.due_us = c.monotonic_us() + self.timeout * 1000
        if not self._armed and hasattr(c, "call_at_us"):
            self._armed = True
            c.call_at_us(self.due_us, self._check)

    def _check(self):
        self._armed = False
        if _state.get("wdt") is not self:
            return  # deep sleep or a reset since: this watchdog is gone
        c = _state["clock"]
        if c.monotonic_us() < self.due_us:  # fed since: look again at the new deadline
            self._armed = True
            c.call_at_us(self.due_us, self._check)
            return
        _state["wdt"] = None
        _state["reset_cause"] = WDT_RESET
        raise Reset(WDT_RESET)


class WDT:
    """WDT(id=0, timeout=5000): the one watchdog (a second WDT() re-times it); feed() is the only way to
    hold it off and nothing stops it but a reboot. Not fed within `timeout` ms of virtual time, in whatever
    the node does (sleep_ms and lightsleep included), it resets the node: Reset(WDT_RESET) is raised from
    the clock at that moment."""

    def __init__(self, *args, **kw):
        id, timeout = _args(args, kw, ("id", "timeout"), (0, 5000))
        if _int(id) != 0:
            raise ValueError()
        if _int(timeout) <= 0:
            raise ValueError("WDT timeout too short")
        dog = _state.get("wdt")
        if dog is None:
            dog = _state["wdt"] = _Watchdog(timeout)
        dog.timeout = timeout
        dog.feed()

    def feed(self):
        dog = _state.get("wdt")
        if dog is not None:
            dog.feed()


def time_pulse_us(pin, level, timeout_us=1000000):
    return -1
