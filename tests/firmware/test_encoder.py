# Firmware encoder tests: shared vectors byte for byte, frame limits, splitting, bad input (CPython + MicroPython).
from cnode.encoder import Encoder, pack, LIMIT_MAX, LIMIT_MIN
from cnode.bits import BitWriter, rice_cost, eg_cost, len5_cost, zigzag
from fwtest import load_json, raises, tohex, Lcg

DR_LIMITS = (51, 51, 51, 115, 222, 222)


def _frames(ids, refs, samples, limit, **kw):
    enc = Encoder(ids, refs, **kw)
    out = []
    pack(enc, samples, limit, lambda buf, n: out.append(bytes(buf[:n])))
    return out


def test_shared_vectors_byte_exact():
    vectors = load_json("tests/vectors/payload.json")
    assert len(vectors) >= 10
    for v in vectors:
        got = _frames(v["ids"], v["refs"], [(s[0], s[1], s[2]) for s in v["ints"]], v["limit"])
        assert [tohex(f) for f in got] == v["frames"], v["name"]


def test_code_lengths_match_writer():
    # every code's cost function agrees with the bits the writer actually emits
    rnd = Lcg(7)
    for _ in range(300):
        z = rnd.randint(0, 1 << rnd.randint(0, 29))
        k = rnd.randint(0, 15)
        for kind in range(3):
            buf = bytearray(64)
            w = BitWriter(buf)
            if kind == 0:
                w.rice(z, k)
                want = rice_cost(z, k)
            elif kind == 1:
                w.eg(z, k)
                want = eg_cost(z, k)
            else:
                w.len5(z)
                want = len5_cost(z)
            assert w.pos == want, (kind, z, k)


def test_writer_bits_msb_first():
    buf = bytearray(4)
    w = BitWriter(buf)
    w.bits(0b101, 3)
    w.rice(9, 2)  # q=2: 110 then 01
    w.eg(0, 0)  # 1
    assert w.pos == 3 + 5 + 1
    assert tohex(buf[:2]) == "b980"


def test_zigzag():
    assert [zigzag(v) for v in (0, -1, 1, -2, 2, -300)] == [0, 1, 2, 3, 4, 599]


def _random_series(seed, n, nch):
    rnd = Lcg(seed)
    t = 700000000
    vals = [rnd.randint(-500, 500) for _ in range(nch)]
    out = []
    for _ in range(n):
        t += rnd.randint(0, 3) and 300 or rnd.randint(1, 5000)
        row = []
        for c in range(nch):
            r = rnd.randint(0, 99)
            if r < 3:
                row.append(None)
                continue
            vals[c] += rnd.randint(-3, 3) if r < 80 else rnd.randint(-20000, 20000)
            row.append(vals[c])
        flags = None
        if rnd.randint(0, 9) == 0:
            flags = [rnd.randint(0, 1) * 4 for _ in range(nch)]
        out.append((t, row, flags))
    return out


def test_never_exceeds_any_dr_limit():
    ids = (0, 1, 2, 4, 5, 16, 26)
    refs = (1000, 700, 101325, 0, 0, 3700, 0)
    series = _random_series(11, 300, len(ids))
    for limit in DR_LIMITS + (LIMIT_MIN, 40, LIMIT_MAX):
        frames = _frames(ids, refs, series, limit)
        assert frames
        for f in frames:
            assert 0 < len(f) <= limit, (limit, len(f))
            assert f[0] in (0x83, 0x84) and f[1] == 1


def test_bigger_frames_hold_more_samples():
    ids = (0, 1, 2, 4, 5)
    refs = (1000, 700, 101325, 0, 0)
    series = [(s[0], s[1], None) for s in _random_series(3, 400, 5)]
    counts = [len(_frames(ids, refs, series, lim)) for lim in (51, 115, 222)]
    assert counts[0] > counts[1] > counts[2]


def test_full_frame_refuses_then_next_frame_takes_sample():
    enc = Encoder((5,), (0,))
    enc.begin(LIMIT_MIN)
    taken = 0
    t = 1000
    while enc.add(t, [taken * 997 % 5000], None) == 1:
        taken += 1
        t += 300
    assert taken >= 2
    n = enc.finish()
    assert n <= LIMIT_MIN
    enc.begin(LIMIT_MIN)
    assert enc.add(t, [1], None) == 1


def test_one_sample_split_by_channel_when_too_big():
    ids = tuple(range(20))
    refs = tuple(0 for _ in ids)
    row = [100000 + 7919 * i for i in range(20)]
    frames = _frames(ids, refs, [(5000, row, None)], LIMIT_MIN)
    assert len(frames) >= 3
    for f in frames:
        assert len(f) <= LIMIT_MIN


def test_rejects_time_going_backwards():
    enc = Encoder((0,), (0,))
    enc.add(1000, [1], None)
    raises(ValueError, enc.add, 999, [1], None)


def test_rejects_values_beyond_format():
    enc = Encoder((0,), (0,))
    raises(ValueError, enc.add, 1000, [1 << 30], None)


def test_rejects_bad_channel_ids():
    raises(ValueError, Encoder, (3, 2), (0, 0))
    raises(ValueError, Encoder, (64,), (0,))
    raises(ValueError, Encoder, (1, 1), (0, 0))


def test_rejects_bad_limit():
    enc = Encoder((0,), (0,))
    raises(ValueError, enc.begin, LIMIT_MIN - 1)
    raises(ValueError, enc.begin, 1000)


def test_empty_frame_finishes_to_nothing():
    enc = Encoder((0,), (0,))
    assert enc.finish() == 0


def test_sample_limit_closes_frame():
    enc = Encoder((0,), (0,), max_samples=4)
    enc.begin(222)
    for i in range(4):
        assert enc.add(1000 + i, [5], None) == 1
    assert enc.add(1004, [5], None) == 0


def test_a_flag_on_a_missing_value_counts_when_an_empty_frame_fills():
    # An empty frame takes a large sample channel by channel while it fits; a flag on a missing value (here on
    # channel 7) was added without that check, and finish() raised "frame over its limit" (found by the codec
    # property test, seed 131072). Now the flag goes to the next frame, and with it the last value taken: a
    # frame of flags alone would have an empty channel mask, which no decoder takes.
    ids = [0, 1, 2, 3, 4, 5, 6, 7]
    big = (1 << 23) - 1
    frames = _frames(ids, [0] * 8, [(100, [big, big, big, big, big, None, None, None], [0] * 7 + [65535])], 32)
    assert [tohex(f) for f in frames] == [
        "83010f5300000064e3fffff63fffff63fffff63fffff00",  # ids 0..3
        "840118104800000064e3fffff083000719ffff",  # id 4 with its value, and the flag on id 7: [0, 7, 65535]
    ]


def test_a_sample_with_no_value_travels_with_its_time():
    # a cycle in which nothing was measured still says when it was: alone in a frame, its channel mask is 0
    frames = _frames([0, 1], [0, 0], [(100, [None, None], None)], 51)
    assert [tohex(f) for f in frames] == ["830100450000006480"]
