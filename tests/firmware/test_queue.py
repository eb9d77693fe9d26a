# Flash queue tests: power cut at every write boundary, torn and corrupt records, exact drop counts (CPython + MicroPython).
from cnode.queue import Queue, FRAME_MAX
from citynode.sim.hwsim.flashfs import FlashFS, PowerLoss
from fwtest import raises, Lcg

SEG = 600  # small segments so that the script rolls and drops
NSEG = 3


class _St:
    def __init__(self):
        self.pushed = {}  # seq -> frame, push() returned
        self.inflight_push = None  # frame of a push() that had not returned
        self.delivered = []  # seqs acked with ack() returned, in order
        self.inflight_ack = 0  # seq of an ack() that had not returned
        self.dropped = 0  # q.dropped after the last call that returned
        self.max_seq = 0


def _frame(i, rnd):
    n = rnd.randint(1, 120)
    return bytes([i & 0xFF, (i >> 8) & 0xFF]) + bytes(rnd.randint(0, 255) for _ in range(n))


def _script(fs, st):
    rnd = Lcg(11)
    box = [Queue(fs, "/q", SEG, NSEG)]
    count = [0]

    def push(k):
        for _ in range(k):
            fr = _frame(count[0], rnd)
            count[0] += 1
            st.inflight_push = fr
            seq = box[0].push(fr)
            st.inflight_push = None
            assert seq > st.max_seq
            st.max_seq = seq
            st.pushed[seq] = fr
            st.dropped = box[0].dropped

    def send(k):
        for _ in range(k):
            item = box[0].peek()
            if item is None:
                return
            seq, fr = item
            assert bytes(fr) == st.pushed[seq]
            st.inflight_ack = seq
            box[0].ack(seq)
            st.inflight_ack = 0
            st.delivered.append(seq)
            st.dropped = box[0].dropped

    def reboot():
        box[0] = Queue(fs, "/q", SEG, NSEG)

    push(5)
    send(2)
    push(8)
    reboot()
    send(3)
    box[0].peek()  # offered, radio failed: not acked
    push(25)  # more than fits: the oldest segments are dropped
    send(4)
    reboot()
    send(9)
    push(3)
    send(1)
    return box[0]


def _drain(q):
    out = []
    while True:
        item = q.peek()
        if item is None:
            return out
        out.append((item[0], bytes(item[1])))
        q.ack(item[0])


def _check_after_cut(fs, st, label):
    q = Queue(fs.reboot(), "/q", SEG, NSEG)  # readable after any cut
    depth = q.depth
    got = _drain(q)
    assert len(got) == depth, label
    seqs = [s for s, _ in got]
    for i in range(1, len(seqs)):
        assert seqs[i] > seqs[i - 1], label
    last_acked = st.delivered[-1] if st.delivered else 0
    for seq, fr in got:
        assert seq > last_acked, label  # a completed ack is never undone
        if seq in st.pushed:
            assert fr == st.pushed[seq], label
        else:  # only the push cut part-way may or may not have made it
            assert fr == st.inflight_push and seq == st.max_seq + 1, label
        if seq in st.delivered or seq == st.inflight_ack:
            assert seq == st.inflight_ack, label  # at-least-once: only the ack in progress may come back
    # every returned push is delivered, still queued, or counted as dropped for size: exactly
    have = set(seqs)
    # (the ack in progress at the cut may have completed)
    missing = [s for s in st.pushed if s not in have and s not in st.delivered and s != st.inflight_ack]
    assert len(missing) == q.dropped, (label, missing, q.dropped)
    assert q.dropped >= st.dropped, label
    # and the queue goes on: new frames get new seqs and come out again
    top = max([st.max_seq] + seqs)
    seq = q.push(b"after")
    assert seq > top or (st.inflight_push is not None and seq == st.max_seq + 1 and seq not in have), label
    item = q.peek()
    assert item is not None and item[0] == seq and bytes(item[1]) == b"after", label


def _cut_everywhere(model, seed, junk):
    ref = FlashFS(model, seed, junk)
    st = _St()
    _script(ref, st)
    total = ref.boundary
    assert total > 60
    tested = 0
    for n in range(total + 1):
        fs = FlashFS(model, seed + n, junk)
        fs.cut_at(n)
        st = _St()
        try:
            _script(fs, st)
            assert n == total, "no cut at boundary %d of %d" % (n, total)
        except PowerLoss:
            assert n < total
        _check_after_cut(fs, st, "%s cut at %d" % (model, n))
        tested += 1
    return tested


def test_reference_run_accounts_for_every_frame():
    fs = FlashFS()
    st = _St()
    q = _script(fs, st)
    assert q.dropped > 0  # the script overfills the queue
    rest = _drain(q)
    left = [s for s, _ in rest]
    lost = [s for s in st.pushed if s not in left and s not in st.delivered]
    assert len(lost) == q.dropped
    assert len(st.delivered) + len(left) + q.dropped == len(st.pushed) == 41
    # oldest dropped first: every dropped frame is older than every frame still queued
    assert max(lost) < min(left)


def test_power_cut_at_every_boundary_writethrough():
    assert _cut_everywhere("writethrough", 1, False) > 60


