# Config tests: one precedence (defaults < board < /config.json < downlink), validation, NVS double, keys (CPython + MicroPython).
import json
import sys

from cnode.config import Config, Keys, validate, SETTINGS
from citynode.sim.hwsim import nvs as nvsim
from citynode.sim.hwsim.flashfs import FlashFS
from fwtest import raises


def _fs(settings):
    fs = FlashFS()
    if settings is not None:
        f = fs.open("/config.json", "w")
        f.write(settings if isinstance(settings, str) else json.dumps(settings))
        f.close()
    return fs


def test_defaults_only():
    nvsim.wipe()
    cfg = Config()
    for name in SETTINGS:
        assert cfg.source(name) == "default"
    assert cfg["interval"] == 300 and cfg.get("dr") == 3 and cfg["adr"] is True
    assert cfg["channels_off"] == 0 and cfg.channel_enabled(6)


def test_precedence_each_layer_overrides_the_one_below():
    nvsim.wipe()
    board = {"name": "heltec_v2", "chip": "esp32", "settings": {"interval": 120, "dr": 2, "fport": 5}}
    fs = _fs({"interval": 60, "confirmed": True})
    nvs = nvsim.NVS("cn_set")
    nvs.set_i32("interval", 900)
    nvs.commit()
    cfg = Config(board, fs, nvs)
    assert (cfg["interval"], cfg.source("interval")) == (900, "downlink")
    assert (cfg["dr"], cfg.source("dr")) == (2, "board")
    assert (cfg["fport"], cfg.source("fport")) == (5, "board")
    assert (cfg["confirmed"], cfg.source("confirmed")) == (True, "file")
    assert (cfg["adr"], cfg.source("adr")) == (True, "default")
    cfg.clear("interval")  # forget the downlink value: the file's applies again, now and after reboot
    assert (cfg["interval"], cfg.source("interval")) == (60, "file")
    assert Config(board, fs, nvs)["interval"] == 60
    # without a settings file the board's value shows through
    assert Config(board, FlashFS(), nvs)["interval"] == 120


def test_downlink_values_persist_in_nvs_and_need_commit():
    nvsim.wipe()
    nvs = nvsim.NVS("cn_set")
    cfg = Config(None, _fs(None), nvs)
    assert cfg.set("dr", 5) == 5
    assert cfg.set("channels_off", ["co2", "pm10"]) == (1 << 6) | (1 << 5)
    assert not cfg.channel_enabled(6) and cfg.channel_enabled(4)
    assert nvsim.committed("cn_set") == {"dr": 5, "ch_off": bytes([0x60, 0, 0, 0, 0, 0, 0, 0])}
    cfg.set("interval", 30, False)  # not committed: a power cut loses it
    nvsim.power_cut()
    again = Config(None, _fs(None), nvsim.NVS("cn_set"))
    assert again["dr"] == 5 and again["channels_off"] == 0x60 and again["interval"] == 300
    raises(ValueError, cfg.set, "fport", 3)  # not settable by downlink
    e = raises(ValueError, cfg.set, "interval", 5)
    assert "interval" in str(e)
    assert nvsim.committed("cn_set")["dr"] == 5


def test_bad_values_name_the_setting():
    cases = [
        ({"interval": 5}, "interval: 5 is outside 10..86400"),
        ({"interval": "60"}, "interval: must be an integer"),
        ({"interval": True}, "interval: must be an integer"),
        ({"dr": 6}, "dr: 6 is outside 0..5"),
        ({"adr": 1}, "adr: must be true or false"),
        ({"channels_off": ["co2", "smell"]}, "channels_off: no channel 'smell'"),
        ({"channels_off": [63]}, "channels_off: no channel 63"),
        ({"channels_off": "co2"}, "channels_off: must be a list"),
        ({"intervall": 60}, "unknown setting 'intervall'"),
    ]
    for settings, msg in cases:
        e = raises(ValueError, Config, None, _fs(settings))
        assert str(e).startswith(msg), (settings, str(e))
    e = raises(ValueError, Config, {"settings": {"dr": -1}})
    assert str(e).startswith("dr: -1 is outside 0..5")
    e = raises(ValueError, Config, None, _fs("{not json"))
    assert str(e) == "/config.json: not valid JSON"
    e = raises(ValueError, Config, None, _fs("[1, 2]"))
    assert str(e) == "/config.json: must be a JSON object"
    assert validate("channels_off", [0, "humidity"]) == 3


