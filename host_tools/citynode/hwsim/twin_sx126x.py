# SX1262 command-level twin (Semtech SX1261/2 datasheet rev 2.1, "DS" below) on the machine double's SPI bus and
# pins: the commands micropython-lib's lora-sx126x driver sends, the status byte, BUSY, DIO1 and the IRQ
# register, the TCXO on DIO3 (the oscillator does not start without it), calibration, the HP PA's power at the
# antenna, sync word and IQ polarity. What the chip radiates goes on the simulated air with its time on air
# from its own parameters; downlinks whose preamble starts in an RX window land in its buffer.
# MicroPython-compatible (runs in the unix port's node too).
from citynode.hwsim import machine as hw
from citynode.hwsim.airframe import Tx, on_air

# chip modes in the status byte, bits 6:4 (DS 13.5.1 Table 13-76)
STBY_RC, STBY_XOSC, FS, RX, TX = 2, 3, 4, 5, 6
_SLEEP = 0  # not readable: the chip does not answer while asleep
_STATES = {_SLEEP: "sleep", STBY_RC: "standby", STBY_XOSC: "standby", FS: "fs", RX: "rx", TX: "tx"}
# command status, bits 3:1
_CMD_OK, _CMD_DATA, _CMD_TIMEOUT, _CMD_ERROR, _CMD_FAIL, _CMD_TX_DONE = 1, 2, 3, 4, 5, 6

# IRQ bits (DS 13.3.1 Table 13-29)
TX_DONE = 0x001
RX_DONE = 0x002
HEADER_VALID = 0x010
CRC_ERR = 0x040
TIMEOUT = 0x200

XOSC_START_ERR = 0x20  # OpError bit 5 (DS 13.6.1 Table 13-85)
PLL_CALIB_ERR = 0x10

# registers the driver reads or writes, with their reset values (DS 12.1 Table 12-1, 15.x workarounds)
_REG_RESET = {0x0736: 0x0D, 0x0740: 0x14, 0x0741: 0x24, 0x0889: 0x04, 0x08AC: 0x94, 0x08D8: 0xC8, 0x0902: 0x00,
              0x0944: 0x00}
LORAWAN_SYNC = 0x3444  # the public LoRaWAN sync word in the SX126x two-byte form (DS 6.1.1.1: 0x3444 public)
_BW_HZ = {0x00: 7810, 0x08: 10420, 0x01: 15630, 0x09: 20830, 0x02: 31250, 0x0A: 41670, 0x03: 62500, 0x04: 125000,
          0x05: 250000, 0x06: 500000}  # SetModulationParams BW (DS 13.4.5.2 Table 13-47)
# HP PA optimal settings (DS 13.1.14.1 Table 13-21): (paDutyCycle, hpMax) -> dBm with +22 in SetTxParams
_PA_OPTIMAL = {(0x04, 0x07): 22, (0x03, 0x05): 20, (0x02, 0x03): 17, (0x02, 0x02): 14}
_TCXO_MV = (1600, 1700, 1800, 2200, 2400, 2700, 3000, 3300)  # SetDIO3AsTcxoCtrl tcxoVoltage (DS 13.3.6 Table 13-35)
_CALIBRATE_US = 3500  # DS 13.1.12: all blocks, 3.5 ms
_SHORT_BUSY_US = 50  # image calibration and wake-up (the DS gives no figure; kept short, see DS 8.3.1)
# CalibrateImage band at power-on (DS 9.2.1: 902-928 MHz by default), as its two argument bytes
_POR_IMAGE = (0xE1, 0xE9)


