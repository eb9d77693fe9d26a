# A simulated LoRa air and a modem with micropython-lib lora-sync's API (configure/send/recv), in virtual time.
#
# Every transmission is logged on the Air with its start/end (us), frequency, SF, bandwidth and IQ polarity,
# so tests can check duty cycle from what was actually radiated. Uplink-polarity frames are delivered to the
# listeners (gateways) when they end; downlinks are scheduled into the future and heard by a modem whose
# recv() window contains their start with matching frequency, SF, bandwidth and inverted IQ.
from citynode.sim.hwsim.airframe import Tx
from citynode.sim.hwsim.power import Powered


class RxPacket(bytearray):
    """What lora-sync's recv() returns: the payload bytes plus ticks_ms, snr (dB x 4, as the driver reports
    it), rssi (dBm) and valid_crc."""

    def __init__(self, data, ticks_ms=0, snr=0, rssi=0, valid_crc=True):
        super().__init__(data)
        self.ticks_ms = ticks_ms
        self.snr = snr
        self.rssi = rssi
        self.valid_crc = valid_crc


class Air:
    def __init__(self, clock):
        self.clock = clock
        self.log = []  # every Tx radiated, in start order
        self._listeners = []  # fn(tx) for uplink-polarity frames, called at their end
        self._after = []  # fn() after all listeners heard a frame (network-server dedup flush)
        self._pending = []  # downlinks not yet heard or missed
        self.drop_uplinks = 0  # fault injection: the next n uplinks reach no gateway
        self.corrupt_downlinks = 0  # fault injection: the next n downlinks arrive with a flipped byte

    def listen(self, fn):
        self._listeners.append(fn)

    def after(self, fn):
        self._after.append(fn)

    # --- what a register-level radio twin calls (citynode.sim.hwsim.twin_sx127x / twin_sx126x) -------------
    def start(self, tx):
        """A transmission starts (its end_us and power are known); it is heard when it ends."""

    def end(self, tx):
        """A transmission ended: uplinks reach the gateways now, unless nothing reached the antenna."""
        if tx.power is None:  # radiated on a PA pin that is not wired to the antenna
            self.log.append(tx)
            return
        self.radiate(tx)

    def radiate(self, tx):
        self.log.append(tx)
        if tx.iq_inverted:
            self._pending.append(tx)
            return
        if self.drop_uplinks:
            self.drop_uplinks -= 1
            return
        for fn in self._listeners:
            fn(tx)
        for fn in self._after:
            fn()

    def schedule(self, source, start_us, freq_khz, sf, data, bw_khz=125):
        """A downlink (inverted IQ) starting at start_us; returns its Tx."""
        tx = Tx(source, start_us, freq_khz, sf, bw_khz, True, data)
        if self.corrupt_downlinks:
            self.corrupt_downlinks -= 1
            b = bytearray(tx.data)
            b[len(b) // 2] ^= 0x40
            tx.data = bytes(b)
        self.radiate(tx)
        return tx

    def take(self, t0_us, t1_us, freq_khz, sf, bw_khz, iq_inverted):
        """The first pending frame starting in [t0_us, t1_us] that a receiver with these settings hears."""
        best = None
        for tx in self._pending:
            if (t0_us <= tx.start_us <= t1_us and tx.freq_khz == freq_khz and tx.sf == sf
                    and tx.bw_khz == bw_khz and tx.iq_inverted == iq_inverted):
                if best is None or tx.start_us < best.start_us:
                    best = tx
        # frames that started before this window can never be heard any more
        self._pending = [tx for tx in self._pending if tx.start_us >= t0_us and tx is not best]
        return best


def _bw_khz(bw):
    return int(float(bw)) if isinstance(bw, str) else int(bw)


class SimModem(Powered):
    """Stands in for lora.SX1276/SX1262 with lora-sync at the API level, for fast unit tests: what it returns
    is in the driver's units (snr in dB x 4). The end-to-end tests run the upstream driver on a register-level
    twin instead (twin_sx127x, twin_sx126x)."""

    power_state = "standby"  # as the driver leaves the chip after its set-up

    def __init__(self, air, name="node", snr=7, rssi=-95, clock=None, pa="PA_BOOST", reg=None):
        self.pa = pa  # the chip's transmitter, for the meter: "PA_BOOST"/"RFO" (SX1276), "HP" (SX1262 at +22 dBm set-up)
        self.reg = reg  # the SX1262's regulator for RX: "LDO" (micropython-lib never selects the DC-DC), None for SX1276
        self.air = air
        self.clock = air.clock if clock is None else clock
        self.name = name
        self.snr = snr
        self.rssi = rssi
        self.cfg = {"freq_khz": 868100, "sf": 7, "bw": "125", "coding_rate": 5, "preamble_len": 8,
                    "output_power": 14, "crc_en": True, "invert_iq_tx": False, "invert_iq_rx": False}
        self.sent = 0

    def configure(self, lora_cfg):
        for k in lora_cfg:
            if k not in ("freq_khz", "sf", "bw", "coding_rate", "preamble_len", "output_power", "syncword",
                         "crc_en", "invert_iq_tx", "invert_iq_rx", "implicit_header", "auto_image_cal",
                         "lna_gain", "rx_boost", "pa_ramp_us"):
                raise ValueError("unknown lora_cfg key %s" % k)
            self.cfg[k] = lora_cfg[k]

    def _now_us(self):
        return self.clock.us

    def _transmission(self, packet, tx_at_ms):
        """Wait for tx_at_ms (if given) and return the Tx that starts now with the configured settings."""
        c = self.clock
        if tx_at_ms is not None:
            d = c.ticks_diff(tx_at_ms, c.ticks_ms())
            if d > 0:
                c.sleep_ms(d)
        cfg = self.cfg
        if cfg["coding_rate"] != 5 or cfg["preamble_len"] != 8:
            raise ValueError("the simulated air models CR 4/5 with an 8-symbol preamble only")
        return Tx(self.name, self._now_us(), cfg["freq_khz"], cfg["sf"], _bw_khz(cfg["bw"]),
                  bool(cfg["invert_iq_tx"]), packet, cfg["output_power"], bool(cfg["crc_en"]))

    def send(self, packet, tx_at_ms=None):
        """Transmit now (or at tx_at_ms); returns ticks_ms at the end of transmission, like lora-sync."""
        c = self.clock
        tx = self._transmission(packet, tx_at_ms)
        self._power("tx", "%s:%s" % (self.pa, self.cfg["output_power"]))
        c.advance_us(tx.end_us - tx.start_us)
        self._power("standby")
        self.sent += 1
        self.air.radiate(tx)
        return c.ticks_ms()

    def sleep(self):
        """The chip's sleep mode (lora's Modem.sleep); the next configure/send/recv wakes it."""
        self._power("sleep")

    def recv(self, timeout_ms=None, rx_length=0xFF, rx_packet=None):
        """Listen from now for timeout_ms (None: 10 min); returns an RxPacket at the end of a frame whose
        preamble started in the window, else None at the end of the window."""
        c = self.clock
        t0 = c.us
        t1 = t0 + (600000 if timeout_ms is None else timeout_ms) * 1000
        cfg = self.cfg
        tx = self.air.take(t0, t1, cfg["freq_khz"], cfg["sf"], _bw_khz(cfg["bw"]), bool(cfg["invert_iq_rx"]))
        self._power("rx", self.reg)
        if tx is None:
            c.sleep_us(t1 - t0)
            self._power("standby")
            return None
        c.sleep_us(tx.end_us - t0)
        self._power("standby")
        data = tx.data[:rx_length]
        if rx_packet is not None:
            rx_packet[:] = data
            rx_packet.ticks_ms = c.ticks_ms()
            rx_packet.snr = self.snr * 4
            rx_packet.rssi = self.rssi
            rx_packet.valid_crc = True
            return rx_packet
        return RxPacket(data, c.ticks_ms(), self.snr * 4, self.rssi, True)
