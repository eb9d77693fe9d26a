"""A real OGC SensorThings API v1.1 server (django-ogc-sensorthings on SQLite) on loopback, a fault-injecting proxy
in front of it, and a small keep-alive JSON client, for the STA publishing tests."""
from __future__ import annotations

import base64
import http.client
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

STA_DIR = Path(__file__).resolve().parent / "sta"
STA_PATH = "/sensorthings/v1.1"
# Hop-by-hop headers belong to one connection; the proxy never passes them on.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


class StaServer:
    """python tests/host/sta/sta_serve.py PORT: migrates DIR/sta.sqlite3, then serves STA v1.1 (threaded) at `.url`.

    `public_port` is the port that links in its answers name (Location headers, selfLinks, nextLinks): a proxy's,
    when one stands in front of it. `tuned=False` runs SQLite without WAL, IMMEDIATE transactions and busy
    timeout (Django's defaults), for showing what concurrent writers then get."""

    def __init__(self, workdir: Path | None = None, port: int | None = None, public_port: int | None = None,
                 tuned: bool = True):
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="sta"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.public_port = public_port or self.port
        self.db = self.dir / "sta.sqlite3"
        self.log = self.dir / "sta-server.log"
        self.tuned = tuned
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The STA base URL of this server itself (without a trailing slash)."""
        return f"http://127.0.0.1:{self.port}{STA_PATH}"

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.public_port}{STA_PATH}"

    def start(self, timeout: float = 60.0) -> "StaServer":
        if port_open(self.port):
            raise RuntimeError(f"STA server: port {self.port} is already in use")
        env = dict(os.environ, STA_DB=str(self.db), STA_PUBLIC_PORT=str(self.public_port),
                   STA_SQLITE_TUNED="1" if self.tuned else "0", PYTHONUNBUFFERED="1")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, str(STA_DIR / "sta_serve.py"), str(self.port)],
                                         cwd=self.dir, env=env, stdout=log, stderr=subprocess.STDOUT)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"STA server exited with {self.proc.returncode} before answering; "
                                   f"its output:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                status, _, _ = StaClient(self.url, timeout=5).request("GET", "/")
                if status == 200:
                    return self
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"STA server did not answer within {timeout} s; its output:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        end = time.monotonic() + 10
        while port_open(self.port):
            if time.monotonic() > end:
                raise TimeoutError(f"STA server port {self.port} still open after stop")
            time.sleep(0.05)

    def restart(self) -> "StaServer":
        """Stop, then start again on the same port with the same database."""
        self.stop()
        return self.start()


class StaClient:
    """JSON over one keep-alive HTTP/1.1 connection (as requests.Session would), reconnecting after errors.

    request() returns (status, headers with lower-case names, body parsed as JSON, or the text if it is not JSON,
    or None if empty). `path` is relative to the base URL, or a full URL (e.g. an @iot.nextLink, which this server
    sends with unencoded spaces: they are percent-encoded here, as requests does)."""

    def __init__(self, base_url: str, timeout: float = 30.0, headers: dict[str, str] | None = None):
        u = urllib.parse.urlsplit(base_url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.base_path = u.path.rstrip("/")
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.conn: http.client.HTTPConnection | None = None

    def _target(self, path: str) -> str:
        if path.startswith("http://"):
            u = urllib.parse.urlsplit(path)
            path = u.path + ("?" + u.query if u.query else "")
        else:
            path = self.base_path + path
        return urllib.parse.quote(path, safe="/?&=$(),'%:;@+*!~")

    def request(self, method: str, path: str, body=None, headers: dict[str, str] | None = None,
                raw: bytes | None = None) -> tuple[int, dict[str, str], Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        h = {"Accept": "application/json", **self.headers, **(headers or {})}
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self.conn.request(method, self._target(path), body=data, headers=h)
            r = self.conn.getresponse()
            payload = r.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if r.will_close:
            self.close()
        if not payload:
            return r.status, hdrs, None
        try:
            return r.status, hdrs, json.loads(payload)
        except ValueError:
            return r.status, hdrs, payload.decode(errors="replace")

    def get(self, path: str, **params: str):
        """GET with query options, e.g. get("/Things", filter="name eq 'x'") sends $filter=..."""
        if params:
            path += "?" + "&".join(f"${k}={urllib.parse.quote(str(v), safe='(),;=$/')}"
                                   for k, v in params.items())
        return self.request("GET", path)

    def post(self, path: str, body, headers: dict[str, str] | None = None):
        return self.request("POST", path, body, headers)

    def create(self, path: str, body) -> str:
        """POST an entity; return its @iot.id as the server wrote it in the Location header."""
        status, headers, answer = self.post(path, body)
        if status != 201:
            raise AssertionError(f"POST {path} answered {status}: {answer}")
        return entity_id(headers["location"])

    def get_all(self, path: str, **params: str) -> list[dict]:
        """Every entity of a collection, following @iot.nextLink."""
        status, _, page = self.get(path, **params)
        items: list[dict] = []
        while True:
            if status != 200 or not isinstance(page, dict):
                raise AssertionError(f"GET {path} answered {status}: {page}")
            items += page["value"]
            link = page.get("@iot.nextLink")
            if not link:
                return items
            status, _, page = self.request("GET", link)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def entity_id(link: str) -> str:
    """The id in an entity URL: Things('0191...') or Things(42) -> '0191...' or '42'."""
    inner = link.rstrip("/").rsplit("(", 1)[1].rstrip(")")
    return inner.strip("'")


class StaProxy:
    """A threaded HTTP/1.1 proxy on 127.0.0.1:PORT that passes requests and answers on to 127.0.0.1:TARGET_PORT
    verbatim (method, path, headers and body; hop-by-hop headers excepted; a chunked body is passed on with a
    Content-Length), with switches for faults:

    fail_next(n, method=None, status=500, forward=False): answer the next n requests (of that method only, if
        given) with `status` and {"detail": "injected failure"}; forward=True passes the request on first, so the
        server does apply it and only its answer is lost.
    delay: seconds to wait before passing on each request.
    set_down(True): close the listening socket and every open connection (connections are refused) until
        set_down(False).
    require_bearer(token) / require_basic(user, password) / require_auth(None): answer 401 with a
        WWW-Authenticate header unless the request carries that Authorization (the STA server has none of its own).

    `requests` records (method, path, headers) of every request received, `injected` counts the failures
    answered."""

    def __init__(self, target_port: int, port: int | None = None):
        self.target_port = target_port
        self.port = port or free_port()
        self.delay = 0.0
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.injected = 0
        self._lock = threading.Lock()
        self._fail_left = 0
        self._fail_method: str | None = None
        self._fail_status = 500
        self._fail_forward = False
        self._auth: str | None = None
        self._auth_scheme = "Bearer"
        self._open: set[socket.socket] = set()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.server: StaServer | None = None  # the STA server behind it, when start_behind_proxy made both

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{STA_PATH}"

    def start(self) -> "StaProxy":
        handler = type("Handler", (_ProxyHandler,), {"proxy": self})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket, then every open client connection (handler threads are daemons)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            for s in list(self._open):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._open.clear()

    def set_down(self, down: bool) -> None:
        if down:
            self.stop()
        elif self._server is None:
            self.start()

    def fail_next(self, n: int, method: str | None = None, status: int = 500, forward: bool = False) -> None:
        with self._lock:
            self._fail_left, self._fail_method = n, method.upper() if method else None
            self._fail_status, self._fail_forward = status, forward

    def require_bearer(self, token: str) -> None:
        self._auth_scheme, self._auth = "Bearer", f"Bearer {token}"

    def require_basic(self, user: str, password: str) -> None:
        self._auth_scheme = "Basic"
        self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def require_auth(self, value: None) -> None:
        """require_auth(None): accept every request again."""
        self._auth = value

    def _take_failure(self, method: str) -> tuple[int, bool] | None:
        with self._lock:
            if self._fail_left > 0 and (self._fail_method is None or self._fail_method == method):
                self._fail_left -= 1
                self.injected += 1
                return self._fail_status, self._fail_forward
        return None


def start_behind_proxy(workdir: Path) -> StaProxy:
    """A fresh STA server whose links name the proxy, and a started StaProxy in front of it (`.server`)."""
    port = free_port()
    server = StaServer(workdir, public_port=port).start()
    proxy = StaProxy(server.port, port=port).start()
    proxy.server = server
    return proxy


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: StaProxy

    def setup(self) -> None:
        super().setup()
        self.upstream: http.client.HTTPConnection | None = None
        with self.proxy._lock:
            self.proxy._open.add(self.connection)

    def finish(self) -> None:
        with self.proxy._lock:
            self.proxy._open.discard(self.connection)
        if self.upstream is not None:
            self.upstream.close()
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self, status: int, body: dict, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        for attempt in (1, 2):
            if self.upstream is None:
                self.upstream = http.client.HTTPConnection("127.0.0.1", self.proxy.target_port, timeout=120)
            try:
                self.upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in self.headers.items():
                    if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                        self.upstream.putheader(k, v)
                if body or self.command in ("POST", "PUT", "PATCH"):
                    self.upstream.putheader("Content-Length", str(len(body)))
                self.upstream.endheaders(body or None)
                r = self.upstream.getresponse()
                return r.status, r.reason, r.getheaders(), r.read()
            except (OSError, http.client.HTTPException):
                # A kept-alive upstream connection the server has closed meanwhile: reconnect once.
                self.upstream.close()
                self.upstream = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _handle(self) -> None:
        proxy = self.proxy
        body = self._body()
        with proxy._lock:
            proxy.requests.append((self.command, self.path, dict(self.headers.items())))
        if proxy.delay:
            time.sleep(proxy.delay)
        if proxy._auth is not None and self.headers.get("Authorization") != proxy._auth:
            self._answer(401, {"detail": "Unauthorized"}, {"WWW-Authenticate": f'{proxy._auth_scheme} realm="sta"'})
            return
        failure = proxy._take_failure(self.command)
        if failure and not failure[1]:
            self._answer(failure[0], {"detail": "injected failure"})
            return
        try:
            status, reason, headers, data = self._forward(body)
        except (OSError, http.client.HTTPException) as e:
            self._answer(502, {"detail": f"upstream: {e}"})
            return
        if failure:
            self._answer(failure[0], {"detail": "injected failure"})
            return
        self.send_response_only(status, reason)
        for k, v in headers:
            if k.lower() not in HOP_BY_HOP and (k.lower() != "content-length" or self.command == "HEAD"):
                self.send_header(k, v)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _handle
