# SX1276 register-level twin (Semtech SX1276/77/78/79 datasheet rev 7, "DS" below) on the machine double's SPI
# bus and pins: the registers micropython-lib's lora-sx127x driver uses, LoRa modem modes, FIFO, IRQ flags and
# DIO mapping, PA selection and output power, image calibration, sync word and IQ polarity. What the chip
# radiates goes on the simulated air, with its time on air computed from its own registers; downlinks whose
# preamble starts in an RX window land in the FIFO. MicroPython-compatible (runs in the unix port's node too).
from citynode.hwsim import machine as hw
from citynode.hwsim.airframe import Tx, on_air

# DS 4.4 register map (LoRa page) and DS 4.2 (FSK page, for RegImageCal only)
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
_PKT_SNR = 0x19
_PKT_RSSI = 0x1A
_MC1 = 0x1D
_MC2 = 0x1E
_SYMB_TIMEOUT_LSB = 0x1F
_PREAMBLE_MSB = 0x20
_PAYLOAD_LEN = 0x22
_MC3 = 0x26
_INVERT_IQ = 0x33
_SYNC_WORD = 0x39
_INVERT_IQ2 = 0x3B  # LoRa page; in the FSK page 0x3B is RegImageCal
_DIO_MAP1 = 0x40
_VERSION = 0x42

# RegOpMode modes (DS 4.1.6 / 4.4)
SLEEP, STANDBY, FSTX, TX, FSRX, RX_CONT, RX_SINGLE, CAD = 0, 1, 2, 3, 4, 5, 6, 7
_STATES = ("sleep", "standby", "fs", "tx", "fs", "rx", "rx", "cad")

# RegIrqFlags bits (DS 4.4, RegIrqFlags)
RX_TIMEOUT = 0x80
RX_DONE = 0x40
CRC_ERROR = 0x20
VALID_HEADER = 0x10
TX_DONE = 0x08

# reset values of the LoRa page (DS 4.4 "Registers Summary", column LoRa reset); 0x33 reads 0x27 once LoRa is
# on (as micropython-lib's driver documents from Semtech's own drivers)
_LORA_RESET = {_PA_CONFIG: 0x4F, 0x0A: 0x09, 0x0B: 0x2B, 0x0C: 0x20, _TX_BASE: 0x80, _MC1: 0x72, _MC2: 0x70,
               _SYMB_TIMEOUT_LSB: 0x64, 0x21: 0x08, _PAYLOAD_LEN: 0x01, 0x23: 0xFF, 0x31: 0xC3, _INVERT_IQ: 0x27,
               0x37: 0x0A, _SYNC_WORD: 0x12, _INVERT_IQ2: 0x1D, _VERSION: 0x12, _PA_DAC: 0x84}
_IMAGE_CAL_RESET = 0x82  # RegImageCal: AutoImageCalOn, TempThreshold 10 degC (DS 4.2, 0x3B FSK page)
_IMAGE_CAL_US = 10000  # DS 2.1.3.8: the calibration takes about 10 ms
_POR_IMAGE_KHZ = 434000  # DS 2.1.3.8: done automatically at power-on, for the 434 MHz default frequency
_BW_HZ = (7800, 10400, 15600, 20800, 31250, 41700, 62500, 125000, 250000, 500000)  # RegModemConfig1 Bw
LORAWAN_SYNC = 0x34  # public LoRaWAN networks


