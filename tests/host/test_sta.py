"""`citynode bridge --publish sta` into a real SensorThings server (django-ogc-sensorthings on SQLite): TTS uplinks
on a stock Mosquitto -> bridge -> server -> read back with $filter/$expand; every decoded value once, with its
unit and quality, through server restarts, 500s, a slow server, a killed bridge and two bridges in a group."""
from __future__ import annotations

import http.client
import json
import threading
import time

import pytest

from citynode.errors import InputError
from citynode.payload.frame import decode_frame, encode
from citynode.payload.channels import CHANNELS
from citynode.device.registry import Registry
from citynode.bridge.semantics import MEANINGS, missing
from citynode.bridge.sta import credentials, iso, unix
from mqttkit import BridgeProc, Mosquitto, publish_all, ttn_message
from stakit import StaClient, StaServer

T = 1546300800
TOPIC = "v3/city@ttn/devices/+/up"


@pytest.fixture
def broker(tmp_path):
    m = Mosquitto(tmp_path / "mosq").start()  # stock settings
    yield m
    m.stop()


def frames_for(dev: str, n: int, gps: bool = False, start: int = 0, lat: float = 52.27931) -> list[tuple[str, str, bytes]]:
    """n uplinks of one device, FCnt start.., two samples each (the second PM value warming up)."""
    out = []
    for f in range(start, start + n):
        t = T + 600 * f
        a = {"t": t, "values": {"temperature": 8.5 + f % 7 / 10, "humidity": 64.5, "pm10": 9.4 + f % 5}}
        b = {"t": t + 300, "values": {"temperature": 8.6, "pm10": 12.0 + f % 3}, "flags": {"pm10": ["warming_up"]}}
        if gps:
            a["values"].update(latitude=lat, longitude=8.04718)
        frame = encode([a, b], 222)[0]
        out.append((f"v3/city@ttn/devices/{dev}/up", ttn_message(frame, dev, fcnt=f), frame))
    return out


def expected(uplinks) -> set[tuple]:
    """(device, channel, time, value, flags) of every decoded value: what the server must hold, once each."""
    exp = set()
    for _, msg, frame in uplinks:
        dev = json.loads(msg)["end_device_ids"]["dev_eui"].lower()
        samples, _ = decode_frame(frame)
        for s in samples:
            for ch, v in s.values.items():
                if v is not None:
                    exp.add((dev, ch, s.t, float(v), tuple(s.flags.get(ch, ()))))
    return exp


def held(client: StaClient, devices) -> list[tuple]:
    """Every Observation of the devices as (device, channel, time, result, flags), read back through their
    Datastreams ($filter on the Thing's DevEUI)."""
    rows = {}  # by @iot.id: this server's pages overlap by one entity, a duplicate Observation has its own id
    for dev in devices:
        for ds in client.get_all("/Datastreams", filter=f"Thing/properties/deveui eq '{dev}'"):
            try:
                obs = client.get_all(f"/Datastreams('{ds['@iot.id']}')/Observations")
            except AssertionError as e:  # a Datastream made twice at once, deleted since it was listed
                if "answered 404" in str(e):
                    continue
                raise
            for o in obs:
                assert o["parameters"]["deveui"] == dev
                rows[o["@iot.id"]] = (dev, ds["properties"]["channel"], int(unix(o["phenomenonTime"])),
                                      o["result"], tuple(o["resultQuality"]["flags"]))
    return list(rows.values())


def wait_held(client, devices, n, timeout=60.0) -> list[tuple]:
    end = time.monotonic() + timeout
    while True:
        try:
            rows = held(client, devices)
        except (OSError, http.client.HTTPException):  # the server restarting under us: read again
            time.sleep(0.3)
            continue
        except AssertionError as e:
            # django-ogc-sensorthings answers 500 (Datastream.DoesNotExist in its adapter) to a listing that
            # races the deletion of a Datastream two bridges made at once; the bridges retry a 5xx, so does this
            if "answered 500" not in str(e) or time.monotonic() > end:
                raise
            time.sleep(0.3)
            continue
        if len(rows) >= n or time.monotonic() > end:
            return rows
        time.sleep(0.3)


def sta_bridge(broker, url, client_id, tmp_path, extra=(), env=None, state=None) -> BridgeProc:
    b = BridgeProc(broker.port, "ttn", TOPIC, "sta", client_id=client_id, state=state or tmp_path / f"{client_id}.db",
                   extra=("--sta-url", url, *extra), env=env)
    b.wait_line("subscribed to $share/")
    return b


