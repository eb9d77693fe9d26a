"""The STA test kit against the real server: entities, deep insert, dataArray, queries, the server's quirks, restarts,
concurrent writers, and the proxy's fault switches."""
from __future__ import annotations

import re
import threading
import time

import pytest

from stakit import StaClient, StaServer, entity_id

OM_MEASUREMENT = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
DEV1 = "70B3D57ED0000001"


def thing(name: str, deveui: str, **extra) -> dict:
    return {"name": name, "description": "citynode sensor node", "properties": {"deveui": deveui},
            "Locations": [{"name": f"{name} site", "description": "lamp post", "encodingType": "application/geo+json",
                           "location": {"type": "Point", "coordinates": [8.0472, 52.2799]}}], **extra}


def datastream(name: str, thing_id: str | None = None, **links) -> dict:
    ds = {"name": name, "description": "air temperature at the node", "observationType": OM_MEASUREMENT,
          "unitOfMeasurement": {"name": "degree Celsius", "symbol": "°C",
                                "definition": "http://qudt.org/vocab/unit/DEG_C"}, **links}
    if thing_id:
        ds["Thing"] = {"@iot.id": thing_id}
    return ds


SENSOR = {"name": "BME280", "description": "Bosch BME280", "encodingType": "text/html",
          "metadata": "https://www.bosch-sensortec.com/bme280"}
AIR_T = {"name": "air temperature", "description": "temperature of the air",
         "definition": "http://vocab.nerc.ac.uk/collection/P07/current/CFSN0023/"}


def node(c: StaClient, name: str = "node-0001", deveui: str = DEV1) -> tuple[str, str]:
    """A Thing with a Location and one Datastream (Sensor and ObservedProperty inline); returns their ids."""
    tid = c.create("/Things", thing(name, deveui))
    dsid = c.create("/Datastreams", datastream(f"{name} temperature", tid, Sensor=SENSOR, ObservedProperty=AIR_T))
    return tid, dsid


def test_service_root_lists_conformance_with_data_array(sta_server):
    c = StaClient(sta_server.url)
    status, headers, root = c.get("/")
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert root["serverSettings"]["conformance"] == [
        "http://www.opengis.net/spec/iot_sensing/1.1/req/datamodel",
        "http://www.opengis.net/spec/iot_sensing/1.1/req/resource-path",
        "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data",
        "http://www.opengis.net/spec/iot_sensing/1.1/req/create-update-delete",
        "http://www.opengis.net/spec/iot_sensing/1.1/req/data-array",
    ]
    assert {v["name"]: v["url"] for v in root["value"]}["Observations"] == sta_server.url + "/Observations"
    # The root without its trailing slash is a redirect, not the document.
    status, headers, _ = StaClient(f"http://127.0.0.1:{sta_server.port}").get("/sensorthings/v1.1")
    assert status == 301 and headers["location"] == "/sensorthings/v1.1/"


def test_create_entities_deep_insert_and_read_back(sta_server):
    c = StaClient(sta_server.url)
    status, headers, body = c.post("/Things", thing("node-0001", DEV1))
    assert status == 201 and body is None and headers["content-length"] == "0"
    tid = entity_id(headers["location"])
    assert headers["location"] == f"{sta_server.url}/Things('{tid}')" and UUID_RE.match(tid)

    # Sensor and ObservedProperty on their own, then a Datastream linking all three by @iot.id.
    sid = c.create("/Sensors", SENSOR)
    opid = c.create("/ObservedProperties", AIR_T)
    dsid = c.create("/Datastreams", datastream("t", tid, Sensor={"@iot.id": sid}, ObservedProperty={"@iot.id": opid}))
    status, _, ds = c.get(f"/Datastreams('{dsid}')", expand="Thing,Sensor,ObservedProperty")
    assert status == 200
    assert (ds["Thing"]["@iot.id"], ds["Sensor"]["@iot.id"], ds["ObservedProperty"]["@iot.id"]) == (tid, sid, opid)
    assert ds["unitOfMeasurement"]["symbol"] == "°C" and ds["observationType"] == OM_MEASUREMENT

    # One POST: a Thing with its Location and a Datastream whose Sensor, ObservedProperty and first Observation
    # are inline too.
    deep = thing("node-0002", "70B3D57ED0000002", Datastreams=[datastream(
        "deep", Sensor=SENSOR, ObservedProperty=AIR_T,
        Observations=[{"phenomenonTime": "2019-01-01T00:00:00Z", "result": 1.5}])])
    t2 = c.create("/Things", deep)
    status, _, got = c.get(f"/Things('{t2}')", expand="Locations,Datastreams($expand=Sensor,Observations)")
    assert status == 200 and got["Locations"][0]["location"]["coordinates"] == [8.0472, 52.2799]
    assert got["Datastreams"][0]["Sensor"]["name"] == "BME280"
    assert [o["result"] for o in got["Datastreams"][0]["Observations"]] == [1.5]

    # A client's own @iot.id is ignored: the server assigns a UUIDv7.
    own = "01a24700-0000-7000-8000-000000000001"
    assert c.create("/Sensors", {**SENSOR, "@iot.id": own}) != own


