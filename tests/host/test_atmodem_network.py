"""What reached the network through the AT-modem twins decodes (citynode.payload.frame.decode_frame, cbor2) to every
sample the node measured in a simulated day: each at least once, with its values."""
from __future__ import annotations

import pytest

from atmodem_day import Day, fault_script
from citynode.payload.frame import decode_frame
from citynode.payload.channels import EPOCH_2000


def _expected(times):
    """Climate's readings: temperature from the time, humidity from the reading number (see atmodem_day)."""
    out = {}
    for n, t in enumerate(times, start=1):
        out[t + EPOCH_2000] = (((1200 + (t // 300) % 97 * 7)) / 100, (400 + (n * 37) % 300) / 10)
    return out


@pytest.mark.parametrize("kind", ["rak3172", "lorae5"])
@pytest.mark.parametrize("dr,faults,confirmed", [(0, False, False), (5, False, False), (5, True, False),
                                                 (3, False, True)])
def test_every_sample_reaches_the_network(kind, dr, faults, confirmed):
    d = Day(kind, dr, confirmed=confirmed).run(24, fault_script if faults else None)
    want = _expected(d.queue.times)
    pending = d.queue.depth
    assert pending <= 12
    seen: dict[int, int] = {}
    for _, port, frame, _ in d.twin.network:
        if port != 2:
            continue
        samples, warnings = decode_frame(frame)
        assert warnings == []
        for s in samples:
            assert s.t in want, s
            temp, hum = want[s.t]
            assert s.values["temperature"] == pytest.approx(temp, abs=0.005)
            assert s.values["humidity"] == pytest.approx(hum, abs=0.05)
            assert not s.flags
            seen[s.t] = seen.get(s.t, 0) + 1
    sent = sorted(want)[:len(want) - pending]  # the queue is FIFO: the last `pending` samples wait in flash
    missing = [t for t in sent if t not in seen]
    assert missing == []
    assert set(seen) == set(sent)
    if not faults and not confirmed:
        assert max(seen.values()) == 1  # no fault, no duplicate
