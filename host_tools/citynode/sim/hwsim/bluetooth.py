# A double of the ESP32 port's bluetooth.BLE for scanning (extmod/modbluetooth.c, NimBLE), strict as the port.
#
# The advertisers in range are a twin_mobility.BleCrowd (or BleStreet) given to radiate(); while a scan runs,
# advance(ms) delivers what it hears to the IRQ handler as the port does: event 5 with (addr_type, addr, adv_type,
# rssi, adv_data), addr and adv_data memoryviews; event 6 when a scan of limited duration ends. follow(clock)
# makes the virtual clock drive advance() (a node's firmware never calls it); install() makes `import bluetooth`
# give this module. Runs under the unix port (which has no bluetooth module of its own).
#
# More lenient than the air in one way: every advertiser in range is heard once per delivery step, whatever the
# scan window; a real scan misses the advertisements that fall outside its windows.
import sys

_IRQ_SCAN_RESULT = 5
_IRQ_SCAN_DONE = 6
_ENODEV = 19
_EALREADY = 120

_ble = []


def reset():
    del _ble[:]


def install():
    """Make `import bluetooth` give this double, with a new BLE object (a board after power-on)."""
    reset()
    sys.modules["bluetooth"] = sys.modules[__name__]


def uninstall():
    """`import bluetooth` fails again, as on the unix port."""
    if sys.modules.get("bluetooth") is sys.modules[__name__]:
        del sys.modules["bluetooth"]


def BLE(*args, **kw):
    """The port keeps one BLE object; its arguments are ignored."""
    if not _ble:
        _ble.append(_BLE())
    return _ble[0]


class _BLE:
    def __init__(self):
        self._active = False
        self._handler = None
        self._scan = None  # [ms left or None (forever), interval_us]
        self._crowd = None
        self._t_ms = 0
        self._clock = None
        self._step = None

    def active(self, *args):
        if len(args) > 1:
            raise TypeError("extra positional arguments given")
        if not args:
            return self._active
        self._active = bool(args[0])
        if not self._active:
            self._scan = None
        return None

    def irq(self, *args, **kw):
        if kw:
            raise TypeError("function doesn't take keyword arguments")
        if len(args) != 1:
            raise TypeError("function takes 2 positional arguments but %d were given" % (len(args) + 1))
        h = args[0]
        if h is not None and not callable(h):
            raise ValueError("invalid handler")
        self._handler = h

    def gap_scan(self, *args, **kw):
        """gap_scan(duration_ms=0, interval_us=1280000, window_us=11250, active=False), positional only;
        gap_scan(None) stops a scan (event 6)."""
        if kw:
            raise TypeError("function doesn't take keyword arguments")
        if len(args) > 4:
            raise TypeError("extra positional arguments given")
        if not self._active:
            raise OSError(_ENODEV)
        if args and args[0] is None:
            if self._scan is not None:
                self._scan = None
                self._emit(_IRQ_SCAN_DONE, ())
            return
        if self._scan is not None:
            raise OSError(_EALREADY)
        duration = args[0] if args else 0
        interval = args[1] if len(args) > 1 else 1280000
        self._scan = [duration if duration else None, interval]

    # --- simulation side -----------------------------------------------------------------------------------
    def radiate(self, crowd):
        """The BLE advertisers in range (a twin_mobility.BleCrowd)."""
        self._crowd = crowd

    def follow(self, clock, step_ms=None):
        """Let the virtual clock advance the scan: every step_ms (default: the running scan's interval) the
        handler hears every advertiser in range once. A step longer than the interval only leaves out
        repeats of the same advertiser (the port does not filter them); a counter of distinct devices
        counts the same, at a fraction of the simulation's cost."""
        self._clock = clock
        self._step = step_ms
        self._t_ms = clock.monotonic_ms()
        clock.call_at_ms(self._t_ms + self._step_ms(), self._tick)

    def _step_ms(self):
        if self._step:
            return self._step
        return max(1, self._scan[1] // 1000) if self._scan is not None else 1000

    def _tick(self):
        assert self._clock is not None  # follow() set it before it scheduled the first tick
        step = self._step_ms()
        self.advance(step, step)
        self._clock.call_at_ms(self._t_ms + self._step_ms(), self._tick)

    def advance(self, ms, every_ms=None):
        """`ms` of scanning pass: the handler hears every advertiser present once per scan interval (or once
        per every_ms)."""
        s = self._scan
        if s is None or self._handler is None:
            self._t_ms += ms
            return 0
        run = ms if s[0] is None else min(ms, s[0])
        n = 0
        if self._crowd is not None:
            every = every_ms if every_ms else max(1, s[1] // 1000)
            n = self._crowd.scan(self._emit, self._t_ms, self._t_ms + run, every)
        self._t_ms += ms
        if s[0] is not None:
            s[0] -= run
            if s[0] <= 0:
                self._scan = None
                self._emit(_IRQ_SCAN_DONE, ())
        return n

    def _emit(self, event, data):
        if self._handler is not None:
            self._handler(event, data)
