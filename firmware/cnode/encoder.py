# The on-node payload encoder: packs timed samples into compact CBOR frames that never exceed a size limit.
#
# Frame (docs/payload.md): CBOR [version, channel_mask, bits] or [version, channel_mask, bits, flags]
#   bits: t0 (32, seconds since 2000-01-01 UTC) | eg0(n-1) | n>1: regular (1) then eg6(dt) or k(4)+rice(dt_i)
#         then per channel in the mask, ascending id:
#         n>1: all-present (1), else n presence bits | len5(zigzag(first - ref)) |
#         more than one value: k (4) + rice_k(zigzag(v_i - v_{i-1})) over the present values
#   flags: flat [sample index, channel id, flag bits, ...], only when some reading carries flags
# Memory: every buffer is allocated in __init__; add() and finish() allocate nothing for ids < 30 (their parts
# return one small int each, never a tuple).
from array import array

from micropython import const

from cnode.bits import BitWriter, eg_cost, len5_cost, rice_cost, zigzag
from cnode.channels import VERSION

_NK = const(16)  # KMAX + 1: Rice parameters 0..KMAX
LIMIT_MAX = 242  # largest application payload of any region/DR we serve (EU868 DR5: 222)
LIMIT_MIN = 32  # any one reading with its flag fits (EU868 DR0 allows 51)
_VALUE_MAX = const((1 << 29) - 1)  # |value - ref| bound: zigzag stays a small int on a 32-bit port


def _uint_size(v):
    # CBOR head size of an unsigned integer v (v < 2**32 here)
    if v < 24:
        return 1
    if v < 0x100:
        return 2
    if v < 0x10000:
        return 3
    return 5


