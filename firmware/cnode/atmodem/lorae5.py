# cnode.atmodem.lorae5: a LoRaWAN link (Mac's interface) over a Seeed LoRa-E5 / Wio-E5 with its AT firmware, 9600 8N1.
#
# Source: Seeed "LoRa-E5 AT Command Specification V1.0" (files.seeedstudio.com/products/317990687/res/) and the
# command table of the Seeed wiki "LoRa-E5 ... Getting Started". Every reply names its command:
#   AT -> "+AT: OK";  AT+ID=DevEui,"<hex>" -> "+ID: DevEui, 2C:F7:..";  AT+KEY=APPKEY,"<hex>" -> "+KEY: APPKEY <hex>";
#   AT+MODE=LWOTAA -> "+MODE: LWOTAA";  AT+DR=EU868 -> "+DR: EU868";  AT+DR -> "+DR: DR5" then "+DR: EU868 DR5 ..";
#   AT+PORT=2 -> "+PORT: 2";  a rejected value -> "+<CMD>: ERROR(<n>)";  busy -> "+<CMD>: LoRaWAN modem is busy".
#   AT+JOIN -> "+JOIN: Start", "+JOIN: NORMAL", "+JOIN: Network joined", "+JOIN: NetID 000024 DevAddr 48:00:00:01",
#   "+JOIN: Done" | "+JOIN: Join failed", "+JOIN: Done" | "+JOIN: Joined already" (one request per AT+JOIN).
#   AT+MSGHEX="<hex>" (unconfirmed, on the port set by AT+PORT) / AT+CMSGHEX="<hex>" (confirmed) -> "+MSGHEX: Start",
#   ["+CMSGHEX: Wait ACK"], ["+CMSGHEX: ACK Received"], ["+MSGHEX: PORT: 3; RX: \"0102\""],
#   ["+MSGHEX: RXWIN1, RSSI -90, SNR 7.5"], "+MSGHEX: Done"; refusals "+MSGHEX: Please join network first",
#   "+MSGHEX: Length error <n>", "+MSGHEX: No band in <ms>ms", "+MSGHEX: No free channel", "+MSGHEX: DR error".
from binascii import hexlify, unhexlify

from micropython import const

from cnode.atmodem import EU868_MAX_PAYLOAD, AtLink, LinkTimeout, ModemBusy, ModemError, cmd_name
from cnode.lorawan import DutyCycleError, JoinFailed, NotJoined, PayloadTooLong, check_uplink

JOIN_RETRY_MS = const(10000)  # between two failed join requests (the E5 sends one per AT+JOIN)
_JOIN_MS = const(20000)  # "+JOIN: Done" after a request: join-accept windows 5 s / 6 s, plus margin
_SEND_MS = const(15000)  # "+MSGHEX: Done": airtime + RX1 + RX2 at 9600 baud, plus margin
_CONFIRMED_MS = const(60000)  # "+CMSGHEX: Done" after the modem's retransmissions
_CMD_MS = const(2000)
_BUSY = "LoRaWAN modem is busy"


