"""The bridge's OGC SensorThings API (v1.1) output: per device a Thing with its Location, a Sensor per sensor model,
an ObservedProperty per channel, a Datastream per channel and device, created once and found again by $filter;
then Observations, through the dataArray extension when the server offers it, never twice.

Plain HTTP with `requests` rather than FROST's `frost-sta-client`: the bridge needs each failure classified
(retry a 5xx or a timeout, stop on a 4xx), filters on JSON properties and the dataArray request, and none of
the entity model that would bring six more dependencies (jsonpickle, demjson3, furl ...)."""
from __future__ import annotations

import logging
import math
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests

from citynode.bridge.core import Delivery, OutputDown
from citynode.errors import CitynodeError, InputError
from citynode.bridge.semantics import meaning

log = logging.getLogger("citynode.bridge.sta")
ROWS_PER_REQUEST = 2000  # dataArray rows per CreateObservations (servers cap requests: 10,000 rows, 2.5 MB)
PAGE = 100  # entities per GET (STA servers cap $top; FROST's default is 100 too)
MOVED_M = 50.0  # a GPS fix this far from the Thing's Location gives it a new one
UNKNOWN_PLACE = {"type": "GeometryCollection", "geometries": []}  # GeoJSON for "no location known"
# the sensor of each driver's channels: model, manufacturer, where its datasheet or product page is
SENSORS = {
    "bme280": ("BME280", "Bosch Sensortec",
               "https://www.bosch-sensortec.com/products/environmental-sensors/humidity-sensors-bme280/"),
    "sht4x": ("SHT4x", "Sensirion", "https://sensirion.com/products/catalog/SHT40"),
    "scd4x": ("SCD4x", "Sensirion", "https://sensirion.com/products/catalog/SCD41"),
    "sps30": ("SPS30", "Sensirion", "https://sensirion.com/products/catalog/SPS30"),
    "sds011": ("SDS011", "Nova Fitness", "https://www.inovafitness.com/en/a/chanpinzhongxin/95.html"),
    "pms5003": ("PMS5003", "Plantower", "https://www.plantower.com/en/products_33/74.html"),
    "dnms": ("DNMS", "DNMS project (ICS-43434 microphone)", "https://github.com/hbitter/DNMS"),
    "qmc5883l": ("QMC5883L", "QST", "https://www.qstcorp.com/en_comp_prod/QMC5883L"),
    "vl53l1x": ("VL53L1X", "STMicroelectronics", "https://www.st.com/en/imaging-and-photonics-solutions/vl53l1x.html"),
    "nmea": ("GNSS receiver (NMEA 0183)", "", ""),
    "pulse": ("Presence counter (PIR / radar)", "", ""),
    "battery": ("Battery voltage divider", "", ""),
}
NODE = ("citynode node", "", "")  # status channels, and everything of a device whose board is not known


class StaError(CitynodeError):
    """The server refused something it will refuse again (4xx): the bridge stops rather than loop."""