def test_power_cut_at_every_boundary_writethrough_junk_tail():
    assert _cut_everywhere("writethrough", 5, True) > 60


def test_power_cut_at_every_boundary_cow():
    assert _cut_everywhere("cow", 9, False) > 60


def test_fifo_and_persistence_across_reboot():
    fs = FlashFS()
    q = Queue(fs, "/q", SEG, NSEG)
    assert q.peek() is None and q.depth == 0
    assert q.push(b"\x01\x02") == 1
    assert q.push(b"x" * FRAME_MAX) == 2
    assert q.depth == 2
    seq, fr = q.peek()
    assert seq == 1 and bytes(fr) == b"\x01\x02"
    assert q.peek()[0] == 1  # peek again without ack: same frame
    q.ack(1)
    q2 = Queue(fs, "/q", SEG, NSEG)  # reboot without a power cut
    assert q2.depth == 1
    seq, fr = q2.peek()
    assert seq == 2 and bytes(fr) == b"x" * FRAME_MAX
    assert q2.push(b"z") == 3
    q2.ack(3)  # cumulative: acks 2 and 3
    assert q2.depth == 0 and q2.peek() is None
    assert Queue(fs, "/q", SEG, NSEG).peek() is None


def test_bad_frames_and_acks_raise():
    q = Queue(FlashFS(), "/q", SEG, NSEG)
    raises(ValueError, q.push, b"")
    raises(ValueError, q.push, b"x" * (FRAME_MAX + 1))
    q.push(b"a")
    raises(ValueError, q.ack, 2)
    q.ack(0)  # older than anything: ignored
    assert q.depth == 1
    raises(ValueError, Queue, FlashFS(), "/q", 100, 3)
    raises(ValueError, Queue, FlashFS(), "/q", 1000, 1)


def test_record_bytes_on_flash():
    fs = FlashFS()
    q = Queue(fs, "/q", SEG, NSEG)
    q.push(b"abc")
    # magic 9e c3 | len 03 00 | seq 01 00 00 00 | crc32(9e c3 03 00 01 00 00 00 61 62 63) LE | "abc"
    assert fs.peek_bytes("/q/s00000001") == bytes.fromhex("9ec30300" "01000000" "bd71f126" "616263")
    q.ack(1)
    # meta slot 1 (gen 1): magic 4d 51 | ver 1 | gen 1 | acked 1 | dropped 0 | crc32 of those 16 bytes
    m = fs.peek_bytes("/q/m1")
    assert m == bytes.fromhex("4d510100" "01000000" "01000000" "00000000" "ab6ded36")


def test_crc_corrupt_record_is_skipped():
    fs = FlashFS()
    q = Queue(fs, "/q", 4000, NSEG)
    offs = []
    for i in range(6):
        q.push(bytes([i]) * 10)
        offs.append(fs.size("/q/s00000001") - 22)
    fs.poke("/q/s00000001", offs[2] + 14, 0x55)  # data byte of record 3
    fs.poke("/q/s00000001", offs[4] + 2, 0x20)  # length field of record 5: resynchronise on record 6
    q2 = Queue(fs.reboot(), "/q", 4000, NSEG)
    assert q2.depth == 4
    got = _drain(q2)
    assert got == [(1, b"\x00" * 10), (2, b"\x01" * 10), (4, b"\x03" * 10), (6, b"\x05" * 10)]
    # the live queue object (no reboot) skips them too when it reads them from flash
    fs2 = FlashFS()
    q3 = Queue(fs2, "/q", 4000, NSEG)
    for i in range(3):
        q3.push(bytes([i]) * 10)
    fs2.poke("/q/s00000001", 22 + 14, 0x55)
    assert [s for s, _ in _drain(q3)] == [1, 3]


def test_corrupt_meta_slot_falls_back_to_older_pointer():
    fs = FlashFS()
    q = Queue(fs, "/q", SEG, NSEG)
    for i in range(4):
        q.push(bytes([i]))
    q.ack(1)  # gen 1 -> m1
    q.ack(2)  # gen 2 -> m0
    fs.poke("/q/m0", 8, 9)  # acked field of the newest slot: CRC fails
    q2 = Queue(fs.reboot(), "/q", SEG, NSEG)
    assert q2.acked == 1 and q2.peek()[0] == 2  # frame 2 comes again (at-least-once), nothing lost


def test_torn_tail_starts_a_new_segment():
    fs = FlashFS(seed=3)
    q = Queue(fs, "/q", SEG, NSEG)
    q.push(b"one")
    fs.cut_at(0)
    raises(PowerLoss, q.push, b"two-two-two")
    fs.reboot()
    fs.files["/q/s00000001"].extend(b"\x9e\xc3\x05")  # make sure the tail is torn whatever was kept
    q2 = Queue(fs, "/q", SEG, NSEG)
    assert q2.push(b"three") == 2
    assert fs.listdir("/q") == ["s00000001", "s00000002"]
    assert [(s, f) for s, f in _drain(q2)] == [(1, b"one"), (2, b"three")]


