"""The self-test table that `citynode flash` prints shows each value as `citynode decode` gives it, with its unit:
both come from the one channel registry (firmware/cnode/channels.py)."""
from __future__ import annotations

import pytest

from cnode.board import value_text
from citynode.device.boards import get_board
from citynode.device.flash import install_app
from citynode.sim.hwsim.vnode import VirtualNode
from citynode.payload.channels import CHANNELS


@pytest.mark.parametrize("ch", CHANNELS, ids=lambda c: c.name)
def test_every_channels_value_reads_as_the_decoder_gives_it_with_the_registrys_unit(ch):
    for raw in sorted({ch.lo, ch.hi, ch.ref, 0, 1, -1, 7, 10, 99, 100, 101, 1234, -1234, ch.lo + 1, ch.hi - 1}):
        text = value_text(ch.name, raw)
        number, _, unit = text.partition(" ")
        assert unit == ch.unit, text  # the unit `decode --format senml-json|csv` writes
        assert float(number) == ch.from_raw(raw), text  # the number `decode` writes
        if ch.exp < 0:
            assert number == repr(ch.from_raw(raw)) or "e" in repr(ch.from_raw(raw)), text


@pytest.mark.mipindex  # a LoRa board: its install needs micropython-lib's drivers from the index
def test_flash_shows_the_firmware_selftest_values_with_their_units():
    board = get_board("virtual")
    with VirtualNode(board=board.node_config()) as node:
        result = install_app(node.port, board, no_reset=True)
    assert not result.failures, result.table()
    rows = {tuple(x.split()[:2]): x.split()[2:] for x in result.firmware_table[1:-1]}
    assert rows[("BME280", "temperature")][1] == "Cel"
    assert rows[("BME280", "humidity")][1] == "%RH"
    assert rows[("BME280", "pressure")][1] == "Pa"
    assert rows[("SDS011", "pm2_5")][1] == rows[("SDS011", "pm10")][1] == "ug/m3"
    assert rows[("Battery", "battery")] == ["3.9", "V"]  # the virtual board's battery twin: 3900 mV
    assert 7.0 < float(rows[("BME280", "temperature")][0]) < 8.0  # the twin's series at 00:00 (7.4 degC), not 741
    assert result.table().splitlines()[-1] == "selftest: 3 sensors, 0 failed"
