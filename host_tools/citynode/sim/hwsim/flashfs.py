# A simulated flash filesystem (open/rename/remove/listdir/stat/mkdir) that can lose power at any write boundary.
#
# FlashFS has the calls of MicroPython's `os` module plus `open`, so firmware that takes an `fs` object runs on
# it unchanged. Every operation that changes flash is a numbered *write boundary*: open for writing (create or
# truncate), write(), flush()/close() of a file with pending data, rename, remove, mkdir, chmod.
# `cut_at(n)` makes boundary n fail part-way: the operation is torn as described below, PowerLoss is raised, and
# every later call raises PowerLoss too until `reboot()`, which closes all handles and keeps what was persisted.
#
# Two persistence models:
#   "writethrough" (default; FAT-like, the harsher one): write() persists as it returns; the write that is cut
#       keeps a prefix of its bytes (0..len, chosen by a deterministic PRNG) optionally followed by junk bytes
#       (a half-programmed page), so a file can end in a torn record.
#   "cow" (littlefs-like): write() only buffers; flush()/close() commits the buffer atomically; a cut loses the
#       un-committed buffer. Opening an existing file with "w" truncates only at the commit.
# In both, rename (replacing the target), remove, mkdir and file creation are atomic: a cut one did not happen.
# Paths are "/"-separated; the root is "/" and relative paths are taken from the root.

S_IFDIR = 0x4000
S_IFREG = 0x8000
_ENOENT = 2
_EEXIST = 17
_EISDIR = 21
_EINVAL = 22


class PowerLoss(Exception):
    """Power failed at a write boundary (raised by the operation that was cut and by every later call)."""


class _Rng:
    # the same LCG as tests/firmware/fwtest.py, so a cut tears identically under CPython and MicroPython
    def __init__(self, seed):
        self.x = seed & 0x7FFFFFFF

    def below(self, n):
        self.x = (1103515245 * self.x + 12345) & 0x7FFFFFFF
        return (self.x >> 8) % n if n > 0 else 0


def _norm(path):
    parts = []
    for p in path.split("/"):
        if p and p != ".":
            parts.append(p)
    return "/" + "/".join(parts)


def _parent(path):
    i = path.rfind("/")
    return path[:i] if i > 0 else "/"


