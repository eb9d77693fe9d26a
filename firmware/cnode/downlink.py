# Downlink commands on port 3: a bounded CBOR decoder, replay protection and CBOR status frames (docs/downlink.md).
#
# Command: CBOR map {0: counter (uint, above the last accepted by at most WINDOW), 1: command id (uint),
# 2: args (if the command has any)}.
# Status (uplink, port 3): CBOR map {0: counter, 1: command id, 2: result, ...}; a status request adds the
# settings (3 interval, 4 dr, 5 adr, 6 channels_off mask) and what the application reports (8.. below).
# A malformed or invalid command gives a status with its result code instead of raising. A command whose counter
# is not above the last accepted (a replay), or too far above it, is refused with a status that carries the
# node's counter (7) and a one-time challenge (14); `resync` {0: new counter, 1: 8, 2: challenge} sets the
# counter to any value, once per challenge, so it cannot be replayed. Only an executed command moves the counter.
from micropython import const

from cnode.config import channel_id

FPORT = const(3)
# command ids (citynode.commands builds them on the host)
CMD_SET_INTERVAL = const(1)  # args: seconds (uint)
CMD_ENABLE_CHANNEL = const(2)  # args: registry channel id (uint)
CMD_DISABLE_CHANNEL = const(3)  # args: registry channel id (uint)
CMD_SET_DR = const(4)  # args: 0..5
CMD_SET_ADR = const(5)  # args: true / false
CMD_STATUS = const(6)  # no args
CMD_REBOOT = const(7)  # no args
CMD_RESYNC = const(8)  # args: the challenge of the node's last refusal; key 0 is the new counter (0 allowed)
CMD_REJOIN = const(9)  # no args: new session keys (OTAA join) after the status went out
COMMANDS = {"set_interval": 1, "enable_channel": 2, "disable_channel": 3, "set_dr": 4, "set_adr": 5,
            "status": 6, "reboot": 7, "resync": 8, "rejoin": 9}
WINDOW = const(0x10000)  # a counter may jump this far above the last accepted, no further
# result codes in a status frame
R_OK = const(0)
R_MALFORMED = const(1)  # not well-formed CBOR (or beyond the decoder's bounds)
R_FORMAT = const(2)  # CBOR, but not a command map {0: counter, 1: id, 2?: args}
R_UNKNOWN = const(3)  # unknown command id
R_BAD_ARG = const(4)  # argument of the wrong type or out of range
R_REPLAY = const(5)  # counter not above the last accepted one: refused (status with 7 and 14)
R_WINDOW = const(6)  # counter more than WINDOW above the last accepted one: refused (status with 7 and 14)
R_CHALLENGE = const(7)  # resync whose challenge is not the node's current one: refused (status with 7 and 14)
R_UNSUPPORTED = const(8)  # a command this node cannot carry out (rejoin on a link that cannot forget its session)
# status keys of a refusal
S_NODE_COUNTER = const(7)  # the last accepted counter: the next command needs a higher one, within WINDOW
S_CHALLENGE = const(14)  # what a resync must carry (uint32, not 0); the same until a resync uses it
# status keys beyond 0..6 that the application may fill (status request only)
S_QUEUE_DEPTH = const(8)
S_DROPPED = const(9)
S_UPTIME = const(10)
S_RESET_CAUSE = const(11)
S_FW_VERSION = const(12)
S_BATTERY_MV = const(13)
# what the caller does after handle()
ACT_NONE = const(0)  # nothing to send
ACT_SEND = const(1)  # send the status frame
ACT_REBOOT = const(2)  # send the status frame, then reboot
ACT_REJOIN = const(3)  # send the status frame, then forget the session and join again
STATUS_MAX = const(51)  # fits EU868 DR0; application fields that do not fit are left out
_NVS_COUNTER = "cmd_ctr"
_NVS_CHALLENGE = "cmd_chl"  # in NVS, not RAM: a node that deep-sleeps reboots between refusal and resync
_NVS_USED = "cmd_chu"  # the challenge the last resync used
MAX_DEPTH = const(4)
MAX_ITEMS = const(32)


class CborError(ValueError):
    """The bytes are not CBOR this decoder accepts (truncated, malformed, too deep, too many items, unsupported)."""


