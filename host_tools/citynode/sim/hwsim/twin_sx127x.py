# SX1276 register-level twin on the machine double's SPI bus and pins, for micropython-lib's unmodified lora-sx127x.
# Modelled from the Semtech SX1276/77/78/79 datasheet rev 7 ("DS" below): the LoRa register page (DS 4.4 / 6.4)
# and RegImageCal of the FSK page (DS 6.2), SPI access (DS 4.3), LoRa modes (DS 4.1.6), FIFO (DS 4.1.2.3), IRQ
# flags and DIO mapping (DS 4.1.6 Table 18), PA selection and output power (DS 3.4.2-3.4.3), image calibration
# (DS 2.1.3.8), reset and power-on (DS 7.2), time on air (DS 4.1.1.6-7), RSSI/SNR (DS 5.5.5), sync word and IQ.
# What the chip radiates goes on the simulated air with its time on air from its own registers; downlinks whose
# preamble starts in an RX window land in the FIFO. MicroPython-compatible (runs in the unix port's node too).
#
# Left out: FSK/OOK packet engine (only its Sleep/Standby and RegImageCal are modelled), FSTX/FSRX (accepted,
# nothing happens: synthesizer states), CAD (NotImplementedError), FHSS, implicit-header reception (the air's
# frames are explicit-header LoRaWAN: an implicit-header receiver hears nothing, an implicit-header
# transmission reaches no gateway), RegRssiValue/RegModemStat dynamics, OCP, LNA gain, test registers.
from citynode.sim.hwsim import machine as hw
from citynode.sim.hwsim.airframe import Tx, on_air
from citynode.sim.hwsim.power import Powered

# DS 6.4 register map (LoRa page) and DS 6.2 (FSK page, for RegImageCal only)
_FIFO = 0x00
_OPMODE = 0x01
_FRF = 0x06
_PA_CONFIG = 0x09
_PA_DAC = 0x4D
_ADDR_PTR = 0x0D
_TX_BASE = 0x0E
_RX_BASE = 0x0F
_RX_CURRENT = 0x10
_IRQ_MASK = 0x11
_IRQ_FLAGS = 0x12
_RX_NB = 0x13
_HEADER_CNT = 0x14  # RegRxHeaderCntValueMsb/Lsb 0x14-0x15, RegRxPacketCntValueMsb/Lsb 0x16-0x17
_PACKET_CNT = 0x16
_PKT_SNR = 0x19
_PKT_RSSI = 0x1A
_MC1 = 0x1D
_MC2 = 0x1E
_SYMB_TIMEOUT_LSB = 0x1F
_PREAMBLE_MSB = 0x20
_PAYLOAD_LEN = 0x22
_RX_BYTE_ADDR = 0x25  # RegFifoRxByteAddr: address of the last byte the receiver wrote
_MC3 = 0x26
_INVERT_IQ = 0x33
_SYNC_WORD = 0x39
_INVERT_IQ2 = 0x3B  # LoRa page; in the FSK page 0x3B is RegImageCal
_DIO_MAP1 = 0x40
_VERSION = 0x42
_READ_ONLY = (_RX_CURRENT, _RX_NB, 0x14, 0x15, 0x16, 0x17, 0x18, _PKT_SNR, _PKT_RSSI, 0x1B, 0x1C, _RX_BYTE_ADDR,
              _VERSION)

# RegOpMode Mode field (DS 6.4 RegOpMode, DS 4.1.6)
SLEEP, STANDBY, FSTX, TX, FSRX, RX_CONT, RX_SINGLE, CAD = 0, 1, 2, 3, 4, 5, 6, 7
_STATES = ("sleep", "standby", "fs", "tx", "fs", "rx", "rx", "cad")

# RegIrqFlags bits (DS 6.4 RegIrqFlags)
RX_TIMEOUT = 0x80
RX_DONE = 0x40
CRC_ERROR = 0x20
VALID_HEADER = 0x10
TX_DONE = 0x08

