# A power-safe store-and-forward flash queue: frames are appended to flash before the radio is offered them.
#
# Layout under `root` (docs/queue.md):
#   sXXXXXXXX  append-only segments (hex number ascending), each a run of records:
#              magic u16 0xC39E | length u16 | seq u32 | crc32 u32 over the first 8 bytes + data | data
#              (little-endian). A segment takes at most seg_bytes; then the next one starts.
#   m0, m1     two alternating ack-pointer slots: magic u16 0x514D | version u16 | gen u32 | acked u32 |
#              dropped u32 | crc32 u32 over the first 16 bytes. The valid slot with the higher gen wins.
# Safety argument (every write can be torn at any byte; rename/remove/create are atomic):
#   - push() returns only after the record is written and flushed; a torn record fails its CRC and is skipped,
#     and a segment whose tail is torn is never appended to again (the next push starts a new segment).
#   - ack() rewrites the *older* slot, so a torn slot leaves the previous pointer intact: at worst the last
#     acked frame is offered again (at-least-once), never lost.
#   - dropping the oldest segment when the queue is full writes the pointer (acked, dropped += n) first and
#     removes the file after; a cut between leaves a fully-acked segment that the next boot removes.
# Memory: push/peek/ack reuse buffers from __init__; peek returns a view valid until the next queue call.
import struct
from binascii import crc32
from micropython import const

FRAME_MAX = const(242)
_MAGIC = const(0xC39E)
_HDR = const(12)
_META_MAGIC = const(0x514D)
_META_VER = const(1)
_META = const(20)


