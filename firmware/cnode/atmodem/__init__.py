# cnode.atmodem: LoRaWAN through an AT-command modem on a UART (RAK3172 RUI3, Seeed LoRa-E5), its errors and line port.
#
# A modem link has the same face as cnode.lorawan.mac.Mac, so cnode.app.Node drives either: .joined, join(attempts),
# send(port, data, confirmed) -> bool, max_payload(), .downlink ((port, bytes) or None after a send), .acked.
# Modules: rak3172 (class RAK3172), lorae5 (class LoRaE5). Keys are written to the modem and never logged: errors
# and the optional log name the command (AT+APPKEY), never its value.
from micropython import const

from cnode.lorawan import LoRaWANError

# LoRaWAN Regional Parameters RP002 EU868: largest application payload (N) at DR0..DR7
EU868_MAX_PAYLOAD = (51, 51, 51, 115, 222, 222, 222, 222)
_LINE_MAX = const(600)  # longest line kept: a 242-byte downlink in hex plus its prefix fits


class LinkTimeout(LoRaWANError):
    """The modem did not answer (or did not finish) within the bound: wiring, power, baud rate or a hung modem."""


class ModemBusy(LoRaWANError):
    """The modem kept answering "busy" through every retry and back-off."""


class ModemError(LoRaWANError):
    """The modem rejected a command (AT_PARAM_ERROR, +KEY: ERROR(-1), ...); `.reply` is its answer."""

    def __init__(self, msg, reply=""):
        super().__init__(msg)
        self.reply = reply


def cmd_name(cmd):
    """The part of an AT command that may be logged: 'AT+APPKEY=..' -> 'AT+APPKEY', 'AT+ID=DevEui,..' -> 'AT+ID'."""
    i = cmd.find("=")
    return cmd if i < 0 else cmd[:i]


class AtPort:
    """Line-based AT I/O over a UART (machine.UART API: write, read, any) with bounded waits.

    Lines end with LF (a CR before it is dropped). A byte outside printable ASCII starts the line afresh and counts
    in `.garbage` (UART noise at power-up, a baud-rate glitch); an over-long line is dropped the same way.
    `log(msg)`, if given, hears the name of every command sent (cmd_name: never a key or a payload)."""

    def __init__(self, uart, clock, poll_ms=10, log=None):
        self.uart = uart
        self.clock = clock
        self.poll_ms = poll_ms
        self.log = log
        self._line = bytearray(_LINE_MAX)
        self._n = 0
        self._rx = bytearray(64)
        self._pending = []  # complete lines read but not yet taken
        self.garbage = 0
        self.lines_in = 0

    def write(self, cmd, tail=None):
        """Send one command: `cmd` (str), then `tail` (bytes, e.g. a payload in hex) if given, then CR LF."""
        u = self.uart
        u.write(cmd.encode())
        if tail:
            u.write(tail)
        u.write(b"\r\n")
        if self.log is not None:
            self.log("> " + cmd_name(cmd))

    def _feed(self, data, k):
        buf = self._line
        for i in range(k):
            c = data[i]
            if c == 10:  # LF ends a line
                n = self._n
                if n and buf[n - 1] == 13:
                    n -= 1
                self._n = 0
                if n:
                    self._pending.append(bytes(buf[:n]).decode())
                    self.lines_in += 1
            elif c == 13 or 32 <= c < 127:
                if self._n >= _LINE_MAX:
                    self.garbage += 1
                    self._n = 0
                buf[self._n] = c
                self._n += 1
            else:
                self.garbage += 1
                self._n = 0

    def _poll(self):
        u = self.uart
        while True:
            k = u.any()
            if not k:
                return
            if k > len(self._rx):
                k = len(self._rx)
            data = u.read(k)
            if not data:
                return
            self._feed(data, len(data))

    def readline(self, timeout_ms):
        """The next complete line (str, without CR LF), or None if none arrived within timeout_ms."""
        c = self.clock
        start = c.ticks_ms()
        while True:
            if not self._pending:
                self._poll()
            if self._pending:
                return self._pending.pop(0)
            if c.ticks_diff(c.ticks_ms(), start) >= timeout_ms:
                return None
            c.sleep_ms(self.poll_ms)

    def drain(self):
        """Lines that have already arrived (nothing is waited for)."""
        self._poll()
        out = self._pending
        self._pending = []
        return out


class AtLink:
    """What both modem links keep: the AT port, the keys (only ever sent to the modem), and link state."""

    def __init__(self, uart, clock, dev_eui, join_eui, app_key, busy_retries=4, busy_backoff_ms=500, log=None):
        self.at = AtPort(uart, clock, log=log)
        self.clock = clock
        self._dev_eui = bytes(dev_eui)
        self._join_eui = bytes(join_eui)
        self._app_key = bytes(app_key)
        self.busy_retries = busy_retries
        self.busy_backoff_ms = busy_backoff_ms
        self.joined = False
        self.downlink = None
        self.acked = False
        self.rssi = 0  # of the last downlink
        self.snr = 0
        self.dr = 0  # EU868 data rate the modem reported last
        self._dr_ok = False
        self._configured = False
        self.busy = 0  # busy answers seen
        self.sent = 0

    def read_dr(self):
        """The modem's current EU868 data rate, into self.dr (each modem asks in its own dialect)."""
        raise NotImplementedError

    def max_payload(self):
        """Largest application payload at the modem's current DR (51 B, the DR0 limit, when it cannot be read)."""
        if self.joined and not self._dr_ok:
            try:
                self.read_dr()
            except Exception:  # noqa: BLE001 - a frame sized for DR0 fits every DR
                return EU868_MAX_PAYLOAD[0]
        return EU868_MAX_PAYLOAD[self.dr]

