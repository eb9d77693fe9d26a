# Which revision of its board a node is, for the facts that differ between revisions (the board file's
# "revisions" list): the self-test measures each fact's choices and reports the one the hardware shows.
from micropython import const

_VBAT_MIN_MV = const(2500)  # a Li-ion cell on the divider reads 2.5-4.5 V; an unconnected pin reads near 0
_VBAT_MAX_MV = const(4500)
_AXP_CHIP_ID = const(0x03)  # AXP192 REG 03H "IC type" (AXP2101 keeps its chip id at the same address)


def _battery_mv(machine, pin, r1, r2):
    adc = machine.ADC(machine.Pin(pin))
    if hasattr(adc, "atten"):
        adc.atten(3)  # 11 dB: up to about 3.1 V at the pin
    return adc.read_uv() * (r1 + r2) // r2 // 1000


def _plausible(mv):
    return _VBAT_MIN_MV <= mv <= _VBAT_MAX_MV


def _adc_pin(board, machine, fact, time):
    b = board["battery"]
    found = None
    seen = []
    for pin in fact["choices"]:
        mv = _battery_mv(machine, int(pin), b["r1"], b["r2"])
        seen.append("GPIO%s %d mV" % (pin, mv))
        if found is None and _plausible(mv):
            found = pin
    return found, ", ".join(seen)


def _enable_level(board, machine, fact, time):
    b = board["battery"]
    en = machine.Pin(b["enable"]["pin"], machine.Pin.OUT)
    found = None
    seen = []
    for level in fact["choices"]:
        en.value(int(level))
        time.sleep_ms(10)  # the divider's switch settles
        mv = _battery_mv(machine, b["adc"], b["r1"], b["r2"])
        seen.append("level %s %d mV" % (level, mv))
        if found is None and _plausible(mv):
            found = level
    en.value(b["enable"].get("active", 1))
    return found, ", ".join(seen)


def _pmic(board, machine, fact, time):
    p = board["power"]["pmic"]
    c = board["i2c"]
    bus = machine.I2C(c.get("id", 0), scl=machine.Pin(c["scl"]), sda=machine.Pin(c["sda"]))
    addr = p.get("address", 0x34)
    addr = int(addr, 0) if isinstance(addr, str) else addr
    try:
        chip = bus.readfrom_mem(addr, _AXP_CHIP_ID, 1)[0]
    except OSError as e:
        return None, "no answer at I2C 0x%02x (%s)" % (addr, e)
    key = "0x%02x" % chip
    return (key if key in fact["choices"] else None), "chip id %s" % key


_PROBES = {"battery.adc": _adc_pin, "battery.enable.active": _enable_level, "power.pmic": _pmic}
_PMIC_IDS = {"axp192": "0x03", "axp2101": "0x4a"}


def configured(board, fact):
    """The choice the rest of the board file assumes for this fact (as a choices key)."""
    if fact == "battery.adc":
        return str(board["battery"]["adc"])
    if fact == "battery.enable.active":
        return str(board["battery"]["enable"].get("active", 1))
    if fact == "power.pmic":
        return _PMIC_IDS.get(board["power"]["pmic"]["type"], "")
    return ""


def probe(board, machine, time):
    """(fact, found choice or None, its meaning, what was measured, the board file's choice) for each entry
    of board["revisions"]. None found: nothing told the choices apart (no battery connected, say)."""
    out = []
    for fact in board.get("revisions", ()):
        name = fact["fact"]
        fn = _PROBES.get(name)
        found, seen = None, "no probe for this fact"
        if fn is not None:
            try:
                found, seen = fn(board, machine, fact, time)
            except (OSError, KeyError, ValueError) as e:
                seen = repr(e)
        what = fact["choices"][found] if found is not None else "not determined"
        out.append((name, found, what, seen, configured(board, name)))
    return out
