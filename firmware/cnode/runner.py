# The node's main loop on a board: board file + settings + keys -> sensors, link, queue, node; then wake,
# cycle, obey downlinks, feed the watchdog, sleep. main.py calls main(machine, time). Buses and pins come from
# cnode.board (and the radio's from cnode.loraradio); `machine` is used here for the board's life only: watchdog,
# RTC, reset cause, reset, light and deep sleep. Never imports citynode: a simulation hands Runner its hardware
# (and, for the API-level radio, its link).
import gc
import os

from micropython import const

# a collection after the larger imports: what an import leaves behind would otherwise hold holes in the heap
# while the interned-name pool grows (measured under the unix port: 8K of a 128K heap)
from cnode import crash, osfs
from cnode.app import FPORT_CMD, Node
gc.collect()
from cnode.board import WDT_MS, Hardware, load
from cnode.config import NVS_SETTINGS, Config, Keys, open_nvs as nvs  # nvs(namespace): esp32.NVS on a board
gc.collect()
from cnode.downlink import ACT_REBOOT, ACT_REJOIN, ACT_SEND, Downlink
from cnode.queue import Queue
from cnode.sampler import Sampler
gc.collect()

STATUS = ("reboot_reason", "fw_version", "queue_depth", "dropped", "crashes")
_NOT_PROVISIONED_SLEEP_MS = const(600000)
_RADIO_SLEEP_MS = const(100)  # Napping puts the radio to sleep for waits this long or longer


def reboot_code(machine):
    """machine.reset_cause() as the stable code of the reboot_reason channel (channels.REBOOT_NAMES)."""
    c = machine.reset_cause()
    for code, name in ((1, "PWRON_RESET"), (2, "HARD_RESET"), (3, "WDT_RESET"), (4, "DEEPSLEEP_RESET"),
                       (5, "SOFT_RESET")):
        if c == getattr(machine, name, -1):
            return code
    return 0


def make_link(hw, clock, keys, cfg, log):
    """The uplink the board has (`hw`: its cnode.board.Hardware): a LoRa radio under our MAC, an AT modem, or
    WiFi + MQTT."""
    r = hw.board.get("radio") or {}
    kind = r.get("type", "")
    dev_eui, join_eui, app_key = keys.get("dev_eui"), keys.get("join_eui"), keys.get("app_key")
    if kind in ("sx1276", "sx1262"):
        from cnode.loraradio import radio

        return lora_mac(radio(r, hw.machine), clock, cfg, dev_eui, join_eui, app_key)
    if kind in ("lora-e5", "rak3172"):
        uart = hw.modem_uart(r)
        if kind == "lora-e5":
            from cnode.atmodem.lorae5 import LoRaE5 as Modem
        else:
            from cnode.atmodem.rak3172 import RAK3172 as Modem
        return Modem(uart, clock, dev_eui, join_eui, app_key, log=log)
    if kind == "wifi":  # WiFi + MQTT: the same frames, published to a broker (settings under radio.mqtt)
        import network  # type: ignore
        import socket  # type: ignore
        from cnode.mqttlink import MqttLink

        m = r.get("mqtt", {})
        return MqttLink(network.WLAN(network.STA_IF), m["ssid"], m.get("key", ""), socket, m["host"], dev_eui,
                        clock, port=m.get("port", 1883), prefix=m.get("prefix", "citynode"))
    raise ValueError("radio type %r is not supported" % (kind,))


def lora_mac(modem, clock, cfg, dev_eui, join_eui, app_key):
    """Our LoRaWAN MAC over a lora-sync modem, its session and counters in NVS."""
    from cnode.lorawan.mac import Mac
    from cnode.nvstore import NvsStore

    mac = Mac(modem, clock, NvsStore(nvs("cn_mac")), dev_eui, join_eui, app_key)
    mac.adr = bool(cfg["adr"])
    return mac


