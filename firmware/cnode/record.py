# Sample records as the flash queue stores them: time, then (channel id, value, flags) for each reading.
#
# Layout (little-endian): t u32 (seconds since 2000) | count u8 | count x (id u8, flags u8, value i32)
# A value of -2**31 means null (flags say why). Records are written once and read back to build frames at
# send time, so a frame always fits the data rate in force when it is sent.
import struct
from micropython import const

NULL = const(-0x80000000)
_ITEM = const(6)


class Records:
    """Packs and unpacks records for one channel layout (ids as in the sampler), in preallocated buffers."""

    def __init__(self, ids):
        self.ids = ids
        self.n = len(ids)
        self.buf = bytearray(5 + _ITEM * self.n)
        self.mv = memoryview(self.buf)
        self.vals = [None] * self.n
        self.flags = [0] * self.n
        self._slot = bytearray(64)  # channel id -> slot + 1 (0: not in this layout)
        for i in range(self.n):
            self._slot[ids[i]] = i + 1

    def pack(self, t, vals, flags):
        """Record of one sample; returns a view of the shared buffer (valid until the next pack)."""
        buf = self.buf
        k = 0
        for i in range(self.n):
            v = vals[i]
            f = flags[i] if flags is not None else 0
            if v is None and not f:
                continue
            struct.pack_into("<BBi", buf, 5 + _ITEM * k, self.ids[i], f, NULL if v is None else v)
            k += 1
        struct.pack_into("<IB", buf, 0, t, k)
        return self.mv[:5 + _ITEM * k]

    def unpack(self, rec):
        """Fills self.vals / self.flags from a record; returns its time. Channels outside the layout are
        skipped (the layout changed since the record was written)."""
        if len(rec) < 5:
            raise ValueError("record too short")
        t, k = struct.unpack_from("<IB", rec, 0)
        if len(rec) != 5 + _ITEM * k:
            raise ValueError("record length does not match its count")
        vals = self.vals
        flags = self.flags
        for i in range(self.n):
            vals[i] = None
            flags[i] = 0
        for j in range(k):
            cid, f, v = struct.unpack_from("<BBi", rec, 5 + _ITEM * j)
            if cid >= 64:
                raise ValueError("record channel id out of range")
            s = self._slot[cid]
            if s:
                vals[s - 1] = None if v == NULL else v
                flags[s - 1] = f
        return t
