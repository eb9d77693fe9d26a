# The "simulated" board of the virtual node: sensor twins on the hardware double, and a LoRa radio whose air,
# gateway and network server live in the same process, all on a virtual clock. The node's firmware runs
# unchanged (cnode.runner); every uplink the network server accepts is printed as a line that
# `citynode decode` reads: {"fport": 2, "hex": "...", "device": "<DevEUI>"}. MicroPython-compatible.
import json
import sys

from citynode.hwsim import machine as hw
from citynode.hwsim.clock import VirtualClock
from citynode.hwsim.radio import Air, SimModem
from citynode.hwsim.twin_adc import BatteryTwin
from citynode.hwsim.twin_bme280 import BME280Twin
from citynode.hwsim.twin_uart_pm import SDS011Twin
from citynode.netserver import NetworkServer

_state = {}


def radio(clock, dev_eui, join_eui, app_key, log):
    """A modem on an air with one gateway and a network server that knows this device's keys."""
    air = Air(clock)
    ns = NetworkServer(air)
    ns.add_gateway()
    dev = ns.add_device(dev_eui, app_key, join_eui)
    seen = [0]

    def report():
        for up in dev.uplinks[seen[0]:]:
            if up.port > 0:
                sys.stdout.write(json.dumps({"fport": up.port, "hex": "".join("%02x" % b for b in up.data),
                                             "device": "".join("%02x" % b for b in dev_eui)}) + "\n")
        seen[0] = len(dev.uplinks)

    air.after(report)
    _state["ns"] = ns
    return SimModem(air, "vnode")


def _series(ms):
    return {"pm2_5": 6.0 + (ms // 60000) % 7, "pm10": 11.0 + (ms // 60000) % 9}


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


def run(board, cycles=None, start_s=820540800):
    """Boot the firmware on the simulated board and run `cycles` wake periods of virtual time."""
    from cnode.runner import Runner

    _fresh_network()
    clock = VirtualClock(start_s=start_s)  # 2026-01-01 in the node's epoch (seconds since 2000)
    hw.use(clock)
    sim = board.get("simulated") or {}
    n = cycles if cycles is not None else sim.get("cycles", 24)
    r = Runner(board, hw, clock, root=".")  # the unix port's folder is the node's flash
    i2c = r.hw.i2c()
    if 0x76 not in i2c.devices:
        i2c.attach(0x76, BME280Twin(clock))
    for s in r.sampler.slots:
        d = s.driver
        name = type(d).__name__
        if name == "SDS011":
            d.uart.attach(SDS011Twin(clock, _series))
        elif name == "Battery":
            BatteryTwin(board["battery"]["r1"], board["battery"]["r2"], 3900).attach(d.adc)
    for _ in range(n):
        ms = r.cycle()
        clock.sleep_ms(ms)
    print("virtual node: %d cycles done" % n)
    return r
