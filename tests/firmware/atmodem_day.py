# A simulated day of cnode.app.Node uplinking through an AT-modem twin (RAK3172 or LoRa-E5); shared by the firmware
# test (CPython and MicroPython) and the host test that decodes what reached the network.
from cnode.app import Node
from cnode.atmodem.lorae5 import LoRaE5
from cnode.atmodem.rak3172 import RAK3172
from cnode.queue import Queue
from cnode.sampler import Sampler, Slot
from citynode.sim.hwsim import machine
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.counting_queue import CountingQueue
from citynode.sim.hwsim.flashfs import FlashFS
from citynode.sim.hwsim.twin_atmodem import LoRaE5Twin, RAK3172Twin

# TR005's example identities; the AppKey is the RFC 4493 test key
DEV_EUI = bytes([0x00, 0x18, 0xB2, 0x00, 0x00, 0x00, 0x01, 0x01])
JOIN_EUI = bytes([0x70, 0xB3, 0xD5, 0x7E, 0xD0, 0x00, 0x00, 0x10])
APP_KEY = bytes([0x2B, 0x7E, 0x15, 0x16, 0x28, 0xAE, 0xD2, 0xA6, 0xAB, 0xF7, 0x15, 0x88, 0x09, 0xCF, 0x4F, 0x3C])
START_S = 850000000  # node wall clock (seconds since 2000) at the start


def modem(kind, dr=5, log=None):
    """(clock, uart, twin, link) for kind 'rak3172' or 'lorae5', wired through hwsim's UART."""
    clock = VirtualClock(start_s=START_S)
    machine.use(clock)
    if kind == "rak3172":
        twin = RAK3172Twin(clock, dr=dr)
        uart = machine.UART(1, 115200)
        uart.attach(twin)
        link = RAK3172(uart, clock, DEV_EUI, JOIN_EUI, APP_KEY, log=log)
    else:
        twin = LoRaE5Twin(clock, dr=dr)
        uart = machine.UART(1, 9600)
        uart.attach(twin)
        link = LoRaE5(uart, clock, DEV_EUI, JOIN_EUI, APP_KEY, log=log)
    return clock, uart, twin, link


class Climate:
    """Temperature and humidity that change every reading (so no value is ever flagged stuck)."""

    channels = ("temperature", "humidity")

    def __init__(self, clock):
        self.clock = clock
        self.values = [None, None]
        self.n = 0

    def read(self):
        self.n += 1
        t = self.clock.time()
        self.values[0] = 1200 + (t // 300) % 97 * 7  # 0.01 degC
        self.values[1] = 400 + (self.n * 37) % 300  # 0.1 %RH


def _counting(q):
    """The queue, with the times of the samples it stored in .times."""
    times = []
    cq = CountingQueue(q, times.append)
    cq.times = times
    return cq


class RecLink:
    """The modem link, noting every frame a send() accepted (port, bytes) and every send that raised."""

    def __init__(self, link):
        self.link = link
        self.sent = []
        self.failed = 0

    @property
    def joined(self):
        return self.link.joined

    @property
    def downlink(self):
        return self.link.downlink

    def join(self, attempts=8, wait_ms=-1):
        return self.link.join(attempts)

    def max_payload(self):
        return self.link.max_payload()

    def send(self, port, data, confirmed=False):
        frame = bytes(data)
        try:
            ok = self.link.send(port, data, confirmed)
        except Exception:
            self.failed += 1
            raise
        self.sent.append((port, frame, ok))
        return ok


class Day:
    """A node of one Climate sensor, flash queue and modem link, run for `hours` of 5-minute cycles.
    `script(cycle_no, twin)` may inject faults or queue downlinks before a cycle."""

    def __init__(self, kind, dr=5, confirmed=False):
        self.clock, self.uart, self.twin, link = modem(kind, dr)
        self.link = RecLink(link)
        self.queue = _counting(Queue(FlashFS(), "/q"))
        self.sampler = Sampler([Slot(Climate(self.clock))], self.clock)
        self.commands = []
        self.log = []
        self.node = Node(self.clock, self.sampler, self.queue, self.link, interval_s=300, confirmed=confirmed,
                         commands=self._command, log=self.log.append)

    def _command(self, port, data):
        self.commands.append((port, bytes(data)))
        return None

    def run(self, hours=24, script=None):
        for i in range(hours * 12):
            if script is not None:
                script(i, self.twin)
            self.clock.sleep_ms(self.node.cycle())
        return self

    def network_frames(self):
        return [(p, d) for (_, p, d, _) in self.twin.network]


def fault_script(i, twin):
    """A day of trouble: failed joins, noise, busy, a lost reply, a hung uplink, a lost session, a DR drop."""
    if i == 0:
        twin.inject("join_fail", 3)
    elif i == 30:
        twin.inject("garbage", 20)
    elif i == 60:
        twin.inject("busy", 3)
    elif i == 90:
        twin.inject("timeout", 1)
    elif i == 100:
        twin.inject("hang", 1)
    elif i == 120:
        twin.queue_downlink(3, b"\x01\x02")
    elif i == 150:
        twin.inject("lost", 1)
    elif i == 200:
        twin.dr = 0  # ADR moved the DR: frames must shrink to 51 B
