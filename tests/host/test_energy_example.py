"""docs/energy.md's worked example, by hand and by the simulator: a Heltec WiFi LoRa 32 V3 with a BME280 only,
a reading every 300 s, DR5 with ADR off, a day. The hand calculation uses only the parts' figures, the LoRa
time-on-air formula, the LoRaWAN receive windows as our MAC opens them and the BME280 driver's waits; the
simulator runs the firmware on the board's twins. They must agree within 2 %."""
from __future__ import annotations

import math

import pytest

from citynode.device.boards import get_board
from citynode.energy import model
from citynode.energy.run import run

BOARD = "heltec-wifi-lora-32-v3"
INTERVAL_S = 300
MARGIN_MS = 20  # the MAC opens each receive window this early and keeps it this much longer (cnode.lorawan.mac)


def airtime_ms(n: int, sf: int) -> float:
    """LoRa time on air (SX1276/SX1262 datasheets): 125 kHz, CR 4/5, 8-symbol preamble, explicit header, CRC on,
    low data rate optimisation at SF11/12."""
    de = 1 if sf >= 11 else 0
    tsym = (1 << sf) / 125.0
    payload = 8 + max(math.ceil((8 * n - 4 * sf + 28 + 16) / (4 * (sf - 2 * de))) * 5, 0)
    return (8 + 4.25 + payload) * tsym


def window_ms(sf: int) -> int:
    """How long the MAC listens in a window: long enough to detect an 8-symbol preamble, plus both margins."""
    return 2 * MARGIN_MS + ((8 << sf) + 124) // 125


def hand_mah_per_day(r) -> float:
    """By hand: the board's own draw all day; per wake the boot, the BME280 (2 ms start-up after its reset, 8 ms
    forced measurement: datasheet typical for x1 oversampling, which the CPU waits in light sleep), and per uplink its airtime, the waits to RX1
    (1 s, the join's 5 s) and RX2 (1 s later), and both windows (RX1 at the uplink's SF, RX2 at SF12); the rest of
    the day the ESP32 in deep sleep and the radio asleep. Frames (size, SF) are read off the air."""
    ma = model.current_ma
    day_s = r.days * 86400
    wakes = r.wakes
    ups = [(n, sf) for n, sf, down in r.frames if not down]
    rx1_ms = [window_ms(sf) for _, sf in ups]
    rx2_ms = window_ms(12)
    air_s = sum(airtime_ms(n, sf) for n, sf in ups) / 1000
    # waits to the windows: RX1 opens 1 s (a join-accept: 5 s) after the uplink, RX2 a second after that; an
    # answer in RX1 (every downlink here comes in RX1) ends the listening: no wait for RX2 nor RX2 then
    joins = sum(1 for n, _ in ups if n == 23)
    answered = sum(1 for _, _, down in r.frames if down)
    wait_s = sum((1000 - MARGIN_MS) / 1000 + (1000 - rx1) / 1000 for rx1 in rx1_ms) + joins * 4
    wait_s -= answered * (1000 - window_ms(7)) / 1000
    listen_s = (sum(rx1_ms) + rx2_ms * (len(ups) - answered)) / 1000
    # the BME280's measurement: an I2C driver waits in light sleep (cnode.runner.Napping); its start-up after the
    # soft reset comes while the drivers are being set up, when the napping clock is still off: awake
    bme_s = 0.008 * wakes
    awake_s = 0.002 * wakes + air_s + wait_s + listen_s
    boot = model.part("esp32s3")["states"]["boot"]
    mas = {  # mA x seconds per component
        "board": ma("board:" + BOARD, "on") * day_s,
        "cpu": ma("esp32s3", "idle") * awake_s + ma("esp32s3", "light_sleep") * bme_s
        + ma("esp32s3", "deep_sleep") * (day_s - awake_s - bme_s) + boot["mA"] * boot["ms"] / 1000 * wakes,
        # 14 dBm EIRP (LoRaWAN TXPower 1, the MAC's default) less the 2 dBi antenna: 12 dBm at the chip, with the PA
        # set up for +22 dBm (micropython-lib's driver, for any power but 20/17/14), so below the table's lowest
        # row: its current; the receiver on the LDO (the driver never selects the DC-DC)
        "radio": ma("sx1262", "tx", "HP:12") * air_s + ma("sx1262", "standby") * wait_s
        + ma("sx1262", "rx", "LDO") * listen_s + ma("sx1262", "sleep") * (day_s - air_s - wait_s - listen_s),
        "bme280": ma("bme280", "forced") * 0.008 * wakes + ma("bme280", "sleep") * 0.002 * wakes,
    }
    return sum(mas.values()) / 3600 / r.days


def simulated():
    b = get_board(BOARD).node_config()
    b["sensors"] = [s for s in b["sensors"] if s["driver"] == "sht4x"][:0] + [
        {"driver": "bme280", "bus": "i2c", "address": "0x76"}]
    r = run(b, days=1.0, interval_s=INTERVAL_S, dr=5)  # the API-level radio: windows as the MAC asks for them
    return r.mah_per_day(), r


def test_the_worked_example_by_hand_matches_the_simulator():
    sim, r = simulated()
    assert r.wakes == 288 and r.radio == "api"
    assert all(sf == 7 for _, sf, down in r.frames if not down)  # DR5 throughout
    assert sim == pytest.approx(hand_mah_per_day(r), rel=0.02)