class Encoder:
    """Accumulates samples of the channels `ids` (ascending registry ids, 0..63) and writes frames.

    add(t, vals, flags) offers one sample (t: seconds since 2000; vals: one int or None per channel;
    flags: one int per channel or None) and tells whether it fitted; finish() writes the frame into
    self.buf and returns its length. The frame is a view of self.buf and is valid until the next begin().
    """

    def __init__(self, ids, refs, max_samples=128, max_flags=24):
        nch = len(ids)
        for i in range(nch):
            if not 0 <= ids[i] < 64 or (i and ids[i] <= ids[i - 1]):
                raise ValueError("channel ids must ascend within 0..63")
        self.ids = ids
        self.refs = refs
        self.nch = nch
        self.maxn = max_samples if max_samples < 256 else 255
        self.maxf = max_flags
        # int arrays of one size are copied from one block of zeros: a block each left a hole beside every
        # array, too small for the next one (the simulated node then needed 126K of heap, now 124K)
        z = bytearray(4 * self.maxn)
        self.t = array("i", z)
        # one small array per channel rather than one large block: it fits a fragmented heap
        self.v = [array("i", z) for _ in range(nch)]
        self.p = [bytearray(self.maxn) for _ in range(nch)]
        self.fl = array("i", bytearray(4 * (3 * max_flags)))
        self.rc = array("i", bytearray(4 * (nch * _NK)))
        self.tc = array("i", bytearray(4 * _NK))
        z = bytearray(4 * nch)
        self.cnt = array("i", z)
        self.last = array("i", z)
        self.fcost = array("i", z)  # len5 cost of each channel's first value
        self.take = bytearray(nch)  # scratch: channels the offered sample brings
        self.buf = bytearray(LIMIT_MAX + 16)
        self.w = BitWriter(self.buf)
        self.begin(LIMIT_MAX)

    def begin(self, limit):
        """Start an empty frame of at most `limit` bytes."""
        if not LIMIT_MIN <= limit <= LIMIT_MAX:
            raise ValueError("frame limit out of range")
        self.limit = limit
        self.n = 0
        self.nf = 0
        self.regular = True
        self.dt = 0
        self.closed = False
        for i in range(self.nch):
            self.cnt[i] = 0
        for i in range(self.nch * _NK):
            self.rc[i] = 0
        for i in range(_NK):
            self.tc[i] = 0

    # --- add(): what one more sample costs, and whether it fits ---------------------------------------
    def add(self, t, vals, flags=None, start=0):
        """Offer the sample (t, vals) from channel index `start` on.

        Returns the index of the first channel not taken: self.nch when the whole sample fitted, `start`
        when it did not fit (the frame is full: finish it and offer the sample again). Only an empty frame
        takes part of a sample, so a sample too large for any one frame is split across frames by channel.
        """
        n = self.n
        if self.closed or n >= self.maxn:
            return start
        d = 0
        if n:
            d = t - self.t[n - 1]
            if d < 0:
                raise ValueError("sample time goes backwards")
            if d > _VALUE_MAX:
                raise ValueError("gap between samples too long")
        regular = n == 1 or (self.regular and (n == 0 or d == self.dt))  # every gap the same
        stop = self._take_channels(vals, flags, start, self._time_bits(d, regular))
        if stop < 0:
            return start
        self._commit(t, d, regular, vals, flags, start, stop)
        if stop < self.nch:
            self.closed = True
        return stop

    def _time_bits(self, d, regular):
        # bits of the time header for n+1 samples, the last d after the one before
        n = self.n
        tbits = 32 + eg_cost(n, 0)
        if n:
            if regular:
                tbits += 1 + eg_cost(d if n == 1 else self.dt, 6)
            else:
                tbits += 1 + 4 + _best_rice(self.tc, 0, d)
        return tbits

    def _take_channels(self, vals, flags, start, tbits):
        # Costs the channel blocks for n+1 samples (tbits: the time header's) and marks in self.take the
        # channels taken with a value. Returns the index of the first channel not taken (nch: all), or -1 when
        # the sample does not fit a frame that holds samples. An empty frame takes channels one by one while
        # they fit, a flag on a missing value too.
        n = self.n
        nch = self.nch
        chbits = 0
        maxid = -1
        nflags = self.nf
        fl = self.fl
        fbytes = 0  # CBOR bytes of the flags
        for i in range(nflags):
            fbytes += _flag_size(fl[3 * i], fl[3 * i + 1], fl[3 * i + 2])
        ntake = 0
        last = -1  # the last channel taken with a value (an empty frame's)
        for c in range(nch):
            v = vals[c] if c >= start else None
            self.take[c] = 0
            cb = self._block_bits(c, v)
            f = flags[c] if (flags is not None and c >= start) else 0
            fb = _flag_size(n, self.ids[c], f) if f else 0
            if n == 0 and (v is not None or f) and not self._fits(
                    tbits, chbits + cb, self.ids[c] if v is not None else maxid, nflags + (1 if f else 0),
                    fbytes + fb):
                if v is None and last >= 0:
                    # a flag on a missing value does not fit: if no value follows it in this sample, the
                    # next frame would hold flags alone (an empty channel mask, which no decoder takes),
                    # so the last value taken goes to the next frame with them
                    j = c + 1
                    while j < nch and vals[j] is None:
                        j += 1
                    if j == nch:
                        c = last
                        ntake -= 1
                break
            chbits += cb
            if v is not None or self.cnt[c]:
                maxid = self.ids[c]
            if f:
                nflags += 1
                fbytes += fb
            if v is not None:
                self.take[c] = 1
                ntake += 1
                last = c
        else:
            c = nch
        if n == 0:
            if ntake == 0 and c < nch:
                raise ValueError("one reading is larger than the frame limit")
            return c
        return c if self._fits(tbits, chbits, maxid, nflags, fbytes) else -1

    def _block_bits(self, c, v):
        # bits of channel c's block for n+1 samples, the last one's value v (None: none)
        n = self.n
        cnt = self.cnt[c]
        if v is not None:
            r = v - self.refs[c] if cnt == 0 else v - self.last[c]
            if r > _VALUE_MAX or r < -_VALUE_MAX:
                raise ValueError("value out of the format's range")
            z = zigzag(r)
            if cnt == 0:
                cb = len5_cost(z)
            else:
                cb = self.fcost[c] + 4 + _best_rice(self.rc, c * _NK, z)
            cnt += 1
        elif cnt:
            cb = self.fcost[c] + (4 + _best_rice(self.rc, c * _NK, -1) if cnt > 1 else 0)
        else:
            return 0
        if n:
            cb += 1  # all-present bit
        if cnt < n + 1:
            cb += n + 1  # presence bits
        return cb

    def _fits(self, tbits, chbits, maxid, nflags, fbytes):
        # whether a frame of these bit counts, highest channel id and flags is within the flag and size limits
        if nflags > self.maxf:
            return False
        nbytes = (tbits + chbits + 7) >> 3
        size = 2 + (2 if nbytes >= 24 else 1) + nbytes  # array head, version, byte-string head, bits
        if maxid >= 0:
            size += 1 + _mask_width(maxid)
        if nflags:
            size += _uint_size(nflags * 3) + fbytes
        return size <= self.limit

    def _commit(self, t, d, regular, vals, flags, start, stop):
        n = self.n
        nch = self.nch
        self.t[n] = t
        if n:
            for k in range(_NK):
                self.tc[k] += rice_cost(d, k)
            if n == 1:
                self.dt = d
        self.regular = regular
        for c in range(nch):
            if self.take[c] and c < stop:
                v = vals[c]
                self.v[c][n] = v
                self.p[c][n] = 1
                if self.cnt[c] == 0:
                    self.fcost[c] = len5_cost(zigzag(v - self.refs[c]))
                else:
                    z = zigzag(v - self.last[c])
                    b = c * _NK
                    for k in range(_NK):
                        self.rc[b + k] += rice_cost(z, k)
                self.cnt[c] += 1
                self.last[c] = v
            else:
                self.p[c][n] = 0
            f = flags[c] if (flags is not None and start <= c < stop) else 0
            if f:
                j = 3 * self.nf
                self.fl[j] = n
                self.fl[j + 1] = self.ids[c]
                self.fl[j + 2] = f
                self.nf += 1
        self.n = n + 1

    # --- finish(): the frame, part by part ------------------------------------------------------------
    def finish(self):
        """Write the frame into self.buf; returns its length (0 for an empty frame)."""
        if self.n == 0:
            return 0
        buf = self.buf
        for i in range(len(buf)):
            buf[i] = 0
        buf[0] = 0x84 if self.nf else 0x83
        buf[1] = VERSION
        head = self._put_mask(2)
        # the bit stream, after a byte-string head we fill in once its length is known
        w = self.w
        w.pos = (head + 2) * 8
        self._put_time(w)
        for c in range(self.nch):
            if self.cnt[c]:
                self._put_block(w, c)
        pos = self._put_bytes_head(head, (w.pos - (head + 2) * 8 + 7) >> 3)
        if self.nf:
            pos = self._put_flags(pos)
        if pos > self.limit:
            raise ValueError("frame over its limit")  # a bug, never bad input
        return pos

    def _put_mask(self, pos):
        # the channel mask as a CBOR unsigned integer at buf[pos], written byte by byte (no big ints);
        # returns the position after it
        buf = self.buf
        maxid = 0
        for c in range(self.nch):
            if self.cnt[c]:
                maxid = self.ids[c]
        width = _mask_width(maxid)
        if width == 0:
            for c in range(self.nch):
                if self.cnt[c]:
                    buf[pos] |= 1 << self.ids[c]
            return pos + 1
        buf[pos] = 0x18 if width == 1 else (0x19 if width == 2 else (0x1A if width == 4 else 0x1B))
        pos += 1
        for c in range(self.nch):
            if self.cnt[c]:
                cid = self.ids[c]
                buf[pos + width - 1 - (cid >> 3)] |= 1 << (cid & 7)
        return pos + width

    def _put_time(self, w):
        # t0, the sample count, then the gaps: regular (1) and eg6(dt), or k (4) and rice_k of each gap
        n = self.n
        t0 = self.t[0]
        w.bits(t0 >> 16, 16)
        w.bits(t0 & 0xFFFF, 16)
        w.eg(n - 1, 0)
        if n > 1:
            if self.regular:
                w.bits(1, 1)
                w.eg(self.dt, 6)
            else:
                w.pos += 1
                k = _argmin(self.tc, 0)
                w.bits(k, 4)
                for i in range(1, n):
                    w.rice(self.t[i] - self.t[i - 1], k)

    def _put_block(self, w, c):
        # channel c's block: presence, the first value against the channel's ref, then k and the deltas
        n = self.n
        cnt = self.cnt[c]
        pc = self.p[c]
        vc = self.v[c]
        if n > 1:
            if cnt == n:
                w.bits(1, 1)
            else:
                w.pos += 1
                for i in range(n):
                    w.bits(pc[i], 1)
        prev = 0
        k = _argmin(self.rc, c * _NK) if cnt > 1 else 0
        first = True
        for i in range(n):
            if not pc[i]:
                continue
            v = vc[i]
            if first:
                w.len5(zigzag(v - self.refs[c]))
                if cnt > 1:
                    w.bits(k, 4)
                first = False
            else:
                w.rice(zigzag(v - prev), k)
            prev = v

    def _put_bytes_head(self, head, nbytes):
        # the byte-string head at buf[head] for the nbytes of bits written from head + 2; returns the end
        buf = self.buf
        if nbytes < 24:
            # one-byte head: move the stream one byte left
            buf[head] = 0x40 + nbytes
            for i in range(nbytes):
                buf[head + 1 + i] = buf[head + 2 + i]
            buf[head + 1 + nbytes] = 0
            return head + 1 + nbytes
        buf[head] = 0x58
        buf[head + 1] = nbytes
        return head + 2 + nbytes

    def _put_flags(self, pos):
        # the flat flag array [sample index, channel id, flag bits, ...] at buf[pos]; returns the end
        buf = self.buf
        pos = _put_uint(buf, pos, 0x80, self.nf * 3)
        for i in range(self.nf * 3):
            pos = _put_uint(buf, pos, 0, self.fl[i])
        return pos


