"""`citynode decode`: every input kind and output format, with the exact output, duplicates and FCnt resets."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import cbor2

ROOT = Path(__file__).resolve().parents[2]
VECTORS = {v["name"]: v for v in json.loads((ROOT / "tests" / "vectors" / "payload.json").read_text())}
SINGLE = bytes.fromhex(VECTORS["single_env_sample"]["frames"][0])
FLAGGED = bytes.fromhex(VECTORS["quality_flags"]["frames"][0])
STATUS = bytes.fromhex(VECTORS["node_status"]["frames"][0])
REGULAR = bytes.fromhex(VECTORS["regular_6_samples_dr0"]["frames"][0])

# the first vector's samples as typed into tests/vectors/gen_payload.py
SINGLE_VALUES = '{"temperature": 8.57, "humidity": 64.8, "pressure": 102623, "pm2_5": 3.3, "pm10": 9.4}'
DEV1 = "70b3d57ed0000001"
DEV2 = "70b3d57ed0000002"


def run(args: list[str], stdin: str | bytes) -> tuple[int, bytes, str]:
    p = subprocess.run([sys.executable, "-m", "citynode.cli", "decode", *args],
                       input=stdin.encode() if isinstance(stdin, str) else stdin, capture_output=True)
    return p.returncode, p.stdout, p.stderr.decode()


def ttn(frame: bytes, dev: str = DEV1, fcnt: int | None = 5, fport: int = 2) -> str:
    """A The Things Stack v3 uplink message as its MQTT integration publishes it (fields at zero left out)."""
    up: dict = {"session_key_id": "AYa0", "f_port": fport, "frm_payload": base64.b64encode(frame).decode(),
                "rx_metadata": [{"gateway_ids": {"gateway_id": "gw-1"}, "rssi": -97, "snr": 7.5}],
                "settings": {"data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 7}},
                             "frequency": "868100000"},
                "received_at": "2019-01-01T00:05:00.123456789Z", "consumed_airtime": "0.061696s"}
    if fcnt:
        up["f_cnt"] = fcnt
    msg = {"end_device_ids": {"device_id": "node-1", "application_ids": {"application_id": "city"},
                              "dev_eui": dev.upper(), "join_eui": "0000000000000000", "dev_addr": "260B1234"},
           "correlation_ids": ["as:up:01H"], "received_at": "2019-01-01T00:05:00.2Z", "uplink_message": up}
    return json.dumps(msg)


def chirpstack(frame: bytes, dev: str = DEV2, fcnt: int = 9) -> str:
    """A ChirpStack v4 up event (JSON integration)."""
    return json.dumps({
        "deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d", "time": "2019-01-01T00:05:00.5Z",
        "deviceInfo": {"tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242", "tenantName": "City",
                       "applicationId": "17c82e96-be03-4f38-aef3-f83d48582d97", "applicationName": "air",
                       "deviceProfileId": "14855bf7-d10d-4aee-b618-ebfcb64dc7ad", "deviceProfileName": "citynode",
                       "deviceName": "node-2", "devEui": dev, "tags": {}},
        "devAddr": "00189440", "adr": True, "dr": 5, "fCnt": fcnt, "fPort": 2, "confirmed": False,
        "data": base64.b64encode(frame).decode(),
        "rxInfo": [{"gatewayId": "0016c001f153a14c", "rssi": -60, "snr": 10.5}],
        "txInfo": {"frequency": 868100000, "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 7}}}})


# --- input kinds ----------------------------------------------------------------------------------------


def test_hex_input_encode_lines_bare_hex_and_base64():
    lines = [json.dumps({"fport": 2, "hex": SINGLE.hex()}), STATUS.hex(), base64.b64encode(SINGLE).decode()]
    rc, out, err = run(["--input", "hex", "--keep-duplicates"], "\n".join(lines) + "\n")
    assert rc == 0, err
    assert out.decode() == (
        '{"t": 1546300844, "values": ' + SINGLE_VALUES + '}\n'
        '{"t": 1546304400, "values": {"battery": 3.912, "reboot_reason": 4, "fw_version": 10200, '
        '"queue_depth": 3, "dropped": 0}}\n'
        '{"t": 1546300844, "values": ' + SINGLE_VALUES + '}\n')
    assert err == ""


def test_ttn_v3_uplink_messages():
    rc, out, err = run(["--input", "ttn"], ttn(SINGLE) + "\n" + ttn(STATUS, dev=DEV2, fcnt=1) + "\n")
    assert rc == 0, err
    assert out.decode() == (
        '{"t": 1546300844, "values": ' + SINGLE_VALUES + ', "device": "70b3d57ed0000001"}\n'
        '{"t": 1546304400, "values": {"battery": 3.912, "reboot_reason": 4, "fw_version": 10200, '
        '"queue_depth": 3, "dropped": 0}, "device": "70b3d57ed0000002"}\n')


def test_chirpstack_v4_up_events():
    rc, out, err = run(["--input", "chirpstack"], chirpstack(SINGLE) + "\n")
    assert rc == 0, err
    assert out.decode() == '{"t": 1546300844, "values": ' + SINGLE_VALUES + ', "device": "70b3d57ed0000002"}\n'


def test_quality_flags_and_nulls():
    rc, out, err = run(["--input", "chirpstack"], chirpstack(FLAGGED) + "\n")
    assert rc == 0, err
    rows = [json.loads(x) for x in out.decode().splitlines()]
    assert [r["t"] for r in rows] == [1546300800, 1546301100, 1546301400, 1546301700]
    assert rows[0] == {"t": 1546300800, "device": DEV2, "flags": {"pm10": ["missing"], "pm2_5": ["warming_up"]},
                       "values": {"temperature": 8.57, "humidity": 64.8, "pressure": 102623, "pm2_5": 3.3,
                                  "pm10": None}}
    assert rows[3]["flags"] == {"pm10": ["humid"]} and rows[3]["values"]["pm10"] == 20.0
    assert "flags" not in rows[1] and "flags" not in rows[2]


# --- output formats -------------------------------------------------------------------------------------


def test_senml_json_base_name_per_device_and_base_time():
    rc, out, err = run(["--input", "ttn", "--format", "senml-json"],
                       ttn(SINGLE) + "\n" + chirpstack(STATUS).replace('"fPort": 2', '"fPort": 2') + "\n")
    assert rc == 1  # the second line is a ChirpStack event, not a TTN message
    assert err == "citynode decode: line 2: not a The Things Stack uplink message (no uplink_message)\n"
    assert out.decode() == (
        '[{"bn": "urn:dev:deveui:70b3d57ed0000001:", "bt": 1546300844, "n": "temperature", "u": "Cel", '
        '"v": 8.57}, {"n": "humidity", "u": "%RH", "v": 64.8}, {"n": "pressure", "u": "Pa", "v": 102623}, '
        '{"n": "pm2_5", "u": "ug/m3", "v": 3.3}, {"n": "pm10", "u": "ug/m3", "v": 9.4}]\n')


def _resolve(pack: list[dict]) -> list[tuple[str, int, float, str | None]]:
    """RFC 8428 section 4.6: resolved records (name = bn + n, time = bt + t, unit)."""
    bn, bt, out = "", 0, []
    for rec in pack:
        bn = rec.get("bn", bn)
        bt = rec.get("bt", bt)
        out.append((bn + rec["n"], bt + rec.get("t", 0), rec["v"], rec.get("u")))
    return out


def test_senml_json_several_samples_resolve_to_absolute_times():
    rc, out, err = run(["--input", "chirpstack", "--format", "senml-json"],
                       chirpstack(REGULAR) + "\n" + chirpstack(STATUS, dev=DEV1) + "\n")
    assert rc == 0, err
    packs = [json.loads(x) for x in out.decode().splitlines()]
    assert len(packs) == 2
    recs = _resolve(packs[0])
    assert len(recs) == 30
    assert recs[:5] == [(f"urn:dev:deveui:{DEV2}:temperature", 1546300800, 8.57, "Cel"),
                        (f"urn:dev:deveui:{DEV2}:humidity", 1546300800, 64.8, "%RH"),
                        (f"urn:dev:deveui:{DEV2}:pressure", 1546300800, 102623, "Pa"),
                        (f"urn:dev:deveui:{DEV2}:pm2_5", 1546300800, 3.3, "ug/m3"),
                        (f"urn:dev:deveui:{DEV2}:pm10", 1546300800, 9.4, "ug/m3")]
    assert recs[-1] == (f"urn:dev:deveui:{DEV2}:pm10", 1546300800 + 5 * 300, 10.8, "ug/m3")
    assert packs[0][5] == {"n": "temperature", "u": "Cel", "v": 8.54, "t": 300}  # relative time
    # a channel without a SenML unit carries no "u"
    assert _resolve(packs[1])[1] == (f"urn:dev:deveui:{DEV1}:reboot_reason", 1546304400, 4, None)
    assert "u" not in packs[1][1]


def test_senml_cbor_labels():
    rc, out, err = run(["--input", "ttn", "--format", "senml-cbor"], ttn(SINGLE) + "\n" + ttn(STATUS, fcnt=6) + "\n")
    assert rc == 0, err
    # RFC 8428 section 6: bn -2, bt -3, n 0, u 1, v 2, t 6; packs follow each other in the stream
    first = [{-2: "urn:dev:deveui:70b3d57ed0000001:", -3: 1546300844, 0: "temperature", 1: "Cel", 2: 8.57},
             {0: "humidity", 1: "%RH", 2: 64.8}, {0: "pressure", 1: "Pa", 2: 102623},
             {0: "pm2_5", 1: "ug/m3", 2: 3.3}, {0: "pm10", 1: "ug/m3", 2: 9.4}]
    second = [{-2: "urn:dev:deveui:70b3d57ed0000001:", -3: 1546304400, 0: "battery", 1: "V", 2: 3.912},
              {0: "reboot_reason", 2: 4}, {0: "fw_version", 2: 10200}, {0: "queue_depth", 1: "count", 2: 3},
              {0: "dropped", 1: "count", 2: 0}]
    assert out == cbor2.dumps(first) + cbor2.dumps(second)
    assert out[:1] == b"\x85" and out[1] == 0xA5 and out[2] == 0x21  # array(5), map(5), key -2


def test_csv():
    rc, out, err = run(["--input", "ttn", "--format", "csv"], ttn(FLAGGED) + "\n")
    assert rc == 0, err
    lines = out.decode().splitlines()
    assert lines[0] == "t,device,channel,value,unit,flags"
    assert lines[1:6] == [
        "1546300800,70b3d57ed0000001,temperature,8.57,Cel,",
        "1546300800,70b3d57ed0000001,humidity,64.8,%RH,",
        "1546300800,70b3d57ed0000001,pressure,102623,Pa,",
        "1546300800,70b3d57ed0000001,pm2_5,3.3,ug/m3,warming_up",
        "1546300800,70b3d57ed0000001,pm10,,ug/m3,missing"]
    assert lines[-1] == "1546301700,70b3d57ed0000001,pm10,20.0,ug/m3,humid"
    assert len(lines) == 1 + 4 * 5


# --- duplicates, frame counter resets, bad lines ---------------------------------------------------------


def test_duplicates_dropped():
    # the same uplink twice (two gateways, or a retransmission), and the same frame from another device
    stdin = "\n".join([ttn(SINGLE, fcnt=5), ttn(SINGLE, fcnt=5), ttn(SINGLE, dev=DEV2, fcnt=5)]) + "\n"
    rc, out, err = run(["--input", "ttn"], stdin)
    assert rc == 0
    assert out.decode() == (
        '{"t": 1546300844, "values": ' + SINGLE_VALUES + ', "device": "70b3d57ed0000001"}\n'
        '{"t": 1546300844, "values": ' + SINGLE_VALUES + ', "device": "70b3d57ed0000002"}\n')
    assert err == "citynode decode: 1 duplicate samples dropped\n"
    rc, out, err = run(["--input", "ttn", "--keep-duplicates"], stdin)
    assert len(out.decode().splitlines()) == 3 and err == ""


def test_frame_counter_reset_reported():
    # f_cnt 0 is left out of a TTS message; after FCnt 41 it means the node rejoined or lost its counter
    stdin = "\n".join([ttn(SINGLE, fcnt=41), ttn(STATUS, fcnt=None), ttn(REGULAR, fcnt=1)]) + "\n"
    rc, out, err = run(["--input", "ttn"], stdin)
    assert rc == 0
    assert err == "citynode decode: line 2: warning: frame counter reset on device 70b3d57ed0000001 (now 0)\n"
    assert len(out.decode().splitlines()) == 1 + 1 + 6
    rc, out, err = run(["--input", "chirpstack"], chirpstack(SINGLE, fcnt=7) + "\n" + chirpstack(STATUS, fcnt=2) + "\n")
    assert err == "citynode decode: line 2: warning: frame counter reset on device 70b3d57ed0000002 (now 2)\n"


def test_bad_lines_one_error_each_and_decoding_goes_on():
    ver, mask, stream = cbor2.loads(SINGLE)
    bad_frame = base64.b64encode(cbor2.dumps([ver, mask, stream[:6]])).decode()  # valid CBOR, short stream
    stdin = "\n".join([
        ttn(SINGLE),
        "{not json",
        json.dumps({"uplink_message": {"f_port": 2, "frm_payload": "***"}}),
        ttn(SINGLE, fport=1, fcnt=6),
        ttn(SINGLE, fcnt=7).replace(base64.b64encode(SINGLE).decode(), bad_frame),
        "",
        "[1, 2]",
        ttn(STATUS, fcnt=8),
    ]) + "\n"
    rc, out, err = run(["--input", "ttn"], stdin)
    assert rc == 1
    assert err.splitlines() == [
        "citynode decode: line 2: bad JSON: Expecting property name enclosed in double quotes",
        "citynode decode: line 3: uplink_message.frm_payload is not base64",
        "citynode decode: line 4: FPort 1 is not the citynode data port 2",
        "citynode decode: line 5: truncated bit stream",
        "citynode decode: line 7: expected a JSON object",
    ]
    assert [json.loads(x)["t"] for x in out.decode().splitlines()] == [1546300844, 1546304400]
    rc, out, err = run(["--input", "chirpstack"], '{"data": "gw==", "fPort": 2}\n' + chirpstack(SINGLE) + "\n")
    assert rc == 1 and err == "citynode decode: line 1: not a ChirpStack up event (no data/deviceInfo)\n"
    assert len(out.decode().splitlines()) == 1