class SX1276Twin:
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
        self.powered = True  # its supply rail (a PMIC can switch it): off, the chip answers nothing
        self._was_off = False
        self.in_reset = False
        self.image_cal_khz = _POR_IMAGE_KHZ
        self.last_tx = None
        self.unheard = 0  # transmissions with a sync word no LoRaWAN gateway listens for
        self._gen = 0  # bumped at every mode change: a scheduled event of an earlier mode does nothing
        self._cal_until = 0
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

    # --- power, reset ------------------------------------------------------------------------------------
    def _por(self):
        """Power-on reset (DS 7.2): registers to their reset values, FSK mode, standby, FIFO cleared."""
        r = self.reg
        for i in range(len(r)):
            r[i] = 0
        for k in _LORA_RESET:
            r[k] = _LORA_RESET[k]
        r[_OPMODE] = 0x09  # FSK/OOK, LowFrequencyModeOn, standby
        r[_FRF], r[_FRF + 1], r[_FRF + 2] = 0x6C, 0x80, 0x00  # 434 MHz
        f = self.fsk
        for i in range(len(f)):
            f[i] = 0
        f[_INVERT_IQ2] = _IMAGE_CAL_RESET
        for i in range(256):
            self.fifo[i] = 0
        self.image_cal_khz = _POR_IMAGE_KHZ
        self._gen += 1
        self._dio_update()

    def _reset_pin(self, level):
        """NRESET (DS 7.2.2): low holds the chip in reset; the rising edge starts it from reset values."""
        if not level:
            self.in_reset = True
        elif self.in_reset:
            self.in_reset = False
            self._por()

    # --- SPI (DS 4.3: address byte, bit 7 = write, then data with the address incremented, except RegFifo) ---
    def _cs(self, level):
        self._sel = not level
        self._addr = -1

    def transfer(self, data):
        out = bytearray(len(data))
        if not self.powered:
            self._was_off = True
            return bytes(out)
        if self._was_off:  # the rail came back: a power-on reset
            self._was_off = False
            self._por()
        if self.in_reset or not self._sel:
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
        if a == _FIFO:
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
            r[_IRQ_FLAGS] &= ~v & 0xFF  # DS 4.4: a flag is cleared by writing 1 to it
            self._dio_update()
        elif a in (_VERSION, _RX_NB, _RX_CURRENT, _PKT_SNR, _PKT_RSSI):
            pass  # read-only
        elif not self._lora() and 0x0D <= a <= 0x3F:
            if a == _INVERT_IQ2 and v & 0x40:  # ImageCalStart (DS 2.1.3.8), in FSK standby
                if r[_OPMODE] & 7 == STANDBY:
                    self.image_cal_khz = self.freq_khz()
                    self._cal_until = self.clock.monotonic_us() + _IMAGE_CAL_US
                v &= ~0x40
            self.fsk[a] = v
        else:
            r[a] = v
            if a == _DIO_MAP1:
                self._dio_update()

    # --- modes (DS 4.1.6) -----------------------------------------------------------------------------------
    def _opmode(self, v):
        r = self.reg
        old = r[_OPMODE]
        if (v ^ old) & 0x80 and old & 7 != SLEEP and v & 7 != SLEEP:
            v = (v & 0x7F) | (old & 0x80)  # LongRangeMode changes only in (or into) Sleep mode (DS 4.4)
        r[_OPMODE] = v
        mode = v & 7
        self._gen += 1
        if mode == SLEEP and v & 0x80:
            for i in range(256):  # the FIFO is cleared in Sleep mode (DS 4.1.2.3)
                self.fifo[i] = 0
        if not v & 0x80:
            return  # FSK/OOK: only standby and sleep are used (image calibration)
        if mode == TX:
            self._start_tx()
        elif mode in (RX_SINGLE, RX_CONT):
            self._start_rx(mode == RX_CONT)

    def state(self):
        """What the chip is doing now: sleep, standby, fs, tx, rx or cad (for power bookkeeping)."""
        if not self.powered or self.in_reset:
            return "off"
        return _STATES[self.reg[_OPMODE] & 7]

    def _to_standby(self):
        self.reg[_OPMODE] = (self.reg[_OPMODE] & 0xF8) | STANDBY
        self._gen += 1

    def _flag(self, bits):
        self.reg[_IRQ_FLAGS] |= bits & ~self.reg[_IRQ_MASK] & 0xFF
        self._dio_update()

    def _dio_update(self):
        """DS 4.1.6 Table 18 (DIO mapping, LoRa): DIO0 00 RxDone, 01 TxDone, 10 CadDone; DIO1 00 RxTimeout."""
        f = self.reg[_IRQ_FLAGS]
        m = self.reg[_DIO_MAP1]
        d0 = (RX_DONE, TX_DONE, 0x04, 0)[m >> 6]
        d1 = (RX_TIMEOUT, 0x02, 0x01, 0)[(m >> 4) & 3]
        for w, bits in zip(self._dio, (d0, d1)):
            if w is not None:
                lv = 1 if f & bits else 0
                if w.level != lv:
                    w.drive(lv)

    # --- what the registers say ------------------------------------------------------------------------------
    def freq_khz(self):
        r = self.reg
        frf = (r[_FRF] << 16) | (r[_FRF + 1] << 8) | r[_FRF + 2]
        return (frf * 15625 + 128000) // 256000  # DS 4.4 RegFrf: Frf * 32 MHz / 2^19

    def sf(self):
        return self.reg[_MC2] >> 4

    def bw_hz(self):
        return _BW_HZ[self.reg[_MC1] >> 4]

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
        sym4 = 4 * pre + 17 + 4 * payload  # symbols x 4
        return sym4 * (1 << sf) * 1000000 // (4 * self.bw_hz())

    def power_dbm(self):
        """At the antenna (DS 3.4.2 / 5.4.3 RegPaConfig, RegPaDac): PA_BOOST Pout = 17 - (15 - OutputPower), +3 dB
        with PaDac 0x87; RFO Pout = 10.8 + 0.6 MaxPower - (15 - OutputPower). None if the selected PA output is
        not the pin the board wires to the antenna."""
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

    # --- transmit ---------------------------------------------------------------------------------------------
    def _start_tx(self):
        r = self.reg
        n = r[_PAYLOAD_LEN]
        base = r[_TX_BASE]
        data = bytes(self.fifo[(base + i) & 0xFF] for i in range(n))
        now = self.clock.monotonic_us()
        tx = Tx(self.name, now, self.freq_khz(), self.sf(), self.bw_hz() // 1000, not r[_INVERT_IQ] & 0x01,
                data, self.power_dbm(), bool(r[_MC2] & 0x04), now + self.time_on_air_us(n))
        self.last_tx = tx
        heard = r[_SYNC_WORD] == LORAWAN_SYNC
        self.unheard += 0 if heard else 1
        gen = self._gen

        def done():
            if self._gen == gen:
                self._to_standby()
                self._flag(TX_DONE)

        on_air(self.clock, self.air, tx, heard, done)

    # --- receive ----------------------------------------------------------------------------------------------
    def _start_rx(self, continuous):
        r = self.reg
        now = self.clock.monotonic_us()
        tsym = (1 << self.sf()) * 1000000 // self.bw_hz()
        if continuous:
            t1 = now + 3600 * 1000000
        else:  # DS 4.1.6.3: RxTimeout after SymbTimeout symbols without a preamble
            t1 = now + (((r[_MC2] & 3) << 8) | r[_SYMB_TIMEOUT_LSB]) * tsym
        inv = self._iq_rx_inverted()
        tx = None
        if inv is not None and r[_SYNC_WORD] == LORAWAN_SYNC:
            tx = self.air.take(now, t1, self.freq_khz(), self.sf(), self.bw_hz() // 1000, inv)
        gen = self._gen
        if tx is None:
            if not continuous:
                def timeout():
                    if self._gen == gen:
                        self._to_standby()
                        self._flag(RX_TIMEOUT)
                self.clock.call_at_us(t1, timeout)
            return

        def received():
            if self._gen != gen:
                return
            base = r[_RX_BASE]
            for i in range(len(tx.data)):
                self.fifo[(base + i) & 0xFF] = tx.data[i]
            r[_RX_NB] = len(tx.data)
            r[_RX_CURRENT] = base
            snr = self.snr_db * 4
            r[_PKT_SNR] = snr & 0xFF
            v = self.rssi_dbm + 157  # DS 5.5.5: RSSI = -157 + PacketRssi on the HF port
            r[_PKT_RSSI] = 0 if v < 0 else (255 if v > 255 else v)
            if not continuous:
                self._to_standby()
            self._flag(RX_DONE | VALID_HEADER)

        self.clock.call_at_us(tx.end_us if tx.end_us > now else now, received)