def test_observations_keep_quality_and_parameters_and_derive_the_feature(sta_server):
    c = StaClient(sta_server.url)
    tid, dsid = node(c)
    quality = {"rssi": -97, "snr": 7.5, "gateways": ["gw-1", "gw-2"]}
    params = {"fcnt": 5, "deveui": DEV1, "port": {"n": 2}}
    oid = c.create("/Observations", {"phenomenonTime": "2019-01-01T00:00:00Z", "resultTime": "2019-01-01T00:05:00Z",
                                     "result": 21.5, "resultQuality": quality, "parameters": params,
                                     "Datastream": {"@iot.id": dsid}})
    status, _, o = c.get(f"/Observations('{oid}')", expand="FeatureOfInterest")
    assert status == 200
    assert (o["phenomenonTime"], o["resultTime"]) == ("2019-01-01T00:00:00+00:00", "2019-01-01T00:05:00+00:00")
    assert (o["result"], o["resultQuality"], o["parameters"]) == (21.5, quality, params)
    foi = o["FeatureOfInterest"]
    assert foi["feature"] == {"type": "Point", "coordinates": [8.0472, 52.2799]} and foi["name"] == "node-0001 site"

    # Later Observations of the same place share that FeatureOfInterest; an int result comes back as a float,
    # a missing resultTime is the phenomenonTime.
    o2 = c.create("/Observations", {"phenomenonTime": "2019-01-01T00:10:00Z", "result": 22,
                                    "Datastream": {"@iot.id": dsid}})
    _, _, got = c.get(f"/Observations('{o2}')", expand="FeatureOfInterest")
    assert got["FeatureOfInterest"]["@iot.id"] == foi["@iot.id"] and got["result"] == 22.0
    assert got["resultTime"] == "2019-01-01T00:10:00+00:00" and "parameters" not in got


def test_observation_without_any_feature_of_interest_is_a_500(sta_server):
    c = StaClient(sta_server.url)
    bare = c.create("/Things", {"name": "no place", "description": "d"})
    dsid = c.create("/Datastreams", datastream("t", bare, Sensor=SENSOR, ObservedProperty=AIR_T))
    status, _, body = c.post("/Observations", {"phenomenonTime": "2019-01-01T00:00:00Z", "result": 1,
                                               "Datastream": {"@iot.id": dsid}})
    assert (status, body) == (500, {"detail": "Internal server error"})
    assert "NOT NULL constraint failed" in sta_server.output()
    # An inline FeatureOfInterest makes it work; the next Observation still needs its own.
    feature = {"name": "f", "description": "d", "encodingType": "application/geo+json",
               "feature": {"type": "Point", "coordinates": [8.0, 52.0]}}
    assert c.create("/Observations", {"phenomenonTime": "2019-01-01T00:00:00Z", "result": 1,
                                      "Datastream": {"@iot.id": dsid}, "FeatureOfInterest": feature})
    status, _, _ = c.post("/Observations", {"result": 2, "Datastream": {"@iot.id": dsid}})
    assert status == 500


