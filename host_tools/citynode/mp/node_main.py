# A citynode node under the MicroPython unix port, its hardware reached over stdin/stdout.
#
# The firmware objects are the real ones; buses, the radio, the clock and RTC memory are proxies that send
# one request line to the simulator (CPython) and read one reply line, whose first word is the virtual time
# in microseconds. Flash is real files in the current folder (queue, NVS), as on a board's filesystem.
# Run as `micropython -c "import cn_node_main"` (compiled to .mpy); the simulator's reply to HELLO gives
# the start time, reset cause, DevEUI, AppKey and interval.
import sys
import gc
from binascii import hexlify, unhexlify

from cnode import osfs
from cnode.app import Node
from cnode.drivers.battery import Battery
from cnode.drivers.bme280 import BME280
from cnode.drivers.sds011 import SDS011
from cnode.lorawan.mac import Mac
from cnode.queue import Queue
from cnode.sampler import Sampler, Slot
from cn_counting_queue import CountingQueue  # citynode/hwsim/counting_queue.py, compiled beside this

_now = [0]
_inp = sys.stdin
_out = sys.stdout


def call(line):
    _out.write(line)
    _out.write("\n")
    r = _inp.readline()
    if not r:
        raise SystemExit(0)
    sp = r.find(" ")
    if sp < 0:
        _now[0] = int(r)
        return ""
    _now[0] = int(r[:sp])
    return r[sp + 1:].rstrip("\n")


def _err(r):
    if r.startswith("E "):
        raise OSError(int(r[2:]))
    return r


class Clock:
    def ticks_ms(self):
        return (_now[0] // 1000) & 0x3FFFFFFF

    def ticks_us(self):
        return _now[0] & 0x3FFFFFFF

    def ticks_add(self, t, d):
        return (t + d) & 0x3FFFFFFF

    def ticks_diff(self, a, b):
        d = (a - b) & 0x3FFFFFFF
        return d - 0x40000000 if d >= 0x20000000 else d

    def sleep_ms(self, ms):
        call("S %d" % int(ms * 1000))

    def sleep_us(self, us):
        call("S %d" % int(us))

    def time(self):
        return _start[0] + _now[0] // 1000000


_start = [0]


class I2C:
    def writeto(self, addr, buf, stop=True):
        _err(call("IW %d %s" % (addr, hexlify(bytes(buf)).decode())))
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        d = unhexlify(_err(call("IR %d %d" % (addr, len(buf)))))
        buf[:] = d

    def writeto_mem(self, addr, mem, buf, addrsize=8):
        _err(call("IMW %d %d %d %s" % (addr, mem, addrsize, hexlify(bytes(buf)).decode())))

    def readfrom_mem_into(self, addr, mem, buf, addrsize=8):
        d = unhexlify(_err(call("IMR %d %d %d %d" % (addr, mem, addrsize, len(buf)))))
        for i in range(len(buf)):
            buf[i] = d[i]

    def readfrom_mem(self, addr, mem, n, addrsize=8):
        b = bytearray(n)
        self.readfrom_mem_into(addr, mem, b, addrsize)
        return bytes(b)


class UART:
    def write(self, buf):
        call("UW " + hexlify(bytes(buf)).decode())
        return len(buf)

    def any(self):
        return int(call("UA"))

    def read(self, n=None):
        r = call("UR %d" % (-1 if n is None else n))
        return unhexlify(r) if r else None

    def readinto(self, buf, n=None):
        d = self.read(len(buf) if n is None else n)
        if not d:
            return None
        for i in range(len(d)):
            buf[i] = d[i]
        return len(d)


class ADC:
    def read_uv(self):
        return int(call("AV"))


class Modem:
    def configure(self, cfg):
        parts = ["RC"]
        for k in ("freq_khz", "sf", "bw", "invert_iq_tx", "invert_iq_rx"):
            if k in cfg:
                v = cfg[k]
                parts.append("%s=%s" % (k, (1 if v else 0) if k.startswith("invert") else v))
        call(" ".join(parts))

    def send(self, packet, tx_at_ms=None):
        call("RT " + hexlify(bytes(packet)).decode())
        return (_now[0] // 1000) & 0x3FFFFFFF

    def recv(self, timeout_ms=None, rx_length=0xFF, rx_packet=None):
        r = call("RR %d" % (600000 if timeout_ms is None else timeout_ms))
        if not r:
            return None
        return RxPacket(unhexlify(r), (_now[0] // 1000) & 0x3FFFFFFF)


class RxPacket(bytearray):
    def __init__(self, data, ticks):
        super().__init__(data)
        self.ticks_ms = ticks
        self.snr = 7
        self.rssi = -95
        self.valid_crc = True


class Store:
    """The MAC's NVS namespace, kept by the simulator (flash that outlives the process)."""

    def get_int(self, key, default=0):
        r = call("NG " + key)
        return int(r) if r else default

    def set_int(self, key, value):
        call("NS %s %d" % (key, value))

    def get_blob(self, key):
        r = call("NB " + key)
        return unhexlify(r) if r else None

    def set_blob(self, key, data):
        call("NW %s %s" % (key, hexlify(bytes(data)).decode()))

    def commit(self):
        pass


class Rtc:
    def memory(self, data=None):
        if data is None:
            r = call("MG")
            return unhexlify(r) if r else b""
        call("MS " + hexlify(bytes(data)).decode())


def _pushed(t):
    call("P %d" % t)


def log(msg):
    call("L " + msg.replace("\n", " "))


def main():
    parts = call("HELLO").split()
    _start[0] = int(parts[0])
    reason = int(parts[1])
    dev_eui = unhexlify(parts[2])
    app_key = unhexlify(parts[3])
    interval = int(parts[4])
    one_boot = parts[5] == "1"  # deep sleep as on a board: this process ends, the next boot is a new one
    clock = Clock()
    i2c = I2C()
    uart = UART()
    adc = ADC()
    rtc = Rtc()
    store = Store()
    try:
        osfs.mkdir("q")
    except OSError:
        pass
    seed = [1]

    def rand(n):
        seed[0] = (1103515245 * seed[0] + 12345) & 0x7FFFFFFF
        return seed[0] % n if n > 0 else 0

    while True:
        gc.collect()
        sampler = Sampler([Slot(SDS011(uart, clock), warmup_ms=SDS011.warmup_ms), Slot(BME280(i2c, clock)),
                           Slot(Battery(adc, 100000, 100000))], clock,
                          extra=("reboot_reason", "fw_version", "queue_depth", "dropped"))
        queue = CountingQueue(Queue(osfs, "q", seg_bytes=4096, max_segs=16), _pushed)
        mac = Mac(Modem(), clock, store, dev_eui, bytes(8), app_key, rand=rand)
        node = Node(clock, sampler, queue, mac, interval_s=interval, rtc=rtc, reboot_reason=reason, log=log)
        ms = node.cycle()
        gc.collect()
        call("H %d %d" % (gc.mem_alloc(), gc.mem_free()))  # live heap with the node's objects
        node = mac = queue = sampler = None  # deep sleep: nothing in RAM survives
        if one_boot:
            call("D %d" % ms)  # the simulator sleeps, then starts a new process: a fresh heap, as on a board
            return
        gc.collect()
        clock.sleep_ms(ms)  # RAM is rebuilt at the next boot, RTC memory and flash kept
        reason = 4


main()
