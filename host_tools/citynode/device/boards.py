"""Supported boards: loads and validates the data files in boards/ (one JSON file per board)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from citynode.errors import CitynodeError

BOARDS_DIR = Path(os.environ.get("CITYNODE_BOARDS_DIR") or Path(__file__).resolve().parents[3] / "boards")

CHIPS = {"esp32": 0x1000, "esp32s3": 0x0}  # chip -> where the MicroPython image goes (bootloader offset)
ESPTOOL_CHIP_NAMES = {"ESP32": "esp32", "ESP32-S3": "esp32s3"}
FLASH_SIZES = {"2MB": 2 << 20, "4MB": 4 << 20, "8MB": 8 << 20, "16MB": 16 << 20}
RADIO_PINS = {  # pins each radio needs, by type
    "sx1276": ("sck", "mosi", "miso", "cs", "reset", "dio0"),
    "sx1262": ("sck", "mosi", "miso", "cs", "reset", "busy", "dio1"),
    "lora-e5": ("tx", "rx"),
    "rak3172": ("tx", "rx"),
    "simulated": (),  # the virtual node: radio and network in-process (citynode.sim.hwsim.virtual_board)
}
BUSES = ("i2c", "uart", "pin", "adc", "i2s", "ble")  # ble: the chip's own radio (cnode.drivers.blecount)
GPIO_MAX = {"esp32": 39, "esp32s3": 48}


class BoardError(CitynodeError):
    pass


class UnknownBoard(BoardError):
    """A board name no board file has: a usage error (exit 2), like any other bad option value."""

    exit_code = 2


@dataclass(frozen=True)
class Board:
    name: str
    title: str
    chip: str
    flash_offset: int
    flash_size: str
    radio: dict
    i2c: dict
    uarts: list
    sensors: list
    battery: dict
    micropython: dict
    power: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)  # node settings of this board (cnode.config precedence)
    simulated: dict = field(default_factory=dict)  # only the virtual board: how long it runs
    revisions: list = field(default_factory=list)  # facts that differ between board revisions (cnode.boardrev)
    path: Path | None = None

    @property
    def image_url(self) -> str:
        return self.micropython["url"]

    @property
    def image_sha256(self) -> str | None:
        return self.micropython.get("sha256")

    def as_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "chip": self.chip, "flash_offset": self.flash_offset,
                "flash_size": self.flash_size, "radio": self.radio, "i2c": self.i2c, "uarts": self.uarts,
                "sensors": self.sensors, "battery": self.battery, "power": self.power,
                "micropython": self.micropython,
                **({"settings": self.settings} if self.settings else {}),
                **({"revisions": self.revisions} if self.revisions else {}),
                **({"simulated": self.simulated} if self.simulated else {})}

    def node_config(self) -> dict:
        """The board file as the node keeps it (/board.json, read by firmware/cnode/board.py)."""
        return self.as_dict()


def _int(value, where: str) -> int:
    """Numbers may be written as JSON integers or as "0x.." strings (addresses, offsets)."""
    if isinstance(value, bool):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            pass
    raise ValueError(f"{where}: expected a number or a '0x..' string, got {value!r}")


def _need(d: dict, key: str, kind, where: str):
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected an object")
    if key not in d:
        raise ValueError(f"{where}.{key}: missing" if where else f"{key}: missing")
    v = d[key]
    if kind is not None and not isinstance(v, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ValueError(f"{where + '.' if where else ''}{key}: expected {names}, got {type(v).__name__}")
    return v


def _gpio(value, chip: str, where: str) -> int:
    n = _int(value, where)
    if not 0 <= n <= GPIO_MAX[chip]:
        raise ValueError(f"{where}: GPIO {n} does not exist on {chip} (0..{GPIO_MAX[chip]})")
    return n


RADIO_KEYS = {"type", "pins", "source", "uart", "baud", "mqtt", "tx_ant", "tx_ant_source",
              "dio3_tcxo_millivolts", "tcxo_source"}


def _radio_chip_facts(radio: dict, rtype: str) -> None:
    """The wiring facts the upstream driver needs: which SX1276 PA pin reaches the antenna, and whether an
    SX1262 runs from a TCXO on DIO3 (and at what voltage). Misspelt keys are errors, never ignored."""
    unknown = sorted(set(radio) - RADIO_KEYS)
    if unknown:
        raise ValueError(f"radio.{unknown[0]}: unknown key (known: {', '.join(sorted(RADIO_KEYS))})")
    if rtype == "sx1276":
        ant = _need(radio, "tx_ant", str, "radio")
        if ant not in ("PA_BOOST", "RFO"):
            raise ValueError(f"radio.tx_ant: {ant!r} is not PA_BOOST or RFO (the SX1276 pin wired to the antenna)")
        _need(radio, "tx_ant_source", str, "radio")
    elif "tx_ant" in radio:
        raise ValueError(f"radio.tx_ant: only an SX1276 has a choice of PA pin, not a {rtype}")
    if "dio3_tcxo_millivolts" in radio:
        if rtype != "sx1262":
            raise ValueError(f"radio.dio3_tcxo_millivolts: only an SX1262 powers its TCXO from DIO3, not a {rtype}")
        mv = radio["dio3_tcxo_millivolts"]
        if not isinstance(mv, int) or not 1600 <= mv <= 3300:
            raise ValueError(f"radio.dio3_tcxo_millivolts: {mv!r} is not 1600..3300 (SX1261/2 DS 13.3.6)")
        _need(radio, "tcxo_source", str, "radio")


def _parse(raw: dict, path: Path) -> Board:
    """The board file checked, part by part, in the file's order (the first error is the one reported)."""
    name, chip, offset, flash_size = _chip(raw, path)
    radio = _radio(raw, chip)
    i2c = dict(_need(raw, "i2c", dict, ""))
    for k in ("scl", "sda"):
        i2c[k] = _gpio(_need(i2c, k, (int, str), "i2c"), chip, f"i2c.{k}")
    uarts = _need(raw, "uarts", list, "")
    uart_ids = _uart_ids(uarts, chip)
    sensors = [_sensor(s, f"sensors[{i}]", chip, uart_ids) for i, s in enumerate(_need(raw, "sensors", list, ""))]
    battery = _battery(raw, chip)
    mp = _micropython(raw)
    return Board(name=name, title=raw.get("title", name), chip=chip, flash_offset=offset, flash_size=flash_size,
                 radio=radio, i2c=i2c, uarts=list(uarts), sensors=sensors, battery=battery, micropython=mp,
                 power=dict(raw.get("power", {})), settings=dict(raw.get("settings", {})),
                 simulated=dict(raw.get("simulated", {})), revisions=_revisions(raw), path=path)


