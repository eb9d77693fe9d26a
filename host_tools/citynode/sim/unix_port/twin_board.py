# The board of a node process whose radio chip is a twin (citynode simulate --runtime micropython --board):
# Board's requests plus the clock and air that the SX1276/SX1262 twin needs, and the twin under micropython-lib's
# driver. Compiled as cn_twin_board beside cn_node_main, and loaded by it only in this mode.
import gc

from binascii import unhexlify
from micropython import const

from cn_node_main import Board, _hex, _t, call

# request numbers: their index in citynode/sim/fleet/unix_nodes.py OPS
_SLEEP = const(1)
_RADIO_START = const(21)
_RADIO_END = const(22)
_RADIO_LISTEN = const(23)

_tm = []  # the radio twin's hardware events: (due us, fn), in time order


class TwinBoard(Board):
    def ticks_us(self):
        return _t[0] & 0x3FFFFFFF

    def sleep_ms(self, n):
        self.sleep_us(int(n * 1000))

    def sleep_us(self, n):
        """Sleep n us; a twin event due meanwhile runs at its own time (the clock stops there first)."""
        end = _t[0] + n
        while _tm and _tm[0][0] <= end:
            e = _tm.pop(0)
            if e[0] > _t[0]:
                call(_SLEEP, e[0] - _t[0])
            e[1]()
        if end > _t[0]:
            call(_SLEEP, end - _t[0])

    # clock as the radio twin uses it (citynode.sim.hwsim.twin_sx127x / twin_sx126x) and machine.idle()
    def monotonic_us(self):
        return _t[0]

    def call_at_us(self, at, fn):
        i = 0
        while i < len(_tm) and _tm[i][0] <= at:
            i += 1
        _tm.insert(i, (at, fn))

    def next_due_us(self):
        return _tm[0][0] if _tm else None

    # the fleet's air as the radio twin uses it: start(tx), end(tx), take(...) (citynode.sim.hwsim.radio.Air)
    def start(self, tx):
        tx.id = call(_RADIO_START, tx.start_us, tx.end_us, tx.freq_khz, tx.sf, tx.bw_khz, 1 if tx.iq_inverted else 0,
                     "-" if tx.power is None else tx.power, _hex(tx.data))

    def end(self, tx):
        call(_RADIO_END, tx.id)

    def take(self, t0, t1, freq, sf, bw, iq):
        r = call(_RADIO_LISTEN, t0, t1, freq, sf, bw, 1 if iq else 0)
        if not r:
            return None
        from citynode.sim.hwsim.airframe import Tx

        a = r.split()
        return Tx("gw", int(a[0]), freq, sf, bw, True, unhexlify(a[2]), end_us=int(a[1]))

    def radio(self, r):
        """The board's chip as its twin on this process's machine double, under micropython-lib's driver."""
        from citynode.sim.hwsim import machine as hw
        from citynode.sim.hwsim import lora_lib
        from cnode.loraradio import radio

        hw.use(self)
        p = r["pins"]
        if r["type"] == "sx1276":
            from citynode.sim.hwsim.twin_sx127x import SX1276Twin

            SX1276Twin(self, self, p["sck"], p["cs"], reset=p["reset"], dio0=p["dio0"], dio1=p["dio1"],
                       pa_pin=r["tx_ant"])
        else:
            from citynode.sim.hwsim.twin_sx126x import SX1262Twin

            SX1262Twin(self, self, p["sck"], p["cs"], p["busy"], dio1=p["dio1"], reset=p["reset"],
                       tcxo_mv=r.get("dio3_tcxo_millivolts"))
        lora_lib.load(self)
        gc.collect()
        return radio(r, hw)