class LoRaE5(AtLink):
    """OTAA Class A link through a LoRa-E5. EUIs and AppKey are bytes, MSB first; they go to the modem as uppercase
    hex and nowhere else (the modem's "+KEY: APPKEY .." echo is read and dropped)."""

    def __init__(self, uart, clock, dev_eui, join_eui, app_key, busy_retries=4, busy_backoff_ms=500, log=None):
        AtLink.__init__(self, uart, clock, dev_eui, join_eui, app_key, busy_retries, busy_backoff_ms, log)
        self._port = -1  # AT+PORT value the modem holds (-1: not known)

    def _busy(self, k, back, what):
        self.busy += 1
        if k >= self.busy_retries:
            raise ModemBusy("%s: busy after %d tries" % (what, k + 1))
        self.clock.sleep_ms(back)

    def command(self, cmd, name, tail=None, timeout_ms=_CMD_MS):
        """Send one command and return the text of its "+<name>: " reply. Busy answers are retried with doubling
        back-off; "ERROR(..)" raises ModemError; no reply in time raises LinkTimeout."""
        at = self.at
        tag = "+" + name + ":"
        back = self.busy_backoff_ms
        k = 0
        while True:
            at.drain()
            at.write(cmd, tail)
            while True:
                line = at.readline(timeout_ms)
                if line is None:
                    self._configured = False
                    raise LinkTimeout("%s: no reply in %d ms" % (cmd_name(cmd), timeout_ms))
                if line.startswith(tag):
                    break
            rest = line[len(tag):].strip()
            if rest.startswith(_BUSY):
                self._busy(k, back, cmd_name(cmd))
                back *= 2
                k += 1
                continue
            if rest.startswith("ERROR"):
                raise ModemError("%s: %s" % (cmd_name(cmd), rest), rest)
            return rest

    def configure(self):
        self.command("AT", "AT")
        self.command('AT+ID=DevEui,"', "ID", hexlify(self._dev_eui).upper() + b'"')
        self.command('AT+ID=AppEui,"', "ID", hexlify(self._join_eui).upper() + b'"')
        self.command('AT+KEY=APPKEY,"', "KEY", hexlify(self._app_key).upper() + b'"')
        self.command("AT+MODE=LWOTAA", "MODE")
        self.command("AT+DR=EU868", "DR")
        self._port = -1
        self._configured = True

    def read_dr(self):
        """The modem's data rate from AT+DR ("+DR: DR5")."""
        rest = self.command("AT+DR", "DR")
        try:
            d = int(rest[2:]) if rest.startswith("DR") else -1
        except ValueError:
            d = -1
        if not 0 <= d < len(EU868_MAX_PAYLOAD):
            raise ModemError("AT+DR: %s" % rest, rest)
        self.dr = d
        self._dr_ok = True
        return d

    # --- join --------------------------------------------------------------------------------------------
    def join(self, attempts=8, wait_ms=-1):
        """OTAA join: up to `attempts` AT+JOIN requests JOIN_RETRY_MS apart. Returns True or raises JoinFailed,
        LinkTimeout, ModemBusy, ModemError."""
        self.joined = False
        if not self._configured:
            self.configure()
        at = self.at
        fails = 0
        k = 0
        back = self.busy_backoff_ms
        while True:
            at.drain()
            at.write("AT+JOIN")
            result = 0  # 1 joined, -1 failed, 2 busy
            while True:
                line = at.readline(_JOIN_MS)
                if line is None:
                    if result == -1:  # "Join failed" without a "Done": the attempt is over all the same
                        break
                    raise LinkTimeout("AT+JOIN: no Done in %d ms" % _JOIN_MS)
                if not line.startswith("+JOIN:"):
                    continue
                rest = line[6:].strip()
                if rest.startswith("Network joined"):
                    result = 1
                elif rest.startswith("Joined already"):
                    result = 1
                    break
                elif rest.startswith("Join failed"):
                    result = -1
                elif rest.startswith(_BUSY):
                    result = 2
                    break
                elif rest == "Done":
                    break
                elif rest.startswith("Not in OTAA mode") or rest.startswith("ERROR"):
                    raise ModemError("AT+JOIN: " + rest, rest)
            if result == 1:
                self.joined = True
                self._dr_ok = False
                return True
            if result == 2:
                self._busy(k, back, "AT+JOIN")
                back *= 2
                k += 1
                continue
            fails += 1
            if fails >= attempts:
                raise JoinFailed("no join-accept after %d attempts" % fails)
            self.clock.sleep_ms(JOIN_RETRY_MS)

    # --- uplink ------------------------------------------------------------------------------------------
    def send(self, port, data, confirmed=False):
        """Send one uplink (AT+MSGHEX, or AT+CMSGHEX when confirmed) and wait for its Done. Returns True, or for a
        confirmed uplink whether "ACK Received" came. Afterwards .downlink is (port, bytes) or None. Raises
        NotJoined, PayloadTooLong, DutyCycleError (.wait_ms), LinkTimeout, ModemBusy, ModemError."""
        n = len(data)
        check_uplink(self, port, n)
        if port != self._port:
            self.command("AT+PORT=%d" % port, "PORT")
            self._port = port
        name = "CMSGHEX" if confirmed else "MSGHEX"
        tail = hexlify(data).upper() + b'"'
        wait = _CONFIRMED_MS if confirmed else _SEND_MS
        back = self.busy_backoff_ms
        k = 0
        while self._attempt(name, tail, wait, n):  # busy: again after a back-off that doubles
            self._busy(k, back, "AT+" + name)
            back *= 2
            k += 1
        self._dr_ok = False
        self.sent += 1
        return self.acked if confirmed else True

    def _attempt(self, name, tail, wait, n):
        """One AT+<name>="<tail> and the modem's lines up to its Done: False then, True if it answered busy."""
        at = self.at
        tag = "+" + name + ":"
        self.downlink = None
        self.acked = False
        at.drain()
        at.write("AT+" + name + '="', tail)
        while True:
            line = at.readline(wait)
            if line is None:
                raise LinkTimeout("AT+%s: no Done in %d ms" % (name, wait))
            if not line.startswith(tag):
                continue
            rest = line[len(tag):].strip()
            if rest == "Done":
                return False
            if self._event(rest, name, n):
                return True

    def _event(self, rest, name, n):
        """One "+<name>: " line of an uplink of n bytes before its Done: True if the modem is busy; a refusal
        raises NotJoined, PayloadTooLong, DutyCycleError or ModemError."""
        if rest.startswith("ACK Received"):
            self.acked = True
        elif rest.startswith("PORT:"):
            self._rx(rest)
        elif rest.startswith("RXWIN"):
            i = rest.find("RSSI ")
            if i > 0:
                try:
                    self.rssi = int(rest[i + 5:rest.find(",", i)])
                except ValueError:
                    pass
        elif rest.startswith(_BUSY):
            return True
        elif rest.startswith("Please join network first"):
            self.joined = False
            raise NotJoined("AT+%s: modem has no session" % name)
        elif rest.startswith("Length error"):
            self._dr_ok = False  # the DR fell (ADR back-off): ask again before the next frame
            raise PayloadTooLong("AT+%s: %s (%d B sent)" % (name, rest, n))
        elif rest.startswith("No band in"):
            ms = rest[10:].strip()
            if ms.endswith("ms"):
                ms = ms[:-2]
            try:
                w = int(ms)
            except ValueError:
                w = -1
            raise DutyCycleError("AT+%s: duty cycle: wait %d ms" % (name, w), w)
        elif rest.startswith("No free channel") or rest.startswith("DR error") or rest.startswith("ERROR"):
            raise ModemError("AT+%s: %s" % (name, rest), rest)
        return False

    def _rx(self, rest):
        # PORT: 3; RX: "0102"
        i = rest.find(";")
        j = rest.find('"')
        e = rest.rfind('"')
        try:
            port = int(rest[5:i])
            data = unhexlify(rest[j + 1:e].replace(" ", "")) if 0 <= j < e else b""
        except ValueError:
            self.at.garbage += 1
            return
        self.downlink = (port, data)
