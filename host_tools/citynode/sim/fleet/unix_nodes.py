"""`citynode simulate --runtime micropython`: every node's firmware runs in its own MicroPython unix-port
process; its buses, radio, clock and RTC memory are served here, on the fleet's shared virtual time, by the
same twins and air as the CPython runtime. Flash is real files in a folder per node. A power cut kills the
process (what it wrote stays on disk) and starts it again."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from citynode.energy import model
from citynode.sim.hwsim import machine as hw
from citynode.sim.hwsim.radio import Tx
from citynode.sim.runtime import HOST_DIR, compiled_firmware, micropython_exe
from citynode.sim.fleet.sim import SimConfig, Simulation
from citynode.sim.fleet.world import NodeWorld


_WARMUP_MIN_US = 10_000_000  # a wait this long right after waking the PM sensor is its warm-up, not a bus wait

# The node's requests by number (host_tools/citynode/sim/unix_port/node_main.py sends the index, so that the node interns
# no strings for them): name, then the arguments as the node sends them.
# A reply is "<virtual time us>[,<edge us>...] [text]": rising edges on the counter pin since the last reply,
# which the node runs its pin handler for (an interrupt, at its time).
OPS = ("HELLO",  # -> wall clock offset us, reason dev_eui app_key interval deep_sleep(0/1) confirmed(0/1) counter_channel|-
       "S",  # us: sleep
       "IMW", "IMR",  # I2C addr reg addrsize hex / addr reg addrsize n
       "UW", "UA", "UR",  # UART write hex / bytes waiting / read up to n
       "AV",  # ADC microvolts
       "RC", "RT", "RR",  # radio configure freq_khz sf bw invert_tx invert_rx / transmit hex / receive timeout_ms
       "NG", "NS", "NB", "NW",  # NVS int get key / set key v / blob get key / set key hex
       "MG", "MS",  # RTC memory get / set hex
       "L", "P", "H", "D",  # log text / sample pushed t / live heap alloc free / deep sleep ms
       "RS", "RE", "RL",  # radio twin ... (see below)
       "TS",  # set the wall clock: s us (since 2000) -> "offset_us jump_s" (machine.RTC().datetime on a board)
       "W")  # watchdog: arm or feed, timeout ms (0: stopped, as in deep sleep)
# RS/RE/RL: radio twin: transmission starts (start end freq sf bw iq power|- hex) -> id / ends id /
#                            listen t0 t1 freq sf bw iq -> "start end hex" of the frame heard, or nothing


class MpNode:
    """Serves one MicroPython node process from its simulator task."""

    def __init__(self, world: NodeWorld, sim: MpSimulation, heap: str, folder: str):
        self.w = world
        self.sim = sim
        self.heap = heap
        self.folder = folder
        self.modem = world.radio()  # the API-level modem, metered (the world's meter)
        self.cut = False
        self.heap_peak = 0
        self.requests = 0
        self.exit_error = ""
        self.log: list = []  # the node's last log lines (virtual ms, text)
        self.deep_sleep_ms = None
        self.wdt_ms = 0  # the node's watchdog timeout (0: not armed)
        self.wdt_due = 0  # virtual us by which it must be fed
        self.wdt_bit = False
        self.hang_at: list = []  # virtual us at which the node hangs (injected): the watchdog must bite
        self.edges: list = []  # rising edges on the counter pin (virtual us) not yet told to the node
        self.txs: dict = {}  # the radio twin's transmissions in progress, by the id the node holds
        self.warming = False  # the node just woke its PM sensor: its next wait is the warm-up
        if sim.board is not None:  # the node's flash holds its board file, as on a board (/board.json)
            with open(os.path.join(folder, "board.json"), "w") as f:
                json.dump(sim.board, f)

    def run(self, task) -> None:
        c = self.sim.clock
        w = self.w
        if w.counter is not None:
            w.count_pin.irq(handler=lambda pin: self.edges.append(c.us), trigger=hw.Pin.IRQ_RISING)
            w.start_counter()
        c.sleep_ms(w.rng.uniform(0, w.interval_s * 1000))
        w.power_on()
        reason = 1
        while True:
            w.boots += 1
            self.deep_sleep_ms = None
            w.meter.set("cpu", "idle")
            w.meter.extra("cpu", "boot", int((model.state_ms(w.cpu_part, "boot") or 0) * 1000))
            proc = subprocess.Popen(
                [micropython_exe(), "-X", f"heapsize={self.heap}", "-c", "import cn_node_main"],
                cwd=self.folder, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                bufsize=1, env=dict(os.environ, MICROPYPATH=":".join(str(p) for p in self.sim.mp_path)))
            self.edges.clear()  # edges while the node was off (or in deep sleep) reach no handler
            try:
                self._serve(proc, reason)
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
            if self.deep_sleep_ms is not None:  # woke from deep sleep: RTC memory kept
                reason = 4
                c.sleep_ms(self.deep_sleep_ms)
                continue
            if self.wdt_bit:  # the watchdog reset the chip: RTC memory and the wall clock are kept
                self.wdt_bit = False
                w.wdt_resets += 1
                reason = 3
                continue
            w.power_cuts += 1
            w.rtc_mem = b""
            reason = 1
            w.meter.set("cpu", "off")
            c.sleep_ms(w.rng.uniform(500, 5000))
            w.power_on()

    def _serve(self, proc, reason) -> None:
        c = self.sim.clock
        w = self.w
        rd, wr = proc.stdout, proc.stdin
        while True:
            line = rd.readline()
            if not line and self.deep_sleep_ms is not None:
                return  # the node went to deep sleep
            if not line:
                err = proc.stderr.read()
                raise RuntimeError(f"{w.name}: MicroPython node exited: {err.strip()[-400:]}")
            if line.startswith("Traceback"):
                raise RuntimeError(f"{w.name}: MicroPython node failed:\n{line}{rd.read()}{proc.stderr.read()}")
            if self.cut:
                self.cut = False
                return  # power cut: the process dies between two of its requests
            if self.hang_at and c.us >= self.hang_at[0] and self.wdt_ms:
                self.hang_at.pop(0)  # the node hangs here: nothing feeds the watchdog until it bites
                c.sleep_us(max(0, self.wdt_due - c.us))
                self.wdt_bit = True
                return
            self.requests += 1
            a = line.split()
            a[0] = OPS[int(a[0])]
            reply = self._do(a, reason)
            if self.wdt_bit:
                return
            head = str(c.us)
            if self.edges:
                head += "".join(f",{e}" for e in self.edges)
                self.edges.clear()
            wr.write(f"{head} {reply}\n" if reply != "" else f"{head}\n")

    def _do(self, a, reason) -> str:
        """One request of the node program (a[0]: its op): the answer, "" for none, E<errno> for an OSError."""
        op = a[0]
        try:
            if op == "HELLO":
                return self._hello(reason)
            family = _FAMILIES.get(op)
            if family is not None:
                return family(self, a)
        except OSError as e:
            return f"E{e.args[0] if e.args else 5}"
        raise self._unknown(a)

    def _unknown(self, a) -> RuntimeError:
        return RuntimeError(f"{self.w.name}: unknown request {a!r}")

    def _hello(self, reason) -> str:
        w = self.w
        return (f"{w.rtc_off_us} {reason} {w.dev_eui.hex()} {w.app_key.hex()} {w.interval_s} "
                f"{1 if w.deep_sleep else 0} {1 if w.confirmed else 0} "
                f"{w.counter[0] if w.counter is not None else '-'}")

    def _time(self, a) -> str:
        """Sleeping, the watchdog, the wall clock."""
        op = a[0]
        c = self.sim.clock
        w = self.w
        if op == "S":
            us = int(a[1])
            nap = self.warming and us >= _WARMUP_MIN_US
            if nap:
                self.warming = False
            if nap:  # the sensors' warm-up: on a board cnode.runner.Napping spends it in light sleep
                self.modem.sleep()
                w.meter.set("cpu", "light_sleep")
            if self.wdt_ms and c.us + us > self.wdt_due:  # sleep_ms never feeds the watchdog
                c.sleep_us(max(0, self.wdt_due - c.us))
                self.wdt_bit = True  # the chip resets: the process ends without an answer
                return ""
            c.sleep_us(us)
            if nap:
                w.meter.set("cpu", "idle")
            return ""
        if op == "W":
            self.wdt_ms = int(a[1])
            self.wdt_due = c.us + self.wdt_ms * 1000
            return "OK"
        if op == "TS":
            jump = w.set_clock(int(a[1]), int(a[2]))
            return f"{w.rtc_off_us} {jump}"
        raise self._unknown(a)

    def _bus(self, a) -> str:
        """The I2C bus, the UART, the ADC."""
        op = a[0]
        w = self.w
        if op == "IMR":
            return w.i2c.readfrom_mem(int(a[1]), int(a[2]), int(a[4]), addrsize=int(a[3])).hex()
        if op == "IMW":
            w.i2c.writeto_mem(int(a[1]), int(a[2]), bytes.fromhex(a[4] if len(a) > 4 else ""), addrsize=int(a[3]))
            return "OK"
        if op == "UW":
            was = w.sds_twin.power_state
            w.uart.write(bytes.fromhex(a[1]))
            # the node program shares the node's 128K heap, so it waits its warm-up in sleep_ms as Node asks;
            # the wait after the command that woke the PM sensor is the warm-up (a deep-sleeping node naps it)
            self.warming = self.warming or (w.deep_sleep and w.counter is None and was == "sleep"
                                            and w.sds_twin.power_state == "work")
            return "OK"
        if op == "UA":
            return str(w.uart.any())
        if op == "UR":
            n = int(a[1])
            d = w.uart.read(None if n < 0 else n)
            return d.hex() if d else ""
        if op == "AV":
            return str(w.adc.read_uv())
        raise self._unknown(a)

    def _radio(self, a) -> str:
        """The radio: its chip's twin and the air."""
        op = a[0]
        w = self.w
        if op == "RC":
            self.modem.configure({"freq_khz": int(a[1]), "sf": int(a[2]), "bw": a[3], "invert_iq_tx": a[4] == "1",
                                  "invert_iq_rx": a[5] == "1"})
            return "OK"
        if op == "RT":
            self.modem.send(bytes.fromhex(a[1]))
            return "OK"
        if op == "RR":
            p = self.modem.recv(int(a[1]))
            return bytes(p).hex() if p is not None else ""
        if op == "RS":
            tx = Tx(w.name, int(a[1]), int(a[3]), int(a[4]), int(a[5]), a[6] == "1",
                    bytes.fromhex(a[8]) if len(a) > 8 else b"", None if a[7] == "-" else float(a[7]),
                    end_us=int(a[2]))
            if tx.power is not None and tx.power == int(tx.power):
                tx.power = int(tx.power)
            self.sim.air.start(tx)
            self.txs[id(tx)] = tx
            # the chip's twin runs in the node's process: its TX is metered from what it radiates
            self.modem._power("tx", "%s:%s" % (self.modem.pa, a[7] if a[7] != "-" else 14))
            return str(id(tx))
        if op == "RE":
            self.sim.air.end(self.txs.pop(int(a[1])))
            self.modem._power("standby")
            return "OK"
        if op == "RL":
            tx = self.sim.air.take(int(a[1]), int(a[2]), int(a[3]), int(a[4]), int(a[5]), a[6] == "1")
            return f"{tx.start_us} {tx.end_us} {tx.data.hex()}" if tx is not None else ""
        raise self._unknown(a)

    def _memory(self, a) -> str:
        """RTC memory and NVS."""
        op = a[0]
        w = self.w
        if op == "MG":
            return w.rtc_mem.hex()
        if op == "MS":
            w.rtc_mem = bytes.fromhex(a[1]) if len(a) > 1 else b""
            return "OK"
        if op == "NG":
            v = w.nvs.d.get(a[1])
            return "" if v is None or isinstance(v, bytes) else str(v)
        if op == "NS":
            w.nvs.set_int(a[1], int(a[2]))
            return "OK"
        if op == "NB":
            v = w.nvs.get_blob(a[1])
            return v.hex() if v else ""
        if op == "NW":
            w.nvs.set_blob(a[1], bytes.fromhex(a[2]) if len(a) > 2 else b"")
            return "OK"
        raise self._unknown(a)

    def _events(self, a) -> str:
        """What the node tells the simulation: samples, heap, log lines, deep sleep."""
        op = a[0]
        c = self.sim.clock
        w = self.w
        if op == "P":
            self.warming = False  # a sample was pushed: the cycle's warm-up is over
            w.measured.append(int(a[1]))
            return "OK"
        if op == "H":
            self.heap_peak = max(self.heap_peak, int(a[1]))
            return "OK"
        if op == "L":
            self.log.append((c.us // 1000, " ".join(a[1:])))
            del self.log[:-50]
            return "OK"
        if op == "D":  # deep sleep: the process ends; wake it as a new one after the sleep
            self.modem.sleep()  # the radio sleeps before deep sleep (cnode.runner power_down)
            w.meter.set("cpu", "deep_sleep")
            self.deep_sleep_ms = int(a[1])
            self.wdt_ms = 0  # the chip reboots: no watchdog until the next boot arms one
            return "OK"
        raise self._unknown(a)


# each op of the node program (OPS) -> the MpNode method that answers it
_FAMILIES = {op: family for family, ops in ((MpNode._time, ("S", "W", "TS")),
                                            (MpNode._bus, ("IMR", "IMW", "UW", "UA", "UR", "AV")),
                                            (MpNode._radio, ("RC", "RT", "RR", "RS", "RE", "RL")),
                                            (MpNode._memory, ("MG", "MS", "NG", "NS", "NB", "NW")),
                                            (MpNode._events, ("P", "H", "L", "D")))
             for op in ops}


class MpSimulation(Simulation):
    def __init__(self, cfg: SimConfig, heap: str):
        super().__init__(cfg)
        self.folder = tempfile.mkdtemp(prefix="citynode-mp-")
        self.mpy_dir = compiled_firmware()
        self.board = None  # the board file in each node's flash: its radio chip runs as a twin under the driver
        self.mp_path: list[Path | str] = [self.mpy_dir, HOST_DIR]  # MICROPYPATH
        if cfg.board is not None and cfg.radio_lib is not None and cfg.board["radio"]["type"] in ("sx1276", "sx1262"):
            self.board = cfg.board
            self.radio_kind = "twin"
            self.mp_path.insert(0, cfg.radio_lib)
        self.mp_nodes = []
        for w in self.worlds:
            d = os.path.join(self.folder, w.name)
            os.makedirs(d)
            self.mp_nodes.append(MpNode(w, self, heap, d))

    def _cut(self, w) -> None:
        for m in self.mp_nodes:
            if m.w is w:
                m.cut = True

    def run(self):
        cfg = self.cfg
        end_s = cfg.days * 86400
        for m in self.mp_nodes:
            self.sched.spawn(m.w.name, m.run)
        self._plan_power_cuts(end_s)
        self._plan_mac_requests(end_s)
        for _ in range(cfg.hangs):  # a node that hangs: its watchdog must reset it
            m = self.rng.choice(self.mp_nodes)
            m.hang_at.append(int(self.rng.uniform(600, end_s) * 1_000_000))
            m.hang_at.sort()
        t0 = time.perf_counter()
        try:
            self.sched.run(until_s=end_s + cfg.drain_s)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.wall_s = time.perf_counter() - t0
        for m in self.mp_nodes:  # the queue depth of a node in another process: what is not yet delivered
            m.w.node = None
        res = self._report(end_s)
        res.totals["heap_peak_bytes"] = max(m.heap_peak for m in self.mp_nodes)
        res.totals["runtime"] = "micropython"
        res.totals["hangs_injected"] = self.cfg.hangs
        return res


def run_micropython(cfg: SimConfig, heap: str = "128K"):
    hw.use  # the double is bound to the fleet clock by Simulation
    sim = MpSimulation(cfg, heap)
    res = sim.run()
    return res, sim.frames_jsonl()