def test_create_observations_data_array(sta_server):
    c = StaClient(sta_server.url)
    _, ds1 = node(c)
    _, ds2 = node(c, "node-0002", "70B3D57ED0000002")
    components = ["phenomenonTime", "result", "resultTime", "resultQuality", "parameters"]
    body = [{"Datastream": {"@iot.id": ds1}, "components": components,
             "dataArray": [["2019-01-02T00:00:00Z", 20.0, "2019-01-02T00:00:05Z", {"rssi": -90}, {"fcnt": 100}],
                           ["2019-01-02T00:10:00Z", 20.5, "2019-01-02T00:10:05Z", None, {"fcnt": 101}]]},
            {"Datastream": {"@iot.id": ds2}, "components": ["phenomenonTime", "result"],
             "dataArray": [["2019-01-02T00:00:00Z", 7.0]]}]
    status, headers, links = c.post("/CreateObservations", body)
    assert status == 201 and "location" not in headers
    assert isinstance(links, list) and len(links) == 3
    assert all(re.fullmatch(re.escape(sta_server.url) + r"/Observations\('[0-9a-f-]{36}'\)", u) for u in links)
    _, _, first = c.request("GET", links[0])
    assert (first["result"], first["resultQuality"], first["parameters"]) == (20.0, {"rssi": -90}, {"fcnt": 100})
    _, _, second = c.request("GET", links[1])
    assert "resultQuality" not in second  # a null component is left out

    # A group whose Datastream does not exist fails as a whole with one "error" per row, still with 201; the
    # other groups are created. A bad row spoils its whole group.
    missing = "01a24700-0000-7000-8000-000000000009"
    status, _, links = c.post("/CreateObservations", [
        {"Datastream": {"@iot.id": missing}, "components": ["phenomenonTime", "result"],
         "dataArray": [["2019-01-03T00:00:00Z", 1], ["2019-01-03T00:01:00Z", 2]]},
        {"Datastream": {"@iot.id": ds1}, "components": ["phenomenonTime", "result"],
         "dataArray": [["2019-01-03T00:00:00Z", 3]]},
        {"Datastream": {"@iot.id": ds2}, "components": ["phenomenonTime", "result"],
         "dataArray": [["2019-01-03T00:00:00Z", 4], ["2019-01-03T00:01:00Z", "not a number"]]}])
    assert status == 201 and len(links) == 5 and links[:2] == ["error", "error"] and links[3:] == ["error", "error"]
    assert links[2].startswith(sta_server.url + "/Observations(")
    assert [o["result"] for o in c.get_all("/Observations", filter="phenomenonTime ge 2019-01-03T00:00:00Z")] == [3.0]

    # Shape errors are 422 for the whole request.
    status, _, err = c.post("/CreateObservations", {"Datastream": {"@iot.id": ds1}, "components": ["result"],
                                                     "dataArray": [[1]]})
    assert status == 422 and err["detail"][0]["type"] == "list_type"
    status, _, err = c.post("/CreateObservations", [{"Datastream": {"@iot.id": ds1},
                                                      "components": ["phenomenonTime", "result"], "dataArray": [[1]]}])
    assert status == 422 and "dataArray[0] has 1 values but components has 2" in err["detail"][0]["msg"]


