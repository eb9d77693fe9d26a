# Bit-level writer over a caller's preallocated buffer, and the code lengths of the payload's integer codes.
#
# Codes (MSB first), all for non-negative integers z < 2**30 (small ints on ESP32, no heap):
#   zigzag(v)   0,-1,1,-2,... -> 0,1,2,3,...
#   len5(z)     5-bit bit length L, then the L-1 bits below z's leading one (L=0 means z=0)
#   eg(z, k)    Exp-Golomb of order k
#   rice(z, k)  q = z>>k; q<12: q ones, a zero, k low bits; else 12 ones then eg(z - (12<<k), k)
from micropython import const

QMAX = const(12)  # Rice escape: quotient at or above this switches to Exp-Golomb
KMAX = const(15)  # Rice parameter k fits in 4 bits


def zigzag(v):
    return (v << 1) if v >= 0 else ((-v) << 1) - 1


def bitlen(z):
    n = 0
    while z:
        z >>= 1
        n += 1
    return n


def len5_cost(z):
    n = bitlen(z)
    return 5 + n - 1 if n else 5


def eg_cost(z, k):
    return 2 * bitlen(z + (1 << k)) - 1 - k


def rice_cost(z, k):
    q = z >> k
    if q < QMAX:
        return q + 1 + k
    return QMAX + eg_cost(z - (QMAX << k), k)


class BitWriter:
    """Writes bits MSB-first into `buf` (a bytearray or memoryview) from bit `pos`; bytes must start zeroed."""

    def __init__(self, buf, pos=0):
        self.buf = buf
        self.pos = pos

    def bits(self, v, n):
        buf = self.buf
        pos = self.pos
        while n > 0:
            i = pos >> 3
            free = 8 - (pos & 7)
            take = n if n < free else free
            n -= take
            buf[i] |= ((v >> n) & ((1 << take) - 1)) << (free - take)
            pos += take
        self.pos = pos

    def ones(self, n):
        while n > 16:
            self.bits(0xFFFF, 16)
            n -= 16
        self.bits((1 << n) - 1, n)

    def len5(self, z):
        n = bitlen(z)
        self.bits(n, 5)
        if n > 1:
            self.bits(z & ((1 << (n - 1)) - 1), n - 1)

    def eg(self, z, k):
        v = z + (1 << k)
        n = bitlen(v)
        self.pos += n - 1 - k  # leading zeros: already zero in the buffer
        self.bits(v, n)

    def rice(self, z, k):
        q = z >> k
        if q < QMAX:
            self.ones(q)
            self.pos += 1
            if k:
                self.bits(z & ((1 << k) - 1), k)
        else:
            self.ones(QMAX)
            self.eg(z - (QMAX << k), k)