# Reset values (DS 6.4 / Table 41 "Registers Summary", LoRa column). RegInvertIQ reads 0x27 once LoRa mode is on,
# not the documented 0x26 (micropython-lib's driver notes this from Semtech's own drivers).
_LORA_RESET = {_PA_CONFIG: 0x4F, 0x0A: 0x09, 0x0B: 0x2B, 0x0C: 0x20, _TX_BASE: 0x80, 0x18: 0x10, _MC1: 0x72,
               _MC2: 0x70, _SYMB_TIMEOUT_LSB: 0x64, 0x21: 0x08, _PAYLOAD_LEN: 0x01, 0x23: 0xFF, 0x31: 0xC3,
               _INVERT_IQ: 0x27, 0x37: 0x0A, _SYNC_WORD: 0x12, _INVERT_IQ2: 0x1D, _VERSION: 0x12, _PA_DAC: 0x84}
_OPMODE_RESET = 0x09  # FSK/OOK, LowFrequencyModeOn, Standby (DS 6.2 RegOpMode)
_FRF_RESET = (0x6C, 0x80, 0x00)  # 434 MHz
_IMAGE_CAL_RESET = 0x82  # RegImageCal (FSK page 0x3B): AutoImageCalOn, TempThreshold 10 degC (DS 6.2)
_IMAGE_CAL_US = 10000  # DS 2.1.3.8: the calibration takes about 10 ms
_POR_IMAGE_KHZ = 434000  # DS 2.1.3.8: run automatically at power-on, at the 434 MHz default frequency
_POR_US = 10000  # DS 7.2.1: ready 10 ms after power-on
_RESET_US = 5000  # DS 7.2.2: after NRESET rises, wait 5 ms before using the chip
_BW_HZ = (7800, 10400, 15600, 20800, 31250, 41700, 62500, 125000, 250000, 500000)  # RegModemConfig1 Bw
LORAWAN_SYNC = 0x34  # public LoRaWAN networks


