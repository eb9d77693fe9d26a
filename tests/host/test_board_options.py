"""A board file's driver options (a sensors entry's keys beyond its wiring) are checked on the host when the file
is loaded, by the node's own check (cnode.board.check), so that `citynode flash` refuses a file the node could not
build, with the file, the entry and the option named."""
from __future__ import annotations

import json

import pytest

from citynode.device.boards import BOARDS_DIR, BoardError, load_board_file
from citynode.cli import main


def _v3(tmp_path, **scd4x):
    raw = json.loads((BOARDS_DIR / "heltec-wifi-lora-32-v3.json").read_text())
    s = next(s for s in raw["sensors"] if s["driver"] == "scd4x")
    s.update(scd4x)
    p = tmp_path / "heltec-wifi-lora-32-v3.json"
    p.write_text(json.dumps(raw))
    return p


def test_an_option_the_driver_takes_loads_and_reaches_the_node_config(tmp_path):
    b = load_board_file(_v3(tmp_path, th=True))
    s = b.node_config()["sensors"][1]
    assert s["driver"] == "scd4x" and s["th"] is True and s["mode"] == "single_shot"


@pytest.mark.parametrize("option, want", [
    ({"thx": True}, "sensors[1] (scd4x): unknown option 'thx' (options: th:bool+temperature,humidity "
                    "mode:periodic|single_shot stuck_reads:0..65535)"),
    ({"th": 1}, "sensors[1] (scd4x): option 'th': expected true or false, got 1"),
    ({"stuck_reads": 1.5}, "sensors[1] (scd4x): option 'stuck_reads': expected an integer 0..65535, got 1.5"),
    ({"mode": "continuous"}, "sensors[1] (scd4x): option 'mode': expected one of periodic|single_shot, "
                             "got \"continuous\""),
])
def test_a_bad_option_names_the_board_file_the_sensor_and_the_option(tmp_path, option, want):
    with pytest.raises(BoardError) as e:
        load_board_file(_v3(tmp_path, **option))
    assert str(e.value) == "heltec-wifi-lora-32-v3.json: " + want


def test_flash_refuses_a_board_file_with_a_bad_option_in_one_line(tmp_path, monkeypatch, capsys):
    import citynode.device.boards as boards

    for f in BOARDS_DIR.glob("*.json"):
        (tmp_path / f.name).write_text(f.read_text())
    _v3(tmp_path, th="yes")
    monkeypatch.setattr(boards, "BOARDS_DIR", tmp_path)
    code = main(["flash", "--board", "heltec-wifi-lora-32-v3", "--port", "socket://127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code != 0
    assert "heltec-wifi-lora-32-v3.json: sensors[1] (scd4x): option 'th': expected true or false, got \"yes\"" in err
    assert len(err.strip().splitlines()) == 1, err