def test_every_channel_has_a_ucum_unit_and_a_definition_uri():
    assert missing() == []
    for c in CHANNELS:
        m = MEANINGS[c.name]
        assert m.ucum and m.unit_name and m.label, c.name
        assert m.definition.startswith(("http://", "https://", "urn:")), c.name
        assert m.unit_definition.startswith("http://qudt.org/vocab/unit/"), c.name
        assert m.observation_type.startswith("http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_")
    assert MEANINGS["co2"].ucum == "[ppm]" and MEANINGS["temperature"].ucum == "Cel"


def test_credentials_come_from_files_or_the_environment(tmp_path):
    tok, basic = tmp_path / "token", tmp_path / "basic"
    tok.write_text("abc.def\n")
    basic.write_text("city:pa:ss\n")
    assert credentials({}, str(tok)) == "abc.def"
    assert credentials({}, None, str(basic)) == ("city", "pa:ss")
    assert credentials({"CITYNODE_STA_TOKEN": "t"}) == "t"
    assert credentials({"CITYNODE_STA_USER": "u", "CITYNODE_STA_PASSWORD": "p"}) == ("u", "p")
    assert credentials({}) is None
    (tmp_path / "empty").write_text("")
    with pytest.raises(InputError, match="is empty"):
        credentials({}, str(tmp_path / "empty"))
    (tmp_path / "nocolon").write_text("city")
    with pytest.raises(InputError, match="USER:PASSWORD"):
        credentials({}, None, str(tmp_path / "nocolon"))
    assert iso(T) == "2019-01-01T00:00:00Z" and unix("2019-01-01T00:00:00+00:00") == T


def test_uplinks_become_things_datastreams_and_observations_once(broker, sta_server, tmp_path):
    reg_path = tmp_path / "fleet.db"
    with Registry(reg_path) as reg:
        dev1 = reg.create(1, board="heltec-wifi-lora-32-v3")[0]
        reg.set_location(dev1.dev_eui, 52.2724, 8.0470)
    d1, d2, d3 = dev1.dev_eui.lower(), "70b3d57ed0000002", "70b3d57ed0000003"
    ups = frames_for(d1, 30) + frames_for(d2, 30, gps=True) + frames_for(d3, 30)
    moved = frames_for(d2, 1, gps=True, start=30, lat=52.28931)  # 1.1 km north: a new Location
    b = sta_bridge(broker, sta_server.url, "e2e", tmp_path, extra=("--registry", str(reg_path)))
    try:
        publish_all(broker.port, [(t, m) for t, m, _ in ups])
        publish_all(broker.port, [(t, m) for t, m, _ in ups[:10]])  # the network server repeats some
        exp = expected(ups)
        wait_held(StaClient(sta_server.url), (d1, d2, d3), len(exp))
        publish_all(broker.port, [(t, m) for t, m, _ in moved])
        ups += moved
        exp = expected(ups)
        c = StaClient(sta_server.url)
        rows = wait_held(c, (d1, d2, d3), len(exp))
        time.sleep(1.0)
        rows = held(c, (d1, d2, d3))
    finally:
        summary = b.stop()
    assert len(rows) == len(exp) and set(rows) == exp, summary  # every value once, with its quality flags
    assert "101 received, 91 published, 0 errors, 10 duplicates dropped" in summary
    # one Thing per device, found by DevEUI, with its Location from the registry, the GPS channels, or none
    things = {t["properties"]["deveui"]: t for t in c.get_all("/Things", expand="Locations,Datastreams")}
    assert sorted(things) == sorted([d1, d2, d3])
    assert things[d1]["name"] == dev1.name and things[d1]["properties"]["board"] == "heltec-wifi-lora-32-v3"
    assert things[d1]["Locations"][0]["location"] == {"type": "Point", "coordinates": [8.047, 52.2724]}
    # (a FROST-Server replaces a Thing's Location and keeps the old one as a HistoricalLocation; this server keeps
    # both as current)
    assert [8.04718, 52.27931] in [x["location"]["coordinates"] for x in things[d2]["Locations"]]
    assert [8.04718, 52.28931] in [x["location"]["coordinates"] for x in things[d2]["Locations"]]
    assert things[d3]["Locations"] == []
    assert len(things[d1]["Datastreams"]) == 3 and len(things[d2]["Datastreams"]) == 5
    # units, observed properties and sensors
    # (each Datastream's ObservedProperty and Sensor by its own path: django-ogc-sensorthings 1.2.0 expands a
    # collection's to-one links with the first entity's)
    streams = c.get_all("/Datastreams", filter=f"Thing/properties/deveui eq '{d1}'")
    by_ch = {s["properties"]["channel"]: s for s in streams}
    for s in streams:
        for link in ("ObservedProperty", "Sensor"):
            s[link] = c.get(f"/Datastreams('{s['@iot.id']}')/{link}")[2]
    assert by_ch["temperature"]["unitOfMeasurement"] == {"name": "degree Celsius", "symbol": "Cel",
                                                         "definition": "http://qudt.org/vocab/unit/DEG_C"}
    assert by_ch["temperature"]["ObservedProperty"]["definition"] == "http://qudt.org/vocab/quantitykind/Temperature"
    assert by_ch["pm10"]["ObservedProperty"]["definition"] == "http://dd.eionet.europa.eu/vocabulary/aq/pollutant/5"
    assert by_ch["temperature"]["Sensor"]["name"] == "SHT4x"  # the Heltec V3 board file's T/RH sensor
    assert len(c.get_all("/ObservedProperties")) == 5
    assert sorted(s["name"] for s in c.get_all("/Sensors")) == ["SHT4x", "citynode node"]
    # an Observation carries its uplink: FCnt, port; the one of a device without a place has a stand-in feature
    o = c.get_all("/Observations", filter=f"parameters/deveui eq '{d3}' and parameters/fcnt eq 3",
                  expand="FeatureOfInterest")[0]
    assert o["parameters"] == {"deveui": d3, "fcnt": 3, "fport": 2}
    assert o["resultTime"].startswith("2019-01-01T00:05:00")
    assert o["FeatureOfInterest"]["feature"] == {"type": "GeometryCollection", "geometries": []}