def _chip(raw: dict, path: Path) -> tuple[str, str, int, str]:
    """name (the file's), chip, flash_offset (the chip's) and flash_size."""
    name = _need(raw, "name", str, "")
    if name != path.stem:
        raise ValueError(f"name: {name!r} does not match the file name {path.stem!r}")
    chip = _need(raw, "chip", str, "")
    if chip not in CHIPS:
        raise ValueError(f"chip: {chip!r} is not one of {', '.join(CHIPS)}")
    offset = _int(_need(raw, "flash_offset", (int, str), ""), "flash_offset")
    if offset != CHIPS[chip]:
        raise ValueError(f"flash_offset: {offset:#x} is wrong for {chip} (MicroPython goes at {CHIPS[chip]:#x})")
    flash_size = _need(raw, "flash_size", str, "")
    if flash_size not in FLASH_SIZES:
        raise ValueError(f"flash_size: {flash_size!r} is not one of {', '.join(FLASH_SIZES)}")
    return name, chip, offset, flash_size


def _radio(raw: dict, chip: str) -> dict:
    radio = dict(_need(raw, "radio", dict, ""))
    rtype = _need(radio, "type", str, "radio")
    if rtype not in RADIO_PINS:
        raise ValueError(f"radio.type: {rtype!r} is not one of {', '.join(RADIO_PINS)}")
    pins = dict(_need(radio, "pins", dict, "radio")) if RADIO_PINS[radio["type"]] else dict(radio.get("pins", {}))
    for p in RADIO_PINS[rtype]:
        if p not in pins:
            raise ValueError(f"radio.pins.{p}: missing (a {rtype} needs {', '.join(RADIO_PINS[rtype])})")
    radio["pins"] = {k: _gpio(v, chip, f"radio.pins.{k}") for k, v in pins.items()}
    _need(radio, "source", str, "radio")
    _radio_chip_facts(radio, rtype)
    return radio


def _uart_ids(uarts: list, chip: str) -> set:
    """The ids of the board's sensor UARTs, each checked."""
    uart_ids = set()
    for i, u in enumerate(uarts):
        where = f"uarts[{i}]"
        uid = _int(_need(u, "id", (int, str), where), f"{where}.id")
        if uid not in (1, 2):
            raise ValueError(f"{where}.id: UART {uid} is not free for sensors (use 1 or 2; 0 is the REPL)")
        for k in ("tx", "rx"):
            _gpio(_need(u, k, (int, str), where), chip, f"{where}.{k}")
        _int(_need(u, "baud", (int, str), where), f"{where}.baud")
        uart_ids.add(uid)
    return uart_ids