class SX1276Twin(Powered):
    def __init__(self, clock, air, sck, cs, reset=None, dio0=None, dio1=None, pa_pin="PA_BOOST", name="node",
                 snr_db=7, rssi_dbm=-95):
        self.clock = clock
        self.air = air
        self.pa_pin = pa_pin  # the PA output the board wires to the antenna: "PA_BOOST" or "RFO"
        self.name = name
        self.snr_db = snr_db
        self.rssi_dbm = rssi_dbm
        self.reg = bytearray(0x80)
        self.fsk = bytearray(0x80)  # the FSK page of 0x0D..0x3F (only RegImageCal matters here)
        self.fifo = bytearray(256)
        self._powered = True  # its supply rail (a PMIC can switch it): off, the chip answers nothing
        self.in_reset = False
        self.image_cal_khz = _POR_IMAGE_KHZ
        self.last_tx = None  # the last Tx it radiated (bounded: only the last one is kept)
        self.last_tx_power = None  # dBm at the antenna of that Tx (None: not on the antenna's PA pin)
        self.unheard = 0  # transmissions no LoRaWAN gateway can decode (sync word, implicit header)
        self._gen = 0  # bumped at every mode change: a scheduled event of an earlier mode does nothing
        self._ready_us = 0  # SPI is answered from then on (after power-on / NRESET)
        self._cal_until = 0
        self._rx_wr = 0  # where the receiver writes the next packet into the FIFO
        self._sel = False
        self._addr = -1
        self._write = False
        self._dio = (hw.wire(dio0) if dio0 is not None else None, hw.wire(dio1) if dio1 is not None else None)
        for w in self._dio:
            if w is not None:
                w.drive(0)
        hw.attach_spi(sck, self)
        hw.wire(cs).watch(self._cs)
        if reset is not None:
            hw.wire(reset).watch(self._reset_pin)
        self._por()

    # --- power, reset (DS 7.2) -----------------------------------------------------------------------------
    def _por(self):
        """Registers to their reset values, FSK/OOK Standby, FIFO cleared, image calibrated at 434 MHz."""
        r = self.reg
        for i in range(len(r)):
            r[i] = 0
        for k in _LORA_RESET:
            r[k] = _LORA_RESET[k]
        r[_OPMODE] = _OPMODE_RESET
        r[_FRF], r[_FRF + 1], r[_FRF + 2] = _FRF_RESET
        f = self.fsk
        for i in range(len(f)):
            f[i] = 0
        f[_INVERT_IQ2] = _IMAGE_CAL_RESET
        for i in range(256):
            self.fifo[i] = 0
        self.image_cal_khz = _POR_IMAGE_KHZ
        self._cal_until = 0
        self._gen += 1
        self._dio_update()
        self._report()

    @property
    def powered(self):
        return self._powered

    @powered.setter
    def powered(self, on):
        """The supply rail: off, every pending event is void, DIO lines low and SPI reads 0x00; back on, a
        power-on reset (DS 7.2.1, ready 10 ms later)."""
        on = bool(on)
        if on == self._powered:
            return
        self._powered = on
        self._gen += 1
        if on:
            self._por()
            self._ready_us = self.clock.monotonic_us() + _POR_US
        else:
            for w in self._dio:
                if w is not None and w.level:
                    w.drive(0)
        self._report()

    def _reset_pin(self, level):
        """NRESET (DS 7.2.2): low holds the chip in reset; on the rising edge it restarts from reset values and
        answers SPI 5 ms later."""
        if not level:
            if not self.in_reset:
                self.in_reset = True
                self._gen += 1
                self._report()
        elif self.in_reset:
            self.in_reset = False
            if self._powered:
                self._por()  # a manual reset restarts the start-up sequence (also one still running after power-on)
                self._ready_us = self.clock.monotonic_us() + _RESET_US

    def state(self):
        """What the chip is doing now: off, sleep, standby, fs, tx, rx or cad (for power bookkeeping)."""
        if not self._powered or self.in_reset:
            return "off"
        return _STATES[self.reg[_OPMODE] & 7]

    def pa_detail(self):
        """The PA pin RegPaConfig selects and its output power there (dBm), as "PA_BOOST:14" or "RFO:13.8": what
        the transmitter draws depends on both (DS 2.5.1 Table 6, IDDT), whichever pin the antenna is on."""
        pa = self.reg[_PA_CONFIG]
        out = pa & 0x0F
        if pa & 0x80:
            return "PA_BOOST:%d" % (17 - (15 - out) + (3 if self.reg[_PA_DAC] & 7 == 7 else 0))
        return "RFO:%g" % ((108 + 6 * ((pa >> 4) & 7) - 10 * (15 - out)) / 10)

    def _report(self):
        """Tell the meter (if any) the state the chip is in now (hwsim.power)."""
        if self.meter is not None:
            st = self.state()
            self._power(st, self.pa_detail() if st == "tx" else None)
        else:
            self.power_state = self.state()

    # --- SPI (DS 4.3: address byte, bit 7 = write, then data with the address incremented, except RegFifo) ---
    def _cs(self, level):
        self._sel = not level
        self._addr = -1

    def transfer(self, data):
        out = bytearray(len(data))
        if (not self._powered or self.in_reset or not self._sel
                or self.clock.monotonic_us() < self._ready_us):
            return bytes(out)
        for i in range(len(data)):
            b = data[i]
            if self._addr < 0:
                self._write = bool(b & 0x80)
                self._addr = b & 0x7F
                continue
            a = self._addr
            if self._write:
                self._set(a, b)
            else:
                out[i] = self._get(a)
            if a != _FIFO:
                self._addr = (a + 1) & 0x7F
        return bytes(out)

    def _lora(self):
        return bool(self.reg[_OPMODE] & 0x80)

    def _get(self, a):
        if a == _FIFO:  # DS 4.1.2.3: RegFifo reads the FIFO at RegFifoAddrPtr, which then increments
            p = self.reg[_ADDR_PTR]
            self.reg[_ADDR_PTR] = (p + 1) & 0xFF
            return self.fifo[p]
        if not self._lora() and 0x0D <= a <= 0x3F:
            v = self.fsk[a]
            if a == _INVERT_IQ2 and self.clock.monotonic_us() < self._cal_until:
                v |= 0x20  # ImageCalRunning
            return v
        return self.reg[a]

    def _set(self, a, v):
        r = self.reg
        if a == _FIFO:
            p = r[_ADDR_PTR]
            self.fifo[p] = v
            r[_ADDR_PTR] = (p + 1) & 0xFF
        elif a == _OPMODE:
            self._opmode(v)
        elif a == _IRQ_FLAGS:
            r[_IRQ_FLAGS] &= ~v & 0xFF  # DS 6.4 RegIrqFlags: a flag is cleared by writing 1 to it
            self._dio_update()
        elif a in _READ_ONLY:
            pass
        elif not self._lora() and 0x0D <= a <= 0x3F:
            if a == _INVERT_IQ2 and v & 0x40:  # ImageCalStart (DS 2.1.3.8): triggers it in Standby mode
                if r[_OPMODE] & 7 == STANDBY:
                    self.image_cal_khz = self.freq_khz()
                    self._cal_until = self.clock.monotonic_us() + _IMAGE_CAL_US
                v &= ~0x40
            self.fsk[a] = v & ~0x20  # ImageCalRunning is read-only
        else:
            r[a] = v
            if a == _DIO_MAP1:
                self._dio_update()

    # --- modes (DS 4.1.6) -----------------------------------------------------------------------------------
    def _opmode(self, v):
        r = self.reg
        old = r[_OPMODE]
        if (v ^ old) & 0x80 and old & 7 != SLEEP:
            v = (v & 0x7F) | (old & 0x80)  # LongRangeMode can be modified only in Sleep mode (DS 6.4 RegOpMode)
        r[_OPMODE] = v
        mode = v & 7
        self._gen += 1
        self._report()
        if mode == SLEEP and v & 0x80:
            for i in range(256):  # DS 4.1.2.3: the FIFO is cleared and not accessible in Sleep mode
                self.fifo[i] = 0
            for i in range(4):  # DS 6.4: header and packet counters are reset in Sleep mode
                r[_HEADER_CNT + i] = 0
        if not v & 0x80:
            return  # FSK/OOK: only Sleep and Standby are used (image calibration)
        if mode == TX:
            self._start_tx()
        elif mode in (RX_SINGLE, RX_CONT):
            self._start_rx(mode == RX_CONT)
        elif mode == CAD:
            raise NotImplementedError("SX1276 twin: CAD mode")

    def _to_standby(self):
        self.reg[_OPMODE] = (self.reg[_OPMODE] & 0xF8) | STANDBY
        self._gen += 1
        self._report()

    def _flag(self, bits):
        self.reg[_IRQ_FLAGS] |= bits & ~self.reg[_IRQ_MASK] & 0xFF  # DS 6.4 RegIrqFlagsMask: 1 masks the IRQ
        self._dio_update()

    def _dio_update(self):
        """DS 4.1.6 Table 18 (DIO mapping, LoRa): DIO0 00 RxDone, 01 TxDone, 10 CadDone; DIO1 00 RxTimeout,
        01 FhssChangeChannel, 10 CadDetected. A line is high while its mapped flag is set."""
        if not self._powered:
            return
        f = self.reg[_IRQ_FLAGS]
        m = self.reg[_DIO_MAP1]
        d0 = (RX_DONE, TX_DONE, 0x04, 0)[m >> 6]
        d1 = (RX_TIMEOUT, 0x02, 0x01, 0)[(m >> 4) & 3]
        for w, bits in ((self._dio[0], d0), (self._dio[1], d1)):
            if w is not None:
                lv = 1 if f & bits else 0
                if w.level != lv:
                    w.drive(lv)

    # --- what the registers say ------------------------------------------------------------------------------
    def freq_khz(self):
        """RegFrf as a carrier frequency, to the nearest kHz (DS 6.4 RegFrf: f = Frf * 32 MHz / 2^19, 61.035 Hz
        steps). It is read when TX/RX start (the chip takes Frf into account when entering FSTX/FSRX)."""
        r = self.reg
        frf = (r[_FRF] << 16) | (r[_FRF + 1] << 8) | r[_FRF + 2]
        return (frf * 15625 + 128000) // 256000

    def sf(self):
        return self.reg[_MC2] >> 4

    def bw_hz(self):
        return _BW_HZ[self.reg[_MC1] >> 4]

    def _tsym_x4_us(self, sym4):
        return sym4 * (1 << self.sf()) * 1000000 // (4 * self.bw_hz())  # DS 4.1.1.6: Tsym = 2^SF / BW

    def time_on_air_us(self, n):
        """DS 4.1.1.6-7: (Npreamble + 4.25) symbols plus 8 + max(ceil((8PL - 4SF + 28 + 16CRC - 20IH) /
        (4(SF - 2DE))) (CR + 4), 0) payload symbols, from the modem registers."""
        r = self.reg
        sf = self.sf()
        cr = (r[_MC1] >> 1) & 7
        ih = r[_MC1] & 1
        crc = (r[_MC2] >> 2) & 1
        de = (r[_MC3] >> 3) & 1
        pre = (r[_PREAMBLE_MSB] << 8) | r[_PREAMBLE_MSB + 1]
        num = 8 * n - 4 * sf + 28 + 16 * crc - 20 * ih
        den = 4 * (sf - 2 * de)
        payload = 8 + max((num + den - 1) // den, 0) * (cr + 4)
        return self._tsym_x4_us(4 * pre + 17 + 4 * payload)

    def power_dbm(self):
        """At the antenna (DS 3.4.2 / 6.4 RegPaConfig, DS 3.4.3 RegPaDac): PA_BOOST Pout = 17 - (15 -
        OutputPower), or 20 - (15 - OutputPower) with PaDac 0x87; RFO Pout = 10.8 + 0.6 MaxPower - (15 -
        OutputPower). None if the selected PA output is not the pin the board wires to the antenna."""
        pa = self.reg[_PA_CONFIG]
        out = pa & 0x0F
        boost = bool(pa & 0x80)
        if boost != (self.pa_pin == "PA_BOOST"):
            return None
        if boost:
            return 17 - (15 - out) + (3 if self.reg[_PA_DAC] & 7 == 7 else 0)
        p10 = 108 + 6 * ((pa >> 4) & 7) - 10 * (15 - out)
        return p10 // 10 if p10 % 10 == 0 else p10 / 10

    def _iq_rx_inverted(self):
        """RX polarity: RegInvertIQ bit 6 and RegInvertIQ2 (0x19 inverted, 0x1D normal) must agree; None if they
        do not (the chip then demodulates nothing)."""
        inv = bool(self.reg[_INVERT_IQ] & 0x40)
        iq2 = self.reg[_INVERT_IQ2]
        if iq2 not in (0x19, 0x1D) or (iq2 == 0x19) != inv:
            return None
        return inv

    # --- transmit (DS 4.1.6.1: TX sends RegPayloadLength bytes from FifoTxBaseAddr, TxDone, then Standby) -------
    def _start_tx(self):
        r = self.reg
        n = r[_PAYLOAD_LEN]
        base = r[_TX_BASE]
        data = bytes(self.fifo[(base + i) & 0xFF] for i in range(n))
        now = self.clock.monotonic_us()
        # RegInvertIQ bit 0 is set for *normal* TX polarity on the real chip (the DS documents it the other way)
        power = self.power_dbm()
        tx = Tx(self.name, now, self.freq_khz(), self.sf(), self.bw_hz() // 1000, not r[_INVERT_IQ] & 0x01,
                data, power, bool(r[_MC2] & 0x04), now + self.time_on_air_us(n))
        self.last_tx = tx
        self.last_tx_power = power
        heard = r[_SYNC_WORD] == LORAWAN_SYNC and not r[_MC1] & 1
        self.unheard += 0 if heard else 1
        gen = self._gen

        def done():
            if self._gen == gen:
                self._to_standby()
                self._flag(TX_DONE)

        on_air(self.clock, self.air, tx, heard, done)

    # --- receive (DS 4.1.6.2 continuous, 4.1.6.3 single) ---------------------------------------------------------
    def _take(self, t0, t1):
        """The air's first frame this receiver can demodulate whose preamble starts in [t0, t1], or None."""
        r = self.reg
        inv = self._iq_rx_inverted()
        if inv is None or r[_SYNC_WORD] != LORAWAN_SYNC or r[_MC1] & 1:
            return None
        return self.air.take(t0, t1, self.freq_khz(), self.sf(), self.bw_hz() // 1000, inv)

    def _start_rx(self, continuous):
        now = self.clock.monotonic_us()
        self._rx_wr = self.reg[_RX_BASE]  # each RX mode entry writes from FifoRxBaseAddr (DS 4.1.2.3)
        gen = self._gen
        if continuous:
            self._listen(now, gen)
            return
        t1 = now + self._tsym_x4_us(4 * (((self.reg[_MC2] & 3) << 8) | self.reg[_SYMB_TIMEOUT_LSB]))
        tx = self._take(now, t1)
        if tx is None:  # RxTimeout after SymbTimeout symbols without a preamble, then Standby
            def timeout():
                if self._gen == gen:
                    self._to_standby()
                    self._flag(RX_TIMEOUT)

            self.clock.call_at_us(t1, timeout)
        else:
            self._deliver(tx, gen, False)

    def _listen(self, t0, gen):
        """RX continuous: look for preambles that started since t0, again every preamble length (a preamble is
        still on the air when the next look comes), and keep receiving after each frame."""
        if self._gen != gen:
            return
        now = self.clock.monotonic_us()
        step = self._tsym_x4_us(4 * ((self.reg[_PREAMBLE_MSB] << 8) | self.reg[_PREAMBLE_MSB + 1]) + 17)
        tx = self._take(t0, now + step)
        if tx is not None:
            self._deliver(tx, gen, True)
        else:
            self.clock.call_at_us(now + step, lambda: self._listen(now, gen))

    def _deliver(self, tx, gen, continuous):
        now = self.clock.monotonic_us()

        def received():
            if self._gen != gen:
                return
            r = self.reg
            # DS 4.1.2.3 / 6.4: RegFifoRxCurrentAddr = start of the last packet, RegFifoRxByteAddr = its last
            # byte; in RX continuous the next packet follows it in the FIFO
            base = self._rx_wr
            n = len(tx.data)
            self._rx_wr = (base + n) & 0xFF
            for i in range(n):
                self.fifo[(base + i) & 0xFF] = tx.data[i]
            r[_RX_NB] = n
            r[_RX_CURRENT] = base
            r[_RX_BYTE_ADDR] = (base + n - 1) & 0xFF if n else base
            snr = self.snr_db
            r[_PKT_SNR] = (snr * 4) & 0xFF  # DS 6.4 RegPktSnrValue: SNR x 4, two's complement
            # DS 5.5.5: Packet Strength = -157 + PacketRssi on the HF port (-164 on the LF port, below 525 MHz),
            # + PacketSnr / 4 when SNR < 0
            v = self.rssi_dbm + (164 if self.freq_khz() < 525000 else 157) - (snr if snr < 0 else 0)
            r[_PKT_RSSI] = 0 if v < 0 else (255 if v > 255 else v)
            crc_error = getattr(tx, "crc_error", False)  # a test can mark a frame as arriving corrupted
            for a in (_HEADER_CNT, _PACKET_CNT) if not crc_error else (_HEADER_CNT,):
                c = ((r[a] << 8) | r[a + 1]) + 1
                r[a], r[a + 1] = (c >> 8) & 0xFF, c & 0xFF
            if not continuous:
                self._to_standby()
            self._flag(RX_DONE | VALID_HEADER | (CRC_ERROR if crc_error else 0))
            if continuous:
                self._listen(tx.end_us if tx.end_us > now else self.clock.monotonic_us(), self._gen)

        self.clock.call_at_us(tx.end_us if tx.end_us > now else now, received)
