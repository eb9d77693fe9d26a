# A citynode node under the MicroPython unix port, its hardware reached over stdin/stdout.
#
# The firmware objects are the real ones; the buses, radio, clock, NVS and RTC memory are one proxy object
# (`Board`) whose every call sends one request line to the simulator (CPython) and reads one reply line, whose
# first word is the virtual time in microseconds. Flash is real files in the current folder (the queue), as
# on a board's filesystem. Run as `micropython -c "import cn_node_main"` (compiled to .mpy); the simulator's
# reply to HELLO gives the wall clock (its offset from virtual time: 0 at power-on), reset cause, DevEUI, AppKey, interval, whether to deep-sleep, whether
# uplinks are confirmed, and the pulse counter channel (if the node counts). With a board.json whose radio is
# an SX1276/SX1262, the radio is that chip's register-level twin in this process under micropython-lib's
# driver (cn_twin_board, mp/twin_board.py); only what the chip radiates and hears crosses to the simulator.
#
# Kept small on purpose: this file shares the node's heap, so it has one class with only the methods the
# firmware calls, and reuses the firmware's names where it can (every new name is an interned string).
import sys
import gc
from binascii import hexlify, unhexlify

# A collection after each import: an import leaves garbage behind (its loader's buffers), and the interned-name
# pool that fills up during the imports is then placed in a heap with holes; collected, the same modules fit in
# 8K less (the 128K budget check of `simulate --heap`).
from cnode import osfs
gc.collect()
from cnode.app import Node
gc.collect()
from cnode.drivers.battery import Battery
from cnode.drivers.bme280 import BME280
from cnode.drivers.sds011 import SDS011
gc.collect()
from cnode.lorawan.mac import Mac
gc.collect()
from cnode.queue import Queue
from cnode.sampler import Sampler, Slot
gc.collect()
from cn_counting_queue import CountingQueue  # citynode/sim/hwsim/counting_queue.py, compiled beside this
gc.collect()

from micropython import const

# request numbers: their index in citynode/sim/fleet/unix_nodes.py OPS (numbers, so that the node interns no strings)
_HELLO = const(0)
_SLEEP = const(1)
_I2C_W = const(2)
_I2C_R = const(3)
_UART_W = const(4)
_UART_ANY = const(5)
_UART_R = const(6)
_ADC = const(7)
_RADIO_CFG = const(8)
_RADIO_TX = const(9)
_RADIO_RX = const(10)
_NVS_GET = const(11)
_NVS_SET = const(12)
_NVS_GETB = const(13)
_NVS_SETB = const(14)
_RTC_GET = const(15)
_RTC_SET = const(16)
_LOG = const(17)
_PUSHED = const(18)
_HEAP = const(19)
_DEEPSLEEP = const(20)
_TSET = const(24)
_WDT = const(25)
_WDT_MS = const(120000)  # cnode.board.WDT_MS

# virtual time (us) of the last reply, the wall clock's offset from it (us), the counter pin's handler
_t = [0, 0, None]


def call(*a):
    """One request (number, then arguments, space-separated); returns the reply after its time word."""
    out = sys.stdout
    out.write(str(a[0]))
    for x in a[1:]:
        out.write(" ")
        out.write(x if isinstance(x, str) else str(x))
    out.write("\n")
    r = sys.stdin.readline()
    if not r:
        raise SystemExit(0)
    r = r.rstrip("\n").split(" ", 1)
    t = r[0].split(",")
    for e in t[1:]:  # rising edges on the counter pin while we waited: the interrupt, at its time
        _t[0] = int(e)
        if _t[2] is not None:
            _t[2](None)
    _t[0] = int(t[0])
    return r[1] if len(r) > 1 else ""


def _hex(buf):
    return hexlify(bytes(buf)).decode()


def _ok(r):
    if r[:1] == "E":
        raise OSError(int(r[1:]))
    return r


