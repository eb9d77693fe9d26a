# Simulated AT-command LoRaWAN modems (RAK3172 with RUI3, Seeed LoRa-E5) as UART peers, with a network behind them.
#
# Attach a twin as the peer of a hwsim.machine.UART: the UART calls twin.on_write(uart, data) with what the node
# sends and twin.pump(uart, now_ms) when the node looks at the line; the twin feeds the lines the modem has printed
# by then. Replies follow the manuals (see firmware/cnode/atmodem/rak3172.py and lorae5.py for the sources) and take
# virtual time: a join takes its airtime plus the 5 s / 6 s join-accept windows; an uplink its airtime plus RX1
# (1 s) or RX2 (2 s). What reached the network is in `.network`: (ms, port, bytes, confirmed) per uplink.
# Downlinks: queue_downlink(port, data) answers the next uplink in RX1. Fault injection, next `count` of each:
#   "join_fail"  a join attempt gets no join-accept     "busy"     a command is answered busy
#   "timeout"    a command gets no answer at all        "hang"     a join/send is accepted but never ends
#   "garbage"    an output line comes after UART noise  "noack"    a confirmed uplink is lost (not acknowledged)
#   "lost"       the modem has lost its session         "noband"   (LoRa-E5) an uplink is refused by duty cycle
# Runs under CPython and the MicroPython unix port.
from citynode.sim.hwsim.faults import FaultyPeer
from citynode.sim.hwsim.power import Powered

FAULTS = ("join_fail", "busy", "timeout", "hang", "garbage", "noack", "lost", "noband")
MAX_PAYLOAD = (51, 51, 51, 115, 222, 222, 222, 222)  # EU868 N by DR (RP002)
_HEX = "0123456789ABCDEFabcdef"
HANG_MS = 90000  # a hung join/uplink: the modem answers busy this long, then recovers by itself