def test_server_restart_500s_slow_answers_and_a_killed_bridge_lose_and_double_nothing(broker, sta_proxy, tmp_path):
    devs = [f"70b3d57ed00002{i:02x}" for i in range(5)]
    ups = [u for f in range(80) for d in devs for u in frames_for(d, 1, start=f)]
    exp = expected(ups)
    c = StaClient(sta_proxy.server.url)
    state = tmp_path / "killed.db"
    b = sta_bridge(broker, sta_proxy.url, "faults", tmp_path, state=state)

    def trickle():  # after the first uplink of each device (its entities made): 395 uplinks over about 8 s
        for i in range(5, len(ups), 10):
            publish_all(broker.port, [(t, m) for t, m, _ in ups[i:i + 10]])
            time.sleep(0.2)

    def until(cond, timeout=30.0):
        end = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < end, "timed out"
            time.sleep(0.05)

    pub = threading.Thread(target=trickle)
    try:
        publish_all(broker.port, [(t, m) for t, m, _ in ups[:5]])
        wait_held(c, devs, 25)
        pub.start()
        sta_proxy.fail_next(3, method="POST", forward=True)  # applied, but the answer is lost: a 500
        until(lambda: sta_proxy.injected >= 3)
        sta_proxy.fail_next(2, status=503)  # refused outright
        until(lambda: sta_proxy.injected >= 5)
        sta_proxy.delay = 0.4  # slow
        time.sleep(1.5)
        sta_proxy.delay = 0.0
        sta_proxy.server.restart()  # down and up again, same database
        wait_held(c, devs, len(exp) * 2 // 3)
        b.kill()  # and the bridge killed: what it had not acknowledged comes again, DUP set
        b = sta_bridge(broker, sta_proxy.url, "faults", tmp_path, state=state)
        pub.join()
        rows = wait_held(c, devs, len(exp), timeout=90)
        time.sleep(1.0)
        rows = held(c, devs)
    finally:
        b.stop()
    assert sta_proxy.injected >= 5
    assert len(rows) == len(exp) and set(rows) == exp


@pytest.fixture(params=["tuned", "stock"])
def sta_either(request, tmp_path):
    """The STA server on SQLite in WAL mode with a busy timeout, or with Django's stock SQLite settings (where
    two writers at once get "database is locked" 500s)."""
    server = StaServer(tmp_path / "sta", tuned=request.param == "tuned").start()
    yield server
    server.stop()


def test_a_stop_while_the_server_is_slow_is_bounded_and_the_next_run_delivers_the_rest(broker, sta_proxy, tmp_path):
    # 0.5 s per request: the first uplinks of 6 new devices take dozens of requests (entities, then
    # Observations), far more than the 5 s a stop may take for the batch in hand
    devs = [f"70b3d57ed00004{i:02x}" for i in range(6)]
    ups = [u for d in devs for u in frames_for(d, 2)]
    exp = expected(ups)
    state = tmp_path / "slow.db"
    b = sta_bridge(broker, sta_proxy.url, "slowstop", tmp_path, state=state)
    sta_proxy.delay = 0.5
    publish_all(broker.port, [(t, m) for t, m, _ in ups])
    b.wait_line("SensorThings at")  # it is at work on the batch
    t0 = time.monotonic()
    b.stop()
    took = time.monotonic() - t0
    assert took < 5 + 0.5 + 5 + 3, took  # drain_s + the request in flight + the sessions' round trips + slack
    assert b.proc.returncode == 0
    c = StaClient(sta_proxy.server.url)
    assert len(held(c, devs)) < len(exp)  # it did give up on part of the batch
    sta_proxy.delay = 0.0
    b = sta_bridge(broker, sta_proxy.url, "slowstop", tmp_path, state=state)
    try:
        rows = wait_held(c, devs, len(exp))
        time.sleep(1.0)
        rows = held(c, devs)
    finally:
        b.stop()
    assert sorted(rows) == sorted(exp)  # every value once


def test_two_bridges_in_a_group_make_each_entity_once(broker, sta_either, tmp_path):
    sta_server = sta_either
    devs = [f"70b3d57ed00003{i:02x}" for i in range(12)]
    ups = [u for f in range(6) for d in devs for u in frames_for(d, 1, start=f)]
    exp = expected(ups)
    bridges = [sta_bridge(broker, sta_server.url, f"pair-{i}", tmp_path, extra=("--group", "sta")) for i in range(2)]
    c = StaClient(sta_server.url)
    try:
        publish_all(broker.port, [(t, m) for t, m, _ in ups])
        rows = wait_held(c, devs, len(exp))
        time.sleep(1.0)
        rows = held(c, devs)
    finally:
        summaries = [b.stop() for b in bridges]
    assert len(rows) == len(exp) and set(rows) == exp
    if not sta_server.tuned:
        # with Django's stock SQLite settings a create can wait seconds for the lock: longer than the bridges'
        # settle time, so both may keep their own (docs/platform.md); what must hold is above: nothing lost or
        # doubled
        return
    things = c.get_all("/Things")
    assert sorted(t["properties"]["deveui"] for t in things) == sorted(devs)
    streams = c.get_all("/Datastreams")
    assert len(streams) == len({(s["properties"]["deveui"], s["properties"]["channel"]) for s in streams}) == 36
    assert all("0 errors" in s for s in summaries) and not any(s.startswith("citynode bridge: 0 received")
                                                              for s in summaries)


def test_credentials_are_sent_and_never_logged(broker, sta_proxy, tmp_path):
    sta_proxy.require_bearer("s3cret-Token")
    ups = frames_for("70b3d57ed0000401", 3)
    bad = BridgeProc(broker.port, "ttn", TOPIC, "sta", client_id="noauth", state=tmp_path / "n.db",
                     extra=("--sta-url", sta_proxy.url), env={"CITYNODE_STA_TOKEN": "wrong"})
    bad.wait_line("subscribed to $share/")
    publish_all(broker.port, [(t, m) for t, m, _ in ups])
    assert bad.proc.wait(timeout=30) == 1  # stops: retrying with a refused token would not help
    assert any("HTTP 401" in x and "check the credentials" in x for x in bad.log), bad.log
    b = sta_bridge(broker, sta_proxy.url, "noauth", tmp_path, env={"CITYNODE_STA_TOKEN": "s3cret-Token"},
                   state=tmp_path / "n.db")
    c = StaClient(sta_proxy.server.url)
    try:
        rows = wait_held(c, ["70b3d57ed0000401"], len(expected(ups)))  # nothing was acknowledged: all again
    finally:
        b.stop()
    assert set(rows) == expected(ups)
    assert not any("s3cret" in x or "wrong" in x for x in bad.log + b.log)
    (tmp_path / "basic").write_text("city:pw\n")
    sta_proxy.require_basic("city", "pw")
    b = sta_bridge(broker, sta_proxy.url, "basic", tmp_path, extra=("--sta-basic-file", str(tmp_path / "basic")))
    try:
        publish_all(broker.port, [(t, m) for t, m, _ in frames_for("70b3d57ed0000402", 2)])
        rows = wait_held(c, ["70b3d57ed0000402"], len(expected(frames_for("70b3d57ed0000402", 2))))
    finally:
        b.stop()
    assert set(rows) == expected(frames_for("70b3d57ed0000402", 2))


def test_bad_sta_options_are_usage_errors(tmp_path, capsys):
    from citynode.cli import main

    assert main(["bridge", "--broker", "mqtt://127.0.0.1:1", "--input", "ttn", "--subscribe", "x",
                 "--publish", "sta"]) == 2
    assert "--publish sta needs --sta-url" in capsys.readouterr().err
    assert main(["bridge", "--broker", "mqtt://127.0.0.1:1", "--input", "ttn", "--subscribe", "x",
                 "--publish", "out", "--sta-url", "http://x"]) == 2
    assert main(["bridge", "--broker", "mqtt://127.0.0.1:1", "--input", "ttn", "--subscribe", "x",
                 "--publish", "sta", "--sta-url", "ftp://x"]) == 2
