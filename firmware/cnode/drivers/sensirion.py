# Sensirion I2C framing: CRC-8 (poly 0x31, init 0xFF), 16-bit commands, word+CRC packing and a device base.
#
# Every Sensirion I2C sensor (SHT4x, SCD4x, SCD30, SPS30) and the DNMS noise module speak the same frame:
# a command is 2 bytes big-endian (SHT4x: 1 byte), optionally followed by argument words; replies are
# 16-bit big-endian words, each followed by its CRC-8 (SHT4x datasheet 4.4, SCD4x datasheet 3.11: x^8+x^5+x^4+1,
# init 0xFF, no reflection, final XOR 0x00; check value CRC(0xBEEF) = 0x92).
from micropython import const

from cnode.drivers.errors import CRCError, SensorAbsent, SensorTimeout, bus_error

_POLY = const(0x31)
_INIT = const(0xFF)
_ENODEV = const(19)
MAX_WORDS = const(9)  # longest reply read by our drivers (DNMS version string: 9 words)


def _table():
    t = bytearray(256)
    for i in range(256):
        c = i
        for _ in range(8):
            c = ((c << 1) ^ _POLY) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        t[i] = c
    return t


_TABLE = _table()  # 256 bytes, built once at import: one lookup per byte instead of 8 shifts


def crc8(buf, start=0, end=-1):
    """CRC-8 of buf[start:end] (end -1: to the end). Allocates nothing."""
    if end < 0:
        end = len(buf)
    t = _TABLE
    crc = _INIT
    for i in range(start, end):
        crc = t[crc ^ buf[i]]
    return crc


def pack_word(buf, off, word):
    """Write word big-endian at buf[off] followed by its CRC; return the offset after it."""
    buf[off] = (word >> 8) & 0xFF
    buf[off + 1] = word & 0xFF
    buf[off + 2] = crc8(buf, off, off + 2)
    return off + 3


def unpack_word(buf, off):
    """The word at buf[off:off+2] after checking the CRC at buf[off+2]; raises CRCError on mismatch."""
    if crc8(buf, off, off + 2) != buf[off + 2]:
        raise CRCError("Sensirion CRC mismatch in word %d" % (off // 3))
    return (buf[off] << 8) | buf[off + 1]


def is_nack(e):
    return bool(e.args) and e.args[0] == _ENODEV


class SensirionDevice:
    """Command transfer for one device: write a command (with argument words), read words with CRC.

    Buffers are preallocated; reads land in self.rx and the words in self.words (ints), so a
    measurement allocates nothing. Bus errors raise SensorAbsent / SensorTimeout, CRC errors CRCError.
    """

    NAME = "Sensirion"

    def __init__(self, i2c, clock, addr):
        self._i2c = i2c
        self._clock = clock
        self.addr = addr
        self._cmd = bytearray(2)
        self._cmd8 = bytearray(1)  # SHT4x commands are one byte
        self._cmd1 = bytearray(5)  # command + one argument word + CRC
        self.rx = bytearray(3 * MAX_WORDS)
        mv = memoryview(self.rx)
        self._views = [mv[0:3 * n] for n in range(MAX_WORDS + 1)]
        self.words = [0] * MAX_WORDS

    def write_cmd(self, cmd):
        b = self._cmd
        b[0] = cmd >> 8
        b[1] = cmd & 0xFF
        try:
            self._i2c.writeto(self.addr, b)
        except OSError as e:
            raise bus_error(e, self.NAME, self.addr)

    def write_cmd8(self, cmd):
        b = self._cmd8
        b[0] = cmd
        try:
            self._i2c.writeto(self.addr, b)
        except OSError as e:
            raise bus_error(e, self.NAME, self.addr)

    def write_cmd_arg(self, cmd, word):
        b = self._cmd1
        b[0] = cmd >> 8
        b[1] = cmd & 0xFF
        pack_word(b, 2, word)
        try:
            self._i2c.writeto(self.addr, b)
        except OSError as e:
            raise bus_error(e, self.NAME, self.addr)

    def read_words(self, n):
        """Read n words (3n bytes) into self.rx, check every CRC, store the words in self.words."""
        try:
            self._i2c.readfrom_into(self.addr, self._views[n])
        except OSError as e:
            raise bus_error(e, self.NAME, self.addr)
        rx = self.rx
        words = self.words
        for i in range(n):
            words[i] = unpack_word(rx, 3 * i)

    def read_words_busy(self, n, bound_ms, step_ms=1):
        """Like read_words, but a NACK on the read means "still measuring" (SHT4x 4.3): retry every
        step_ms until bound_ms has passed, then raise SensorTimeout."""
        clock = self._clock
        t0 = clock.ticks_ms()
        while True:
            try:
                self._i2c.readfrom_into(self.addr, self._views[n])
                break
            except OSError as e:
                if not is_nack(e):
                    raise bus_error(e, self.NAME, self.addr)
                if clock.ticks_diff(clock.ticks_ms(), t0) >= bound_ms:
                    raise SensorTimeout("%s: no result within %d ms" % (self.NAME, bound_ms))
            clock.sleep_ms(step_ms)
        rx = self.rx
        words = self.words
        for i in range(n):
            words[i] = unpack_word(rx, 3 * i)

    def query(self, cmd, n, delay_ms, cmd8=False):
        """Command, wait its execution time, read n words."""
        if cmd8:
            self.write_cmd8(cmd)
        else:
            self.write_cmd(cmd)
        if delay_ms:
            self._clock.sleep_ms(delay_ms)
        self.read_words(n)