class _Dec:
    def __init__(self, buf, max_depth, max_items):
        self.b = buf
        self.n = len(buf)
        self.i = 0
        self.depth = max_depth
        self.items = max_items

    def _take(self, k):
        i = self.i
        if i + k > self.n:
            raise CborError("truncated")
        self.i = i + k
        return i

    def _arg(self, ai):
        if ai < 24:
            return ai
        if ai > 27:
            raise CborError("indefinite length or reserved" if ai == 31 else "reserved additional info")
        k = 1 << (ai - 24)
        i = self._take(k)
        v = 0
        b = self.b
        for j in range(i, i + k):
            v = (v << 8) | b[j]
        return v

    def item(self, depth):
        self.items -= 1
        if self.items < 0:
            raise CborError("too many items")
        ib = self.b[self._take(1)]
        major = ib >> 5
        ai = ib & 31
        if major == 7:
            if ai == 20:
                return False
            if ai == 21:
                return True
            if ai == 22:
                return None
            raise CborError("unsupported simple value or float")
        if major == 6:
            raise CborError("tags not supported")
        v = self._arg(ai)
        if major == 0:
            return v
        if major == 1:
            return -1 - v
        if major == 2 or major == 3:
            if v > self.n - self.i:
                raise CborError("truncated")
            i = self._take(v)
            s = bytes(self.b[i:i + v])
            if major == 2:
                return s
            try:
                return s.decode("utf-8")
            except UnicodeError:
                raise CborError("invalid UTF-8")
        if depth >= self.depth:
            raise CborError("nested too deeply")
        if v > self.n - self.i:  # every item takes a byte at least: bounds the allocation
            raise CborError("truncated")
        if major == 4:
            out = []
            for _ in range(v):
                out.append(self.item(depth + 1))
            return out
        d = {}
        for _ in range(v):
            k = self.item(depth + 1)
            if not isinstance(k, (int, str)) or isinstance(k, bool):
                raise CborError("map key must be an integer or text")
            if k in d:
                raise CborError("duplicate map key")
            d[k] = self.item(depth + 1)
        return d


def decode(buf, max_depth=MAX_DEPTH, max_items=MAX_ITEMS):
    """One CBOR data item that fills buf exactly; raises CborError, never anything else, on bad input."""
    d = _Dec(buf, max_depth, max_items)
    try:
        v = d.item(0)
    except CborError:
        raise
    except (IndexError, MemoryError, TypeError):
        raise CborError("malformed")
    if d.i != d.n:
        raise CborError("trailing bytes")
    return v


class _Out:
    # CBOR writer into a preallocated buffer: unsigned ints, bools and map heads are all a status needs
    def __init__(self, n):
        self.buf = bytearray(n)
        self.n = 0

    def head(self, major, v):
        b = self.buf
        i = self.n
        if v < 24:
            w = 0
            b[i] = (major << 5) | v
        else:
            w = 1 if v < 0x100 else 2 if v < 0x10000 else 4 if v < 0x100000000 else 8
            b[i] = (major << 5) | (24 + (0, 0, 1, 0, 2, 0, 0, 0, 3)[w])
            for j in range(w):
                b[i + w - j] = (v >> (8 * j)) & 0xFF
        self.n = i + 1 + w

    def value(self, v):
        if v is True or v is False:
            self.buf[self.n] = 0xF5 if v else 0xF4
            self.n += 1
        elif isinstance(v, int) and 0 <= v < (1 << 64):
            self.head(0, v)
        else:
            raise ValueError("status values are unsigned integers or booleans")