def _sensor(s, where: str, chip: str, uart_ids: set):
    s = dict(s) if isinstance(s, dict) else s
    _need(s, "driver", str, where)
    bus = _need(s, "bus", str, where)
    if bus not in BUSES:
        raise ValueError(f"{where}.bus: {bus!r} is not one of {', '.join(BUSES)}")
    if bus == "i2c":
        addr = _int(_need(s, "address", (int, str), where), f"{where}.address")
        if not 0x08 <= addr <= 0x77:
            raise ValueError(f"{where}.address: {addr:#x} is not a 7-bit I2C device address")
        s["address"] = addr
    elif bus == "uart":
        uid = _int(_need(s, "uart", (int, str), where), f"{where}.uart")
        if uid not in uart_ids:
            raise ValueError(f"{where}.uart: UART {uid} is not in uarts")
    elif bus == "pin":
        s["pin"] = _gpio(_need(s, "pin", (int, str), where), chip, f"{where}.pin")
    from cnode.board import check  # the node's own check: driver, bus, options (a BoardError is a ValueError)

    check(s, where)
    return s


def _battery(raw: dict, chip: str) -> dict:
    battery = dict(_need(raw, "battery", dict, ""))
    if "adc" in battery:
        battery["adc"] = _gpio(battery["adc"], chip, "battery.adc")
        for k in ("r1", "r2"):
            r = _int(_need(battery, k, (int, str), "battery"), f"battery.{k}")
            if r <= 0:
                raise ValueError(f"battery.{k}: a resistor must be > 0 ohm")
    elif "pmic" not in battery:
        raise ValueError("battery: needs adc, r1, r2 (a divider) or pmic (a power-management chip)")
    return battery


def _micropython(raw: dict) -> dict:
    mp = dict(_need(raw, "micropython", dict, ""))
    url = _need(mp, "url", str, "micropython")
    if not url.startswith(("https://", "file://")):
        raise ValueError(f"micropython.url: {url!r} must be https:// (or file:// for tests)")
    sha = mp.get("sha256")
    if sha is not None and (not isinstance(sha, str) or len(sha) != 64
                            or any(c not in "0123456789abcdef" for c in sha)):
        raise ValueError("micropython.sha256: expected 64 lower-case hex digits or null")
    return mp


REVISION_FACTS = ("battery.adc", "battery.enable.active", "power.pmic")  # what cnode.boardrev can measure


def _revisions(raw: dict) -> list:
    """The board file's "revisions": facts that differ between revisions of the board, each with the choices
    the self-test tells apart (cnode.boardrev) and a source."""
    out = _need(raw, "revisions", list, "") if "revisions" in raw else []
    for i, r in enumerate(out):
        where = f"revisions[{i}]"
        fact = _need(r, "fact", str, where)
        if fact not in REVISION_FACTS:
            raise ValueError(f"{where}.fact: {fact!r} is not one of {', '.join(REVISION_FACTS)}")
        choices = _need(r, "choices", dict, where)
        if len(choices) < 2 or not all(isinstance(v, str) for v in choices.values()):
            raise ValueError(f"{where}.choices: at least two choices, each naming its revision")
        _need(r, "source", str, where)
    return list(out)


def load_board_file(path: str | os.PathLike) -> Board:
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except OSError as e:
        raise BoardError(f"{path}: cannot read ({e.strerror})") from None
    except ValueError as e:
        raise BoardError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise BoardError(f"{path}: expected a JSON object")
    try:
        return _parse(raw, path)
    except ValueError as e:
        raise BoardError(f"{path.name}: {e}") from None


def load_boards(directory: str | os.PathLike | None = None, broken: dict | None = None) -> dict[str, Board]:
    """Every good board file of the folder by name. A file that does not parse is left out (one bad file in
    CITYNODE_BOARDS_DIR must not take every board with it); pass a dict as `broken` to get {file stem: error}."""
    d = Path(directory) if directory is not None else BOARDS_DIR
    files = sorted(d.glob("*.json"))
    if not files:
        raise BoardError(f"no board files in {d}")
    boards = {}
    for f in files:
        try:
            b = load_board_file(f)
        except BoardError as e:
            if broken is not None:
                broken[f.stem] = e
            continue
        boards[b.name] = b
    return boards


def get_board(name: str, directory: str | os.PathLike | None = None) -> Board:
    broken: dict[str, BoardError] = {}
    boards = load_boards(directory, broken)
    if name not in boards and name in broken:
        raise broken[name]  # the board asked for is the one whose file is wrong: say what is wrong with it
    if name not in boards:
        raise UnknownBoard(f"unknown board {name!r}; supported boards: {', '.join(sorted(boards))}")
    return boards[name]