def test_bad_value_in_nvs_is_ignored_with_a_warning():
    nvsim.wipe()
    nvs = nvsim.NVS("cn_set")
    nvs.set_i32("dr", 9)  # e.g. left by other firmware
    nvs.set_blob("interval", b"\x01")  # wrong type: NVS says not found
    nvs.commit()
    cfg = Config(None, None, nvs)
    assert cfg["dr"] == 3 and cfg.source("dr") == "default"
    assert cfg["interval"] == 300
    assert cfg.warnings == ["dr: 9 is outside 0..5"]


def test_nvs_double_matches_esp32_api():
    nvsim.wipe()
    n = nvsim.NVS("cn_keys")
    buf = bytearray(16)
    e = raises(OSError, n.get_blob, "app_key", buf)
    assert e.args[0] == -0x1102 and e.args[1] == "ESP_ERR_NVS_NOT_FOUND"
    n.set_blob("app_key", bytes(range(16)))
    assert n.get_blob("app_key", buf) == 16 and buf == bytearray(range(16))
    raises(OSError, n.get_blob, "app_key", bytearray(8))  # ESP_ERR_NVS_INVALID_LENGTH
    raises(OSError, n.get_i32, "app_key")  # a blob is not an i32
    n.set_i32("x", -5)
    assert n.get_i32("x") == -5
    raises(OverflowError, n.set_i32, "x", 1 << 31)
    raises(OSError, n.set_i32, "sixteen_chars_xx", 1)  # keys are at most 15 characters
    nvsim.power_cut()  # nothing committed yet
    raises(OSError, n.get_i32, "x")
    n.set_i32("x", 7)
    n.commit()
    n.erase_key("x")
    raises(OSError, n.get_i32, "x")
    raises(OSError, n.erase_key, "nope")
    n.commit()
    assert nvsim.committed("cn_keys") == {}
    assert nvsim.NVS("other").set_i32("y", 1) is None
    assert nvsim.NVS("other").get_i32("y") == 1  # another handle of the namespace sees it
    raises(OSError, n.get_i32, "y")  # namespaces are separate
    raises(OSError, nvsim.NVS, "a_namespace_too_long")


DEV = bytes([0x00, 0x18, 0xB2, 0x00, 0x00, 0x00, 0x01, 0x01])
JOIN = bytes([0x70, 0xB3, 0xD5, 0x7E, 0xD0, 0x00, 0x00, 0x10])
APPKEY = bytes([0x2B, 0x7E, 0x15, 0x16, 0x28, 0xAE, 0xD2, 0xA6, 0xAB, 0xF7, 0x15, 0x88, 0x09, 0xCF, 0x4F, 0x3C])


def _no_key_text(text):
    for k in (DEV, JOIN, APPKEY):
        h = "".join("%02x" % b for b in k)
        assert h not in text.lower(), text
        assert h[:8] not in text.lower(), text
    assert str(APPKEY) not in text


def test_keys_live_in_nvs_and_never_print():
    nvsim.wipe()
    keys = Keys(nvsim.NVS("cn_keys"))
    assert not keys.present() and keys.get("app_key") is None
    assert keys.redacted() == {"dev_eui": "missing", "join_eui": "missing", "app_key": "missing"}
    keys.set(DEV, JOIN, APPKEY)
    assert nvsim.committed("cn_keys") == {"dev_eui": DEV, "join_eui": JOIN, "app_key": APPKEY}
    assert keys.present() and keys.get("app_key") == APPKEY and keys.get("dev_eui") == DEV
    assert keys.redacted() == {"dev_eui": "..0101", "join_eui": "..0010", "app_key": "set"}
    cfg = Config()
    text = repr(keys) + str(keys) + json.dumps(cfg.redacted(keys))
    _no_key_text(text)
    assert cfg.redacted(keys)["keys"]["app_key"] == "set"
    raises(ValueError, keys.set, DEV, JOIN, APPKEY[:15])
    raises(ValueError, keys.set, DEV[:7], JOIN, APPKEY)
    raises(ValueError, keys.get, "nwk_key")


def test_keys_on_the_unix_port_file_store():
    from cnode.nvsfile import NVS as FileNVS
    import os
    path = "/tmp/cn_test_keys_%s.json" % sys.implementation.name
    try:
        os.remove(path)
    except OSError:
        pass
    keys = Keys(FileNVS("cn_keys", path))
    keys.set(DEV, JOIN, APPKEY)
    again = Keys(FileNVS("cn_keys", path))  # a fresh object reads the file
    assert again.get("join_eui") == JOIN and again.get("app_key") == APPKEY
    _no_key_text(repr(again))
    os.remove(path)
