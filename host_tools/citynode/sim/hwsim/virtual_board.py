# The virtual board: a board file's hardware as twins on the machine double, wired where the file says (sensor
# twins on its I2C/UART/pins, the radio chip's twin on its SPI pins, the battery on its ADC), an air with one
# gateway and a network server that knows the device, all on one virtual clock. The firmware runs unchanged
# (cnode.runner builds its radio with micropython-lib's driver, as on a board); every uplink the network
# accepts is printed as a line `citynode decode` reads: {"fport": 2, "hex": "...", "device": "<DevEUI>"}.
# The "simulated" radio type is the API-level modem (SimModem), for a machine without the upstream driver.
# MicroPython-compatible (the unix port runs it in the node's process).
import json
import sys

from citynode.sim.hwsim import machine as hw
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.radio import Air, SimModem
from citynode.sim.netserver import NetworkServer

START_S = 820540800  # 2026-01-01 (seconds since 2000): the network server's time when the board powers on (its clock: 0)
POSITION_E5 = (5227990, 804720)  # Osnabrück, Neumarkt: the GPS twin's fix (degrees x 1e5)
BLE_STEP_MS = 5000  # the BLE double delivers each advertiser in range once per 5 s (see bluetooth.follow)


def _num(v):
    return int(v, 0) if isinstance(v, str) else int(v)


