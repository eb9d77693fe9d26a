# LoRaWAN 1.0.x frame cryptography: join-request MIC, join-accept decryption and check, session keys,
# data-frame MIC (B0) and FRMPayload encryption (A_i). Scratch blocks are preallocated (not re-entrant).
import struct

from micropython import const

from . import MICError

_blk = bytearray(16)  # B0 / A_i / key-derivation block
_ks = bytearray(16)  # keystream block S_i
_UP = const(0)
_DOWN = const(1)


def _ab(first, dir_, devaddr, fcnt, last):
    """Fill _blk with 0xfirst | 0x00*4 | Dir | DevAddr | FCnt32 | 0x00 | last (LoRaWAN 1.0.4 4.3.3, 4.4)."""
    b = _blk
    b[0] = first
    b[1] = b[2] = b[3] = b[4] = 0
    b[5] = dir_
    struct.pack_into("<II", b, 6, devaddr, fcnt & 0xFFFFFFFF)
    b[14] = 0
    b[15] = last


def mic(cmac, dir_, devaddr, fcnt, msg, n):
    """MIC of the first n bytes of msg (MHDR..FRMPayload) as a little-endian u32 (4.4)."""
    _ab(0x49, dir_, devaddr, fcnt, n)
    return struct.unpack_from("<I", cmac.digest(_blk, msg, n), 0)[0]


def crypt(aes, dir_, devaddr, fcnt, buf, start, end):
    """XOR buf[start:end] in place with the FRMPayload keystream (4.3.3); encrypts and decrypts."""
    i = 1
    pos = start
    ks = _ks
    while pos < end:
        _ab(0x01, dir_, devaddr, fcnt, i)
        aes.encrypt(_blk, ks)
        j = 0
        while j < 16 and pos < end:
            buf[pos] ^= ks[j]
            pos += 1
            j += 1
        i += 1


def join_request(buf, join_eui, dev_eui, dev_nonce, cmac):
    """Write the 23-byte join-request into buf (6.2.4). EUIs are given MSB first (as printed) and sent
    little-endian; cmac is the AppKey's Cmac. Returns 23."""
    buf[0] = 0x00  # MHDR: MType 000 join-request, Major 00
    for i in range(8):
        buf[1 + i] = join_eui[7 - i]
        buf[9 + i] = dev_eui[7 - i]
    struct.pack_into("<H", buf, 17, dev_nonce)
    m = cmac.digest(buf, None, 19)
    for i in range(4):
        buf[19 + i] = m[i]
    return 23


def open_join_accept(cmac, buf, n):
    """Decrypt a join-accept of n bytes (17 or 33) in place with AES *encrypt* (6.2.6) and check its MIC.
    Raises MICError. cmac is the AppKey's Cmac."""
    mv = memoryview(buf)
    for off in range(1, n, 16):
        blk = mv[off:off + 16]
        cmac.aes.encrypt(blk, blk)
    got = struct.unpack_from("<I", buf, n - 4)[0]
    want = struct.unpack_from("<I", cmac.digest(buf, None, n - 4), 0)[0]
    if got != want:
        raise MICError("join-accept MIC mismatch")


def derive(aes, kind, join_nonce, net_id, dev_nonce):
    """Session key = AES(AppKey, kind | JoinNonce | NetID | DevNonce | pad16) (6.2.5); kind 1 NwkSKey,
    2 AppSKey. Returns a new 16-byte key."""
    b = _blk
    b[0] = kind
    struct.pack_into("<I", b, 1, join_nonce & 0xFFFFFF)  # JoinNonce 3 B; byte 4 is overwritten below
    struct.pack_into("<I", b, 4, net_id & 0xFFFFFF)  # NetID 3 B; byte 7 is overwritten below
    struct.pack_into("<H", b, 7, dev_nonce)
    for i in range(9, 16):
        b[i] = 0
    return bytes(aes.encrypt(b))