class FlashFS:
    def __init__(self, model="writethrough", seed=1, junk=False):
        if model not in ("writethrough", "cow"):
            raise ValueError("model must be 'writethrough' or 'cow'")
        self.model = model
        self.junk = junk
        self.rng = _Rng(seed)
        self.files = {}  # path -> bytearray (persisted contents)
        self.modes = {}  # path -> permission bits (chmod)
        self.dirs = {"/"}
        self.boundary = 0  # write boundaries passed so far (since construction or reset_count())
        self.cut = -1  # boundary index that loses power; -1 = never
        self.dead = False
        self.log = []  # (boundary, op, path) for diagnosis
        self.max_read = 0  # most bytes one read()/readinto() returned (what a caller needed a buffer for)
        self._open = []

    # --- simulation interface -----------------------------------------------------------------------
    def cut_at(self, n):
        """Lose power at write boundary n (0 = the next boundary-changing call), counted from now."""
        self.cut = self.boundary + n

    def reboot(self):
        """Power comes back: open handles are gone, persisted state stays. Returns self."""
        for f in self._open:
            f._dead = True
        self._open = []
        self.dead = False
        self.cut = -1
        return self

    def size(self, path):
        return len(self.files[_norm(path)])

    def peek_bytes(self, path):
        return bytes(self.files[_norm(path)])

    def poke(self, path, offset, value):
        """Flip flash contents behind the firmware's back (bit rot, a bad block)."""
        self.files[_norm(path)][offset] = value

    def _alive(self):
        if self.dead:
            raise PowerLoss("no power")

    def _boundary(self, op, path):
        """Count one write boundary; True if power is lost during this one (the caller tears it)."""
        self._alive()
        n = self.boundary
        self.boundary += 1
        self.log.append((n, op, path))
        if len(self.log) > 64:
            self.log.pop(0)
        if n == self.cut:
            self.dead = True
            return True
        return False

    # --- os-module interface --------------------------------------------------------------------------
    def open(self, path, mode="r"):
        self._alive()
        p = _norm(path)
        if p in self.dirs:
            raise OSError(_EISDIR)
        binary = "b" in mode
        m = mode.replace("b", "").replace("t", "")
        if m not in ("r", "w", "a"):
            raise OSError(_EINVAL)
        if m == "r":
            if p not in self.files:
                raise OSError(_ENOENT)
            return _File(self, p, False, binary, False)
        if _parent(p) not in self.dirs:
            raise OSError(_ENOENT)
        exists = p in self.files
        if self._boundary("open-" + m, p):
            raise PowerLoss("cut at open " + p)
        if not exists:
            self.files[p] = bytearray()
        trunc = m == "w" and exists
        if trunc and self.model == "writethrough":
            self.files[p] = bytearray()
            trunc = False
        f = _File(self, p, True, binary, trunc)
        self._open.append(f)
        return f

    def rename(self, old, new):
        self._alive()
        a, b = _norm(old), _norm(new)
        if a not in self.files:
            raise OSError(_ENOENT)
        if b in self.dirs or _parent(b) not in self.dirs:
            raise OSError(_EINVAL)
        if self._boundary("rename", a + ">" + b):
            raise PowerLoss("cut at rename " + a)
        self.files[b] = self.files.pop(a)
        if a in self.modes:
            self.modes[b] = self.modes.pop(a)

    def remove(self, path):
        self._alive()
        p = _norm(path)
        if p not in self.files:
            raise OSError(_ENOENT)
        if self._boundary("remove", p):
            raise PowerLoss("cut at remove " + p)
        del self.files[p]
        self.modes.pop(p, None)

    def mkdir(self, path):
        self._alive()
        p = _norm(path)
        if p in self.dirs or p in self.files:
            raise OSError(_EEXIST)
        if _parent(p) not in self.dirs:
            raise OSError(_ENOENT)
        if self._boundary("mkdir", p):
            raise PowerLoss("cut at mkdir " + p)
        self.dirs.add(p)

    def chmod(self, path, mode):
        self._alive()
        p = _norm(path)
        if p not in self.files:
            raise OSError(_ENOENT)
        if self._boundary("chmod", p):
            raise PowerLoss("cut at chmod " + p)
        self.modes[p] = mode & 0o777

    def listdir(self, path="/"):
        self._alive()
        d = _norm(path)
        if d not in self.dirs:
            raise OSError(_ENOENT)
        pre = "/" if d == "/" else d + "/"
        out = []
        for name in list(self.files) + list(self.dirs):
            if name != d and name.startswith(pre) and "/" not in name[len(pre):]:
                out.append(name[len(pre):])
        out.sort()
        return out

    def stat(self, path):
        self._alive()
        p = _norm(path)
        if p in self.dirs:
            return (S_IFDIR | 0o755, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        if p not in self.files:
            raise OSError(_ENOENT)
        return (S_IFREG | self.modes.get(p, 0o644), 0, 0, 0, 0, 0, len(self.files[p]), 0, 0, 0)


class _File:
    def __init__(self, fs, path, writable, binary, trunc):
        self._fs = fs
        self._path = path
        self._w = writable
        self._bin = binary
        self._trunc = trunc  # cow: truncate at the next commit
        self._pending = bytearray()
        self._pos = 0
        self._dead = False
        self._closed = False

    def _check(self):
        self._fs._alive()
        if self._dead or self._closed:
            raise OSError(_EINVAL)

    def _data(self):
        return self._fs.files.get(self._path, b"")

    # reading sees persisted data only (cow: a writer's buffer is not visible until committed)
    def read(self, n=-1):
        self._check()
        d = self._data()
        end = len(d) if n is None or n < 0 else min(len(d), self._pos + n)
        out = bytes(d[self._pos:end])
        self._pos = max(self._pos, end)
        if len(out) > self._fs.max_read:
            self._fs.max_read = len(out)
        return out if self._bin else out.decode()

    def readinto(self, buf, n=-1):
        self._check()
        d = self._data()
        want = len(buf) if n is None or n < 0 else min(n, len(buf))
        end = min(len(d), self._pos + want)
        k = end - self._pos if end > self._pos else 0
        buf[:k] = d[self._pos:self._pos + k]
        self._pos += k
        if k > self._fs.max_read:
            self._fs.max_read = k
        return k

    def seek(self, off, whence=0):
        self._check()
        if whence == 1:
            off += self._pos
        elif whence == 2:
            off += len(self._data())
        self._pos = off if off > 0 else 0
        return self._pos

    def tell(self):
        return self._pos

    def write(self, data):
        self._check()
        if not self._w:
            raise OSError(_EINVAL)
        if isinstance(data, str):
            data = data.encode()
        b = bytes(data)
        fs = self._fs
        if fs._boundary("write", self._path):
            if fs.model == "writethrough":
                keep = fs.rng.below(len(b) + 1)
                tail = b[:keep]
                if fs.junk and keep < len(b):
                    tail += bytes(fs.rng.below(256) for _ in range(fs.rng.below(len(b) - keep + 1)))
                fs.files[self._path].extend(tail)
            raise PowerLoss("cut at write " + self._path)
        if fs.model == "writethrough":
            fs.files[self._path].extend(b)
        else:
            self._pending.extend(b)
        return len(b)

    def flush(self):
        self._check()
        if not (self._pending or self._trunc):
            return
        fs = self._fs
        if fs._boundary("commit", self._path):
            raise PowerLoss("cut at commit " + self._path)
        if self._trunc:
            fs.files[self._path] = bytearray()
            self._trunc = False
        fs.files[self._path].extend(self._pending)
        self._pending = bytearray()

    def close(self):
        if self._closed or self._dead:
            self._fs._alive()
            return
        self.flush()
        self._closed = True
        if self in self._fs._open:
            self._fs._open.remove(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is PowerLoss:
            return False
        self.close()
        return False