class Board:
    """The board as the firmware sees it: clock (time API), I2C, UART, ADC, radio (lora-sync modem), the
    MAC's NVS store and RTC memory, each with only the calls the firmware makes."""

    # clock
    def ticks_ms(self):
        return (_t[0] // 1000) & 0x3FFFFFFF

    def ticks_add(self, t, d):
        return (t + d) & 0x3FFFFFFF

    def ticks_diff(self, a, b):
        d = (a - b) & 0x3FFFFFFF
        return d - 0x40000000 if d >= 0x20000000 else d

    def sleep_ms(self, n):
        call(_SLEEP, int(n * 1000))

    def time(self):
        return (_t[0] + _t[1]) // 1000000

    def set_clock(self, a, b):  # machine.RTC().datetime(...) on a board: s, us since 2000 (DeviceTimeAns)
        _t[1] = int(call(_TSET, a, b).split()[0])

    def feed(self):  # machine.WDT.feed(); the simulator resets the node when it is not fed in time
        call(_WDT, _WDT_MS)

    # I2C (cnode.drivers.i2creg)
    def writeto_mem(self, addr, reg, buf, addrsize=8):
        _ok(call(_I2C_W, addr, reg, addrsize, _hex(buf)))

    def readfrom_mem_into(self, addr, reg, buf, addrsize=8):
        d = unhexlify(_ok(call(_I2C_R, addr, reg, addrsize, len(buf))))
        buf[:len(d)] = d

    # UART (cnode.drivers.sds011)
    def write(self, buf):
        call(_UART_W, _hex(buf))
        return len(buf)

    def any(self):
        return int(call(_UART_ANY))

    def readinto(self, buf, n=None):
        r = call(_UART_R, len(buf) if n is None else n)
        if not r:
            return None
        d = unhexlify(r)
        buf[:len(d)] = d
        return len(d)

    # counter pin (cnode.drivers.pulse): rising edges arrive with the replies
    def irq(self, handler=None, trigger=3, wake=None):
        _t[2] = handler

    # ADC (cnode.drivers.battery)
    def read_uv(self):
        return int(call(_ADC))

    # radio (cnode.lorawan.mac)
    def configure(self, c):
        call(_RADIO_CFG, c["freq_khz"], c["sf"], c["bw"], 1 if c.get("invert_iq_tx") else 0,
             1 if c.get("invert_iq_rx") else 0)

    def send(self, data):
        call(_RADIO_TX, _hex(data))
        return self.ticks_ms()

    def recv(self, timeout_ms=600000):
        r = call(_RADIO_RX, timeout_ms)
        return unhexlify(r) if r else None  # no snr attribute: the MAC reads 0

    # NVS (cnode.lorawan.store interface)
    def get_int(self, key, v=0):
        r = call(_NVS_GET, key)
        return int(r) if r else v

    def set_int(self, key, v):
        call(_NVS_SET, key, v)

    def get_blob(self, key):
        r = call(_NVS_GETB, key)
        return unhexlify(r) if r else None

    def set_blob(self, key, data):
        call(_NVS_SETB, key, _hex(data))

    def commit(self):
        pass

    # RTC memory
    def memory(self, data=None):
        if data is None:
            r = call(_RTC_GET)
            return unhexlify(r) if r else b""
        call(_RTC_SET, _hex(data))


def _board():
    """The board as the firmware sees it; when board.json (written only by a twin-mode simulation) names an
    SX1276/SX1262, a TwinBoard whose radio is that chip's twin (cn_twin_board, loaded only then: the API-level
    node interns none of its names)."""
    try:
        f = open("board.json")
    except OSError:
        return Board(), None
    import json

    with f:
        r = json.load(f).get("radio") or {}
    if r.get("type") not in ("sx1276", "sx1262"):
        return Board(), None
    from cn_twin_board import TwinBoard

    b = TwinBoard()
    return b, b.radio(r)


def main():
    a = call(_HELLO).split()
    _t[1] = int(a[0])
    call(_WDT, _WDT_MS)  # armed first, as runner.main does
    reason = int(a[1])
    dev_eui = unhexlify(a[2])
    app_key = unhexlify(a[3])
    interval = int(a[4])
    one_boot = int(a[5]) == 1  # deep sleep as on a board: this process ends, the next boot is a new one
    confirmed = int(a[6]) == 1
    counter = a[7] if a[7] != "-" else None
    if counter:
        from cnode.drivers.pulse import PulseCounter  # only a counting node carries its code
    b, modem = _board()
    try:
        osfs.mkdir("q")
    except OSError:
        pass
    seed = [1]

    def rand(n):
        seed[0] = (1103515245 * seed[0] + 12345) & 0x7FFFFFFF
        return seed[0] % n if n > 0 else 0

    def log(msg):
        call(_LOG, msg.replace("\n", " "))

    gc.collect()  # between set-up steps, as a board's main.py does: their garbage leaves no holes
    slots = [Slot(SDS011(b, b), warmup_ms=SDS011.warmup_ms), Slot(BME280(b, b)),
             Slot(Battery(b, 100000, 100000, samples=4))]  # as citynode/sim/fleet/world.py builds them
    if counter:
        slots.append(Slot(PulseCounter(b, b, channel=counter, dead_ms=2000)))
    sampler = Sampler(slots, b, extra=("reboot_reason", "fw_version", "queue_depth", "dropped", "crashes"))
    gc.collect()
    queue = CountingQueue(Queue(osfs, "q", seg_bytes=4096, max_segs=16), lambda t: call(_PUSHED, t))
    gc.collect()
    mac = Mac(modem or b, b, b, dev_eui, bytes(8), app_key, rand=rand)
    mac.set_clock = b.set_clock
    gc.collect()
    node = Node(b, sampler, queue, mac, interval_s=interval, rtc=b, reboot_reason=reason, log=log,
                confirmed=confirmed, feed=b.feed)
    while True:
        ms = node.cycle()
        b.feed()
        gc.collect()
        call(_HEAP, gc.mem_alloc(), gc.mem_free())  # live heap with the node's objects
        if one_boot:
            call(_DEEPSLEEP, ms)  # the simulator sleeps, then starts a new process: a fresh heap, as on a board
            return
        while ms > 0:  # light sleep: RAM, the node and its pulse counter stay; fed as runner.sleep_fed does
            step = ms if ms < _WDT_MS // 2 else _WDT_MS // 2
            b.sleep_ms(step)
            b.feed()
            ms -= step


main()
