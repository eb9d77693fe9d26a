# A double of MicroPython's `machine` module: I2C, UART, SPI, Pin (with IRQs), ADC, RTC, WDT, deepsleep.
#
# Buses carry bytes to simulated twins (hwsim/twins_*.py). Install it as the `machine` module with
# use(clock); the firmware then runs unchanged. Errors are what the ESP32 port raises: OSError(ENODEV)
# for an address that does not acknowledge, OSError(ETIMEDOUT) for a stuck bus.
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
_IDLE_MAX_US = 10000  # idle() returns at the next interrupt or after one FreeRTOS tick (100 Hz on ESP32)


class DeepSleep(Exception):
    """Raised by deepsleep(): the simulator catches it, advances the clock and boots the node again."""

    def __init__(self, ms):
        Exception.__init__(self, ms)
        self.ms = ms


class Reset(Exception):
    """Raised by reset() and by an expired watchdog."""

    def __init__(self, cause):
        Exception.__init__(self, cause)
        self.cause = cause


def use(clock):
    """Bind the double to a virtual clock and install it as `machine` for the firmware. The board's wiring
    (wires and SPI peers) starts empty: twins attach to pins by number, as they are soldered on a board."""
    _state["clock"] = clock
    for k in ("wires", "spi", "i2c", "uart", "adc"):
        _state[k] = {}
    sys.modules["machine"] = sys.modules[__name__]


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


def deepsleep(ms=0):
    _state["reset_cause"] = DEEPSLEEP_RESET
    raise DeepSleep(ms)


def lightsleep(ms=0):
    c = _state["clock"]
    if c is not None:
        c.sleep_ms(ms)


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
    raise Reset(HARD_RESET)


def soft_reset():
    _state["reset_cause"] = SOFT_RESET
    raise Reset(SOFT_RESET)


def unique_id():
    return b"\x24\x0a\xc4\x00\x00\x01"


def freq(hz=None):
    return 240000000


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, id, mode=-1, pull=-1, value=None, drive=None, hold=None):
        self.id = id
        self.hold = bool(hold)
        self.mode = mode
        self.pull = pull
        self._v = 1 if pull == Pin.PULL_UP else 0
        if value is not None:
            self._v = 1 if value else 0
        self._handler = None
        self._trigger = 0
        w = _state["wires"].get(id)
        self._wire = w
        if w is not None:
            w.pins.append(self)
            if w.driven:
                self._v = w.level
            elif value is not None:
                w._mcu(self._v)

    def init(self, mode=-1, pull=-1, value=None):
        if mode != -1:
            self.mode = mode
        if value is not None:
            self._set(value)

    def _set(self, v):
        self._v = 1 if v else 0
        if self._wire is not None:
            self._wire._mcu(self._v)

    def value(self, v=None):
        if v is None:
            return self._v
        self._set(v)
        return None

    def on(self):
        self._set(1)

    def off(self):
        self._set(0)

    def __call__(self, v=None):
        return self.value(v)

    def irq(self, handler=None, trigger=3, hard=False):
        self._handler = handler
        self._trigger = trigger

    # simulation side: drive the input as the outside world would
    def drive(self, v):
        v = 1 if v else 0
        old = self._v
        self._v = v
        if self._handler is not None and old != v:
            edge = Pin.IRQ_RISING if v else Pin.IRQ_FALLING
            if self._trigger & edge:
                self._handler(self)


class I2C:
    def __init__(self, id=0, scl=None, sda=None, freq=400000, timeout=50000):
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

    def scan(self):
        return sorted(a for a in self.devices if not self.stuck)

    def writeto(self, addr, buf, stop=True):
        self._dev(addr).write(bytes(buf))
        self.bytes_moved += len(buf)
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        data = self._dev(addr).read(len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]
        self.bytes_moved += len(buf)

    def readfrom(self, addr, nbytes, stop=True):
        buf = bytearray(nbytes)
        self.readfrom_into(addr, buf)
        return bytes(buf)

    def _mem(self, memaddr, addrsize):
        return bytes([memaddr]) if addrsize == 8 else bytes([memaddr >> 8, memaddr & 0xFF])

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        self._dev(addr).write(self._mem(memaddr, addrsize) + bytes(buf))
        self.bytes_moved += len(buf) + addrsize // 8

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        d = self._dev(addr)
        d.write(self._mem(memaddr, addrsize))
        data = d.read(len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]
        self.bytes_moved += len(buf) + addrsize // 8

    def readfrom_mem(self, addr, memaddr, nbytes, addrsize=8):
        buf = bytearray(nbytes)
        self.readfrom_mem_into(addr, memaddr, buf, addrsize)
        return bytes(buf)


SoftI2C = I2C


