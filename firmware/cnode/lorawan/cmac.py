# AES-CMAC (RFC 4493) over cryptolib's AES-ECB, streaming over several buffers without concatenating them.
import cryptolib
from micropython import const

_RB = const(0x87)  # RFC 4493 2.3: constant for subkey generation


def _shift_left(src, dst):
    """dst = src << 1 over 16 bytes; returns the bit shifted out."""
    carry = 0
    for i in range(15, -1, -1):
        b = src[i]
        dst[i] = ((b << 1) & 0xFF) | carry
        carry = b >> 7
    return carry


class Cmac:
    """CMAC with one key. `aes` (an ECB encrypt object for the same key) is exposed for callers that also
    need the raw block cipher (LoRaWAN payload keystream, join-accept decryption, key derivation)."""

    def __init__(self, key):
        if len(key) != 16:
            raise ValueError("AES-128 key must be 16 bytes")
        self.aes = cryptolib.aes(bytes(key), 1)
        self.k1 = bytearray(16)
        self.k2 = bytearray(16)
        self.mac = bytearray(16)  # result of the last digest() (shared buffer, overwritten by the next)
        self._blk = bytearray(16)
        # RFC 4493 2.3: L = AES(K, 0^128); K1 = L<<1 (^Rb), K2 = K1<<1 (^Rb)
        lb = bytearray(16)
        self.aes.encrypt(lb, lb)
        if _shift_left(lb, self.k1):
            self.k1[15] ^= _RB
        if _shift_left(self.k1, self.k2):
            self.k2[15] ^= _RB

    def digest(self, a, b=None, n=-1):
        """CMAC of a then b, where n (if >= 0) limits the last buffer given (b, or a when b is None) to
        its first n bytes. Returns self.mac (16 bytes, shared: overwritten by the next call)."""
        if b is None:
            la = len(a) if n < 0 else n
            lb = 0
        else:
            la = len(a)
            lb = len(b) if n < 0 else n
        total = la + lb
        x = self.mac
        for i in range(16):
            x[i] = 0
        blk = self._blk
        aes = self.aes
        k = 0  # bytes in the current block
        for part, ln in ((a, la), (b, lb)):
            for i in range(ln):
                if k == 16:  # full block and more data follows: CBC step
                    for j in range(16):
                        x[j] ^= blk[j]
                    aes.encrypt(x, x)
                    k = 0
                blk[k] = part[i]  # type: ignore
                k += 1
        # RFC 4493 2.4 step 4: last block is complete -> XOR K1, else pad 10* and XOR K2
        if total and k == 16:
            sub = self.k1
        else:
            blk[k] = 0x80
            for j in range(k + 1, 16):
                blk[j] = 0
            sub = self.k2
        for j in range(16):
            x[j] ^= blk[j] ^ sub[j]
        aes.encrypt(x, x)
        return x
