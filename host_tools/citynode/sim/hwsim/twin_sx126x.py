# SX1262 command-level twin (Semtech SX1261/2 datasheet rev 2.1, "DS" below) for micropython-lib's lora-sx126x.
#
# On the machine double's SPI bus and pins: the commands the upstream driver sends, byte-exact (DS 13), the
# status byte (DS 13.5.1), BUSY (DS 8.3.1), DIO1 and the IRQ register (DS 13.3), the TCXO on DIO3 (the
# oscillator does not start without it, DS 13.3.6), calibration (DS 9.2.1, 13.1.12, 13.1.13), the HP PA's power
# at the antenna (DS 13.1.14, 13.4.4), sync word (DS 6.1.1.1) and IQ polarity (DS 13.4.6, 15.4). What the chip
# radiates goes on the simulated air with its time on air from its own parameters (DS 6.1.4); a downlink whose
# preamble starts in an RX window lands in its buffer. MicroPython-compatible (the unix port's node runs it too):
# one 256-byte buffer, a small register dict, no allocation per SPI byte.
from citynode.sim.hwsim import machine as hw
from citynode.sim.hwsim.airframe import Tx, on_air
from citynode.sim.hwsim.power import Powered

# chip modes, status bits 6:4 (DS 13.5.1 Table 13-76); sleep is not readable (the chip does not answer)
STBY_RC, STBY_XOSC, FS, RX, TX = 2, 3, 4, 5, 6
_SLEEP = 0
_STATES = {_SLEEP: "sleep", STBY_RC: "standby", STBY_XOSC: "standby", FS: "fs", RX: "rx", TX: "tx"}
# command status, status bits 3:1 (DS 13.5.1 Table 13-76); 0x1 is RFU, what an accepted command leaves
_CMD_OK, _CMD_DATA, _CMD_TIMEOUT, _CMD_ERROR, _CMD_FAIL, _CMD_TX_DONE = 1, 2, 3, 4, 5, 6

# IRQ bits (DS 13.3.1 Table 13-29)
TX_DONE = 0x001
RX_DONE = 0x002
PREAMBLE_DETECTED = 0x004
SYNC_WORD_VALID = 0x008
HEADER_VALID = 0x010
HEADER_ERR = 0x020
CRC_ERR = 0x040
CAD_DONE = 0x080
CAD_DETECTED = 0x100
TIMEOUT = 0x200

# OpError bits (DS 13.6.1 Table 13-85)
RC64K_CALIB_ERR = 0x01
RC13M_CALIB_ERR = 0x02
PLL_CALIB_ERR = 0x04
ADC_CALIB_ERR = 0x08
IMG_CALIB_ERR = 0x10
XOSC_START_ERR = 0x20
PLL_LOCK_ERR = 0x40
PA_RAMP_ERR = 0x100

# Calibrate calibParam blocks (DS 13.1.12 Table 13-18): bit 0 RC64k, 1 RC13M, 2 PLL, 3-5 ADC, 6 image; 7 RFU
_CAL_RC = 0x03  # the RC oscillators: they run without the 32 MHz reference
_CAL_ALL = 0x7F
_CAL_IMAGE = 0x40

# registers the driver reads or writes and their reset values: sync word 0x1424 (DS 12.1 Table 12-1, 6.1.1.1),
# IQ polarity set-up 0x0D (DS 15.4), Rx gain 0x94 power saving (DS 9.6 Table 9-3); TX clamp (DS 15.2), the BW500
# modulation bit (DS 15.1) and the RTC/event registers of DS 15.3: the DS gives only the bits to change, so the
# reset values of those four are assumptions (bit 2 of 0x0889 set = the non-500 kHz setting)
_REG_RESET = {0x0736: 0x0D, 0x0740: 0x14, 0x0741: 0x24, 0x0889: 0x04, 0x08AC: 0x94, 0x08D8: 0xC8, 0x0902: 0x00,
              0x0944: 0x00}