def airtime_ms(dr, phy_len):
    """EU868 LoRa time on air (AN1200.13; BW 125 kHz, CR 4/5, explicit header, CRC) of phy_len bytes at DR0..5."""
    sf = 12 - dr if dr <= 5 else 7
    de = 1 if sf >= 11 else 0
    tsym = (1 << sf) * 8  # us at 125 kHz
    num = 8 * phy_len - 4 * sf + 28 + 16
    den = 4 * (sf - 2 * de)
    k = (num + den - 1) // den if num > 0 else 0
    n = 8 + k * 5
    return (49 * tsym // 4 + n * tsym + 999) // 1000


def _is_hex(s, n=None):
    if n is not None and len(s) != n:
        return False
    if not s or len(s) & 1:
        return False
    for ch in s:
        if ch not in _HEX:
            return False
    return True


def _unhex(s):
    return bytes(int(s[i:i + 2], 16) for i in range(0, len(s), 2))


def _hex(b, upper=True):
    return "".join(("%02X" if upper else "%02x") % x for x in b)


class _ModemTwin(FaultyPeer, Powered):
    """Line input, timed line output, faults, the network log and the session state."""

    baud = 115200
    reply_ms = 5  # from the end of a command to the first byte of its answer
    power_state = "idle"  # the module's MCU awake, radio off (no low-power command is sent by our firmware yet)
    TX_DBM = 14  # EU868 default output power of both AT firmwares

    FAULTS = FAULTS

    def __init__(self, clock, dr=5, seed=1):
        FaultyPeer.__init__(self, clock, seed)
        self.dr = dr
        self.heard = []  # every command line the node sent (bytes, without CR LF)
        self.network = []  # (ms, port, bytes, confirmed) per uplink the network received
        self.on_uplink = None  # fn(port, bytes) per uplink the network received (the virtual board reports it)
        self.downlinks = []  # (port, bytes) waiting for the next uplink
        self.delivered = []  # (port, bytes) downlinks sent to the node
        self.joined = False
        self.join_requests = 0
        self.keys = {}
        self.echo = False  # repeat each command line before answering (a terminal setting some firmwares ship with)
        self._in = bytearray()
        self._out = []  # (due_ms, seq, bytes, fn or None)
        self._seq = 0
        self._wire_free = 0  # when the TX line is next idle
        self.busy_until = 0  # a join or uplink is in progress until then

    # --- simulation interface ------------------------------------------------------------------------
    def queue_downlink(self, port, data):
        self.downlinks.append((port, bytes(data)))

    def _emit(self, line, at_ms=None, fn=None):
        """Print one line (str) at at_ms (after the previous line has left the wire); fn() runs when it is out."""
        now = self._now()
        t = now + self.reply_ms if at_ms is None else at_ms
        if t < self._wire_free:
            t = self._wire_free
        data = line.encode() + b"\r\n"
        if self._fault("garbage"):  # noise and a junk line, then the line itself after more noise
            data = bytes([0x00, 0xFF, 0x13, (self._rand() & 0x7F) | 0x80]) + b"#%&q~\r\n" + bytes([0xFE, 0x81]) + data
        t += (len(data) * 10000) // self.baud
        self._wire_free = t
        self._seq += 1
        self._out.append((t, self._seq, data, fn))
        self._out.sort()
        return t

    def on_write(self, uart, data):
        self._in += data
        while True:
            i = self._in.find(b"\n")
            if i < 0:
                return
            line = bytes(self._in[:i])
            self._in = self._in[i + 1:]
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                continue
            self.heard.append(line)
            if self._fault("timeout"):
                continue
            if self.echo:
                self._emit(line.decode())
            try:
                text = line.decode()
            except UnicodeError:
                continue
            self.command(text)

    def pump(self, uart, now_ms):
        while self._out and self._out[0][0] <= now_ms:
            _, _, data, fn = self._out.pop(0)
            if fn is not None:
                fn()
            uart.feed(data)

    def _busy_now(self):
        return self._now() < self.busy_until or self._fault("busy")

    def max_payload(self):
        return MAX_PAYLOAD[self.dr]

    def _delivered(self, ms, port, data, confirmed):
        self.network.append((ms, port, data, confirmed))
        if self.on_uplink is not None:
            self.on_uplink(port, data)

    def command(self, text):
        raise NotImplementedError


class RAK3172Twin(_ModemTwin):
    """RUI3 AT firmware: status lines OK / AT_* after every command, +EVT: lines for asynchronous results."""

    baud = 115200
    reply_ms = 5

    def __init__(self, clock, dr=5, seed=1):
        _ModemTwin.__init__(self, clock, dr, seed)
        self.njm = 1
        self.band = 4
        self.cfm = 0
        # RUI3 prints a JOIN_FAILED event per failed request (service_lora.c MlmeConfirm); some RUI3-compatible
        # firmwares print one after the last attempt only: "last" models those
        self.join_fail_events = "each"

    def _ok(self, value=None):
        if value is not None:
            self._emit(value)
        self._emit("OK")

    def command(self, text):
        if text == "AT":
            return self._ok()
        if not text.startswith("AT+"):
            return self._emit("AT_ERROR")
        name, eq, val = text[3:].partition("=")
        if self._busy_now():
            return self._emit("AT_BUSY_ERROR")
        if name in ("DEVEUI", "APPEUI", "APPKEY") and eq and val != "?":
            if not _is_hex(val, 32 if name == "APPKEY" else 16):
                return self._emit("AT_PARAM_ERROR")
            self.keys[name] = val.upper()
            return self._ok()
        if name in ("NJM", "BAND", "CFM") and eq:
            if val == "?":
                return self._ok("AT+%s=%d" % (name, {"NJM": self.njm, "BAND": self.band, "CFM": self.cfm}[name]))
            try:
                v = int(val)
            except ValueError:
                return self._emit("AT_PARAM_ERROR")
            if name == "NJM":
                self.njm = v
            elif name == "BAND":
                self.band = v
            elif v in (0, 1):
                self.cfm = v
            else:
                return self._emit("AT_PARAM_ERROR")
            return self._ok()
        if name == "DR" and val == "?":
            return self._ok("AT+DR=%d" % self.dr)
        if name == "JOIN":
            return self._join(val)
        if name == "SEND":
            return self._send(val)
        return self._emit("AT_ERROR")

    def _join(self, val):
        parts = val.split(":") if val else ["1"]
        try:
            p = [int(x) for x in parts]
        except ValueError:
            return self._emit("AT_PARAM_ERROR")
        # At_Join: join 0|1, auto 0|1, interval 7..255 s, attempts 0..255
        if (len(p) > 4 or p[0] not in (0, 1) or (len(p) > 1 and p[1] not in (0, 1))
                or (len(p) > 2 and not 7 <= p[2] <= 255) or (len(p) > 3 and not 0 <= p[3] <= 255)):
            return self._emit("AT_PARAM_ERROR")
        self._ok()
        if p[0] == 0:
            return None
        interval = (p[2] if len(p) > 2 else 8) * 1000
        attempts = p[3] if len(p) > 3 and p[3] > 0 else 1
        self.joined = False
        if self._fault("hang"):
            self.busy_until = self._now() + HANG_MS
            return None
        air = airtime_ms(self.dr, 23)
        t = self._now() + 10
        keys_ok = len(self.keys) == 3 and self.njm == 1
        for _ in range(attempts):
            self.join_requests += 1
            if keys_ok and not self._fault("join_fail"):
                end = t + air + 5000 + 60
                self._emit("+EVT:JOINED", end, self._set_joined)
                self.busy_until = end
                return None
            end = t + air + 6000 + 200
            if self.join_fail_events == "each" or _ == attempts - 1:
                self._emit("+EVT:JOIN_FAILED_RX_TIMEOUT", end)
            self.busy_until = end
            t = end + interval
        return None

    def _set_joined(self):
        self.joined = True

    def _send(self, val):
        port_s, _, hx = val.partition(":")
        if not port_s.isdigit() or not 1 <= int(port_s) <= 223 or not _is_hex(hx) or len(hx) > 500:
            return self._emit("AT_PARAM_ERROR")
        if self._fault("lost"):
            self.joined = False
        if not self.joined:
            return self._emit("AT_NO_NETWORK_JOINED")
        data = _unhex(hx)
        if len(data) > self.max_payload():
            return self._emit("AT_PARAM_ERROR")
        port = int(port_s)
        confirmed = self.cfm == 1
        self._ok()
        if self._fault("hang"):
            self.busy_until = self._now() + HANG_MS
            return None
        air = airtime_ms(self.dr, 13 + len(data))
        t0 = self._now() + 10
        if confirmed and self._fault("noack"):  # every transmission lost: RUI3 gives up after its retries
            end = t0
            for _ in range(3):
                end += air + 3000 + 1500
            self.busy_until = end
            self._emit("+EVT:SEND_CONFIRMED_FAILED(4)", end)
            return None
        self._power("tx", "PA:%d" % self.TX_DBM, for_us=(t0 + air - self._now()) * 1000, then="idle")
        self.network.append((t0 + air, port, data, confirmed))  # the network has it once it is on air
        rx1 = t0 + air + 1000
        if self.downlinks:
            dport, ddata = self.downlinks.pop(0)
            self.delivered.append((dport, ddata))
            t = self._emit("+EVT:RX_1:-72:7:UNICAST:%d:%s" % (dport, _hex(ddata, False)), rx1 + 80)
            end = t + 2
        elif confirmed:
            end = rx1 + 60
        else:
            end = rx1 + 1000 + 300  # nothing in RX1 or RX2
        self._emit("+EVT:SEND_CONFIRMED_OK" if confirmed else "+EVT:TX_DONE", end)
        self.busy_until = end
        return None


class LoRaE5Twin(_ModemTwin):
    """Seeed LoRa-E5 AT firmware: every reply line starts with "+<CMD>: "."""

    baud = 9600
    reply_ms = 20

    def __init__(self, clock, dr=5, seed=1):
        _ModemTwin.__init__(self, clock, dr, seed)
        self.mode = "LWOTAA"
        self.band = "EU868"
        self.port = 8

    def command(self, text):
        if text == "AT":
            return self._emit("+AT: OK")
        if not text.startswith("AT+"):
            return self._emit("+AT: ERROR(-1)")
        name, eq, val = text[3:].partition("=")
        name = name.upper()
        busy = self._busy_now()
        if busy:
            return self._emit("+%s: LoRaWAN modem is busy" % name)
        if name == "ID" and eq:
            what, _, q = val.partition(",")
            q = q.strip()
            if len(q) < 2 or q[0] != '"' or q[-1] != '"' or what.upper() not in ("DEVEUI", "APPEUI"):
                return self._emit("+ID: ERROR(-1)")
            hx = q[1:-1]
            if not _is_hex(hx, 16):
                return self._emit("+ID: ERROR(-1)")
            key = "DevEui" if what.upper() == "DEVEUI" else "AppEui"
            self.keys[key] = hx.upper()
            return self._emit("+ID: %s, %s" % (key, ":".join(hx[i:i + 2].upper() for i in range(0, 16, 2))))
        if name == "KEY" and eq:
            what, _, q = val.partition(",")
            q = q.strip()
            if what.upper() != "APPKEY" or len(q) < 2 or q[0] != '"' or q[-1] != '"' or not _is_hex(q[1:-1], 32):
                return self._emit("+KEY: ERROR(-1)")
            self.keys["AppKey"] = q[1:-1].upper()
            return self._emit("+KEY: APPKEY %s" % q[1:-1].upper())
        if name == "MODE" and eq:
            if val not in ("LWOTAA", "LWABP", "TEST"):
                return self._emit("+MODE: ERROR(-1)")
            self.mode = val
            return self._emit("+MODE: %s" % val)
        if name == "DR":
            if not eq:
                self._emit("+DR: DR%d" % self.dr)
                return self._emit("+DR: %s DR%d  SF%d  BW125K" % (self.band, self.dr, 12 - self.dr))
            if val == "EU868":
                self.band = val
                return self._emit("+DR: EU868")
            return self._emit("+DR: ERROR(-1)")
        if name == "PORT" and eq:
            try:
                p = int(val)
            except ValueError:
                return self._emit("+PORT: ERROR(-1)")
            if not 1 <= p <= 223:
                return self._emit("+PORT: ERROR(-1)")
            self.port = p
            return self._emit("+PORT: %d" % p)
        if name == "JOIN" and not eq:
            return self._join()
        if name in ("MSGHEX", "CMSGHEX") and eq:
            return self._send(name, val)
        return self._emit("+AT: ERROR(-10)")

    def _join(self):
        if self.mode != "LWOTAA":
            return self._emit("+JOIN: Not in OTAA mode")
        if self.joined:
            return self._emit("+JOIN: Joined already")
        self._emit("+JOIN: Start")
        self._emit("+JOIN: NORMAL")
        self.join_requests += 1
        if self._fault("hang"):
            self.busy_until = self._now() + HANG_MS
            return None
        air = airtime_ms(self.dr, 23)
        t = self._now() + 30
        if len(self.keys) == 3 and self.band == "EU868" and not self._fault("join_fail"):
            end = t + air + 5000 + 60
            self._emit("+JOIN: Network joined", end, self._set_joined)
            self._emit("+JOIN: NetID 000013 DevAddr 26:0B:4C:21", end)
        else:
            end = t + air + 6000 + 200
            self._emit("+JOIN: Join failed", end)
        self.busy_until = self._emit("+JOIN: Done", end)
        return None

    def _set_joined(self):
        self.joined = True

    def _send(self, name, val):
        tag = "+" + name + ": "
        confirmed = name == "CMSGHEX"
        if len(val) < 2 or val[0] != '"' or val[-1] != '"':
            return self._emit(tag + "ERROR(-1)")
        hx = val[1:-1].replace(" ", "")
        if hx and not _is_hex(hx):
            return self._emit(tag + "ERROR(-1)")
        if self._fault("lost"):
            self.joined = False
        if not self.joined:
            return self._emit(tag + "Please join network first")
        data = _unhex(hx)
        if len(data) > self.max_payload():
            return self._emit(tag + "Length error %d" % self.max_payload())
        if self._fault("noband"):
            return self._emit(tag + "No band in 13469ms")
        self._emit(tag + "Start")
        if confirmed:
            self._emit(tag + "Wait ACK")
        if self._fault("hang"):
            self.busy_until = self._now() + HANG_MS
            return None
        air = airtime_ms(self.dr, 13 + len(data))
        t0 = self._now() + 40
        if confirmed and self._fault("noack"):
            end = t0
            for _ in range(3):
                end += air + 3000 + 1500
            self.busy_until = self._emit(tag + "Done", end)
            return None
        self._power("tx", "PA:%d" % self.TX_DBM, for_us=(t0 + air - self._now()) * 1000, then="idle")
        self._delivered(t0 + air, self.port, data, confirmed)
        rx1 = t0 + air + 1000
        if self.downlinks:
            dport, ddata = self.downlinks.pop(0)
            self.delivered.append((dport, ddata))
            if confirmed:
                self._emit(tag + "ACK Received", rx1 + 80)
            self._emit(tag + 'PORT: %d; RX: "%s"' % (dport, _hex(ddata)), rx1 + 80)
            self._emit(tag + "RXWIN1, RSSI -72, SNR 7.5", rx1 + 80)
            end = rx1 + 100
        elif confirmed:
            self._emit(tag + "ACK Received", rx1 + 80)
            self._emit(tag + "RXWIN1, RSSI -72, SNR 7.5", rx1 + 80)
            end = rx1 + 100
        else:
            end = rx1 + 1000 + 300
        self.busy_until = self._emit(tag + "Done", end)
        return None