class Runner:
    """Everything one boot builds. Separate from main() so tests and the virtual node can drive cycles."""

    def __init__(self, board, machine, clock, log=print, fs=osfs, root="", link=None, feed=None):
        self.board = board
        self.machine = machine
        self.clock = clock
        self.log = log
        self.cfg = Config(board, fs, nvs(NVS_SETTINGS), path=root + "/config.json")
        self.keys = Keys(nvs("cn_keys"))
        self.hw = Hardware(board, machine)
        self.hw.power_on(clock)
        gc.collect()  # between set-up steps: each one's garbage is gone before the next allocates (no holes)
        nap = Napping(clock, machine, self.radio_sleep)  # for waits that need no CPU; off while the drivers are
        self.sampler = Sampler(self.hw.slots(clock, nap), clock, extra=STATUS)  # set up (a counter's IRQs need it)
        nap.on = counter(self.sampler) is None
        self.reboot = False
        self.rejoin = False
        if not self.keys.present():
            self.node = None
            return
        gc.collect()
        self.link = link if link is not None else make_link(self.hw, clock, self.keys, self.cfg, log)
        gc.collect()
        try:
            fs.mkdir(root + "/q")
        except OSError:
            pass
        self.queue = Queue(fs, root + "/q")
        self.dl = Downlink(self.cfg, nvs(NVS_SETTINGS), self._info, os.urandom, hasattr(self.link, "forget"))
        gc.collect()
        rtc = machine.RTC()
        if hasattr(self.link, "set_clock"):  # DeviceTimeAns sets the board's clock (RTC, kept in deep sleep)
            setattr(self.link, "set_clock", clock_setter(rtc, clock))
        self.node = Node(nap, self.sampler, self.queue, self.link, interval_s=self.cfg["interval"],
                         rtc=crash.RtcArea(rtc), commands=self._command, reboot_reason=reboot_code(machine),
                         log=log, confirmed=bool(self.cfg["confirmed"]), feed=feed,
                         crashes=crash.counts(rtc)[1], time_src=gps_time(self.sampler.slots, rtc, clock))
        self._apply()

    def _info(self):
        return {8: self.queue.depth, 9: self.queue.dropped}

    def _apply(self):
        """Settings that downlinks change, applied to the running node."""
        n = self.node
        if n is None:
            return
        n.interval_s = self.cfg["interval"]
        n.channels_off = self.cfg["channels_off"]
        link = self.link
        if hasattr(link, "adr"):  # our MAC; an AT modem keeps its own ADR setting
            setattr(link, "adr", bool(self.cfg["adr"]))
        if not self.cfg["adr"] and hasattr(link, "dr"):
            setattr(link, "dr", self.cfg["dr"])

    def _command(self, port, data):
        if port != FPORT_CMD:
            return None
        act = self.dl.handle(data)
        self._apply()
        if act == ACT_REBOOT:
            self.reboot = True
        elif act == ACT_REJOIN:
            self.rejoin = True
        if act in (ACT_SEND, ACT_REBOOT, ACT_REJOIN) and self.dl.status_len:
            return bytes(self.dl.status[:self.dl.status_len])
        return None

    def power_down(self):
        """Before deep sleep: the radio to sleep, the sensors' and radio's supply rails off and held off."""
        self.radio_sleep()
        self.hw.power_off()

    def radio_sleep(self):
        """The radio chip (or AT modem) to its sleep mode; its next command wakes it."""
        link = getattr(self, "link", None)
        modem = getattr(link, "modem", None)
        try:
            if modem is not None and hasattr(modem, "sleep"):
                modem.sleep()  # micropython-lib lora: SX127x/SX126x sleep mode (register contents kept)
            elif hasattr(link, "sleep"):
                getattr(link, "sleep")()  # an AT modem's own low-power mode
        except OSError as e:
            self.log("radio sleep: %s" % (e,))

    def cycle(self):
        """One wake period; returns the milliseconds to sleep."""
        if self.node is None:
            self.log("not provisioned: run `citynode provision --port ...`")
            return _NOT_PROVISIONED_SLEEP_MS
        ms = self.node.cycle()
        if self.rejoin:  # after the status went out in this session: the next cycle joins anew
            self.rejoin = False
            getattr(self.link, "forget")()
        return ms


class Napping:
    """A clock for waits that need no CPU: the time module, except that sleep_ms is a light sleep with the radio
    asleep, about 1 mA instead of the ~30 mA of a CPU waiting in time.sleep_ms. The node waits the sensors' warm-up
    (a PM sensor's fan, 30 s) on it and the I2C drivers their measurements (an SCD41's single shot, 5 s). What a
    UART receives meanwhile is lost, so UART drivers never wait on it (they read fresh frames after a warm-up).
    Off (`on` False) on a board that counts pulses in RAM: its interrupts need the CPU."""

    def __init__(self, time, machine, radio_sleep):
        self._t = time
        self._m = machine
        self._r = radio_sleep
        self.on = False  # False: plain time.sleep_ms (until the Runner knows no driver counts pulses in RAM)

    def __getattr__(self, name):
        return getattr(self._t, name)

    def sleep_ms(self, ms):
        if not self.on:
            self._t.sleep_ms(ms)
            return
        if ms >= _RADIO_SLEEP_MS:  # a short wait is not worth the radio's wake-up afterwards
            self._r()
        self._m.lightsleep(ms)


def counter(sampler):
    """The driver that counts in RAM between cycles (a pulse counter), or None."""
    for s in sampler.slots:
        if getattr(s.driver, "keeps_count_in_ram", False):
            return s.driver
    return None


