"""Every board file from the start of `citynode flash` to its first decoded uplink on the virtual node, through
micropython-lib's radio driver on the chip's register-level twin; prints JSON.

Per board: wall time to the end of the flash (image on the simulated ROM loader, app and drivers installed by
mpremote, self-test), to provisioned, and to the first uplink that `citynode decode` reads; the power at the
antenna of every uplink (from the twin's PA registers: what the chip radiated, not what the MAC asked for); the
chip's image calibration and TCXO. Drivers come from ../shared/mip-index (an offline copy of micropython-lib's
index, as `--mip-index DIR`). Usage: python bench/bringup_bench.py [--quick]
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "host"), str(ROOT / "host_tools"), str(ROOT / "firmware")]
MIP_INDEX = ROOT.parent / "shared" / "mip-index"

from bringup import bring_up  # noqa: E402

BOARDS = ("heltec-wifi-lora-32-v2", "heltec-wifi-lora-32-v3", "ttgo-lora32-v2.1", "tbeam", "esp32-devkit-lora-e5")


def main() -> None:
    if not MIP_INDEX.is_dir():
        print(json.dumps({"error": f"no mip index at {MIP_INDEX}"}))
        return
    out: dict = {"target": "5 of 5 board files: flash -> first decoded uplink; the MAC's 12 dBm (14 dBm EIRP with its "
                           "2 dBi antenna) at the antenna port on every LoRa-chip board",
                 "boards": {}}
    ok = 0
    for name in BOARDS:
        with tempfile.TemporaryDirectory(prefix="citynode-bringup-") as tmp:
            try:
                r = bring_up(name, str(MIP_INDEX), Path(tmp), uplinks=3)
            except AssertionError as e:
                out["boards"][name] = {"ok": False, "error": str(e).splitlines()[0][:300]}
                continue
        w = r.get("world", {})
        ups = [x for x in w.get("air", []) if not x["down"]]
        ok += 1
        out["boards"][name] = {
            "ok": True, "radio": w.get("radio"),
            "flash_s": round(r["flash_s"], 2), "provisioned_s": round(r["provisioned_s"], 2),
            "first_decoded_uplink_s": round(r["first_uplink_s"], 2),
            "uplinks_on_air": len(ups), "samples_decoded": len(r["samples"]),
            "power_at_antenna_dbm": sorted({x["power_dbm"] for x in ups}, key=str) if ups else "AT modem (not modelled)",
            "image_cal": w.get("image_cal_khz", w.get("image_cal_mhz")), "tcxo_mv": w.get("tcxo_enabled_mv")}
    out["boards_ok"] = f"{ok} of {len(BOARDS)}"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