def _mask_width(maxid):
    # bytes of the channel mask after its CBOR head byte (0: the mask fits in the head)
    return 0 if maxid < 4 else (1 if maxid < 8 else (2 if maxid < 16 else (4 if maxid < 32 else 8)))


def _flag_size(i, cid, f):
    # CBOR bytes of one flag entry: sample index, channel id, flag bits
    return _uint_size(i) + _uint_size(cid) + _uint_size(f)


def _best_rice(costs, base, z):
    # smallest of costs[base + k] + rice_cost(z, k) over k (z < 0: no term added)
    best = 0x3FFFFFFF
    for k in range(_NK):
        x = costs[base + k] + (rice_cost(z, k) if z >= 0 else 0)
        if x < best:
            best = x
    return best


def _argmin(costs, base):
    best = base
    for k in range(base + 1, base + _NK):
        if costs[k] < costs[best]:
            best = k
    return best - base


def _put_uint(buf, pos, major, v):
    if v < 24:
        buf[pos] = major | v
        return pos + 1
    if v < 0x100:
        buf[pos] = major | 24
        buf[pos + 1] = v
        return pos + 2
    if v < 0x10000:
        buf[pos] = major | 25
        buf[pos + 1] = v >> 8
        buf[pos + 2] = v & 0xFF
        return pos + 3
    buf[pos] = major | 26
    buf[pos + 1] = (v >> 24) & 0xFF
    buf[pos + 2] = (v >> 16) & 0xFF
    buf[pos + 3] = (v >> 8) & 0xFF
    buf[pos + 4] = v & 0xFF
    return pos + 5


def pack(enc, samples, limit, emit):
    """Encode `samples` (iterable of (t, vals, flags)) into frames of at most `limit` bytes.

    Calls emit(buf, length) for every frame; buf is enc.buf, reused for the next frame.
    """
    enc.begin(limit)
    nch = enc.nch
    for t, vals, flags in samples:
        start = 0
        while True:
            start = enc.add(t, vals, flags, start)
            if start >= nch:
                break
            emit(enc.buf, enc.finish())
            enc.begin(limit)
    if enc.n:
        emit(enc.buf, enc.finish())
        enc.begin(limit)