def sleep_deep(board, r, deep_sleep=None):
    """Whether to deep-sleep between cycles: the board file's setting (default yes) or the caller's, except
    that a sensor counting in RAM between cycles (a pulse counter) keeps the node in light sleep: deep sleep
    would lose every count between two cycles, silently."""
    deep = board.get("settings", {}).get("deep_sleep", True) if deep_sleep is None else deep_sleep
    c = counter(r.sampler) if deep else None
    if c is not None:
        r.log("no deep sleep: %s counts in RAM between cycles" % type(c).__name__)
        return False
    return bool(deep)


def clock_setter(rtc, clock):
    """fn(s, us) that sets the wall clock (seconds since 2000, microseconds) through machine.RTC, as the
    MAC calls it on a DeviceTimeAns; returns the jump in whole seconds."""

    def set_clock(s, us):
        old = clock.time()
        t = clock.gmtime(s) if hasattr(clock, "gmtime") else clock.localtime(s)
        rtc.datetime((t[0], t[1], t[2], t[6], t[3], t[4], t[5], us))
        return s - old

    return set_clock


def gps_time(slots, rtc, clock, max_age_ms=5000):
    """fn() that sets the clock from the board's GPS (cnode.drivers.nmea: the last RMC's date and time, if
    its fix is fresh) and returns True, else False; None when the board has no GPS."""
    gps = None
    for s in slots:
        if hasattr(s.driver, "seconds_2000"):
            gps = s.driver
    if gps is None:
        return None
    set_clock = clock_setter(rtc, clock)

    def src():
        t = gps.seconds_2000()
        f = getattr(gps, "fix_ms", None)
        if t is None or f is None:
            return False
        age = clock.ticks_diff(clock.ticks_ms(), f)
        if not 0 <= age < max_age_ms:
            return False
        set_clock(t + age // 1000, age % 1000 * 1000)
        return True

    return src


def main(machine, time, deep_sleep=None, production=False):
    """Run forever on a board: wake, cycle, sleep (deep sleep keeps only RTC memory and flash). The watchdog
    is armed first: a hang anywhere resets the board. Any exception ends in a crash record (/crash.log), a
    count in RTC memory and a reset after a delay that grows with each consecutive failure: never the REPL.
    Ctrl-C (KeyboardInterrupt) ends the app and leaves the REPL to citynode flash and provision, except in
    production mode (main.py: Ctrl-C is off there), where whatever still escapes (SystemExit from sys.exit or
    machine.soft_reset, an error while recording a crash) is recorded if it can be and resets the board."""
    try:
        _main(machine, time, deep_sleep)
    except _ESCAPES as e:
        if not production:
            raise
        try:
            crash.failed(machine.RTC(), open, "t=%d production mode: %s; reset" % (time.time(), type(e).__name__))
            print("production mode: %s; reset" % type(e).__name__)
        except Exception:  # noqa: BLE001 (nothing may keep the board from its reset)
            pass
        machine.reset()


# Every exception class MicroPython has. A simulator's deep sleep or reset (citynode.hwsim.machine: BaseException
# subclasses of its own, as a board's never return) passes through.
_ESCAPES = (KeyboardInterrupt, SystemExit, GeneratorExit, Exception)


def _main(machine, time, deep_sleep):
    wdt = machine.WDT(timeout=WDT_MS)
    rtc = machine.RTC()
    try:
        _run(machine, time, wdt, rtc, deep_sleep)
    except Exception as e:
        ms = crash.failed(rtc, open, "t=%d cause=%d %s: %s" % (time.time(), machine.reset_cause(),
                                                              type(e).__name__, e))
        print("crashed: %s: %s; reset in %d s" % (type(e).__name__, e, ms // 1000))
        machine.deepsleep(ms)


def _run(machine, time, wdt, rtc, deep_sleep):
    run, total = crash.counts(rtc)
    if run:
        print("boot after %d failed boot(s); last crash: %s" % (run, crash.last(open)))
    board = load()
    gc.collect()
    r = Runner(board, machine, time, feed=wdt.feed)
    wdt.feed()
    deep = sleep_deep(board, r, deep_sleep)
    # A node without keys after a reset or power-on (a reflash, the bench) waits one interval awake, its console
    # open to citynode flash and provision (deep sleep would leave it deaf to them all but a second per
    # interval); woken from deep sleep, or after that first wait, it deep-sleeps as usual.
    awake = r.node is None and machine.reset_cause() != getattr(machine, "DEEPSLEEP_RESET", 4)
    while True:
        ms = r.cycle()
        wdt.feed()
        crash.good(rtc)
        if r.reboot:
            machine.reset()
        if deep:
            r.power_down()
            if not awake:
                machine.deepsleep(ms)
        awake = False
        sleep_fed(time, wdt, ms)


def sleep_fed(time, wdt, ms):
    """Sleep `ms` in steps of half the watchdog's timeout, feeding it between them (sleep_ms never does)."""
    while ms > 0:
        step = ms if ms < WDT_MS // 2 else WDT_MS // 2
        time.sleep_ms(step)
        wdt.feed()
        ms -= step
