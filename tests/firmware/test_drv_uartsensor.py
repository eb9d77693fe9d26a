# UART sensors' shared reading (cnode.drivers.uartsensor): frames that come a byte at a time, through each driver.
from cnode.drivers.errors import SensorAbsent
from cnode.drivers.pms5003 import PMS5003
from cnode.drivers.sds011 import SDS011
from cnode.drivers.sps30 import SPS30, checksum
from fwtest import raises, unhex

PMS_ACK = "424d0004e1000174"  # acknowledgement of the passive-mode command
PMS_FRAME = "424d001c001700270029001600230029100804a90116000c00d400e09a0004aa"  # a PMS5003T, as test_drv_pms5003


class _Clock:
    def __init__(self):
        self.t = 0

    def ticks_ms(self):
        return self.t

    def ticks_diff(self, a, b):
        return a - b

    def sleep_ms(self, ms):
        self.t += ms


class _Trickle:
    """A UART whose peer answers a command with `data`, handed over one byte at a time."""

    def __init__(self, data):
        self.data = data
        self.i = len(data)  # nothing before the command

    def any(self):
        return 1 if self.i < len(self.data) else 0

    def readinto(self, buf, n):
        buf[0] = self.data[self.i]
        self.i += 1
        return 1

    def write(self, b):
        self.i = 0
        return len(b)


def _miso(cmd, data):
    # an SPS30 answer (state 0), stuffed (Sensirion SPS30 datasheet 5.1, 5.2)
    body = bytes([0, cmd, 0, len(data)]) + data
    body += bytes([checksum(body, 0, len(body))])
    out = bytearray(b"\x7e")
    for b in body:
        if b in (0x7E, 0x7D, 0x11, 0x13):
            out += bytes([0x7D, b ^ 0x20])
        else:
            out.append(b)
    return bytes(out + b"\x7e")


def test_pms5003_ack_in_pieces_is_no_frame_and_no_sign_of_life():
    # an acknowledgement is skipped whole, however it arrives: no reading, and a sensor that sent nothing else
    # sent nothing
    d = PMS5003(_Trickle(unhex(PMS_ACK)), _Clock())
    d.ready = True
    raises(SensorAbsent, d.read)
    assert d.values == [None, None, None]
    d = PMS5003(_Trickle(unhex(PMS_ACK + PMS_FRAME)), _Clock())
    d.ready = True
    d.read()
    assert d.values == [220, 350, 410]


def test_sds011_frame_in_pieces():
    d = SDS011(_Trickle(unhex("aac0d4043a0aa1601dab")), _Clock())
    d.ready = True
    d.read()
    assert d.values == [1236, 2618]
    assert d.device_id == 0xA160


def test_sps30_stuffed_frame_in_pieces():
    # 7E, 11 and 7D in the data: each escape is split from the byte it escapes
    data = bytes([0x00, 0x7E, 0x00, 0x11, 0x00, 0x05, 0x00, 0x7D]) + bytes(12)
    d = SPS30(_Trickle(_miso(0x03, data)), _Clock())
    d.measuring = True
    d.read()
    assert d.values == [1260, 170, 1250]
