# Sample records: exact layout, round trip, and rejection of damaged records.
from cnode.record import Records
from fwtest import raises, tohex


def test_exact_bytes():
    r = Records([0, 5, 16])
    rec = r.pack(0x01020304, [857, None, 3912], [0, 1, 0])
    assert tohex(rec) == "0403020103" + "0000" + "59030000" + "0501" + "00000080" + "1000" + "480f0000"


def test_round_trip_and_nulls_without_flags_are_left_out():
    r = Records([0, 1, 2])
    rec = bytes(r.pack(1000, [-143, None, 101325], None))
    assert len(rec) == 5 + 2 * 6
    assert r.unpack(rec) == 1000
    assert r.vals == [-143, None, 101325] and r.flags == [0, 0, 0]


def test_other_layout_skips_unknown_channels():
    rec = bytes(Records([0, 1, 7]).pack(5, [1, 2, 3], [0, 4, 0]))
    r = Records([1, 9])
    assert r.unpack(rec) == 5
    assert r.vals == [2, None] and r.flags == [4, 0]


def test_damaged_records_rejected():
    r = Records([0])
    rec = bytes(r.pack(5, [1], None))
    raises(ValueError, r.unpack, rec[:4])
    raises(ValueError, r.unpack, rec[:-1])
    raises(ValueError, r.unpack, rec[:5] + bytes([70, 0, 0, 0, 0, 0]))