LORAWAN_SYNC = 0x3444  # the public LoRaWAN sync word in the SX126x two-byte form (DS 6.1.1.1: 0x3444 public)
_BW_HZ = {0x00: 7810, 0x08: 10420, 0x01: 15630, 0x09: 20830, 0x02: 31250, 0x0A: 41670, 0x03: 62500, 0x04: 125000,
          0x05: 250000, 0x06: 500000}  # SetModulationParams BW (DS 13.4.5.2 Table 13-47)
# HP PA optimal settings (DS 13.1.14.1 Table 13-21): (paDutyCycle, hpMax) -> dBm with +22 in SetTxParams
_PA_OPTIMAL = {(0x04, 0x07): 22, (0x03, 0x05): 20, (0x02, 0x03): 17, (0x02, 0x02): 14}
_TCXO_MV = (1600, 1700, 1800, 2200, 2400, 2700, 3000, 3300)  # SetDIO3AsTcxoCtrl tcxoVoltage (DS 13.3.6 Table 13-35)
# CalibrateImage band at power-on and in Calibrate's image block: 902-928 MHz (DS 9.2.1 Table 9-2: 0xE1, 0xE9)
_POR_IMAGE = (0xE1 * 4, 0xE9 * 4)

# BUSY times (DS 8.3.1: BUSY rises when NSS rises and falls when the chip can take the next command)
_BUSY_CMD_US = 10  # an ordinary command: the DS gives no figure (the driver's comment quotes "typ. < 105 us")
_BUSY_CALIBRATE_US = 3500  # DS 13.1.12: all blocks, 3.5 ms; also the power-on / cold start calibration (DS 9.1)
_BUSY_IMAGE_US = 500  # CalibrateImage: the DS gives no figure; one block of the 3.5 ms of Calibrate
_BUSY_WARM_WAKE_US = 340  # a warm start from sleep: the configuration is kept, no calibration


