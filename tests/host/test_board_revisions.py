"""Facts that differ between revisions of a board (Heltec V2 battery pin, Heltec V3 ADC_Ctrl polarity, T-Beam
power chip): the board file lists them, and the self-test that `citynode flash` runs measures which revision the
board in hand is, on the virtual node with every chip of the board file as a twin."""
from __future__ import annotations

from pathlib import Path

import pytest

from citynode.device.boards import get_board
from citynode.device.flash import install_app
from citynode.sim.hwsim.vnode import VirtualNode

MIP_INDEX = Path(__file__).resolve().parents[3] / "shared" / "mip-index"

pytestmark = pytest.mark.mipindex


def _selftest(name: str, revision: dict | None = None):
    board = get_board(name)
    with VirtualNode(board=board.node_config(), revision=revision) as node:
        return install_app(node.port, board, no_reset=True, mip_index=str(MIP_INDEX))


def _row(result, item: str):
    rows = [r for r in result.rows if r[0] == item]
    assert len(rows) == 1, result.table()
    return rows[0]


@pytest.mark.parametrize("name,fact,other,says", [
    ("heltec-wifi-lora-32-v2", "battery.adc", "37", "V2.1: VBAT divider on GPIO37"),
    ("heltec-wifi-lora-32-v3", "battery.enable.active", "0", "V3.0: ADC_Ctrl (GPIO37) switches the divider on when low"),
    ("tbeam", "power.pmic", "0x4a", "V1.2: AXP2101"),
])
def test_the_selftest_tells_the_revision(name, fact, other, says):
    same = _selftest(name)
    item, res, detail = _row(same, "revision")
    assert res == "ok" and detail.startswith(fact), same.table()
    assert not same.failures, same.table()
    r = _selftest(name, {fact: other})
    item, res, detail = _row(r, "revision")
    assert res == "FAIL" and says in detail and "change the board file" in detail, r.table()


def test_a_tbeam_v1_2_has_no_radio_until_its_power_chip_is_driven():
    r = _selftest("tbeam", {"power.pmic": "0x4a"})
    item, res, detail = _row(r, "radio")
    # the AXP2101 is not switched on by the AXP192 driver: LDO2 stays off and the SX1276 answers nothing
    assert res == "FAIL" and "Unexpected silicon version 0" in detail, r.table()
    assert _row(_selftest("tbeam"), "radio")[1] == "ok"
