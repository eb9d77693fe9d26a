# cnode.atmodem.rak3172: a LoRaWAN link (Mac's interface) over a RAKwireless RAK3172 with RUI3 firmware, 115200 8N1.
#
# Sources. RAKwireless "RUI3 AT Command Manual" (docs.rakwireless.com, RUI3 > Serial Operating Modes): commands
# AT+XXX=<value> answered by one status line, OK | AT_ERROR | AT_PARAM_ERROR | AT_BUSY_ERROR | AT_TEST_PARAM_OVERFLOW |
# AT_NO_NETWORK_JOINED | AT_RX_ERROR; queries AT+XXX=? answered "AT+XXX=<value>" then OK; AT+NJM=1 (OTAA),
# AT+BAND=4 (EU868), AT+DEVEUI= / AT+APPEUI= / AT+APPKEY= (hex), AT+CFM=0|1 (confirmed uplinks),
# AT+JOIN=<1 join>:<0 no auto-join>:<interval 7..255 s>:<attempts 0..255>, AT+SEND=<port 1..223>:<hex>, AT+DR=?.
# Event lines as RUI3 prints them (RAKWireless/RAK-STM32-RUI, cores/STM32WLE/component/service/lora/service_lora.c:
# MlmeConfirm, McpsIndication, McpsConfirm; parameter checks in At_Join/At_Send of the AT command layer):
#   join:  "+EVT:JOINED" | "+EVT:JOIN_FAILED_RX_TIMEOUT" | "+EVT:JOIN_FAILED_TX_TIMEOUT" | "+EVT:JOIN_FAILED_<n>"
#   rx:    "+EVT:RX_<1|2|B|C>:<rssi>:<snr>:UNICAST|MULTICAST:<port>:<hex>"  (printed before the send's end event)
#   end:   "+EVT:TX_DONE" (unconfirmed) | "+EVT:SEND_CONFIRMED_OK" | "+EVT:SEND_CONFIRMED_FAILED(<status>)"
from binascii import hexlify, unhexlify

from micropython import const

from cnode.atmodem import EU868_MAX_PAYLOAD, AtLink, LinkTimeout, ModemBusy, ModemError, cmd_name
from cnode.lorawan import JoinFailed, NotJoined, PayloadTooLong, check_uplink

JOIN_INTERVAL_S = const(10)  # AT+JOIN re-attempt interval (the manual's example 1:0:10:8)
_JOIN_EVENT_MS = const(15000)  # join-accept windows 5 s / 6 s after a request of up to 1.5 s (SF12), plus margin
_SEND_MS = const(12000)  # unconfirmed: up to 2.8 s airtime + RX1 1 s + RX2 2 s + its window, plus margin
_CONFIRMED_MS = const(60000)  # confirmed: up to 8 transmissions 1..3 s apart, each with its windows
_CMD_MS = const(2000)  # an ordinary command's status line


