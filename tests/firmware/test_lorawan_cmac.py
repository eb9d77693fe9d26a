# AES-CMAC (cnode.lorawan.cmac) against the RFC 4493 section 4 test vectors, plus the cryptolib rules.
import cnode  # noqa: F401  (cryptolib shim under CPython)
import cryptolib
from fwtest import raises, tohex, unhex

from cnode.lorawan.cmac import Cmac

KEY = unhex("2b7e151628aed2a6abf7158809cf4f3c")
MSG = unhex("6bc1bee22e409f96e93d7e117393172a" "ae2d8a571e03ac9c9eb76fac45af8e51"
            "30c81c46a35ce411e5fbc1191a0a52ef" "f69f2445df4f9b17ad2b417be66c3710")
# RFC 4493 4: [name, message length, expected tag]
VECTORS = [
    ["example 1: len 0", 0, "bb1d6929e95937287fa37d129b756746"],
    ["example 2: len 16", 16, "070a16b46b4d4144f79bdd9dd04a287c"],
    ["example 3: len 40", 40, "dfa66747de9ae63030ca32611497c827"],
    ["example 4: len 64", 64, "51f0bebf7e3b9d92fc49741779363cfe"],
]


def test_subkeys_rfc4493_2_3():
    c = Cmac(KEY)
    assert tohex(c.aes.encrypt(bytes(16))) == "7df76b0c1ab899b33e42f047b91b546f"  # L = AES-128(K, 0)
    assert tohex(c.k1) == "fbeed618357133667c85e08f7236a8de"
    assert tohex(c.k2) == "f7ddac306ae266ccf90bc11ee46d513b"


def test_rfc4493_vectors():
    c = Cmac(KEY)
    for name, n, tag in VECTORS:
        assert tohex(c.digest(MSG[:n])) == tag, name


def test_split_buffers_and_length_limit():
    c = Cmac(KEY)
    for _, n, tag in VECTORS:
        for cut in (0, 1, 15, 16, 17, n):
            if cut > n:
                continue
            assert tohex(c.digest(MSG[:cut], MSG[cut:n])) == tag
            # n limits the second buffer: trailing bytes beyond it must not count
            assert tohex(c.digest(MSG[:cut], MSG[cut:n] + b"\xff\xff", n - cut)) == tag
        assert tohex(c.digest(MSG[:n] + b"\x00junk", None, n)) == tag


def test_bad_key_length():
    raises(ValueError, Cmac, bytes(15))


def test_cryptolib_ecb_and_one_direction():
    # FIPS-197 appendix C.1 AES-128: key 000102..0f, plaintext 00112233..ff
    k = bytes(range(16))
    a = cryptolib.aes(k, 1)
    pt = unhex("00112233445566778899aabbccddeeff")
    ct = a.encrypt(pt)
    assert tohex(ct) == "69c4e0d86a7b0430d8cdb78070b4c55a"
    out = bytearray(16)
    assert a.encrypt(pt, out) is out and tohex(out) == tohex(ct)
    raises(ValueError, a.decrypt, ct)  # MicroPython: one direction per object
    d = cryptolib.aes(k, 1)
    assert d.decrypt(ct) == pt
