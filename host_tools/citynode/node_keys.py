"""Writes a device identity into a node's NVS through mpremote's raw REPL and checks it, without echoing keys.

On the node: `esp32.NVS("cn_keys")` blobs `dev_eui`, `join_eui` (8 bytes each, MSB first as printed) and
`app_key` (16 bytes), then commit(). A node without `esp32` (the unix-port virtual node) uses
`cnode.nvsfile.NVS`, a file-backed stand-in with the same methods. The check runs in a second exec with a fresh
NVS object and sends back only SHA-256 digests of what it reads, which the host compares with the registry, so
keys travel to the node once and never back. The node side prints only fixed words and exception type names,
and every host-side error is built from fixed text (node output is scrubbed of key material as well).
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import os

from .errors import CitynodeError
from .registry_db import Device

NAMESPACE = "cn_keys"
FIELDS = ("dev_eui", "join_eui", "app_key")

_OPEN_NVS = """\
    try:
        import esp32
        N = esp32.NVS
    except ImportError:
        from cnode.nvsfile import NVS as N
    n = N(%r)
""" % NAMESPACE

WRITE_SCRIPT = """\
def _cn_w(v):
    from binascii import unhexlify
%s    for k, h in zip(%r, v):
        n.set_blob(k, unhexlify(h))
    n.commit()
try:
    _cn_w((%%r, %%r, %%r))
    print("CN-OK")
except Exception as e:
    print("CN-ERR", type(e).__name__)
del _cn_w
""" % (_OPEN_NVS, FIELDS)

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
    return r
try:
    print("CN-SUM", " ".join(_cn_c()))
except Exception as e:
    print("CN-ERR", type(e).__name__)
del _cn_c
""" % (_OPEN_NVS, FIELDS)


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
            self._tr.enter_raw_repl(soft_reset=False, timeout_overall=self.timeout)
        except Exception:
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

    def write(self, dev: Device) -> None:
        """Write `dev`'s DevEUI, JoinEUI and AppKey to the node's NVS and check them by reading back."""
        with contextlib.redirect_stdout(self._sink):
            self._write(dev)

    def _write(self, dev: Device) -> None:
        tr, port = self._tr, self.port
        out = _run(tr, WRITE_SCRIPT % (dev.dev_eui, dev.join_eui, dev.app_key), port)
        if out != "CN-OK":
            raise CitynodeError(_node_error("writing keys", out, port, dev))
        words = _run(tr, CHECK_SCRIPT, port).split()
        if len(words) != 4 or words[0] != "CN-SUM":
            raise CitynodeError(_node_error("reading keys back", " ".join(words), port, dev))
        want = [_digest(dev.dev_eui), _digest(dev.join_eui), _digest(dev.app_key)]
        bad = [f for f, got, exp in zip(FIELDS, words[1:], want) if not hmac.compare_digest(got, exp)]
        if bad:
            raise CitynodeError(f"the node on {port} holds different {', '.join(bad)} than the registry after "
                                "writing; it is not provisioned")

    def __exit__(self, *exc) -> None:
        self._close()

    def _close(self) -> None:
        with contextlib.redirect_stdout(self._sink):
            if self._tr is not None:
                with contextlib.suppress(Exception):
                    self._tr.exit_raw_repl()
                if self._own:
                    with contextlib.suppress(Exception):
                        self._tr.close()
            self._tr = None


def write_keys(port: str, dev: Device, baud: int = 115200, timeout: float = 10.0, transport=None) -> None:
    """Write `dev`'s keys to the node on `port` (a device path or pyserial URL) and verify them by reading back.
    `timeout` bounds the wait for the REPL prompt (seconds); serial reads wait at most 5 s each."""
    with NodeSession(port, baud, timeout, transport) as node:
        node.write(dev)


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
