"""The radio channel of a simulated fleet: every node's transmissions in one virtual time, with collisions
(same frequency and spreading factor, overlapping in time), random loss, and downlinks into receive windows.

Modems here have micropython-lib lora-sync's API (configure/send/recv), so the firmware MAC runs unchanged.
An uplink is judged when it ends: by then the scheduler has run every node up to that moment, so every
transmission that overlapped it is known."""
from __future__ import annotations

import random
from typing import Callable

from citynode.sim.hwsim.radio import SimModem, Tx


class FleetAir:
    def __init__(self, seed: int = 0, loss: float = 0.0):
        self.rng = random.Random(seed)
        self.loss = loss
        self.log: list[Tx] = []  # every transmission, in start order
        self._recent: list[Tx] = []  # uplinks that may still overlap a new one
        self._down: list[Tx] = []  # downlinks not yet heard
        self._listeners = []  # fn(tx) for each uplink that reaches the network (gateways)
        self._after = []  # fn() once every gateway heard it (the network server's dedup flush)
        # fn(tx) when a transmission starts (the simulator tags it with its keys)
        self.on_start: Callable[[Tx], None] | None = None
        self.collided = 0
        self.lost = 0
        self.delivered = 0

    def start(self, tx: Tx) -> None:
        self.log.append(tx)
        if self.on_start is not None:
            self.on_start(tx)
        if tx.iq_inverted:
            self._down.append(tx)
        else:
            self._recent.append(tx)

    def judge(self, tx: Tx) -> None:
        """Called at the end of an uplink: deliver it unless it collided or the channel lost it."""
        t0 = tx.start_us
        self._recent = [o for o in self._recent if o.end_us > t0 - 10_000_000]
        for o in self._recent:
            if o is not tx and o.freq_khz == tx.freq_khz and o.sf == tx.sf and o.start_us < tx.end_us \
                    and tx.start_us < o.end_us:
                self.collided += 1
                tx.fate = "collided"
                return
        if self.loss and self.rng.random() < self.loss:
            self.lost += 1
            tx.fate = "lost"
            return
        self.delivered += 1
        tx.fate = "delivered"
        for fn in self._listeners:
            fn(tx)
        for fn in self._after:
            fn()

    def end(self, tx: Tx) -> None:
        """A register-level radio twin's transmission ended (start() was called when it began)."""
        if tx.iq_inverted:
            return
        if tx.power is None:  # on a PA pin that is not wired to the antenna: no gateway hears it
            self.lost += 1
            tx.fate = "no antenna"
            return
        self.judge(tx)

    def listen(self, fn) -> None:
        self._listeners.append(fn)

    def after(self, fn) -> None:
        self._after.append(fn)

    def schedule(self, source, start_us, freq_khz, sf, data, bw_khz=125) -> Tx:
        tx = Tx(source, start_us, freq_khz, sf, bw_khz, True, data)
        self.start(tx)
        return tx

    def take(self, t0_us, t1_us, freq_khz, sf, bw_khz, iq_inverted=True) -> Tx | None:
        best = None
        for tx in self._down:
            if (t0_us <= tx.start_us <= t1_us and tx.freq_khz == freq_khz and tx.sf == sf and tx.bw_khz == bw_khz
                    and tx.iq_inverted == iq_inverted):
                if best is None or tx.start_us < best.start_us:
                    best = tx
        self._down = [tx for tx in self._down if tx.start_us >= t0_us and tx is not best]
        return best


class FleetModem(SimModem):
    """One node's radio on the fleet air: configure() and recv() as SimModem (its waits hand over to the
    other nodes through the fleet clock); send() is judged for collisions when it ends."""

    def __init__(self, air: FleetAir, clock, name: str):
        super().__init__(air, name, clock=clock)

    def _now_us(self):
        return self.clock.task.now

    def send(self, packet, tx_at_ms=None):
        c = self.clock
        tx = self._transmission(packet, tx_at_ms)
        self.air.start(tx)
        self._power("tx", "%s:%s" % (self.pa, self.cfg["output_power"]))
        c.sleep_us(tx.end_us - tx.start_us)
        self._power("standby")
        self.sent += 1
        if not tx.iq_inverted:
            self.air.judge(tx)
        return c.ticks_ms()