def credentials(env, token_file: str | None = None, basic_file: str | None = None):
    """The bearer token (str) or basic (user, password) to send, from a file or the environment; None if none.
    Never taken from the command line, where other users can read it."""
    def read(path):
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise InputError(f"cannot read {path}: {e.strerror}") from None
        if not text:
            raise InputError(f"{path} is empty")
        return text

    if token_file:
        return read(token_file)
    if basic_file:
        user, sep, password = read(basic_file).partition(":")
        if not sep:
            raise InputError(f"{basic_file} must hold USER:PASSWORD")
        return user, password
    if env.get("CITYNODE_STA_TOKEN"):
        return env["CITYNODE_STA_TOKEN"]
    if env.get("CITYNODE_STA_USER"):
        return env["CITYNODE_STA_USER"], env.get("CITYNODE_STA_PASSWORD", "")
    return None


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def unix(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def _quote(v: str) -> str:
    return "'" + v.replace("'", "''") + "'"


def _ref(entity_id) -> str:
    """An id as it goes in a path: Things(12) or Things('0193...')."""
    return str(entity_id) if isinstance(entity_id, int) else _quote(entity_id)


def _id_in(location: str):
    m = re.search(r"\(('?)([^)']*)\1\)$", location or "")
    if not m:
        raise StaError(f"the server's answer names no created entity (Location: {location!r})")
    return m.group(2) if m.group(1) else int(m.group(2))


def _id_key(entity_id):
    """Order of creation: integer ids count up; UUIDv7 (and FROST's) strings sort by time."""
    return (0, entity_id, "") if isinstance(entity_id, int) else (1, 0, str(entity_id))


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371000 * math.asin(min(1.0, math.sqrt(h)))


class StaClient:
    """JSON over HTTP to one SensorThings service; raises OutputDown (retry later) or StaError (will not work)."""

    def __init__(self, url: str, auth=None, timeout: float = 30.0):
        if not re.match(r"^https?://[^/]", url):
            raise InputError(f"--sta-url must be http(s)://HOST/PATH, not {url!r}")
        self.base = url.rstrip("/")
        self.timeout = timeout
        s = requests.Session()
        s.headers.update({"Accept": "application/json", "User-Agent": "citynode-bridge"})
        if isinstance(auth, tuple):
            s.auth = auth
        elif auth:
            s.headers["Authorization"] = f"Bearer {auth}"
        self.session = s
        self.spent: dict[str, list] = {}  # kind of request -> [count, seconds waiting for the answer]
        self.give_up_at = float("inf")  # monotonic: a stopping bridge makes no request after this

    def delete(self, path: str) -> None:
        """DELETE; an entity already gone (another bridge deleted it first) is no error."""
        try:
            self.request("DELETE", path)
        except StaError as e:
            if " HTTP 404 " not in str(e):
                raise

    def request(self, method: str, path: str, body=None, params=None) -> requests.Response:
        url = path if path.startswith("http") else self.base + path
        kind = "observations" if "Observations" in path and method == "POST" else method
        left = self.give_up_at - time.monotonic()
        if left <= 0:  # stopping: what is left of the batch comes again next run (nothing of it acknowledged)
            raise OutputDown("stopping: the rest of the batch is left for the next run")
        t0 = time.perf_counter()
        try:
            r = self.session.request(method, url, json=body, params=params, timeout=min(self.timeout, max(left, 1.0)),
                                     allow_redirects=False)
        except requests.RequestException as e:
            raise OutputDown(f"{self.base}: {type(e).__name__}") from None
        finally:
            acc = self.spent.setdefault(kind, [0, 0.0])
            acc[0] += 1
            acc[1] += time.perf_counter() - t0
        if r.status_code >= 500 or r.status_code in (408, 429):
            raise OutputDown(f"{method} {path.split('?')[0]}: HTTP {r.status_code} {r.text[:120]!r}")
        if r.status_code in (401, 403):
            raise StaError(f"{self.base} answered HTTP {r.status_code} to {method}: check the credentials "
                           "(CITYNODE_STA_TOKEN, CITYNODE_STA_USER/PASSWORD, --sta-token-file, --sta-basic-file)")
        if r.status_code >= 300:
            raise StaError(f"{method} {path.split('?')[0]}: HTTP {r.status_code} {r.text[:300]!r}")
        return r

    def json(self, method: str, path: str, body=None, params=None) -> Any:
        r = self.request(method, path, body, params)
        try:
            return r.json()
        except ValueError:
            raise OutputDown(f"{method} {path.split('?')[0]}: the answer is not JSON ({r.text[:80]!r})") from None

    def create(self, collection: str, body: dict):
        """POST an entity; its id (from the Location header: servers need not send a body)."""
        r = self.request("POST", f"/{collection}", body)
        return _id_in(r.headers.get("Location", ""))

    def find(self, collection: str, flt: str, **params) -> list[dict]:
        """Every entity matching the $filter, page by page in a stable order. ($skip on our own request rather
        than @iot.nextLink: django-ogc-sensorthings 1.2.0 leaves $orderby out of its nextLinks.)"""
        out: dict[Any, dict] = {}
        skip = 0
        while True:
            page = self.json("GET", f"/{collection}", params={"$filter": flt, "$orderby": "id", "$top": PAGE,
                                                              "$skip": skip, **params})
            got = page.get("value", [])
            out.update((e.get("@iot.id"), e) for e in got)  # (its pages overlap by one entity: kept once)
            skip += len(got)
            if len(got) < PAGE:
                return list(out.values())

    def data_array(self) -> bool:
        """Whether the server says it offers the dataArray extension (STA 1.1 serverSettings)."""
        root = self.json("GET", "/")
        conf = (root.get("serverSettings") or {}).get("conformance") or []
        return any("data-array" in c for c in conf)


class StaOutput:
    """The bridge output that posts Observations. Entities are found by what identifies them (a Thing by its
    DevEUI in properties, a Datastream by DevEUI and channel, a Sensor or ObservedProperty by name) and made
    when missing; if two bridges made one at the same moment, both use the older, and the bridge that made the
    newer deletes it."""

    def __init__(self, url: str, auth=None, boards_dir: str | None = None, registry: str | None = None,
                 timeout: float = 30.0):
        self.client = StaClient(url, auth, timeout)
        self.boards_dir = boards_dir
        self.registry = registry
        self._array: bool | None = None
        self.settle_s = 1.0  # after creating entities: time for another bridge's creations to become visible
        self._thing_ids: dict[str, Any] = {}
        self._things: dict[str, dict] = {}  # device -> {"id", "name", "place" (lat, lon) or None, "props"}
        self._streams: dict[tuple[str, str], Any] = {}
        self._sensors: dict[str, Any] = {}
        self._properties: dict[str, Any] = {}
        self._unknown_place: dict[str, Any] = {}  # device -> FeatureOfInterest id, while it has no Location
        self._problems: list[tuple[str | None, str]] = []
        self.posted = 0

    # --- the bridge's interface --------------------------------------------------------------------------

    def deliver(self, items: list[Delivery]) -> int:
        if self._array is None:
            self._array = self.client.data_array()
            log.info("SensorThings at %s: %s", self.client.base,
                     "dataArray (CreateObservations)" if self._array else "no dataArray: one POST per Observation")
        rows: dict[Any, list[list]] = {}  # Datastream id -> rows
        todo = []
        for d in items:
            if not d.uplink.device:
                if d.samples:
                    self._problems.append((None, "uplink without a device id: not posted"))
                continue
            if d.samples:
                todo.append((d, [(s, ch, v) for s in d.samples for ch, v in s["values"].items()
                                 if v is not None and not isinstance(v, bool)]))
        self._prepare(todo)
        todo = [(d, self._things[d.uplink.device or ""], values) for d, values in todo]
        # a redelivery, or a retry after an answer that never came: what the server already has is not sent
        have = self._existing([d for d, _, _ in todo if d.dup]) if any(d.dup for d, _, _ in todo) else set()
        for d, thing, values in todo:
            for s, ch, v in values:
                ds = self._streams[(d.uplink.device or "", ch)]
                if (ds, s["t"]) not in have:
                    rows.setdefault(ds, []).append(self._row(d, s, ch, v, thing))
        new = sum(len(r) for r in rows.values())
        if new:
            self._post(rows)
        self.posted += new
        return new

    def stop_by(self, deadline: float) -> None:
        """A stopping bridge's deadline (monotonic): no request is begun after it, none waits much beyond it."""
        self.client.give_up_at = deadline

    def summary(self) -> str:
        """Where the time went: requests by kind and the seconds spent waiting for their answers."""
        parts = [f"{n} {k} in {t:.1f} s" for k, (n, t) in sorted(self.client.spent.items())]
        return f"{self.posted} Observations posted; requests: {', '.join(parts) or 'none'}"

    def problems(self) -> list[tuple[str | None, str]]:
        """(device, reason) of what the server would not take since the last call."""
        out, self._problems = self._problems, []
        return out

    # --- entities ----------------------------------------------------------------------------------------

    def _ensure(self, specs: list[tuple[str, str, dict, dict, Any]]) -> None:
        """Make sure each (collection, filter, body, cache, key) exists, caching its id; the oldest match (lowest
        id) is the one used, by every bridge alike. What is missing is created first, all of it; then, after
        settle_s (so that whatever another bridge created at the same moment has been committed and is seen),
        that is looked up again, and a bridge whose own creation is not the oldest deletes it before using it.
        A bridge never deletes another's: were a server to commit one bridge's creation later than settle_s,
        the two could each keep their own, and both stay (nothing is lost)."""
        made = []
        for coll, flt, body, cache, key in specs:
            if key in cache:
                continue
            found = self.client.find(coll, flt)
            if found:  # there already: no second lookup
                cache[key] = min((e["@iot.id"] for e in found), key=_id_key)
            else:
                made.append((coll, flt, cache, key, self.client.create(coll, body)))
        if made:
            time.sleep(self.settle_s)
        for coll, flt, cache, key, mine in made:
            ids = sorted((e["@iot.id"] for e in self.client.find(coll, flt)), key=_id_key)
            if not ids:
                raise OutputDown(f"{coll} created but not found by {flt}")
            if mine != ids[0] and mine in ids:  # only ever our own: another bridge may be using its one
                self.client.delete(f"/{coll}({_ref(mine)})")
                log.info("%s %s: made at the same moment as %s (another bridge); ours deleted", coll, mine, ids[0])
            cache[key] = ids[0]

    def _prepare(self, todo: list[tuple[Delivery, list]]) -> None:
        """Every entity these deliveries need, in the order they link: Things and ObservedProperties, then
        Sensors and stand-in features, then Datastreams."""
        samples: dict[str, list[dict]] = {}
        channels: dict[str, set[str]] = {}
        for d, values in todo:
            dev = d.uplink.device or ""
            samples.setdefault(dev, []).extend(d.samples)
            channels.setdefault(dev, set()).update(ch for _, ch, _ in values)
        facts = {dev: self._device_facts(dev) for dev in samples if dev not in self._thing_ids}
        specs = [self._thing_spec(dev, facts[dev], samples[dev]) for dev in facts]
        for ch in sorted(set().union(*channels.values())) if channels else ():
            m = meaning(ch)
            specs.append(("ObservedProperties", f"name eq {_quote(m.label)}",
                          {"name": m.label, "definition": m.definition, "description": m.description},
                          self._properties, ch))
        self._ensure(specs)
        for dev, ss in samples.items():
            self._thing(dev, facts.get(dev), ss)
        specs = []
        for dev, chs in channels.items():
            thing = self._things[dev]
            for ch in chs:
                specs.append(self._sensor_spec(self._model(thing, ch)))
            if thing["place"] is None:
                name = f"{thing['name']} (location not known)"
                specs.append(("FeaturesOfInterest", f"name eq {_quote(name)}",
                              {"name": name, "description": f"citynode node {dev} before its location was known",
                               "encodingType": "application/geo+json", "feature": UNKNOWN_PLACE},
                              self._unknown_place, dev))
        self._ensure(specs)
        specs = []
        for dev, chs in channels.items():
            thing = self._things[dev]
            for ch in sorted(chs):
                m = meaning(ch)
                body = {"name": f"{thing['name']} {m.label}", "description": f"{m.description} ({ch})",
                        "observationType": m.observation_type,
                        "unitOfMeasurement": {"name": m.unit_name, "symbol": m.ucum,
                                              "definition": m.unit_definition},
                        "properties": {"deveui": dev, "channel": ch}, "Thing": {"@iot.id": thing["id"]},
                        "Sensor": {"@iot.id": self._sensors[self._model(thing, ch)[0]]},
                        "ObservedProperty": {"@iot.id": self._properties[ch]}}
                flt = f"Thing/properties/deveui eq {_quote(dev)} and properties/channel eq {_quote(ch)}"
                specs.append(("Datastreams", flt, body, self._streams, (dev, ch)))
        self._ensure(specs)

    def _device_facts(self, device: str) -> tuple[str, str | None, tuple[float, float] | None]:
        """(name, board, place) from the device registry, if one is given and knows the device."""
        if not self.registry or not re.fullmatch(r"[0-9a-f]{16}", device):
            return device, None, None
        from citynode.device.registry import Registry

        try:
            with Registry(self.registry, create=False, readonly=True) as reg:
                dev = reg.get(device)
                return dev.name or dev.device_id or device, dev.board, reg.location(device)
        except CitynodeError as e:
            log.warning("registry: %s", e)
            return device, None, None

    def _thing_spec(self, device: str, facts, samples: list[dict]) -> tuple:
        name, board, place = facts
        place = place or _gps_fix(samples)
        props: dict[str, Any] = {"deveui": device, "source": "citynode"}
        if board:
            props["board"] = board
        fw = _fw(samples)
        if fw is not None:
            props["firmware"] = fw
        body: dict[str, Any] = {"name": name, "description": f"citynode sensor node {device}", "properties": props}
        if place:
            body["Locations"] = [_location(name, place)]
        return ("Things", f"properties/deveui eq {_quote(device)}", body, self._thing_ids, device)

    def _thing(self, device: str, facts, samples: list[dict]) -> dict:
        """The Thing as we know it (id, name, current place, properties); on first sight read from the server
        and completed there (the registry's board and place); a moved GPS fix or a new firmware version
        updates it."""
        thing = self._things.get(device)
        fix = _gps_fix(samples)
        if thing is None:
            tid = self._thing_ids[device]
            name, board, place = facts or (device, None, None)
            old = self.client.json("GET", f"/Things({_ref(tid)})")
            locs = self.client.json("GET", f"/Things({_ref(tid)})/Locations").get("value", [])
            props = dict(old.get("properties") or {})
            props.update({"deveui": device, **({"board": board} if board else {})})
            thing = {"id": tid, "name": old.get("name", name), "place": _place(locs[0]) if locs else None,
                     "props": props}
            if props != old.get("properties"):  # e.g. a board the registry has learnt since
                self.client.request("PATCH", f"/Things({_ref(tid)})", {"properties": props})
            place = place or fix
            if place and (thing["place"] is None or _metres(thing["place"], place) > MOVED_M):
                self._move(thing, place)
            self._things[device] = thing
        if fix and (thing["place"] is None or _metres(thing["place"], fix) > MOVED_M):
            self._move(thing, fix)
        fw = _fw(samples)
        if fw is not None and thing["props"].get("firmware") != fw:
            thing["props"] = {**thing["props"], "firmware": fw}
            self.client.request("PATCH", f"/Things({_ref(thing['id'])})", {"properties": thing["props"]})
        return thing

    def _move(self, thing: dict, place: tuple[float, float]) -> None:
        """A new current Location for the Thing: a FROST-Server keeps the old one as a HistoricalLocation."""
        self.client.create("Locations", {**_location(thing["name"], place), "Things": [{"@iot.id": thing["id"]}]})
        thing["place"] = place

    def _sensor_spec(self, model: tuple[str, str, str]) -> tuple:
        name, maker, link = model
        body = {"name": name, "description": f"{maker} {name}".strip(),
                "encodingType": "application/pdf" if link.endswith(".pdf") else "text/html",
                "metadata": link or "none published"}
        return ("Sensors", f"name eq {_quote(name)}", body, self._sensors, name)

    def _model(self, thing: dict, channel: str) -> tuple[str, str, str]:
        from cnode.board import _ALIAS, channels

        from citynode.device.boards import BoardError, get_board

        board = thing["props"].get("board")
        if board:
            try:
                sensors = get_board(board, self.boards_dir).sensors
            except (BoardError, OSError, ValueError):
                sensors = []
            for s in sensors:
                driver: str = s["driver"]  # a str: boards._sensor checks it
                drv = _ALIAS.get(driver, driver)
                if channel in channels(s) or s.get("channel") == channel:
                    base = SENSORS.get(drv, (drv, "", ""))
                    return (s.get("model", base[0]), s.get("maker", base[1]), s.get("datasheet", base[2]))
            if channel == "battery":
                return SENSORS["battery"]
        return NODE

    # --- observations ------------------------------------------------------------------------------------

    def _row(self, d: Delivery, s: dict, channel: str, value, thing: dict) -> list:
        up = d.uplink
        quality = {"flags": s.get("flags", {}).get(channel, [])}
        params = {k: v for k, v in (("deveui", up.device), ("fcnt", up.fcnt), ("fport", up.fport),
                                    ("gateways", up.gateways), ("rssi", up.rssi), ("snr", up.snr))
                  if v is not None}
        received = up.received or iso(d.received_at)
        row = [iso(s["t"]), value, received, quality, params]
        if thing["place"] is None:
            row.append(self._unknown_place[up.device or ""])
        return row

    def _existing(self, items: list[Delivery]) -> set[tuple[Any, int]]:
        """(Datastream id, sample time) of these uplinks' Observations already on the server: one query per
        Datastream over the uplinks' FCnt range. (Not one query with $expand=Datastream: django-ogc-sensorthings
        1.2.0 expands some Observations of a collection with another Observation's Datastream.)"""
        span: dict[str, tuple[int, int]] = {}
        for d in items:
            dev, f = d.uplink.device, int(d.uplink.fcnt or 0)
            if dev:
                lo, hi = span.get(dev, (f, f))
                span[dev] = (min(lo, f), max(hi, f))
        have = set()
        for (dev, _), ds in list(self._streams.items()):
            if dev not in span:
                continue
            lo, hi = span[dev]
            for o in self.client.find(f"Datastreams({_ref(ds)})/Observations",
                                      f"parameters/fcnt ge {lo} and parameters/fcnt le {hi}"):
                try:
                    have.add((ds, int(unix(o["phenomenonTime"].split("/")[0]))))
                except (KeyError, ValueError):
                    continue
        return have

    def _post(self, rows: dict[Any, list[list]]) -> None:
        base = ["phenomenonTime", "result", "resultTime", "resultQuality", "parameters"]
        if not self._array:
            for ds, rs in rows.items():
                for r in rs:
                    body = dict(zip(base, r[:5]), Datastream={"@iot.id": ds})
                    if len(r) > 5:
                        body["FeatureOfInterest"] = {"@iot.id": r[5]}
                    self.client.create("Observations", body)
            return
        groups = []
        for ds, rs in rows.items():
            for with_foi in (False, True):
                part = [r for r in rs if (len(r) > 5) == with_foi]
                for i in range(0, len(part), ROWS_PER_REQUEST):
                    groups.append({"Datastream": {"@iot.id": ds},
                                   "components": base + (["FeatureOfInterest/id"] if with_foi else []),
                                   "dataArray": part[i:i + ROWS_PER_REQUEST]})
        request: list[dict] = []
        size = 0
        for g in groups:
            if request and size + len(g["dataArray"]) > ROWS_PER_REQUEST:
                self._create_observations(request)
                request, size = [], 0
            request.append(g)
            size += len(g["dataArray"])
        if request:
            self._create_observations(request)

    def _create_observations(self, groups: list[dict]) -> None:
        answer = self.client.json("POST", "/CreateObservations", groups)
        if not isinstance(answer, list):
            raise OutputDown(f"CreateObservations answered {str(answer)[:120]!r}")
        i = 0
        for g in groups:
            n = len(g["dataArray"])
            bad = sum(1 for x in answer[i:i + n] if x == "error")
            if bad:
                self._problems.append((None, f"the server refused {bad} of {n} Observations of Datastream "
                                             f"{g['Datastream']['@iot.id']}"))
            i += n


def _gps_fix(samples: list[dict]) -> tuple[float, float] | None:
    for s in reversed(samples):
        v = s["values"]
        lat, lon = v.get("latitude"), v.get("longitude")
        flags = s.get("flags", {})
        if lat is not None and lon is not None and not flags.get("latitude") and not flags.get("longitude"):
            return float(lat), float(lon)
    return None


def _fw(samples: list[dict]) -> str | None:
    """The newest firmware version among the samples (fw_version channel, major*10000+minor*100+patch)."""
    v = next((s["values"]["fw_version"] for s in reversed(samples) if s["values"].get("fw_version") is not None),
             None)
    return None if v is None else f"{int(v) // 10000}.{int(v) // 100 % 100}.{int(v) % 100}"


def _location(name: str, place: tuple[float, float]) -> dict:
    lat, lon = place
    return {"name": f"{name} location", "description": "where the node is mounted",
            "encodingType": "application/geo+json", "location": {"type": "Point", "coordinates": [lon, lat]}}


def _place(loc: dict) -> tuple[float, float] | None:
    try:
        lon, lat = loc["location"]["coordinates"][:2]
        return float(lat), float(lon)
    except (KeyError, TypeError, ValueError):
        return None

