# One transmission on the simulated air: who sent it, when, on which frequency and spreading factor, with which
# IQ polarity and power at the antenna. MicroPython-compatible and small (a node process holds it).


class Tx:
    # set later by the fleet simulation, not by __init__ (a node process holds no more than it needs):
    fate: str  # FleetAir's verdict on an uplink: "delivered", "collided", "lost" or "no antenna"

    def __init__(self, source, start_us, freq_khz, sf, bw_khz, iq_inverted, data, power: float | None = 0, crc=True,
                 end_us=None):
        self.source = source
        self.start_us = start_us
        if end_us is None:  # LoRaWAN's CR 4/5 and 8-symbol preamble (a register-level twin gives its own)
            from cnode.lorawan.region import airtime_us

            end_us = start_us + airtime_us(sf, bw_khz, len(data), crc=1 if crc else 0)
        self.end_us = end_us
        self.freq_khz = freq_khz
        self.sf = sf
        self.bw_khz = bw_khz
        self.iq_inverted = iq_inverted
        self.data = bytes(data)
        self.power = power

    def airtime_us(self):
        return self.end_us - self.start_us

    def __repr__(self):
        return "Tx(%s %d kHz SF%d %s %d B at %d ms)" % (self.source, self.freq_khz, self.sf,
                                                       "down" if self.iq_inverted else "up", len(self.data),
                                                       self.start_us // 1000)


def on_air(clock, air, tx, heard, done):
    """A radio twin's transmission: on the air now (when a LoRaWAN gateway can hear its sync word), ended at
    tx.end_us, and then done() (the chip's TxDone)."""
    if heard:
        air.start(tx)

    def end():
        if heard:
            air.end(tx)
        done()

    clock.call_at_us(tx.end_us, end)