def test_filter_expand_count_and_paging(sta_server):
    c = StaClient(sta_server.url)
    t1, ds1 = node(c)
    _, ds2 = node(c, "node-0002", "70B3D57ED0000002")
    rows = [[f"2019-01-01T00:{i // 60:02d}:{i % 60:02d}Z", float(i), {"fcnt": i}] for i in range(150)]
    status, _, links = c.post("/CreateObservations", [{"Datastream": {"@iot.id": ds1},
                                                       "components": ["phenomenonTime", "result", "parameters"],
                                                       "dataArray": rows}])
    assert status == 201 and "error" not in links

    _, _, got = c.get("/Things", filter=f"properties/deveui eq '{DEV1}'", select="id,name")
    assert got == {"value": [{"@iot.id": t1, "name": "node-0001"}]}
    _, _, got = c.get("/Things", filter="name eq 'node-0002'", select="name")
    assert got == {"value": [{"name": "node-0002"}]}
    _, _, got = c.get("/Datastreams", filter=f"Thing/properties/deveui eq '{DEV1}'", select="id")
    assert got["value"] == [{"@iot.id": ds1}]
    _, _, got = c.get("/Observations", filter="phenomenonTime eq 2019-01-01T00:00:07Z", select="result")
    assert got["value"] == [{"result": 7.0}]
    _, _, got = c.get("/Observations", filter="parameters/fcnt eq 5", select="result,parameters")
    assert got["value"] == [{"result": 5.0, "parameters": {"fcnt": 5}}]
    _, _, got = c.get("/Observations", filter="parameters/fcnt eq '5'", select="result")
    assert got["value"] == []  # JSON values compare with their type
    # An id in $filter is a bare GUID literal; quoted, it matches nothing.
    _, _, got = c.get("/Observations", filter=f"Datastream/id eq {ds1}", top="1", count="true")
    assert got["@iot.count"] == 150
    _, _, got = c.get("/Observations", filter=f"Datastream/id eq '{ds1}'", count="true")
    assert got["@iot.count"] == 0

    # Pages: 100 by default and at most, then @iot.nextLink (with $skip) until the last page.
    status, _, page = c.get("/Observations", count="true")
    assert status == 200 and page["@iot.count"] == 150 and len(page["value"]) == 100
    assert page["@iot.nextLink"] == f"{sta_server.url}/Observations?$count=true&$top=100&$skip=100"
    status, _, err = c.get("/Observations", top="101")
    assert status == 422 and err["detail"][0]["msg"] == "Value error, $top must be less than or equal to 100"
    results = [o["result"] for o in c.get_all("/Observations", top="40", orderby="result", select="result")]
    assert results == [float(i) for i in range(150)]

    # Nested $expand, while no inner collection outgrows its page (see the quirks below).
    c.post("/CreateObservations", [{"Datastream": {"@iot.id": ds2}, "components": ["phenomenonTime", "result"],
                                    "dataArray": [[f"2019-01-01T00:00:0{i}Z", float(i)] for i in range(3)]}])
    status, _, got = c.get("/Things", filter="name eq 'node-0002'", select="name", expand=(
        "Datastreams($select=name;$expand=Observations($orderby=result desc;$select=result))"))
    assert status == 200
    assert got["value"] == [{"name": "node-0002", "Datastreams": [
        {"name": "node-0002 temperature", "Observations": [{"result": 2.0}, {"result": 1.0}, {"result": 0.0}]}]}]


def test_server_quirks_a_client_must_avoid(sta_server):
    c = StaClient(sta_server.url)
    tid, dsid = node(c)
    rows = [[f"2019-01-01T00:00:{i:02d}Z", float(i)] for i in range(3)]
    c.post("/CreateObservations", [{"Datastream": {"@iot.id": dsid}, "components": ["phenomenonTime", "result"],
                                    "dataArray": rows}])
    # $orderby=phenomenonTime is a 500 (resultTime works).
    assert c.get("/Observations", orderby="phenomenonTime")[0] == 500
    assert c.get("/Observations", orderby="resultTime desc", select="result")[2]["value"][0] == {"result": 2.0}
    # @iot.nextLink carries its query unencoded (spaces and all).
    _, _, page = c.get("/Observations", top="1", filter="result ge 0")
    assert " ge 0" in page["@iot.nextLink"]
    # A nested $expand whose inner collection needs a nextLink fails with 404.
    status, _, body = c.get(f"/Things('{tid}')", expand="Datastreams($expand=Observations($top=2))")
    assert (status, body) == (404, {"detail": "Not found"})
    # $filter inside $expand is a 400 (the server raises a TypeError).
    status, _, body = c.get("/Datastreams", expand="Observations($filter=result ge 1)")
    assert (status, body) == (400, {"detail": "Bad request"})
    assert "unexpected keyword argument 'filter'" in sta_server.output()
    # POST below an entity (Datastreams(id)/Observations) is not offered.
    status, _, body = c.post(f"/Datastreams('{dsid}')/Observations", {"result": 1})
    assert (status, body) == (405, "Method not allowed")
    # A Datastream link to a missing Thing is a 500 rather than a 4xx.
    missing = "01a24700-0000-7000-8000-000000000009"
    assert c.post("/Datastreams", datastream("x", missing, Sensor=SENSOR, ObservedProperty=AIR_T))[0] == 500


