"""Writes a device identity into a node's NVS through mpremote's raw REPL and checks it, without echoing keys.

On the node: `esp32.NVS("cn_keys")` blobs `dev_eui`, `join_eui` (8 bytes each, MSB first as printed) and
`app_key` (16 bytes), and i32 `prod` = 1 for production mode (erased otherwise), then commit(). A node without
`esp32` (the unix-port virtual node) uses `cnode.nvsfile.NVS`, a file-backed stand-in with the same methods. The
check runs in a second exec with a fresh NVS object and sends back only SHA-256 digests of what it reads (and the
production flag), which the host compares with the registry, so keys travel to the node once and never back.
The node side prints only fixed words and exception type names, and every host-side error is built from fixed
text (node output is scrubbed of key material as well).

Production mode (citynode.device.production, docs/security.md): before anything is spent, `preflight()` checks that the
node's main.py turns Ctrl-C off first and that its app knows production mode; after the keys, `restart()` resets
the node and waits for the line it prints at every boot in production mode. A node that is already in production
mode has no REPL to open: NodeSession says so instead of timing out.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import os

from citynode.device import production
from citynode.errors import CitynodeError
from citynode.device.registry import Device

NAMESPACE = "cn_keys"
FIELDS = ("dev_eui", "join_eui", "app_key")
PROD_KEY = "prod"  # i32 1: production mode (firmware/main.py reads it at boot, without cnode)
MARKER = "citynode.incomplete"  # citynode.device.flash.MARKER: an install that did not finish

_OPEN_NVS = """\
    try:
        import esp32
        N = esp32.NVS
    except ImportError:
        from cnode.nvsfile import NVS as N
    n = N(%r)
""" % NAMESPACE

WRITE_SCRIPT = """\
def _cn_w(v, p):
    from binascii import unhexlify
%s    for k, h in zip(%r, v):
        n.set_blob(k, unhexlify(h))
    if p:
        n.set_i32(%r, 1)
    else:
        try:
            n.erase_key(%r)
        except OSError:
            pass
    n.commit()
try:
    _cn_w((%%r, %%r, %%r), %%r)
    print("CN-OK")
except Exception as e:
    print("CN-ERR", type(e).__name__)
del _cn_w
""" % (_OPEN_NVS, FIELDS, PROD_KEY, PROD_KEY)

CHECK_SCRIPT = """\
def _cn_c():
    from binascii import hexlify
    import hashlib
%s    b = bytearray(32)
    r = []
    for k in %r:
        try:
            m = n.get_blob(k, b)
            r.append(hexlify(hashlib.sha256(bytes(b[:m])).digest()).decode())
        except OSError:
            r.append("-")
    try:
        r.append(str(n.get_i32(%r)))
    except OSError:
        r.append("-")
    return r
try:
    print("CN-SUM", " ".join(_cn_c()))
except Exception as e:
    print("CN-ERR", type(e).__name__)
del _cn_c
""" % (_OPEN_NVS, FIELDS, PROD_KEY)

# Before production mode is written: can this node keep its REPL closed? Its main.py (written by citynode flash)
# must turn Ctrl-C off with its first statement, its app (app_main.py, firmware/main.py) must know production
# mode, the install must be finished, and a boot.py must run no code (while it runs Ctrl-C works, and a
# KeyboardInterrupt there skips main.py: the REPL). Prints CN-PRE and one fixed word.
PREFLIGHT_SCRIPT = """\
def _cn_p():
    import os
    def code(p):
        try:
            with open(p) as f:
                return [x.strip() for x in f.read().split("\\n") if x.strip() and not x.strip().startswith("#")]
        except OSError:
            return None
    try:
        os.stat(%r)
        return "unfinished"
    except OSError:
        pass
    m = code("main.py")
    if m is None:
        return "nomain"
    if m[:2] != ["from micropython import kbd_intr", "kbd_intr(-1)"]:
        return "oldmain"
    try:
        with open("app_main.py") as f:
            if %r not in f.read():
                return "oldapp"
    except OSError:
        return "noapp"
    if code("boot.py"):
        return "bootpy"
    return "OK"
try:
    print("CN-PRE", _cn_p())
except Exception as e:
    print("CN-ERR", type(e).__name__)