class SX1262Twin:
    def __init__(self, clock, air, sck, cs, busy, dio1=None, reset=None, tcxo_mv=None, name="node", snr_db=7,
                 rssi_dbm=-95):
        self.clock = clock
        self.air = air
        self.tcxo_mv = tcxo_mv  # the board's TCXO supply, if its crystal is a TCXO powered from DIO3
        self.name = name
        self.snr_db = snr_db
        self.rssi_dbm = rssi_dbm
        self.buf = bytearray(256)
        self.powered = True  # its supply rail: off, the chip answers nothing
        self._was_off = False
        self.in_reset = False
        self.last_tx = None
        self.unheard = 0  # transmissions with a sync word no LoRaWAN gateway listens for
        self.rx_iq_workaround_off = 0  # receptions with register 0x0736 bit 2 not as DS 15.4 asks
        self._sel = False
        self._cmd = bytearray()
        self._gen = 0
        self._warm = True
        self._woke = False
        self._busy = hw.wire(busy)
        self._busy.drive(0)
        self._dio1 = hw.wire(dio1) if dio1 is not None else None
        if self._dio1 is not None:
            self._dio1.drive(0)
        hw.attach_spi(sck, self)
        hw.wire(cs).watch(self._cs)
        if reset is not None:
            hw.wire(reset).watch(self._reset_pin)
        self._por()

    # --- power, reset, sleep ---------------------------------------------------------------------------------
    def _por(self, warm=False):
        """Power-on (or a cold wake): STDBY_RC, defaults (DS 9.1, 13.x reset values)."""
        self.mode = STBY_RC
        self.cmd_status = _CMD_OK
        self.errors = 0
        self.irq = 0
        self._gen += 1
        if warm:
            return
        self.regs = dict(_REG_RESET)
        self.irq_mask = 0
        self.dio1_mask = 0
        self.tcxo_enabled_mv = None
        self.calibrated = 0
        self.image_cal_mhz = (_POR_IMAGE[0] * 4, _POR_IMAGE[1] * 4)
        self.packet_type = 0
        self.freq_khz = 0
        self.sf, self.bw_hz, self.cr, self.ldro = 7, 125000, 1, 0
        self.preamble, self.implicit, self.payload_len, self.crc, self.invert_iq = 8, 0, 0xFF, 1, 0
        self.tx_base, self.rx_base = 0, 0
        self.pa = (0x04, 0x07, 0x00, 0x01)
        self.tx_power = 14
        self.rx_len, self.rx_ptr = 0, 0
        self._dio_update()

    def _reset_pin(self, level):
        if not level:
            self.in_reset = True
        elif self.in_reset:
            self.in_reset = False
            self._por()
            self._busy_for(_SHORT_BUSY_US)

    def _busy_for(self, us):
        self._busy.drive(1)
        gen = self._gen

        def low():
            if self._gen == gen:
                self._busy.drive(0)
        self.clock.call_at_us(self.clock.monotonic_us() + us, low)

    def state(self):
        if not self.powered or self.in_reset:
            return "off"
        return _STATES[self.mode]

    # --- SPI (DS 8.3: NSS low, opcode, arguments; status and data clocked out on MISO) ------------------------
    def _cs(self, level):
        if not level:  # falling NSS: starts a command, and wakes the chip from sleep (DS 9.3)
            self._sel = True
            self._cmd = bytearray()
            if self.powered and not self.in_reset and self.mode == _SLEEP:
                self._por(warm=self._warm)
                self._busy_for(_SHORT_BUSY_US)
                self._woke = True
            return
        if not self._sel:
            return
        self._sel = False
        if self._woke and not self._cmd:
            self._woke = False
            return  # the wake-up pulse only
        self._woke = False
        if self._cmd and self.powered and not self.in_reset:
            self._execute(bytes(self._cmd))

    def _status(self):
        return (self.mode << 4) | (self.cmd_status << 1)

    def transfer(self, data):
        out = bytearray(len(data))
        if not self.powered:
            self._was_off = True
            return bytes(out)
        if self._was_off:
            self._was_off = False
            self._por()
        if self.in_reset or not self._sel or self.mode == _SLEEP:
            return bytes(out)
        for i in range(len(data)):
            pos = len(self._cmd)
            self._cmd.append(data[i])
            out[i] = self._miso(pos)
        return bytes(out)

    def _miso(self, pos):
        """The byte clocked out at position `pos` of the command (DS 13.x tables: RFU/status first)."""
        c = self._cmd
        op = c[0]
        if pos == 0:
            return self._status()
        if op in (0x12, 0x17, 0x13, 0x14, 0xC0):  # Get commands: status, then the answer
            if pos == 1:
                return self._status()
            if op == 0x12:
                return ((self.irq >> 8) & 0xFF, self.irq & 0xFF)[pos - 2] if pos < 4 else 0
            if op == 0x17:
                return ((self.errors >> 8) & 0xFF, self.errors & 0xFF)[pos - 2] if pos < 4 else 0
            if op == 0x13:
                return (self.rx_len, self.rx_ptr)[pos - 2] if pos < 4 else 0
            if op == 0x14:  # RssiPkt = -RSSI*2, SnrPkt = SNR*4 (signed), SignalRssiPkt (DS 13.5.3)
                if pos == 2:
                    return min(255, max(0, -self.rssi_dbm * 2))
                if pos == 3:
                    return (self.snr_db * 4) & 0xFF
                return min(255, max(0, -self.rssi_dbm * 2)) if pos == 4 else 0
            return 0
        if op == 0x1D and pos >= 4:  # ReadRegister: opcode, address (2), NOP, data...
            a = (c[1] << 8) | c[2]
            return self.regs.get(a + pos - 4, 0)
        if op == 0x1E and pos >= 3:  # ReadBuffer: opcode, offset, NOP, data...
            return self.buf[(c[1] + pos - 3) & 0xFF]
        return self._status()

    # --- commands ------------------------------------------------------------------------------------------
    def _xosc_ok(self):
        """The 32 MHz reference runs: a crystal, or a TCXO supplied from DIO3 at (at least) its voltage."""
        return self.tcxo_mv is None or (self.tcxo_enabled_mv is not None and self.tcxo_enabled_mv >= self.tcxo_mv)

    def _needs_xosc(self):
        if self._xosc_ok():
            return True
        self.errors |= XOSC_START_ERR  # DS 13.6.1: the crystal oscillator failed to start
        self.cmd_status = _CMD_FAIL
        self.mode = STBY_RC
        return False

    def _execute(self, c):
        op = c[0]
        a = c[1:]
        self.cmd_status = _CMD_OK
        if op == 0x80:  # SetStandby: 0 STDBY_RC, 1 STDBY_XOSC (DS 13.1.5)
            self._gen += 1
            self.mode = STBY_RC
            if a and a[0] == 1 and self._needs_xosc():
                self.mode = STBY_XOSC
        elif op == 0x84:  # SetSleep (DS 13.1.1): bit 2 warm start keeps the configuration
            self._gen += 1
            self._warm = bool(a[0] & 0x04) if a else False
            self.mode = _SLEEP
        elif op == 0x8A:
            self.packet_type = a[0]
        elif op == 0x86:  # SetRfFrequency: RF = RfFreq * 32 MHz / 2^25 (DS 13.4.1)
            rf = (a[0] << 24) | (a[1] << 16) | (a[2] << 8) | a[3]
            self.freq_khz = (rf * 32000 + (1 << 24)) >> 25
        elif op == 0x95:
            self.pa = tuple(a[:4])
        elif op == 0x8E:  # SetTxParams: power (signed), ramp time
            p = a[0]
            self.tx_power = p - 256 if p > 127 else p
        elif op == 0x8B:  # SetModulationParams (LoRa): SF, BW, CR, LDRO
            self.sf, self.bw_hz, self.cr, self.ldro = a[0], _BW_HZ.get(a[1], 0), a[2], a[3]
        elif op == 0x8C:  # SetPacketParams (LoRa): preamble (2), header type, payload length, CRC, InvertIQ
            self.preamble = (a[0] << 8) | a[1]
            self.implicit, self.payload_len, self.crc, self.invert_iq = a[2], a[3], a[4], a[5]
        elif op == 0x8F:
            self.tx_base, self.rx_base = a[0], a[1]
        elif op == 0x0E:  # WriteBuffer
            for i in range(1, len(a)):
                self.buf[(a[0] + i - 1) & 0xFF] = a[i]
        elif op == 0x0D:  # WriteRegister: address (2), data...
            addr = (a[0] << 8) | a[1]
            for i in range(2, len(a)):
                self.regs[addr + i - 2] = a[i]
        elif op == 0x08:  # SetDioIrqParams: IrqMask, DIO1Mask, DIO2Mask, DIO3Mask
            self.irq_mask = (a[0] << 8) | a[1]
            self.dio1_mask = (a[2] << 8) | a[3]
            self._dio_update()
        elif op == 0x02:  # ClearIrqStatus
            self.irq &= ~((a[0] << 8) | a[1]) & 0xFFFF
            self._dio_update()
        elif op == 0x07:  # ClearDeviceErrors
            self.errors = 0
        elif op == 0x97:  # SetDIO3AsTcxoCtrl: voltage, start timeout (DS 13.3.6)
            self.tcxo_enabled_mv = _TCXO_MV[a[0] & 7]
            if self.tcxo_mv is not None:
                self.errors |= XOSC_START_ERR  # DS 13.3.6: flagged until the TCXO has started
        elif op == 0x9D:
            self.dio2_rf_switch = bool(a[0])
        elif op == 0x89:  # Calibrate (DS 13.1.12): RC64k, RC13M, PLL, ADC..., image; PLL needs the XOSC
            if self._needs_xosc():
                self.calibrated = a[0]
            else:
                self.errors |= PLL_CALIB_ERR
            self._busy_for(_CALIBRATE_US)
        elif op == 0x98:  # CalibrateImage (DS 13.1.13): freq1, freq2 in 4 MHz steps
            if self._needs_xosc():
                self.image_cal_mhz = (a[0] * 4, a[1] * 4)
            self._busy_for(_SHORT_BUSY_US)
        elif op == 0x83:  # SetTx
            if self._needs_xosc():
                self._start_tx()
        elif op == 0x82:  # SetRx: timeout in 15.625 us steps; 0 single without timeout, 0xFFFFFF continuous
            if self._needs_xosc():
                self._start_rx((a[0] << 16) | (a[1] << 8) | a[2])
        elif op in (0x12, 0x17, 0x13, 0x14, 0xC0, 0x1D, 0x1E):
            pass  # answered on MISO while clocked
        else:
            self.cmd_status = _CMD_ERROR  # an opcode this twin does not know: a processing error (DS 13.5.1)

    def _flag(self, bits):
        self.irq |= bits & self.irq_mask
        self._dio_update()

    def _dio_update(self):
        if self._dio1 is not None:
            lv = 1 if self.irq & self.dio1_mask else 0
            if self._dio1.level != lv:
                self._dio1.drive(lv)

    # --- what the parameters say ----------------------------------------------------------------------------
    def time_on_air_us(self, n):
        """DS 6.1.4: Npre + 4.25 (+2 at SF5/6) symbols plus 8 + ceil(max(8PL + 16CRC - 4SF + 8 + 20 (explicit
        header; SF5/6: no +8), 0) / (4 SF')) (CR + 4), SF' = SF - 2 with low data rate optimisation."""
        sf = self.sf
        bits = 8 * n + 16 * (1 if self.crc else 0) - 4 * sf + (0 if self.implicit else 20) + (0 if sf < 7 else 8)
        den = 4 * (sf - 2 * (1 if self.ldro else 0))
        payload = 8 + (max(bits, 0) + den - 1) // den * (self.cr + 4)
        sym4 = 4 * self.preamble + 17 + (8 if sf < 7 else 0) + 4 * payload
        return sym4 * (1 << sf) * 1000000 // (4 * self.bw_hz)

    def power_dbm(self):
        """At the antenna (DS 13.1.14 SetPaConfig, 13.4.4 SetTxParams): the HP PA (deviceSel 0) gives the
        SetTxParams power, less what a smaller paDutyCycle/hpMax takes off the +22 dBm maximum."""
        duty, hp_max, device_sel = self.pa[0], self.pa[1], self.pa[2]
        if device_sel != 0:
            return None  # the SX1262 has only the high-power PA
        top = _PA_OPTIMAL.get((duty, hp_max), 22)
        p = self.tx_power if self.tx_power < 22 else 22
        p = p - (22 - top)
        return p if p > -9 else -9

    def _syncword(self):
        return (self.regs.get(0x0740, 0) << 8) | self.regs.get(0x0741, 0)

    # --- transmit, receive -----------------------------------------------------------------------------------
    def _start_tx(self):
        self._gen += 1
        self.mode = TX
        n = self.payload_len
        data = bytes(self.buf[(self.tx_base + i) & 0xFF] for i in range(n))
        now = self.clock.monotonic_us()
        tx = Tx(self.name, now, self.freq_khz, self.sf, self.bw_hz // 1000, bool(self.invert_iq), data,
                self.power_dbm(), bool(self.crc), now + self.time_on_air_us(n))
        self.last_tx = tx
        heard = self._syncword() == LORAWAN_SYNC
        self.unheard += 0 if heard else 1
        gen = self._gen

        def done():
            if self._gen == gen:
                self.mode = STBY_RC  # DS 13.1.4: after TxDone the chip falls back to STDBY_RC
                self.cmd_status = _CMD_TX_DONE
                self._flag(TX_DONE)

        on_air(self.clock, self.air, tx, heard, done)

    def _start_rx(self, timeout):
        self._gen += 1
        self.mode = RX
        now = self.clock.monotonic_us()
        continuous = timeout == 0xFFFFFF
        t1 = now + (3600 * 1000000 if timeout in (0, 0xFFFFFF) else timeout * 15625 // 1000)
        tx = None
        if self._syncword() == LORAWAN_SYNC:
            tx = self.air.take(now, t1, self.freq_khz, self.sf, self.bw_hz // 1000, bool(self.invert_iq))
        gen = self._gen
        if tx is None:
            if timeout not in (0, 0xFFFFFF):
                def expired():
                    if self._gen == gen:
                        self.mode = STBY_RC
                        self.cmd_status = _CMD_TIMEOUT
                        self._flag(TIMEOUT)
                self.clock.call_at_us(t1, expired)
            return
        if bool(self.regs.get(0x0736, 0) & 0x04) == bool(self.invert_iq):
            # DS 15.4 asks for bit 2 of 0x0736 cleared with inverted IQ (set with normal IQ): otherwise some
            # packets may be lost. Counted, not enforced: the DS gives no loss rate to model.
            self.rx_iq_workaround_off += 1

        def received():
            if self._gen != gen:
                return
            for i in range(len(tx.data)):
                self.buf[(self.rx_base + i) & 0xFF] = tx.data[i]
            self.rx_len, self.rx_ptr = len(tx.data), self.rx_base
            if not continuous:
                self.mode = STBY_RC
            self.cmd_status = _CMD_DATA
            self._flag(RX_DONE | HEADER_VALID)

        self.clock.call_at_us(tx.end_us if tx.end_us > now else now, received)