def test_bad_input_answers(sta_server):
    c = StaClient(sta_server.url)
    _, dsid = node(c)
    status, _, err = c.request("POST", "/Observations", raw=b"{not json")
    assert (status, err) == (400, {"detail": "Cannot parse request body"})
    status, _, err = c.post("/Observations", {"result": "high", "Datastream": {"@iot.id": dsid}})
    assert status == 422
    assert err == {"detail": [{"type": "float_parsing", "loc": ["body", "payload", "result"],
                               "msg": "Input should be a valid number, unable to parse string as a number"}]}
    status, _, err = c.post("/Observations", {"result": 1, "parameters": "x", "Datastream": {"@iot.id": dsid}})
    assert status == 422 and err["detail"][0]["loc"] == ["body", "payload", "parameters"]
    status, _, err = c.post("/Observations", {"result": 1, "resultQuality": [1], "Datastream": {"@iot.id": dsid}})
    assert status == 422 and err["detail"][0]["type"] == "dict_type"
    status, _, err = c.post("/Datastreams", {**datastream("x", Sensor=SENSOR, ObservedProperty=AIR_T),
                                             "unitOfMeasurement": {"name": "ppm", "symbol": "ppm"}})
    assert status == 422
    assert ["body", "payload", "unitOfMeasurement", "definition"] in [e["loc"] for e in err["detail"]]
    status, _, err = c.post("/Datastreams", datastream("x", "01a24700-0000-7000-8000-000000000009",
                                                       Sensor=SENSOR, ObservedProperty=AIR_T)
                            | {"observationType": "OM_Measurement"})
    assert status == 422 and err["detail"][0]["type"] == "literal_error"
    assert c.get("/Things('01a24700-0000-7000-8000-000000000009')")[:3:2] == (404, {"detail": "Not found"})
    assert c.get("/Things", filter="name eq")[:3:2] == (400, {"detail": "Bad request"})


def test_two_concurrent_writers_lose_nothing(sta_server):
    c = StaClient(sta_server.url)
    streams = [node(c, f"node-000{k}", f"70B3D57ED000000{k}")[1] for k in (1, 2)]
    failures: list[tuple[int, object]] = []

    def writer(dsid: str) -> None:
        w = StaClient(sta_server.url)
        for i in range(60):
            if i % 20 == 19:
                status, _, body = w.post("/CreateObservations", [{
                    "Datastream": {"@iot.id": dsid}, "components": ["phenomenonTime", "result"],
                    "dataArray": [[f"2019-01-02T00:00:{j:02d}Z", float(j)] for j in range(50)]}])
                ok = status == 201 and isinstance(body, list) and "error" not in body
            else:
                status, _, body = w.post("/Observations", {"phenomenonTime": f"2019-01-01T00:00:{i:02d}Z",
                                                           "result": i, "Datastream": {"@iot.id": dsid}})
                ok = status == 201
            if not ok:
                failures.append((status, body))

    threads = [threading.Thread(target=writer, args=(d,)) for d in streams]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert failures == []
    for dsid in streams:
        _, _, got = c.get(f"/Datastreams('{dsid}')/Observations", count="true", top="1")
        assert got["@iot.count"] == 57 + 3 * 50
    assert "database is locked" not in sta_server.output()