del _cn_p
""" % (MARKER, production.MARK)

# After production mode is written: remove MicroPython's stock boot.py (comments only; one Ctrl-C window less at
# every boot) and reset into production mode.
RESTART_SCRIPT = """\
import os
try:
    with open("boot.py") as _f:
        _c = [x for x in _f.read().split("\\n") if x.strip() and not x.strip().startswith("#")]
    if not _c:
        os.remove("boot.py")
except OSError:
    pass
import machine
machine.reset()
"""
_PREFLIGHT = {
    "unfinished": "its install is unfinished ({marker}): run `citynode flash --board BOARD --port {port}` again",
    "nomain": "it has no main.py of citynode flash: run `citynode flash --board BOARD --port {port}` first",
    "oldmain": "its main.py does not turn Ctrl-C off first (written by an older citynode flash): run "
               "`citynode flash --board BOARD --port {port}` first",
    "noapp": "it has no app_main.py: run `citynode flash --board BOARD --port {port}` first",
    "oldapp": "its firmware does not know production mode (app_main.py of an older citynode flash): run "
              "`citynode flash --board BOARD --port {port}` first",
    "bootpy": "its boot.py runs code before main.py, while Ctrl-C still reaches the REPL: remove it "
              "(`mpremote connect {port} rm :boot.py`) or move that code into the app",
}


READ_EUI_SCRIPT = """\
def _cn_r():
    from binascii import hexlify
%s    b = bytearray(32)
    try:
        m = n.get_blob("dev_eui", b)
    except OSError:
        return "-"
    return hexlify(bytes(b[:m])).decode() if m == 8 else "?"
try:
    print("CN-EUI", _cn_r())
except Exception as e:
    print("CN-ERR", type(e).__name__)
