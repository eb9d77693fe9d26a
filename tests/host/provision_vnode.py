"""A virtual node for the provisioning tests: the MicroPython unix port's REPL on a pty, reached by mpremote
through a second pty (a relay thread copies bytes between the two masters), so `--port /dev/pts/N` is a real
serial device path. Its working folder stands in for the node's filesystem (cnode.nvsfile writes nvs.json there).
"""
from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import threading
import tty
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MICROPYTHON = str(Path(sys.executable).with_name("micropython"))


class VirtualNode:
    def __init__(self, cwd: Path, micropypath: str | None = None):
        self.cwd = Path(cwd)
        self.cwd.mkdir(parents=True, exist_ok=True)
        path = str(ROOT / "firmware") if micropypath is None else micropypath
        node_m, node_s = pty.openpty()
        host_m, host_s = pty.openpty()
        for fd in (node_m, node_s, host_m, host_s):
            tty.setraw(fd)
        self.proc = subprocess.Popen([MICROPYTHON, "-X", "heapsize=1M"], stdin=node_s, stdout=node_s,
                                     stderr=node_s, cwd=self.cwd, env=dict(os.environ, MICROPYPATH=path),
                                     start_new_session=True)
        os.close(node_s)
        self._fds = (node_m, host_m, host_s)
        self.port = os.ttyname(host_s)
        self.seen = bytearray()  # everything the node sent (for leak checks)
        self._stop = False
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()

    def _relay(self) -> None:
        node_m, host_m, _ = self._fds
        while not self._stop:
            try:
                ready, _, _ = select.select([node_m, host_m], [], [], 0.05)
                for fd in ready:
                    data = os.read(fd, 4096)
                    if fd == node_m:
                        self.seen += data
                    os.write(host_m if fd == node_m else node_m, data)
            except OSError:
                return

    def nvs(self) -> dict:
        import json

        f = self.cwd / "nvs.json"
        return json.loads(f.read_text()) if f.exists() else {}

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=2)
        self.proc.kill()
        self.proc.wait(timeout=5)
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> VirtualNode:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