def test_restart_keeps_port_and_data(sta_server):
    c = StaClient(sta_server.url)
    tid, _ = node(c)
    url = sta_server.url
    sta_server.stop()
    with pytest.raises(OSError):
        StaClient(url, timeout=2).get("/")
    sta_server.restart()
    assert sta_server.url == url
    assert StaClient(url).get(f"/Things('{tid}')", select="name")[2] == {"name": "node-0001"}


def test_start_failure_raises_with_the_server_output(tmp_path):
    (tmp_path / "sta.sqlite3").mkdir()  # the database path is a directory: migrate fails
    with pytest.raises(RuntimeError, match="(?s)exited with 1 before answering.*unable to open database file"):
        StaServer(tmp_path).start()


def test_proxy_forwards_verbatim_and_links_name_the_proxy(sta_proxy):
    c = StaClient(sta_proxy.url)
    status, headers, _ = c.post("/Things", thing("node-0001", DEV1), headers={"X-Trace": "abc"})
    assert status == 201 and headers["location"].startswith(sta_proxy.url + "/Things('")
    method, path, sent = sta_proxy.requests[-1]
    assert (method, path, sent["X-Trace"]) == ("POST", "/sensorthings/v1.1/Things", "abc")
    assert c.get("/Things", select="name")[2] == {"value": [{"name": "node-0001"}]}


def test_proxy_injects_500s(sta_proxy):
    c = StaClient(sta_proxy.url)
    _, dsid = node(c)
    obs = {"phenomenonTime": "2019-01-01T00:00:00Z", "result": 1, "Datastream": {"@iot.id": dsid}}
    sta_proxy.fail_next(2, method="POST")
    assert c.get("/Things")[0] == 200  # GETs pass
    assert c.post("/Observations", obs)[:3:2] == (500, {"detail": "injected failure"})
    assert c.post("/Observations", obs)[0] == 500
    assert c.post("/Observations", obs)[0] == 201
    assert sta_proxy.injected == 2
    count = lambda: c.get("/Observations", count="true", top="0")[2]["@iot.count"]  # noqa: E731
    assert count() == 1  # the failed POSTs never reached the server

    sta_proxy.fail_next(1, forward=True)  # the server applies it, the client only sees the 500
    assert c.post("/Observations", obs)[0] == 500
    assert count() == 2


def test_proxy_delay_and_down(sta_proxy):
    c = StaClient(sta_proxy.url)
    sta_proxy.delay = 0.3
    t0 = time.monotonic()
    assert c.get("/")[0] == 200
    assert time.monotonic() - t0 >= 0.3
    sta_proxy.delay = 0

    sta_proxy.set_down(True)
    with pytest.raises(ConnectionRefusedError):
        StaClient(sta_proxy.url, timeout=2).get("/")
    with pytest.raises(OSError):
        c.get("/")  # the kept-alive connection was closed too
    sta_proxy.set_down(False)
    assert c.get("/")[0] == 200

    # The proxy itself up but the server gone: 502.
    assert sta_proxy.server is not None
    sta_proxy.server.stop()
    status, _, body = c.get("/")
    assert status == 502 and body["detail"].startswith("upstream:")
    sta_proxy.server.start()
    assert c.get("/")[0] == 200


def test_proxy_requires_credentials(sta_proxy):
    sta_proxy.require_bearer("s3cret")
    status, headers, body = StaClient(sta_proxy.url).get("/")
    assert (status, body, headers["www-authenticate"]) == (401, {"detail": "Unauthorized"}, 'Bearer realm="sta"')
    assert StaClient(sta_proxy.url, headers={"Authorization": "Bearer wrong"}).get("/")[0] == 401
    assert StaClient(sta_proxy.url, headers={"Authorization": "Bearer s3cret"}).get("/")[0] == 200

    sta_proxy.require_basic("city", "pa:ss")
    assert StaClient(sta_proxy.url, headers={"Authorization": "Bearer s3cret"}).get("/")[0] == 401
    assert StaClient(sta_proxy.url, headers={"Authorization": "Basic Y2l0eTpwYTpzcw=="}).get("/")[0] == 200
    sta_proxy.require_auth(None)
    assert StaClient(sta_proxy.url).get("/")[0] == 200