def test_full_queue_drops_oldest_and_counts_exactly():
    fs = FlashFS()
    q = Queue(fs, "/q", 300, 2)  # two segments of 300 B: 2 records of 112+12 B each
    for i in range(7):
        q.push(bytes([i]) * 112)
    # segments: [1,2] [3,4] -> push 5 drops [1,2]; push 7 drops [3,4]
    assert q.dropped == 4 and q.depth == 3
    assert Queue(fs, "/q", 300, 2).dropped == 4
    assert [s for s, _ in _drain(q)] == [5, 6, 7]
    q.push(b"x")
    assert q.dropped == 4


def test_fuzzed_power_cuts_with_random_tears():
    rnd = Lcg(2024)
    for trial in range(25):
        fs = FlashFS("writethrough", rnd.next(), trial & 1 == 1)
        fs.cut_at(rnd.randint(0, 150))
        st = _St()
        try:
            _script(fs, st)
        except PowerLoss:
            pass
        _check_after_cut(fs, st, "trial %d" % trial)


def test_peek_next_walks_without_moving_the_ack_position():
    from cnode.queue import Queue
    from citynode.sim.hwsim.flashfs import FlashFS
    fs = FlashFS()
    q = Queue(fs, "/qn", seg_bytes=300, max_segs=8)
    for i in range(1, 8):
        q.push(bytes([i]) * (40 + i))
    seqs = []
    item = q.peek()
    while item is not None:
        seqs.append((item[0], bytes(item[1])[0], len(item[1])))
        item = q.peek_next()
    assert seqs == [(i, i, 40 + i) for i in range(1, 8)]
    assert q.peek()[0] == 1  # still the oldest
    q.ack(4)
    assert q.peek()[0] == 5
    assert q.peek_next()[0] == 6
    q.ack(5)
    assert q.peek()[0] == 6 and q.depth == 2
    q2 = Queue(fs.reboot(), "/qn", seg_bytes=300, max_segs=8)
    item = q2.peek()
    got = []
    while item is not None:
        got.append(item[0])
        item = q2.peek_next()
    assert got == [6, 7]


def test_power_cut_during_recovery_too():
    # a cut in the script, then another while the next boot recovers (it removes garbage segments)
    ref = FlashFS()
    _script(ref, _St())
    total = ref.boundary
    hits = 0
    for n in range(0, total + 1, 2):
        for m in range(3):
            fs = FlashFS("writethrough", n * 7 + m, True)
            fs.cut_at(n)
            st = _St()
            try:
                _script(fs, st)
            except PowerLoss:
                pass
            fs.reboot()
            fs.cut_at(m)
            try:
                Queue(fs, "/q", SEG, NSEG)
                fs.cut = -1
            except PowerLoss:
                hits += 1
            _check_after_cut(fs, st, "cut at %d, then at %d of recovery" % (n, m))
    assert hits > 0


def test_boot_scan_reads_through_a_fixed_window_and_skips_corruption_anywhere():
    # a full 4 KiB segment of records of every size, corrupted in several places (some right where the scan
    # window has to refill): the boot recovers exactly the good records, reading at most two records at once
    rnd = Lcg(5)
    fs = FlashFS()
    q = Queue(fs, "/q", 4096, 4)
    frames = []
    used = 0
    while True:
        f = bytes([len(frames) & 0xFF]) + bytes(rnd.randint(0, 255) for _ in range(rnd.randint(0, FRAME_MAX - 1)))
        if used + 12 + len(f) > 4096:
            break
        q.push(f)
        frames.append(f)
        used += 12 + len(f)
    assert fs.listdir("/q") == ["s00000001"] and len(frames) > 20
    offs = [0]
    for f in frames:
        offs.append(offs[-1] + 12 + len(f))
    bad = {3, 4, 9, len(frames) - 1}  # two in a row, one in the middle, the last one (the segment's tail)
    for i in bad:
        fs.poke("/q/s00000001", offs[i] + 12 + len(frames[i]) // 2, frames[i][len(frames[i]) // 2] ^ 0x5A)
    fs.max_read = 0
    q2 = Queue(fs.reboot(), "/q", 4096, 4)
    assert fs.max_read <= 2 * (12 + FRAME_MAX)
    assert q2.depth == len(frames) - len(bad)
    assert q2.next_seq == len(frames)  # the torn last record's seq is not trusted: the next push reuses it
    got = _drain(q2)
    assert got == [(i + 1, frames[i]) for i in range(len(frames)) if i not in bad]
    assert fs.max_read <= 2 * (12 + FRAME_MAX)


def test_scan_of_a_segment_of_pure_garbage_finds_nothing_and_keeps_going():
    fs = FlashFS()
    q = Queue(fs, "/q", 600, 3)
    q.push(b"first")
    rnd = Lcg(9)
    fs.files["/q/s00000002"] = bytearray(rnd.randint(0, 255) for _ in range(700))
    fs.files["/q/s00000003"] = bytearray()
    q2 = Queue(fs.reboot(), "/q", 600, 3)
    assert q2.depth == 1 and q2.push(b"next") == 2
    assert _drain(q2) == [(1, b"first"), (2, b"next")]