class SX1262Twin(Powered):
    # The driver polls BUSY every microsecond of virtual time, so each modelled microsecond costs a loop turn:
    # a long fleet run may set this False to leave the TCXO start-up delay off BUSY (the radio still needs it).
    TCXO_ON_BUSY: bool = True

    def __init__(self, clock, air, sck, cs, busy, dio1=None, reset=None, tcxo_mv=None, name="node", snr_db=7,
                 rssi_dbm=-95):
        self.clock = clock
        self.air = air
        self.tcxo_mv = tcxo_mv  # the board's TCXO supply, if its crystal is a TCXO powered from DIO3
        self.name = name
        self.snr_db = snr_db
        self.rssi_dbm = rssi_dbm
        self.buf = bytearray(256)  # the data buffer (DS 13.2): TX and RX share it
        self.in_reset = False
        self.last_tx = None
        self.unheard = 0  # transmissions with a sync word no LoRaWAN gateway listens for
        self.rx_iq_workaround_off = 0  # receptions with register 0x0736 bit 2 not as DS 15.4 asks
        self.dio2_rf_switch = False
        self._sel = False  # NSS low
        self._cmd = bytearray(12)  # opcode and arguments of the command being clocked in (no buffer data)
        self._n = 0  # bytes clocked in since NSS fell
        self._gen = 0  # radio operation generation: stale TxDone / RxDone / Timeout timers do nothing
        self._bgen = 0  # BUSY generation
        self._busy_us = 0
        self._warm = True
        self._woke = False
        self._busy = hw.wire(busy)
        self._dio1 = hw.wire(dio1) if dio1 is not None else None
        if self._dio1 is not None:
            self._dio1.drive(0)
        hw.attach_spi(sck, self)
        hw.wire(cs).watch(self._cs)
        if reset is not None:
            hw.wire(reset).watch(self._reset_pin)
        self._powered = True
        self._por()
        self._busy.drive(0)  # the twin starts as a board that has been on for a while

    # --- power, reset, sleep ---------------------------------------------------------------------------------
    def _por(self, warm=False):
        """Power-on, NRESET or a cold wake (DS 9.1): STDBY_RC with every setting at its reset value; the
        start-up calibration runs for all blocks and the 902-928 MHz image (DS 9.2.1). With a TCXO on DIO3
        the reference is not powered yet: the blocks that need it fail and XOSC_START_ERR is flagged
        (DS 13.3.6), hence the driver's ClearDeviceErrors on wake. A warm wake keeps the configuration."""
        self.mode = STBY_RC
        self.cmd_status = _CMD_OK
        self.irq = 0
        self._gen += 1
        if warm:
            self.errors = 0
            self._dio_update()
            return
        self.regs = dict(_REG_RESET)
        self.irq_mask = 0
        self.dio1_mask = 0
        self.tcxo_enabled_mv = None
        self.tcxo_delay_us = 0
        self.dio2_rf_switch = False
        if self.tcxo_mv is None:
            self.errors = 0
            self.calibrated = _CAL_ALL
            self.image_cal_mhz = _POR_IMAGE
        else:
            self.errors = XOSC_START_ERR
            self.calibrated = _CAL_RC
            self.image_cal_mhz = None
        self.packet_type = 0  # GFSK (DS 13.4.2)
        self.freq_khz = 0
        self.sf, self.bw_hz, self.cr, self.ldro = 7, 125000, 1, 0
        self.preamble, self.implicit, self.payload_len, self.crc, self.invert_iq = 8, 0, 0xFF, 1, 0
        self.tx_base, self.rx_base = 0, 0
        self.pa = (0x04, 0x07, 0x00, 0x01)
        self.tx_power = 14
        if not warm:
            self.dcdc = False  # DS 13.1.15 SetRegulatorMode: only the LDO until a driver selects the DC-DC
        self.rx_len, self.rx_ptr = 0, 0
        self._dio_update()

    @property
    def powered(self):
        return self._powered

    @powered.setter
    def powered(self, on):
        """Its supply rail: off, the chip answers 0x00, drives BUSY and DIO1 low; back on, a power-on reset."""
        on = bool(on)
        if on == self._powered:
            return
        self._powered = on
        self._gen += 1
        if on:
            self._por()
            self._busy_for(_BUSY_CALIBRATE_US)
        else:
            self._bgen += 1
            self.mode = _SLEEP
            self._busy.drive(0)
            if self._dio1 is not None:
                self._dio1.drive(0)

    def _alive(self):
        return self._powered and not self.in_reset

    def _reset_pin(self, level):
        """NRESET (DS 9.1): low holds the chip in reset; at the rising edge it starts as at power-on."""
        if not level:
            self.in_reset = True
            self._gen += 1
            self._bgen += 1
            self._report()
        elif self.in_reset:
            self.in_reset = False
            if self._powered:
                self._por()
                self._busy_for(_BUSY_CALIBRATE_US)

    def _busy_for(self, us):
        """BUSY high now and low after `us` (-1: until something else drives it, e.g. the wake from sleep)."""
        self._bgen += 1
        if us == 0:
            self._busy.drive(0)
            return
        self._busy.drive(1)
        if us < 0:
            return
        gen = self._bgen

        def low():
            if self._bgen == gen:
                self._busy.drive(0)
        self.clock.call_at_us(self.clock.monotonic_us() + us, low)

    def state(self):
        """What the chip draws: "sleep", "standby", "fs", "tx" or "rx"; "off" without supply or in reset."""
        if not self._alive():
            return "off"
        return _STATES[self.mode]

    @property
    def mode(self):
        return self._mode

    @mode.setter
    def mode(self, m):
        self._mode = m
        self._report()

    def _report(self):
        """Tell the meter (if any) the state the chip is in now (hwsim.power): RX and FS draw what the regulator
        the driver chose gives (DS Table 3-5: LDO or DC-DC); TX by the PA set-up and the power set."""
        st = self.state()
        if self.meter is None:
            self.power_state = st
            return
        reg = "DCDC" if getattr(self, "dcdc", False) else "LDO"
        if st == "tx":  # TX draws by the PA set-up (DS 13.1.14.1): +22 dBm match, or one of its optimal settings
            p = self.power_dbm()
            pa = "HP" if (self.pa[0], self.pa[1]) == (0x04, 0x07) else "HPOPT"
            self._power(st, "%s:%d" % (pa, self.tx_power if p is None else p))
        elif st in ("rx", "fs"):
            self._power(st, reg)
        else:
            self._power(st)

    # --- SPI (DS 8.3: NSS low, opcode, arguments; the status and answers are clocked out on MISO) -------------
    def _cs(self, level):
        if not level:  # falling NSS: a command starts; in sleep it wakes the chip (DS 9.3, 13.1.1)
            self._sel = True
            self._n = 0
            if self._alive() and self.mode == _SLEEP:
                if self._warm:
                    self._por(warm=True)
                    self._busy_for(_BUSY_WARM_WAKE_US)
                else:
                    self._por()
                    self._busy_for(_BUSY_CALIBRATE_US)
                self._woke = True
            return
        if not self._sel:
            return
        self._sel = False
        woke = self._woke
        self._woke = False
        if woke or self._n == 0 or not self._alive():
            return  # the wake-up pulse: what was clocked meanwhile is lost (the chip was not ready)
        self._busy_us = _BUSY_CMD_US
        self._execute()
        self._busy_for(self._busy_us)

    def _status(self):
        return (self.mode << 4) | (self.cmd_status << 1)

    def transfer(self, data):
        n = len(data)
        out = bytearray(n)
        if not self._alive() or not self._sel or self.mode == _SLEEP or self._woke:
            return bytes(out)  # no supply, in reset, not selected or not awake yet: MISO stays low
        c = self._cmd
        for i in range(n):
            pos = self._n
            b = data[i]
            if pos < 12:
                c[pos] = b
            elif c[0] == 0x0E:  # WriteBuffer data beyond the first bytes goes straight to the buffer
                self.buf[(c[1] + pos - 2) & 0xFF] = b
            self._n = pos + 1
            out[i] = self._miso(pos)
        return bytes(out)

    def _miso(self, pos):
        """The byte clocked out at position `pos` of a command: the status (DS 13.5.1), except where a Get
        command's table puts its answer (DS 13.5.2-13.5.4, 13.6.1: RFU, Status, answer...; ReadRegister
        Table 13-27: RFU, Status x3, data...; ReadBuffer Table 13-28: RFU, Status x2, data...)."""
        c = self._cmd
        op = c[0]
        if pos >= 2:
            if op == 0x12 and pos < 4:  # GetIrqStatus (DS 13.3.4): IrqStatus[15:8], IrqStatus[7:0]
                return (self.irq >> 8) & 0xFF if pos == 2 else self.irq & 0xFF
            if op == 0x17 and pos < 4:  # GetDeviceErrors (DS 13.6.1): OpError[15:8], OpError[7:0]
                return (self.errors >> 8) & 0xFF if pos == 2 else self.errors & 0xFF
            if op == 0x13 and pos < 4:  # GetRxBufferStatus (DS 13.5.2): PayloadLengthRx, RxStartBufferPointer
                return self.rx_len if pos == 2 else self.rx_ptr
            if op == 0x14 and pos < 5:  # GetPacketStatus, LoRa (DS 13.5.3): RssiPkt, SnrPkt, SignalRssiPkt
                if pos == 3:
                    return (self.snr_db * 4) & 0xFF  # SNR = SnrPkt / 4 dB, signed
                return min(255, max(0, -self.rssi_dbm * 2))  # RSSI = -RssiPkt / 2 dBm
            if op == 0x1D and pos >= 4:  # ReadRegister: address, NOP, data...
                return self.regs.get(((c[1] << 8) | c[2]) + pos - 4, 0)
            if op == 0x1E and pos >= 3:  # ReadBuffer: offset, NOP, data... (wraps at 256, DS 13.2.4)
                return self.buf[(c[1] + pos - 3) & 0xFF]
        return self._status()

    # --- commands (DS 13) -------------------------------------------------------------------------------------
    def _xosc_ok(self):
        """The 32 MHz reference runs: a crystal, or a TCXO supplied from DIO3 at (at least) its voltage."""
        return self.tcxo_mv is None or (self.tcxo_enabled_mv is not None and self.tcxo_enabled_mv >= self.tcxo_mv)

    def _needs_xosc(self):
        """A command that needs the 32 MHz reference (STDBY_XOSC, FS, TX, RX, calibration of PLL/ADC/image).
        Without it: XOSC_START_ERR (DS 13.6.1), the command fails to execute, the chip stays in STDBY_RC. From
        STDBY_RC with a TCXO, BUSY stays high for the start-up delay given to SetDIO3AsTcxoCtrl (DS 13.3.6)."""
        if not self._xosc_ok():
            self.errors |= XOSC_START_ERR
            self.cmd_status = _CMD_FAIL
            self.mode = STBY_RC
            return False
        if self.mode == STBY_RC and self.tcxo_enabled_mv is not None and self.TCXO_ON_BUSY:
            self._busy_us += self.tcxo_delay_us
        return True

    def _execute(self):
        c = self._cmd
        n = self._n
        op = c[0]
        self.cmd_status = _CMD_OK
        if op == 0x80:  # SetStandby (DS 13.1.5): 0 STDBY_RC, 1 STDBY_XOSC; stops TX/RX
            self._gen += 1
            if n > 1 and c[1] == 1:
                if self._needs_xosc():
                    self.mode = STBY_XOSC
            else:
                self.mode = STBY_RC
        elif op == 0x84:  # SetSleep (DS 13.1.1): bit 2 warm start keeps the configuration; BUSY high asleep
            self._gen += 1
            self._warm = bool(c[1] & 0x04)
            self.mode = _SLEEP
            self._busy_us = -1  # high until the wake-up NSS edge (DS 8.3.1)
        elif op == 0xC1:  # SetFs (DS 13.1.6)
            if self._needs_xosc():
                self._gen += 1
                self.mode = FS
        elif op == 0x8A:  # SetPacketType (DS 13.4.2): 0 GFSK, 1 LoRa
            self.packet_type = c[1]
        elif op == 0x86:  # SetRfFrequency (DS 13.4.1): RF = RfFreq * 32 MHz / 2^25
            rf = (c[1] << 24) | (c[2] << 16) | (c[3] << 8) | c[4]
            self.freq_khz = (rf * 32000 + (1 << 24)) >> 25
        elif op == 0x95:  # SetPaConfig (DS 13.1.14): paDutyCycle, hpMax, deviceSel, paLut
            self.pa = (c[1], c[2], c[3], c[4])
        elif op == 0x8E:  # SetTxParams (DS 13.4.4): power (signed dBm), RampTime
            p = c[1]
            self.tx_power = p - 256 if p > 127 else p
        elif op == 0x8B:  # SetModulationParams, LoRa (DS 13.4.5.2): SF, BW, CR, LowDataRateOptimize
            self.sf, self.bw_hz, self.cr, self.ldro = c[1], _BW_HZ.get(c[2], 0), c[3], c[4]
        elif op == 0x8C:  # SetPacketParams, LoRa (DS 13.4.6.2): preamble (2), header type, length, CRC, InvertIQ
            self.preamble = (c[1] << 8) | c[2]
            self.implicit, self.payload_len, self.crc, self.invert_iq = c[3], c[4], c[5], c[6]
        elif op == 0x8F:  # SetBufferBaseAddress (DS 13.4.8)
            self.tx_base, self.rx_base = c[1], c[2]
        elif op == 0x0E:  # WriteBuffer (DS 13.2.3): offset, data...
            for i in range(2, n if n < 12 else 12):
                self.buf[(c[1] + i - 2) & 0xFF] = c[i]
        elif op == 0x0D:  # WriteRegister (DS 13.2.1): address (2), data...
            addr = (c[1] << 8) | c[2]
            for i in range(3, n if n < 12 else 12):
                self.regs[addr + i - 3] = c[i]
        elif op == 0x08:  # SetDioIrqParams (DS 13.3.1): IrqMask, DIO1Mask, DIO2Mask, DIO3Mask
            self.irq_mask = (c[1] << 8) | c[2]
            self.dio1_mask = (c[3] << 8) | c[4]
            self._dio_update()
        elif op == 0x02:  # ClearIrqStatus (DS 13.3.5)
            self.irq &= ~((c[1] << 8) | c[2]) & 0xFFFF
            self._dio_update()
        elif op == 0x07:  # ClearDeviceErrors (DS 13.6.2)
            self.errors = 0
        elif op == 0x97:  # SetDIO3AsTcxoCtrl (DS 13.3.6): voltage, start-up delay (3 bytes, 15.625 us steps)
            self.tcxo_enabled_mv = _TCXO_MV[c[1] & 7]
            self.tcxo_delay_us = ((c[2] << 16) | (c[3] << 8) | c[4]) * 15625 // 1000
            if self.tcxo_mv is not None:
                # DS 13.3.6: the reference was not running before: XOSC_START_ERR is flagged, to be cleared
                self.errors |= XOSC_START_ERR
        elif op == 0x9D:  # SetDIO2AsRfSwitchCtrl (DS 13.3.5)
            self.dio2_rf_switch = bool(c[1] & 1)
        elif op == 0x89:  # Calibrate (DS 13.1.12): the RC blocks run on their own; PLL, ADC, image need the XOSC
            blocks = c[1] & _CAL_ALL
            if blocks & ~_CAL_RC and not self._needs_xosc():
                self.calibrated |= blocks & _CAL_RC
                if blocks & _CAL_IMAGE:
                    self.errors |= IMG_CALIB_ERR
            else:
                self.calibrated |= blocks
                if blocks & _CAL_IMAGE:
                    self.image_cal_mhz = _POR_IMAGE  # the default band (DS 9.2.1)
            self._busy_us += _BUSY_CALIBRATE_US
        elif op == 0x98:  # CalibrateImage (DS 13.1.13, 9.2.1 Table 9-2): freq1, freq2 in 4 MHz steps
            if self._needs_xosc():
                self.image_cal_mhz = (c[1] * 4, c[2] * 4)
            else:
                self.errors |= IMG_CALIB_ERR
            self._busy_us += _BUSY_IMAGE_US
        elif op == 0x96:  # SetRegulatorMode (DS 13.1.15): 0 LDO only, 1 DC-DC + LDO
            self.dcdc = bool(c[1] & 1)
        elif op == 0x83:  # SetTx (DS 13.1.4): timeout (3 bytes), 0: none
            if self._needs_xosc():
                self._start_tx()
        elif op == 0x82:  # SetRx (DS 13.1.3): timeout in 15.625 us; 0 single, no timeout; 0xFFFFFF continuous
            if self._needs_xosc():
                self._start_rx((c[1] << 16) | (c[2] << 8) | c[3])
        elif op in (0x12, 0x17, 0x13, 0x14, 0xC0, 0x1D, 0x1E):
            pass  # Get/Read commands: answered on MISO while clocked
        else:
            self.cmd_status = _CMD_ERROR  # an opcode this twin does not know: a processing error (DS 13.5.1)

    def _flag(self, bits):
        """Raise IRQs: only those enabled in IrqMask are set (DS 13.3.1)."""
        self.irq |= bits & self.irq_mask
        self._dio_update()

    def _dio_update(self):
        """DIO1 is high while an IRQ of its mask is set (DS 13.3.1)."""
        if self._dio1 is not None:
            lv = 1 if self.irq & self.dio1_mask else 0
            if self._dio1.level != lv:
                self._dio1.drive(lv)

    # --- what the parameters say ----------------------------------------------------------------------------
    def time_on_air_us(self, n):
        """DS 6.1.4: Tsym = 2^SF / BW; Nsymbol = Npre + 4.25 (+2 at SF5/6) + 8 + ceil(max(8 PL + 16 CRC - 4 SF
        + 8 (not at SF5/6) + 20 (explicit header), 0) / (4 (SF - 2 LDRO))) (CR + 4)."""
        sf = self.sf
        bits = 8 * n + 16 * (1 if self.crc else 0) - 4 * sf + (0 if self.implicit else 20) + (0 if sf < 7 else 8)
        den = 4 * (sf - 2 * (1 if self.ldro else 0))
        payload = 8 + (max(bits, 0) + den - 1) // den * (self.cr + 4)
        sym4 = 4 * self.preamble + 17 + (8 if sf < 7 else 0) + 4 * payload
        return sym4 * (1 << sf) * 1000000 // (4 * self.bw_hz)

    def power_dbm(self):
        """At the antenna (DS 13.1.14 SetPaConfig, 13.4.4 SetTxParams): the HP PA (deviceSel 0) gives the
        SetTxParams power (-9..+22 dBm), less what a smaller paDutyCycle/hpMax (DS 13.1.14.1 Table 13-21) takes
        off the +22 dBm maximum. deviceSel 1 selects the SX1261's LP PA, absent on the SX1262: None."""
        duty, hp_max, device_sel = self.pa[0], self.pa[1], self.pa[2]
        if device_sel != 0:
            return None
        top = _PA_OPTIMAL.get((duty, hp_max), 22)
        p = self.tx_power if self.tx_power < 22 else 22
        p = p - (22 - top)
        return p if p > -9 else -9

    def _syncword(self):
        return (self.regs.get(0x0740, 0) << 8) | self.regs.get(0x0741, 0)

    def syncword(self):
        """The LoRa sync word registers 0x0740/0x0741 (DS 6.1.1.1): 0x3444 public (LoRaWAN), 0x1424 private."""
        return self._syncword()

    # --- transmit, receive -----------------------------------------------------------------------------------
    def _start_tx(self):
        """TX (DS 13.1.4): PayloadLength bytes from TxBaseAddr, TxDone at the end, then STDBY_RC (the default
        fallback mode, DS 13.1.17)."""
        self._gen += 1
        self.mode = TX
        n = self.payload_len
        base = self.tx_base
        data = bytes(self.buf[(base + i) & 0xFF] for i in range(n))
        now = self.clock.monotonic_us()
        tx = Tx(self.name, now, self.freq_khz, self.sf, self.bw_hz // 1000, bool(self.invert_iq), data,
                self.power_dbm(), bool(self.crc), now + self.time_on_air_us(n))
        self.last_tx = tx
        heard = self._syncword() == LORAWAN_SYNC
        self.unheard += 0 if heard else 1
        gen = self._gen

        def done():
            if self._gen == gen:
                self.mode = STBY_RC
                self.cmd_status = _CMD_TX_DONE
                self._flag(TX_DONE)

        on_air(self.clock, self.air, tx, heard, done)

    def _start_rx(self, timeout):
        """RX (DS 13.1.3): a LoRaWAN frame (public sync word) on this frequency/SF/BW whose IQ polarity matches
        InvertIQ and whose preamble starts before the timeout is received: RxDone + HeaderValid at its end,
        payload at RxBaseAddr. Otherwise Timeout at start + timeout (single mode), then STDBY_RC."""
        self._gen += 1
        self.mode = RX
        now = self.clock.monotonic_us()
        forever = timeout == 0 or timeout == 0xFFFFFF
        continuous = timeout == 0xFFFFFF
        t1 = now + (3600 * 1000000 if forever else timeout * 15625 // 1000)
        tx = None
        if self._syncword() == LORAWAN_SYNC:
            tx = self.air.take(now, t1, self.freq_khz, self.sf, self.bw_hz // 1000, bool(self.invert_iq))
        gen = self._gen
        if tx is None:
            if not forever:
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
            data = tx.data
            base = self.rx_base
            for i in range(len(data)):
                self.buf[(base + i) & 0xFF] = data[i]
            self.rx_len, self.rx_ptr = len(data), base
            if not continuous:
                self.mode = STBY_RC
            self.cmd_status = _CMD_DATA
            self._flag(RX_DONE | HEADER_VALID)

        self.clock.call_at_us(tx.end_us if tx.end_us > now else now, received)