class Downlink:
    """handle(payload) -> action; the status frame to send is self.status[:self.status_len].

    config: a cnode.config.Config; nvs: the NVS namespace the counter is kept in (the settings namespace
    "cn_set", shared with config); info: optional callable returning {status key (8..): uint} for status requests;
    rand: callable(n) -> n random bytes for challenges (os.urandom on the node); rejoin: whether the link can
    forget its session (ACT_REJOIN), else `rejoin` is refused as unsupported.
    """

    def __init__(self, config, nvs, info=None, rand=None, rejoin=False):
        self.cfg = config
        self.nvs = nvs
        self.info = info
        self.rand = rand
        self.can_rejoin = rejoin
        self._out = _Out(STATUS_MAX)
        self.status = self._out.buf
        self.status_len = 0
        self.result = R_OK
        try:
            self.counter = nvs.get_i32(_NVS_COUNTER) & 0xFFFFFFFF
        except OSError:
            self.counter = 0

    def handle(self, payload):
        counter = cmd = 0
        try:
            msg = decode(payload)
        except CborError:
            return self._reply(0, 0, R_MALFORMED, False)
        if not isinstance(msg, dict) or 0 not in msg or 1 not in msg:
            return self._reply(0, 0, R_FORMAT, False)
        c, k = msg[0], msg[1]
        if not isinstance(c, int) or isinstance(c, bool) or not 0 <= c <= 0xFFFFFFFF:
            return self._reply(0, 0, R_FORMAT, False)
        counter = c
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= 0xFFFF:
            return self._reply(counter, 0, R_FORMAT, False)
        cmd = k
        for key in msg:
            if key not in (0, 1, 2):
                return self._reply(counter, cmd, R_FORMAT, False)
        args = msg.get(2)
        has = 2 in msg
        if cmd == CMD_RESYNC:
            if not isinstance(args, int) or isinstance(args, bool) or not 0 < args <= 0xFFFFFFFF:
                return self._reply(counter, cmd, R_BAD_ARG, False)
            if args != self._challenge(False):
                return self._refuse(counter, cmd, R_CHALLENGE)
            self.nvs.set_i32(_NVS_CHALLENGE, 0)  # used up, committed with the new counter
            self.nvs.set_i32(_NVS_USED, args if args < 0x80000000 else args - 0x100000000)
            self._accept(counter)
            return self._reply(counter, cmd, R_OK, False)
        if counter <= self.counter:
            return self._refuse(counter, cmd, R_REPLAY)
        if counter - self.counter > WINDOW:
            return self._refuse(counter, cmd, R_WINDOW)
        if cmd < CMD_SET_INTERVAL or cmd > CMD_REJOIN:
            return self._reply(counter, cmd, R_UNKNOWN, False)
        if cmd >= CMD_STATUS:
            if has:
                return self._reply(counter, cmd, R_BAD_ARG, False)
            if cmd == CMD_REJOIN and not self.can_rejoin:
                return self._reply(counter, cmd, R_UNSUPPORTED, False)
        else:
            try:
                self._apply(cmd, args)
            except ValueError:
                return self._reply(counter, cmd, R_BAD_ARG, False)
        self._accept(counter)
        self._reply(counter, cmd, R_OK, cmd == CMD_STATUS)
        return ACT_REBOOT if cmd == CMD_REBOOT else ACT_REJOIN if cmd == CMD_REJOIN else ACT_SEND

    def _challenge(self, make):
        # the current challenge (0: none); make: draw and keep one if there is none
        try:
            ch = self.nvs.get_i32(_NVS_CHALLENGE) & 0xFFFFFFFF
        except OSError:
            ch = 0
        if ch == 0 and make and self.rand is not None:
            try:
                used = self.nvs.get_i32(_NVS_USED) & 0xFFFFFFFF
            except OSError:
                used = 0
            while ch == 0 or ch == used:  # never the one the last resync used: that resync may be replayed
                r = self.rand(4)
                ch = (r[0] << 24) | (r[1] << 16) | (r[2] << 8) | r[3]
            self.nvs.set_i32(_NVS_CHALLENGE, ch if ch < 0x80000000 else ch - 0x100000000)
            self.nvs.commit()
        return ch

    def _refuse(self, counter, cmd, result):
        # a status that tells the host where the node's counter is and what a resync must carry
        ch = self._challenge(True)
        self._reply(counter, cmd, result, False)
        o = self._out
        o.buf[0] += 1 if ch == 0 else 2  # the map head (3 pairs, < 24) counts the pairs added here
        o.head(0, S_NODE_COUNTER)
        o.head(0, self.counter)
        if ch:
            o.head(0, S_CHALLENGE)
            o.head(0, ch)
        self.status_len = o.n
        return ACT_SEND

    def _apply(self, cmd, a):
        # validate and keep the setting (not yet committed: _accept commits it with the counter)
        cfg = self.cfg
        if cmd == CMD_SET_ADR:
            if a is not True and a is not False:
                raise ValueError("adr")
            cfg.set("adr", a, False)
            return
        if not isinstance(a, int) or isinstance(a, bool):
            raise ValueError("argument")
        if cmd == CMD_SET_INTERVAL:
            cfg.set("interval", a, False)
        elif cmd == CMD_SET_DR:
            cfg.set("dr", a, False)
        else:
            cid = channel_id(a)
            m = cfg.get("channels_off")
            m = m | (1 << cid) if cmd == CMD_DISABLE_CHANNEL else m & ~(1 << cid)
            cfg.set("channels_off", m, False)

    def _accept(self, counter):
        # setting first, counter second, one commit: a cut between re-applies an idempotent command at most
        v = counter if counter < 0x80000000 else counter - 0x100000000
        self.nvs.set_i32(_NVS_COUNTER, v)
        self.nvs.commit()
        self.counter = counter

    def _reply(self, counter, cmd, result, full, with_info=True):
        self.result = result
        o = self._out
        o.n = 0
        extra = None
        npairs = 3
        if full:
            npairs += 4
            if with_info and self.info is not None:
                extra = self.info()
                npairs += len(extra)
        o.head(5, npairs)
        o.head(0, 0)
        o.head(0, counter)
        o.head(0, 1)
        o.head(0, cmd)
        o.head(0, 2)
        o.head(0, result)
        if full:
            cfg = self.cfg
            o.head(0, 3)
            o.head(0, cfg.get("interval"))
            o.head(0, 4)
            o.head(0, cfg.get("dr"))
            o.head(0, 5)
            o.value(cfg.get("adr"))
            o.head(0, 6)
            o.head(0, cfg.get("channels_off"))
            if extra:
                try:
                    for key in sorted(extra):
                        o.head(0, key)
                        o.value(extra[key])
                except (IndexError, TypeError, ValueError, OverflowError):  # too big or not a uint
                    return self._reply(counter, cmd, result, full, False)
        self.status_len = o.n
        return ACT_SEND