del _cn_r
""" % _OPEN_NVS


def secret_forms(dev: Device) -> list[str]:
    """The ways the AppKey could show up in text: hex both cases, base64, Python bytes repr."""
    raw = bytes.fromhex(dev.app_key)
    return [dev.app_key.upper(), dev.app_key.lower(), base64.b64encode(raw).decode(), repr(raw)[2:-1]]


def scrub(text: str, dev: Device) -> str:
    for s in secret_forms(dev):
        text = text.replace(s, "<key>")
    return text


def _digest(hexstr: str) -> str:
    return hashlib.sha256(bytes.fromhex(hexstr)).hexdigest()


def _open(port: str, baud: int, timeout: float):
    from mpremote.transport_serial import SerialTransport

    return SerialTransport(port, baudrate=baud, timeout=timeout)


class NodeSession:
    """A raw-REPL session with one node: `with NodeSession(port) as node: node.write(dev)`. Opening fails early
    (no port, no REPL) before any identity is spent. Errors are CitynodeErrors whose text holds no key."""

    def __init__(self, port: str, baud: int = 115200, timeout: float = 10.0, transport=None):
        self.port, self.baud, self.timeout = port, baud, timeout
        self._tr = transport
        self._own = transport is None
        self._sink = io.StringIO()  # mpremote prints raw node output on some failures; keep it off our stdout

    def __enter__(self) -> NodeSession:
        try:
            with contextlib.redirect_stdout(self._sink):
                self._enter()
        except BaseException:
            self._close()
            raise
        return self

    def _enter(self) -> None:
        port = self.port
        if self._tr is None:
            if port.startswith("/") and not os.path.exists(port):
                raise CitynodeError(f"port {port} does not exist; is the board plugged in?")
            try:
                self._tr = _open(port, self.baud, min(self.timeout, 5.0))
            except Exception as e:  # TransportError, SerialException, OSError
                raise CitynodeError(f"cannot open {port} ({type(e).__name__}); is another program using it?") \
                    from None
        try:
            production.enter_raw_repl(self._tr, self.timeout)  # bounded even if the node keeps printing
        except Exception:
            if production.closed(self._tr, self._sink.getvalue()):  # what it printed, else after a reset
                raise CitynodeError(production.closed_message(port)) from None
            raise CitynodeError(f"no MicroPython REPL answered on {port} within {self.timeout:g} s; is the board "
                                "flashed with MicroPython and not busy?") from None

    def dev_eui(self) -> str | None:
        """The DevEUI the node holds now (upper-case hex), or None if it holds none. (A DevEUI is no secret.)"""
        with contextlib.redirect_stdout(self._sink):
            words = _run(self._tr, READ_EUI_SCRIPT, self.port).split()
        if len(words) == 2 and words[0] == "CN-EUI":
            if words[1] == "-":
                return None
            if len(words[1]) == 16:
                return words[1].upper()
        raise CitynodeError(_node_error("reading the node's DevEUI", " ".join(words), self.port, None))

    def write(self, dev: Device, production: bool = False) -> None:
        """Write `dev`'s DevEUI, JoinEUI and AppKey to the node's NVS, and production mode on or off, and check
        them by reading back. Production mode takes effect at the node's next boot (restart())."""
        with contextlib.redirect_stdout(self._sink):
            self._write(dev, production)

    def _write(self, dev: Device, prod: bool) -> None:
        tr, port = self._tr, self.port
        out = _run(tr, WRITE_SCRIPT % (dev.dev_eui, dev.join_eui, dev.app_key, prod), port)
        if out != "CN-OK":
            raise CitynodeError(_node_error("writing keys", out, port, dev))
        words = _run(tr, CHECK_SCRIPT, port).split()
        if len(words) != 5 or words[0] != "CN-SUM":
            raise CitynodeError(_node_error("reading keys back", " ".join(words), port, dev))
        want = [_digest(dev.dev_eui), _digest(dev.join_eui), _digest(dev.app_key)]
        bad = [f for f, got, exp in zip(FIELDS, words[1:4], want) if not hmac.compare_digest(got, exp)]
        if bad:
            raise CitynodeError(f"the node on {port} holds different {', '.join(bad)} than the registry after "
                                "writing; it is not provisioned")
        if words[4] != ("1" if prod else "-"):
            raise CitynodeError(f"the node on {port} did not keep production mode {'on' if prod else 'off'} "
                                "after writing it; it is not provisioned")

    def preflight(self) -> None:
        """Before production mode: CitynodeError unless the node's files can keep its REPL closed (see
        PREFLIGHT_SCRIPT). Changes nothing on the node."""
        with contextlib.redirect_stdout(self._sink):
            words = _run(self._tr, PREFLIGHT_SCRIPT, self.port).split()
        if words[:2] == ["CN-PRE", "OK"]:
            return
        if words[:1] == ["CN-PRE"] and len(words) == 2 and words[1] in _PREFLIGHT:
            why = _PREFLIGHT[words[1]].format(port=self.port, marker=MARKER)
            raise CitynodeError(f"the node on {self.port} cannot go into production mode: {why}")
        raise CitynodeError(_node_error("checking the node for production mode", " ".join(words), self.port, None))

    def restart(self, seconds: float = production.LISTEN_S * 2) -> bool:
        """Reset the node (removing MicroPython's stock boot.py first, see RESTART_SCRIPT) and wait up to
        `seconds` for the line a node in production mode prints at boot; True if it came. The session is over."""
        tr = self._tr
        assert tr is not None  # the session is open (__enter__)
        with contextlib.redirect_stdout(self._sink):
            try:
                tr.exec_raw_no_follow(RESTART_SCRIPT)
            except Exception:  # noqa: BLE001 (a board that resets at once may cut the link: listen anyway)
                pass
            tr.in_raw_repl = False  # nothing to leave: the board restarted
            ser = getattr(tr, "serial", None)
            return ser is not None and production.said(production.listen(ser, seconds, reset=False))

    def __exit__(self, *exc) -> None:
        self._close()

    def _close(self) -> None:
        with contextlib.redirect_stdout(self._sink):
            if self._tr is not None:
                if getattr(self._tr, "in_raw_repl", True):
                    with contextlib.suppress(Exception):
                        self._tr.exit_raw_repl()
                if self._own:
                    with contextlib.suppress(Exception):
                        self._tr.close()
            self._tr = None


def _run(tr, script: str, port: str) -> str:
    try:
        return tr.exec(script).decode("utf-8", "replace").strip()
    except Exception as e:  # TransportError, TransportExecError (node stderr), serial errors
        raise CitynodeError(f"the node on {port} stopped answering ({type(e).__name__})") from None


def _node_error(step: str, out: str, port: str, dev: Device | None) -> str:
    words = (scrub(out, dev) if dev is not None else out).split()
    if words[:1] == ["CN-ERR"] and words[1:2] == ["ImportError"]:
        return f"{step} failed on {port}: the node has neither esp32.NVS nor cnode.nvsfile"
    if words[:1] == ["CN-ERR"] and len(words) == 2 and words[1].isidentifier():
        return f"{step} failed on {port}: {words[1]} on the node"
    return f"{step} failed on {port}: unexpected answer from the node"
