# EU868 regional parameters (RP002-1.0.x, EU863-870): data rates, payload limits, TX power, default channels,
# sub-bands with their ETSI duty cycles, and LoRa time on air (Semtech AN1200.13) in integer microseconds.
from micropython import const

RX2_FREQ_KHZ = const(869525)
RX2_DR = const(0)
JOIN_FREQS_KHZ = (868100, 868300, 868500)  # the three default channels, never removable
NUM_CHANNELS = const(16)
DR_MAX = const(5)  # DR0..DR5 = SF12..SF7 at 125 kHz (DR6 SF7/250 and DR7 FSK are not used here)
DR_SF = (12, 11, 10, 9, 8, 7)
DR_BW_KHZ = const(125)
MAX_PAYLOAD = (51, 51, 51, 115, 222, 222)  # N: max FRMPayload with no FOpts (RP002 2.4.6, dwell time off)
_MAX_EIRP = const(16)  # dBm; TXPower i -> _MAX_EIRP - 2*i, i = 0..7 (RP002 2.4.3)
TX_POWER_MAX_INDEX = const(7)
RX1_DR_OFFSET_MAX = const(5)
FREQ_MIN_KHZ = const(863000)
FREQ_MAX_KHZ = const(870000)

# Sub-bands (ETSI EN 300 220 / ERC Rec 70-03 as listed in RP002 EU868): (low kHz, high kHz, 1/duty cycle)
BANDS = (
    (863000, 865000, 1000),
    (865000, 868000, 100),
    (868000, 868600, 100),
    (868700, 869200, 1000),
    (869400, 869650, 10),
    (869700, 870000, 100),
)


def band_of(freq_khz):
    """Index into BANDS of the sub-band holding freq_khz, or -1 when no band allows it."""
    for i in range(len(BANDS)):
        lo, hi, _ = BANDS[i]
        if lo <= freq_khz <= hi:
            return i
    return -1


def tx_eirp(index):
    return _MAX_EIRP - 2 * index


def rx1_dr(up_dr, offset):
    """RX1 data rate for an uplink DR and RX1DROffset (RP002 EU868 table: max(0, DR - offset))."""
    d = up_dr - offset
    return d if d > 0 else 0


def airtime_us(sf, bw_khz, phy_len, preamble=8, cr=1, crc=1, implicit=0):
    """LoRa time on air in microseconds (AN1200.13 4.1.1.6/4.1.1.7), exact in integers for 125/250/500 kHz.
    Tsym = 2^SF/BW; Tpre = (Npre + 4.25) Tsym; n = 8 + max(ceil((8PL - 4SF + 28 + 16CRC - 20IH) /
    (4(SF - 2DE))) (CR + 4), 0), DE = 1 when Tsym >= 16 ms (SF11/12 at 125 kHz)."""
    tsym4 = (4000 << sf) // bw_khz  # 4 * Tsym in us (exact for power-of-two multiples of 125 kHz)
    de = 1 if (tsym4 >= 64000) else 0
    num = 8 * phy_len - 4 * sf + 28 + 16 * crc - 20 * implicit
    den = 4 * (sf - 2 * de)
    n = (num + den - 1) // den if num > 0 else 0
    nsym = 8 + n * (cr + 4)
    return ((4 * preamble + 17) * tsym4) // 16 + nsym * tsym4 // 4


def dr_airtime_us(dr, phy_len):
    return airtime_us(DR_SF[dr], DR_BW_KHZ, phy_len)