class UART:
    """A UART whose far end is a twin: twin.on_write(uart, data) hears what the node sends, and
    twin.pump(uart, now_ms) may call uart.feed(bytes) with what the device has sent by now."""

    def __init__(self, id=1, baudrate=9600, bits=8, parity=None, stop=1, tx=None, rx=None, timeout=0,
                 rxbuf=256, peer=None):
        if peer is None and rx is not None:
            peer = _state["uart"].get(_gpio(rx))
        self.baudrate = baudrate
        self.timeout = timeout
        self.peer = peer
        self._rx = bytearray()
        self.rxbuf = rxbuf
        self.overruns = 0
        self.sent = bytearray()

    def init(self, baudrate=9600, bits=8, parity=None, stop=1, tx=None, rx=None, timeout=0, rxbuf=256):
        self.baudrate = baudrate
        self.timeout = timeout

    def deinit(self):
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

    def read(self, nbytes=None):
        self._wait(nbytes or 1)
        if not self._rx:
            return None
        n = len(self._rx) if nbytes is None else min(nbytes, len(self._rx))
        out = bytes(self._rx[:n])
        self._rx = self._rx[n:]
        return out

    def readinto(self, buf, nbytes=None):
        n = len(buf) if nbytes is None else nbytes
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


class SPI:
    """A hardware SPI bus (ESP32: id 1 or 2) whose far end is the device wired to its SCK pin
    (attach_spi); chip select is a plain Pin the device watches on its wire."""
    MSB = 0
    LSB = 1

    def __init__(self, id, baudrate=500000, polarity=0, phase=0, bits=8, firstbit=0, sck=None, mosi=None,
                 miso=None, peer=None):
        if id not in (1, 2):
            raise ValueError("SPI(%d) doesn't exist" % id)
        if bits <= 0:
            raise ValueError("invalid bits")
        if peer is None and sck is not None:
            peer = _state["spi"].get(sck.id if isinstance(sck, Pin) else sck)
        self.peer = peer
        self._on = True

    def init(self, *args, **kw):
        self._on = True

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

    def read(self, nbytes, write=0):
        return self._xfer(bytes([write]) * nbytes)

    def readinto(self, buf, write=0):
        data = self.read(len(buf), write)
        for i in range(len(buf)):
            buf[i] = data[i]

    def write_readinto(self, wbuf, rbuf):
        if len(wbuf) != len(rbuf):
            raise ValueError("buffers must be the same length")
        data = self._xfer(bytes(wbuf))
        for i in range(len(rbuf)):
            rbuf[i] = data[i]


class ADC:
    ATTN_0DB = 0
    ATTN_11DB = 3
    WIDTH_12BIT = 3

    def __init__(self, pin, atten=3):
        self.pin = pin
        self.uv = 0  # simulation sets the voltage at the pin, in microvolts
        self.source = _state["adc"].get(_gpio(pin))  # or a function of monotonic ms giving microvolts

    def atten(self, a):
        pass

    def width(self, w):
        pass

    def _now_uv(self):
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
        return self.read_u16() >> 4


class RTC:
    """machine.RTC: the wall clock (datetime, since 2000) and 2048 bytes of RTC memory that survive deep sleep
    and resets, not power-on (power_on())."""

    def __init__(self):
        pass

    def datetime(self, dt=None):
        c = _state["clock"]
        if dt is None:
            from citynode.hwsim.clock import gmtime

            us = (c.start_us + c.us) if c is not None else 0
            t = gmtime(us // 1000000)
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], us % 1000000)
        if len(dt) != 8:
            raise ValueError("requested length 8 but object has length %d" % len(dt))
        if c is not None:
            from citynode.hwsim.clock import mktime

            c.set_time(mktime(dt[0], dt[1], dt[2], dt[4], dt[5], dt[6]), dt[7])
        return None

    def init(self, dt):
        self.datetime(dt)

    def memory(self, data=None):
        if data is None:
            return _state["rtc_memory"]
        if len(data) > 2048:
            raise ValueError("buffer too long")
        _state["rtc_memory"] = bytes(data)
        return None


def power_on():
    """A power cut and power-on: RTC memory is cleared and the wall clock starts from 0 (2000-01-01)."""
    _state["rtc_memory"] = b""
    _state["reset_cause"] = PWRON_RESET
    c = _state["clock"]
    if c is not None and hasattr(c, "set_time"):
        c.set_time(0)


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        c = _state["clock"]
        self.last = c.monotonic_ms() if c is not None else 0

    def feed(self):
        c = _state["clock"]
        now = c.monotonic_ms() if c is not None else 0
        if now - self.last > self.timeout:
            _state["reset_cause"] = WDT_RESET
            raise Reset(WDT_RESET)
        self.last = now

    def expired(self):
        c = _state["clock"]
        return c is not None and c.monotonic_ms() - self.last > self.timeout


def time_pulse_us(pin, level, timeout_us=1000000):
    return -1