class Queue:
    """Frames (bytes, 1..242) in FIFO order on flash; seq numbers ascend from 1 and are never reused."""

    def __init__(self, fs, root="/q", seg_bytes=4096, max_segs=8):
        if max_segs < 2 or seg_bytes < _HDR + FRAME_MAX:
            raise ValueError("queue needs max_segs >= 2 and seg_bytes >= 254")
        self.fs = fs
        self.root = root
        self.seg_bytes = seg_bytes
        self.max_segs = max_segs
        self._wbuf = bytearray(_HDR + FRAME_MAX)
        self._rbuf = bytearray(_HDR + FRAME_MAX)
        self._wmv = memoryview(self._wbuf)
        self._whdr = self._wmv[:8]  # the part of the header the CRC covers
        self._rmv = memoryview(self._rbuf)
        self._mbuf = bytearray(_META)
        self._sbuf = bytearray(2 * (_HDR + FRAME_MAX))  # scan window: segment bytes _sbase.._sbase+_sfill
        self._smv = memoryview(self._sbuf)
        self._sbase = 0
        self._sfill = 0
        self._slen = 0  # data length of the record _next_valid() found
        self._mmv = memoryview(self._mbuf)
        self._mpath = (root + "/m0", root + "/m1")
        self._segs = []  # [segno, first_seq, last_seq, path], ascending; first/last 0 while empty
        self._wf = None  # append handle of the write segment
        self._wseg = -1  # index into _segs of the write segment, -1: next push starts a new one
        self._wsize = 0
        self._wlast = -1  # offset of the record last pushed (peek serves it from _wbuf)
        self._rf = None  # read handle and the segment index it reads
        self._rfseg = -1
        self._rseg = 0  # read cursor: segment index, offset
        self._roff = 0
        self._pseq = 0  # the record peek() returned last and the offset after it
        self._pnext = 0
        self._iseg = 0  # peek_next(): position after the frame it returned last, and that frame's seq
        self._ioff = 0
        self._iseq = 0
        self.gen = 0
        self.acked = 0
        self.dropped = 0
        self.depth = 0
        self.next_seq = 1
        self._recover()

    # --- boot ------------------------------------------------------------------------------------------------
    def _recover(self):
        fs = self.fs
        try:
            fs.stat(self.root)
        except OSError:
            fs.mkdir(self.root)
        for i in (0, 1):
            self._load_meta(self._mpath[i])
        names = []
        for name in fs.listdir(self.root):
            if len(name) == 9 and name[0] == "s":
                try:
                    names.append(int(name[1:], 16))
                except ValueError:
                    pass
        names.sort()
        top = self.acked
        n = len(names)
        for i in range(n):
            path = "%s/s%08x" % (self.root, names[i])
            first, last, live, clean, size = self._scan(path)
            if last > top:
                top = last
            if live == 0 and i < n - 1:
                fs.remove(path)  # fully acked or empty, and not the newest: garbage
                continue
            self._segs.append([names[i], first, last, path])
            self.depth += live
            if i == n - 1 and clean and size + _HDR + FRAME_MAX <= self.seg_bytes:
                self._wseg = len(self._segs) - 1  # append to it; a torn tail starts a new segment instead
                self._wsize = size
        self.next_seq = top + 1

    def _load_meta(self, path):
        try:
            f = self.fs.open(path, "rb")
        except OSError:
            return
        try:
            n = f.readinto(self._mbuf)
        finally:
            f.close()
        if n != _META:
            return
        magic, ver, gen, acked, dropped, crc = struct.unpack("<HHIIII", self._mbuf)
        if magic != _META_MAGIC or ver != _META_VER or crc != crc32(self._mmv[:16]):
            return
        if gen > self.gen:
            self.gen, self.acked, self.dropped = gen, acked, dropped

    def _scan(self, path):
        """Valid records of one segment: (first, last, live (seq > acked), clean end, size). Streams it through
        a fixed window (no segment-sized buffer: a boot scans every segment)."""
        f = self.fs.open(path, "rb")
        try:
            size = f.seek(0, 2)
            self._sfill = 0  # the window holds nothing of this file yet
            first = last = live = 0
            clean = True
            off = 0
            while off < size:
                at = self._next_valid(f, off, size)
                if at < 0:
                    return first, last, live, False, size
                if at != off:
                    clean = False  # skipped bytes on the way to a good record
                off = at
                n = self._slen
                mv = self._smv
                i = off - self._sbase
                seq = mv[i + 4] | mv[i + 5] << 8 | mv[i + 6] << 16 | mv[i + 7] << 24
                if first == 0:
                    first = seq
                last = seq
                if seq > self.acked:
                    live += 1
                off += _HDR + n
            return first, last, live, clean, size
        finally:
            f.close()

    def _next_valid(self, f, off, size):
        """Offset of the first good record at or after off in an open segment of `size` bytes, or -1; its data
        length is in _slen and the record in _sbuf at offset - _sbase. Refills the window so that it always
        holds a whole record (or the segment's end) from off."""
        sb = self._sbuf
        while off < size:
            end = self._sbase + self._sfill
            if off < self._sbase or off >= end or (off + _HDR + FRAME_MAX > end and end < size):
                f.seek(off)
                self._sbase = off
                self._sfill = f.readinto(sb) or 0
            n = self._valid(self._smv, off - self._sbase, self._sfill)
            if n >= 0:
                self._slen = n
                return off
            off += 1  # resynchronise on the next magic with a good CRC
        return -1

    @staticmethod
    def _valid(mv, off, size):
        # data length of a good record at mv[off:], or -1
        if off + _HDR > size:
            return -1
        if mv[off] | mv[off + 1] << 8 != _MAGIC:  # (bytes, not unpack_from: a scan calls this per offset)
            return -1
        n = mv[off + 2] | mv[off + 3] << 8
        if n == 0 or n > FRAME_MAX or off + _HDR + n > size:
            return -1
        crc = mv[off + 8] | mv[off + 9] << 8 | mv[off + 10] << 16 | mv[off + 11] << 24
        if crc32(mv[off + _HDR:off + _HDR + n], crc32(mv[off:off + 8])) != crc:
            return -1
        return n

    # --- push ------------------------------------------------------------------------------------------------
    def push(self, frame):
        """Append one frame durably; returns its seq. Drops the oldest segment when the queue is full."""
        n = len(frame)
        if n == 0 or n > FRAME_MAX:
            raise ValueError("frame length must be 1..242")
        rec = _HDR + n
        f = self._wf
        if self._wseg < 0 or self._wsize + rec > self.seg_bytes:
            f = self._roll()
        elif f is None:
            f = self._wf = self.fs.open(self._segs[self._wseg][3], "ab")
        seq = self.next_seq
        buf = self._wbuf
        struct.pack_into("<HHI", buf, 0, _MAGIC, n, seq)
        buf[_HDR:rec] = frame
        struct.pack_into("<I", buf, 8, crc32(frame, crc32(self._whdr)))
        try:
            f.write(self._wmv[:rec])
            f.flush()
        except OSError:  # unknown tail: never append to this segment again
            self._wseg = -1
            self._wf = None
            raise
        seg = self._segs[self._wseg]
        if seg[1] == 0:
            seg[1] = seq
        seg[2] = seq
        self._wlast = self._wsize
        self._wsize += rec
        self.next_seq = seq + 1
        self.depth += 1
        return seq

    def _roll(self):
        if self._wf is not None:
            self._wf.close()
            self._wf = None
        self._wseg = -1
        while len(self._segs) >= self.max_segs:
            self._drop_oldest()
        no = self._segs[-1][0] + 1 if self._segs else 1
        path = "%s/s%08x" % (self.root, no)
        f = self._wf = self.fs.open(path, "wb")
        self._segs.append([no, 0, 0, path])
        self._wseg = len(self._segs) - 1
        self._wsize = 0
        self._wlast = -1
        return f

    def _drop_oldest(self):
        seg = self._segs[0]
        lost = 0
        acked = self.acked
        if seg[2] > acked:
            lost = self._scan(seg[3])[2]
            acked = seg[2]
        if acked != self.acked:
            self._write_meta(acked, self.dropped + lost)
            self.dropped += lost
            self.acked = acked
            self.depth -= lost
        self._close_reader()
        self.fs.remove(seg[3])
        self._segs.pop(0)
        if self._wseg > 0:
            self._wseg -= 1
        if self._rseg > 0:
            self._rseg -= 1
        else:
            self._roff = 0
        self._pseq = 0
        self._iseq = 0  # a peek_next() walk in progress ends here (its positions moved)

    # --- peek / ack ------------------------------------------------------------------------------------------
    def peek(self):
        """(seq, frame) of the oldest frame not acked, or None. frame is a view valid until the next call."""
        while self.depth > 0 and self._rseg < len(self._segs):
            seg = self._segs[self._rseg]
            if self._rseg == self._wseg and self._roff == self._wlast:
                mv = self._wmv  # the record pushed last is still in RAM
                n = self._wbuf[2] | self._wbuf[3] << 8
            else:
                n = self._read(seg)
                if n < 0:
                    continue
                mv = self._rmv
            seq = mv[4] | mv[5] << 8 | mv[6] << 16 | mv[7] << 24
            self._pseq = seq
            self._pnext = self._roff + _HDR + n
            if seq <= self.acked:
                self._roff = self._pnext
                continue
            return seq, mv[_HDR:_HDR + n]
        self.depth = 0
        return None

    def peek_next(self):
        """(seq, frame) of the frame after the one peek() or peek_next() returned last, or None. The position
        that ack() starts from does not move, so a sender can gather several frames and then ack the last."""
        if self._pseq == 0 and self._iseq == 0:
            return None
        save = (self._rseg, self._roff, self.depth)
        if self._pseq:
            self._iseg, self._ioff = self._rseg, self._pnext
        self._rseg, self._roff = self._iseg, self._ioff
        item = self.peek()
        self._iseg, self._ioff, self._iseq = self._rseg, self._pnext, (item[0] if item else 0)
        self._rseg, self._roff, self.depth = save
        self._pseq = 0  # ack() must walk from its own position, not from this one
        return item

    def _read(self, seg):
        # read the record at the cursor into _rbuf; returns its length, or -1 after moving the cursor on
        f = self._rf
        if f is None or self._rfseg != self._rseg or self._rseg == self._wseg:
            self._close_reader()
            f = self._rf = self.fs.open(seg[3], "rb")
            self._rfseg = self._rseg
        f.seek(self._roff)
        got = f.readinto(self._rbuf)
        if got > 0:
            n = self._valid(self._rmv, 0, got)
            if n >= 0:
                return n
            # corrupt or torn record: resynchronise on the next good one in this segment
            off = self._resync(seg[3], self._roff + 1)
            if off >= 0:
                self._roff = off
                return -1
        if self._rseg == self._wseg:  # nothing more yet (depth was off: heal it)
            self.depth = 0
            return -1
        self._rseg += 1  # past the last segment is fine: the next new segment gets that index
        self._roff = 0
        return -1

    def _resync(self, path, start):
        f = self.fs.open(path, "rb")
        try:
            self._sfill = 0
            return self._next_valid(f, start, f.seek(0, 2))
        finally:
            f.close()

    def _close_reader(self):
        if self._rf is not None:
            self._rf.close()
            self._rf = None
        self._rfseg = -1

    def ack(self, seq):
        """The frame `seq` and every older one are delivered: they will not be offered again."""
        if seq <= self.acked:
            return
        if seq >= self.next_seq:
            raise ValueError("ack of a frame never pushed")
        rseg0, roff0, depth0 = self._rseg, self._roff, self.depth
        rseg, roff, k = rseg0, roff0, 0
        if self._pseq == seq and self._pseq > self.acked:
            roff = self._pnext  # the usual case: ack of the frame just peeked
            k = 1
        else:
            while True:
                item = self.peek()
                if item is None or item[0] > seq:
                    break
                k += 1
                self._roff = self._pnext
            rseg, roff = self._rseg, self._roff
            self._rseg, self._roff, self.depth = rseg0, roff0, depth0
        self._write_meta(seq, self.dropped)
        self.acked = seq
        self.depth = self.depth - k if self.depth > k else 0
        self._rseg, self._roff, self._pseq = rseg, roff, 0
        self._iseq = 0
        # segments before the read cursor are fully acked: remove them (the pointer is already on flash)
        while self._rseg > 0 and self._segs[0][2] <= seq:
            self._drop_oldest()

    def _write_meta(self, acked, dropped):
        gen = self.gen + 1
        b = self._mbuf
        struct.pack_into("<HHIII", b, 0, _META_MAGIC, _META_VER, gen, acked, dropped)
        struct.pack_into("<I", b, 16, crc32(self._mmv[:16]))
        f = self.fs.open(self._mpath[gen & 1], "wb")
        try:
            f.write(b)
        finally:
            f.close()
        self.gen = gen

    def close(self):
        """Close open handles (not needed for safety: every push and ack is already on flash)."""
        self._close_reader()
        if self._wf is not None:
            self._wf.close()
            self._wf = None