class RAK3172(AtLink):
    """OTAA Class A link through a RAK3172. EUIs and AppKey are bytes, MSB first as printed on labels; they go to
    the modem as uppercase hex and nowhere else. `clock` has ticks_ms/ticks_diff/sleep_ms."""

    def __init__(self, uart, clock, dev_eui, join_eui, app_key, busy_retries=4, busy_backoff_ms=500, log=None):
        AtLink.__init__(self, uart, clock, dev_eui, join_eui, app_key, busy_retries, busy_backoff_ms, log)
        self._cfm = -1  # AT+CFM value the modem holds (-1: not known)

    # --- commands --------------------------------------------------------------------------------------
    def command(self, cmd, tail=None, timeout_ms=_CMD_MS):
        """Send one command and return its value lines (list of str) once OK arrives. AT_BUSY_ERROR is retried
        with doubling back-off, busy_retries times; then ModemBusy. No status line in time: LinkTimeout.
        AT_NO_NETWORK_JOINED: NotJoined. Another AT_* status: ModemError."""
        at = self.at
        back = self.busy_backoff_ms
        for k in range(self.busy_retries + 1):
            at.drain()  # stale lines of an earlier exchange
            at.write(cmd, tail)
            vals = []
            while True:
                line = at.readline(timeout_ms)
                if line is None:
                    self._configured = False  # the modem may have reset: set it up again before the next join
                    raise LinkTimeout("%s: no reply in %d ms" % (cmd_name(cmd), timeout_ms))
                if line == "OK":
                    return vals
                if line.startswith("AT_"):
                    break
                if not line.startswith("+EVT:"):  # async events from an earlier exchange are dropped
                    vals.append(line)
            if line == "AT_BUSY_ERROR":
                self.busy += 1
                if k < self.busy_retries:
                    self.clock.sleep_ms(back)
                    back *= 2
                continue
            if line == "AT_NO_NETWORK_JOINED":
                self.joined = False
                raise NotJoined("%s: modem has no session" % cmd_name(cmd))
            raise ModemError("%s: %s" % (cmd_name(cmd), line), line)
        raise ModemBusy("%s: busy after %d tries" % (cmd_name(cmd), self.busy_retries + 1))

    def configure(self):
        """Alive check, OTAA, EU868 and the three keys (RUI3 keeps them in its flash)."""
        self.command("AT")
        self.command("AT+NJM=1")
        self.command("AT+BAND=4")
        self.command("AT+DEVEUI=", hexlify(self._dev_eui).upper())
        self.command("AT+APPEUI=", hexlify(self._join_eui).upper())
        self.command("AT+APPKEY=", hexlify(self._app_key).upper())
        self._cfm = -1
        self._configured = True

    def read_dr(self):
        """Ask the modem for its data rate (ADR may change it after any downlink)."""
        for v in self.command("AT+DR=?"):
            if v.startswith("AT+DR="):
                try:
                    d = int(v[6:])
                except ValueError:
                    continue
                if 0 <= d < len(EU868_MAX_PAYLOAD):
                    self.dr = d
                    self._dr_ok = True
                    return d
        raise ModemError("AT+DR=?: no value")

    # --- join --------------------------------------------------------------------------------------------
    def join(self, attempts=8, wait_ms=-1):
        """OTAA join; the modem makes up to `attempts` requests JOIN_INTERVAL_S apart. Returns True, or raises
        JoinFailed (every attempt failed, or the modem went quiet after a failure), LinkTimeout (no event at all),
        ModemBusy, ModemError."""
        self.joined = False
        attempts = 1 if attempts < 1 else (255 if attempts > 255 else attempts)
        if not self._configured:
            self.configure()
        self.command("AT+JOIN=1:0:%d:%d" % (JOIN_INTERVAL_S, attempts))
        fails = 0
        # RUI3 reports each failed request; a firmware that reports only the last one is quiet until all are done
        wait = attempts * (JOIN_INTERVAL_S * 1000 + _JOIN_EVENT_MS)
        while True:
            line = self.at.readline(wait)
            if line is None:
                if fails:
                    raise JoinFailed("no join-accept: the modem stopped after %d failure report(s)" % fails)
                raise LinkTimeout("AT+JOIN: no join event in %d ms" % wait)
            if line == "+EVT:JOINED":
                self.joined = True
                self._dr_ok = False
                return True
            if line.startswith("+EVT:JOIN_FAILED"):
                fails += 1
                if fails >= attempts:
                    raise JoinFailed("no join-accept after %d attempts (%s)" % (fails, line[5:]))
                wait = JOIN_INTERVAL_S * 1000 + _JOIN_EVENT_MS

    # --- uplink ------------------------------------------------------------------------------------------
    def send(self, port, data, confirmed=False):
        """Send one uplink and wait for its end event. Returns True, or for a confirmed uplink whether the network
        acknowledged it. Afterwards .downlink is (port, bytes) or None. Raises NotJoined, PayloadTooLong,
        LinkTimeout, ModemBusy, ModemError; ValueError for a port outside 1..223."""
        n = len(data)
        check_uplink(self, port, n)
        self._set_confirmed(1 if confirmed else 0)
        self.downlink = None
        self.acked = False
        self._dr_ok = False  # ADR may move the DR with any downlink: ask again before the next frame
        self._submit(port, data, n)
        self._await_end(confirmed)
        self.sent += 1
        return self.acked if confirmed else True

    def _set_confirmed(self, cfm):
        """AT+CFM only when it changes: the modem keeps it."""
        if cfm != self._cfm:
            self.command("AT+CFM=%d" % cfm)
            self._cfm = cfm

    def _submit(self, port, data, n):
        """AT+SEND; a parameter error here means the DR fell since it was read (port and hex were checked)."""
        try:
            self.command("AT+SEND=%d:" % port, hexlify(data).upper())
        except ModemError as e:
            if e.reply == "AT_PARAM_ERROR":
                raise PayloadTooLong("AT+SEND: %d B refused at the modem's DR" % n)
            raise

    def _await_end(self, confirmed):
        """The modem's events up to the uplink's end: TX_DONE, or for a confirmed one SEND_CONFIRMED_OK/FAILED;
        a downlink event on the way is kept."""
        wait = _CONFIRMED_MS if confirmed else _SEND_MS
        start = self.clock.ticks_ms()
        while True:
            left = wait - self.clock.ticks_diff(self.clock.ticks_ms(), start)
            line = self.at.readline(left if left > 0 else 0)
            if line is None:
                raise LinkTimeout("AT+SEND: no end event in %d ms" % wait)
            if line.startswith("+EVT:RX_"):
                self._rx(line)
            elif line == "+EVT:TX_DONE":
                if not confirmed:
                    return
            elif line.startswith("+EVT:SEND_CONFIRMED_OK"):
                self.acked = True
                return
            elif line.startswith("+EVT:SEND_CONFIRMED_FAILED"):
                return

    def _rx(self, line):
        # +EVT:RX_1:-70:8:UNICAST:1:1234
        p = line.split(":")
        if len(p) < 6:
            self.at.garbage += 1
            return
        try:
            port = int(p[5])
            data = unhexlify(p[6]) if len(p) > 6 else b""
            self.rssi = int(p[2])
            self.snr = int(p[3])
        except ValueError:
            self.at.garbage += 1
            return
        self.downlink = (port, data)