def _pm(ms):
    return {"pm1": 4.0 + (ms // 60000) % 5, "pm2_5": 6.0 + (ms // 60000) % 7, "pm10": 11.0 + (ms // 60000) % 9}


class VirtualBoard:
    """Twins for everything the board file wires, and the network beyond the antenna. `uplinks` holds what the
    network server accepted (port > 0) as (fport, bytes); `out(line)` (if given) gets each as a JSON line."""

    def __init__(self, board, clock, dev_eui, app_key, join_eui=bytes(8), out=None, revision=None):
        hw.use(clock, board.get("chip", "esp32"))
        self.board = board
        self.clock = clock
        self.dev_eui = bytes(dev_eui)
        self.air = Air(clock)
        self.ns = NetworkServer(self.air, utc_at_zero_s=START_S)
        self.ns.add_gateway()
        self.dev = self.ns.add_device(dev_eui, app_key, join_eui)
        self.out = out
        # the board's revision, for the facts its file lists under "revisions" ({fact: choice}); by default
        # the revision the rest of the board file assumes
        self.revision = revision or {}
        self.uplinks = []
        self.twins = {}
        self.radio = None  # the radio chip's twin (SX1276 / SX1262) or the AT modem's
        self._sensors()
        self._radio()
        self.air.after(self._report)

    # --- wiring ------------------------------------------------------------------------------------------
    def _uart_rx(self, uid):
        for u in self.board.get("uarts", ()):
            if u["id"] == uid:
                return u["rx"]
        raise ValueError("the board has no uart %d" % uid)

    def _sensors(self):
        b = self.board
        c = self.clock
        scl = (b.get("i2c") or {}).get("scl")
        for s in b.get("sensors", ()):
            d = s["driver"]
            bus = s.get("bus")
            if bus == "i2c":
                addr = _num(s["address"])
                if d == "bme280":
                    from citynode.sim.hwsim.twin_bme280 import BME280Twin as T
                elif d == "sht4x":
                    from citynode.sim.hwsim.twin_sensirion import SHT4xTwin as T
                elif d == "scd4x":
                    from citynode.sim.hwsim.twin_sensirion import SCD4xTwin as T
                elif d == "dnms":
                    from citynode.sim.hwsim.twin_sensirion import DNMSTwin as T
                elif d == "qmc5883l":
                    from citynode.sim.hwsim.twin_mobility import QMC5883LTwin as T
                elif d == "vl53l1x":
                    from citynode.sim.hwsim.twin_mobility import VL53L1XTwin as T
                else:
                    continue
                self.twins[d] = hw.attach_i2c(scl, addr, T(c))
            elif bus == "uart":
                rx = self._uart_rx(s.get("uart", 1))
                if d == "sds011":
                    from citynode.sim.hwsim.twin_uart_pm import SDS011Twin
                    t = SDS011Twin(c, _pm)
                elif d == "pms5003":
                    from citynode.sim.hwsim.twin_uart_pm import PMS5003Twin
                    t = PMS5003Twin(c, _pm)
                elif d == "sps30":
                    from citynode.sim.hwsim.twin_uart_pm import SPS30Twin
                    t = SPS30Twin(c, _pm)
                elif d == "gps_nmea":
                    from citynode.sim.hwsim.twin_gps import GpsTwin
                    t = GpsTwin(c, position=lambda ms: POSITION_E5)
                else:
                    continue
                self.twins[d] = hw.attach_uart(rx, t)
            elif d == "blecount":  # the chip's own BLE radio (the bluetooth double) and a street in its range
                from citynode.sim.hwsim import bluetooth
                from citynode.sim.hwsim.twin_mobility import BleStreet
                bluetooth.install()
                street = BleStreet()
                ble = bluetooth.BLE()
                ble.radiate(street)
                ble.follow(c, BLE_STEP_MS)
                self.twins[d] = street
            elif bus == "pin" or "pin" in s:
                from citynode.sim.hwsim.twin_mobility import PulseTwin
                self.twins[d] = PulseTwin(hw.wire(s["pin"]), c, [40] * 24 * 30)
        pm = (b.get("power") or {}).get("pmic")
        if pm:  # the T-Beam's AXP192 (or, as another revision, an AXP2101): the radio and GPS rails behind it
            from citynode.sim.hwsim.twin_axp192 import AXP192Twin
            chip = int(self.revision.get("power.pmic", "0x03"), 0)
            self.twins["pmic"] = hw.attach_i2c(scl, _num(pm.get("address", 0x34)), AXP192Twin(chip_id=chip))
            if "gps_nmea" in self.twins:
                self.twins["pmic"].link("ldo3", self.twins["gps_nmea"])
        bat = b.get("battery") or {}
        if "adc" in bat:
            from citynode.sim.hwsim.twin_adc import BatteryTwin
            t = BatteryTwin(bat["r1"], bat["r2"], 3900)
            self.twins["battery"] = t
            pin = int(self.revision.get("battery.adc", bat["adc"]))
            en = bat.get("enable")
            if en is None:
                hw.attach_adc(pin, t.sample)
            else:  # a switch (ADC_Ctrl) connects the divider only at its revision's level
                wire = hw.wire(en["pin"])
                level = int(self.revision.get("battery.enable.active", en.get("active", 1)))
                hw.attach_adc(pin, lambda ms: t.sample(ms) if wire.level == level else 0)

    def _radio(self):
        r = self.board.get("radio") or {}
        kind = r.get("type")
        p = r.get("pins", {})
        c = self.clock
        if kind == "sx1276":
            from citynode.sim.hwsim.twin_sx127x import SX1276Twin
            self.radio = SX1276Twin(c, self.air, p["sck"], p["cs"], reset=p.get("reset"), dio0=p.get("dio0"),
                                    dio1=p.get("dio1"), pa_pin=r["tx_ant"], name="vnode")
            if "pmic" in self.twins:  # T-Beam: the SX1276 is fed from the AXP192's LDO2
                self.twins["pmic"].link("ldo2", self.radio)
        elif kind == "sx1262":
            from citynode.sim.hwsim.twin_sx126x import SX1262Twin
            self.radio = SX1262Twin(c, self.air, p["sck"], p["cs"], p["busy"], dio1=p.get("dio1"),
                                    reset=p.get("reset"), tcxo_mv=r.get("dio3_tcxo_millivolts"), name="vnode")
        elif kind in ("lora-e5", "rak3172"):
            from citynode.sim.hwsim import twin_atmodem
            t = (twin_atmodem.LoRaE5Twin if kind == "lora-e5" else twin_atmodem.RAK3172Twin)(c)
            # the modem is its own network: what it delivered is reported (on_uplink, fn(port, bytes) or None, is
            # untyped in the twin, which also runs on MicroPython)
            t.on_uplink = self._modem_uplink  # pyright: ignore[reportAttributeAccessIssue]
            self.radio = hw.attach_uart(p["rx"], t)

    def link(self, dev_eui, join_eui, app_key):
        """The API-level link for the "simulated" radio type (no driver, no chip); None for a board whose
        runner builds its own link from the board file. (The runner applies its settings, ADR included.)"""
        if (self.board.get("radio") or {}).get("type") != "simulated":
            return None
        from cnode.runner import lora_mac

        return lora_mac(SimModem(self.air, "vnode"), self.clock, {"adr": True}, dev_eui, join_eui, app_key)

    def summary(self):
        """What the twins did, for the bench and the tests: the radio chip's settings as its registers hold
        them (power at the antenna, image calibration, TCXO) and every transmission on the air."""
        t = self.radio
        out = {"board": self.board.get("name"), "radio": type(t).__name__ if t is not None else None,
               "air": [{"start_us": x.start_us, "end_us": x.end_us, "freq_khz": x.freq_khz, "sf": x.sf,
                        "bw_khz": x.bw_khz, "down": x.iq_inverted, "power_dbm": x.power, "bytes": len(x.data)}
                       for x in self.air.log]}
        for k in ("image_cal_khz", "image_cal_mhz", "tcxo_enabled_mv", "calibrated", "pa_pin"):
            if t is not None and hasattr(t, k):
                v = getattr(t, k)
                out[k] = list(v) if isinstance(v, tuple) else v
        return out

    # --- what reached the network ------------------------------------------------------------------------
    def _report(self):
        ups = self.dev.uplinks
        for up in ups[len(self.uplinks):]:
            self.uplinks.append((up.port, bytes(up.data)))
            if up.port > 0 and self.out is not None:
                self.out(json.dumps({"fport": up.port, "hex": "".join("%02x" % b for b in up.data),
                                     "device": "".join("%02x" % b for b in self.dev_eui)}))

    def _modem_uplink(self, port, frame):
        self.uplinks.append((port, bytes(frame)))
        if port > 0 and self.out is not None:
            self.out(json.dumps({"fport": port, "hex": "".join("%02x" % b for b in frame),
                                 "device": "".join("%02x" % b for b in self.dev_eui)}))


def runner(board, clock, log=print, root=".", out=None):
    """A Runner on the virtual board, built as on a board (keys from NVS); returns (runner, virtual board)."""
    from cnode.config import Keys
    from cnode.runner import Runner, nvs

    keys = Keys(nvs("cn_keys"))
    vb = VirtualBoard(board, clock, keys.get("dev_eui") or bytes(8), keys.get("app_key") or bytes(16),
                      keys.get("join_eui") or bytes(8), out=out)
    if (board.get("radio") or {}).get("type") in ("sx1276", "sx1262"):
        from citynode.sim.hwsim import lora_lib

        lora_lib.load(clock)  # the driver's time is the board's clock
    link = vb.link(keys.get("dev_eui"), keys.get("join_eui"), keys.get("app_key")) if keys.present() else None
    return Runner(board, hw, clock, log=log, root=root, link=link), vb


def _fresh_network():
    # the in-process network server is new at every boot of the virtual node: it knows no session and
    # counts JoinNonce from 1 again, so the node must forget its session (its DevNonce counter stays)
    from cnode.nvsfile import NVS

    n = NVS("cn_mac")
    for k in ("ss", "jn"):
        try:
            n.erase_key(k)
        except OSError:
            pass
    n.commit()


def run(board, cycles=None, start_s=0):
    """Boot the firmware on the virtual board and run `cycles` wake periods of virtual time."""
    _fresh_network()
    clock = VirtualClock(start_s=start_s)
    sim = board.get("simulated") or {}
    n = cycles if cycles is not None else sim.get("cycles", 24)
    r, vb = runner(board, clock, out=lambda line: sys.stdout.write(line + "\n"))
    for _ in range(n):
        ms = r.cycle()
        clock.sleep_ms(ms)
    print("virtual node: %d cycles done" % n)
    return r
