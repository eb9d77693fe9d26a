# LoRaWAN 1.0.x frame crypto (cnode.lorawan.crypto) against vectors from independent sources: the frame in
# lora-packet's README and frames built by lora-packet 0.9.3 (npm) from the fields named in each test.
import struct

import cnode  # noqa: F401
import cryptolib
from fwtest import raises, tohex, unhex

from cnode.lorawan import MICError, crypto
from cnode.lorawan.cmac import Cmac

APP_KEY = unhex("2b7e151628aed2a6abf7158809cf4f3c")
JOIN_EUI = unhex("70B3D57ED0000010")
DEV_EUI = unhex("0018B20000000101")
# lora-packet 0.9.3 generateSessionKeys(AppKey, NetID 000013, AppNonce 000001, DevNonce 0005)
NWK_SKEY = unhex("915af8f6c210a4575e2f02f28ce46b2e")
APP_SKEY = unhex("4c5009455c67f772ffc167a673c38e38")


def test_join_request_exact_bytes():
    # lora-packet fromFields({MType: "Join Request", AppEUI, DevEUI, DevNonce 0x0005}, AppKey)
    buf = bytearray(32)
    assert crypto.join_request(buf, JOIN_EUI, DEV_EUI, 5, Cmac(APP_KEY)) == 23
    assert tohex(buf[:23]) == "00100000d07ed5b3700101000000b2180005001b68d455"


def test_session_keys():
    c = Cmac(APP_KEY)
    assert tohex(crypto.derive(c.aes, 1, 1, 0x13, 5)) == tohex(NWK_SKEY)
    assert tohex(crypto.derive(c.aes, 2, 1, 0x13, 5)) == tohex(APP_SKEY)


def test_join_accept_open_and_mic():
    # lora-packet fromFields({MType: "Join Accept", AppNonce 000001, NetID 000013, DevAddr 26011000,
    # DLSettings 0x13, RxDelay 1}, AppKey): encrypted on the wire
    wire = unhex("207db8fad49657f42dacf8eec47e1325b4")
    b = bytearray(wire)
    crypto.open_join_accept(Cmac(APP_KEY), b, 17)
    assert tohex(b[1:13]) == "010000" "130000" "00100126" "13" "01"
    for i in range(1, 17):  # any flipped bit is caught by the MIC
        bad = bytearray(wire)
        bad[i] ^= 0x01
        raises(MICError, crypto.open_join_accept, Cmac(APP_KEY), bad, 17)
    raises(MICError, crypto.open_join_accept, Cmac(bytes(16)), bytearray(wire), 17)


def test_readme_uplink_mic_and_payload():
    # lora-packet README: AppSKey ec92..88, NwkSKey 4402..d3, frame 40F17DBE4900020001954378762B11FF0D = "test"
    nwk = Cmac(unhex("44024241ed4ce9a68c6a8bc055233fd3"))
    app = cryptolib.aes(unhex("ec925802ae430ca77fd3dd73cb2cc588"), 1)
    f = bytearray(unhex("40F17DBE4900020001954378762B11FF0D"))
    devaddr = struct.unpack_from("<I", f, 1)[0]
    assert devaddr == 0x49BE7DF1
    assert crypto.mic(nwk, 0, devaddr, 2, f, 13) == struct.unpack_from("<I", f, 13)[0]
    assert crypto.mic(nwk, 0, devaddr, 2 + 0x10000, f, 13) != struct.unpack_from("<I", f, 13)[0]
    assert crypto.mic(nwk, 1, devaddr, 2, f, 13) != struct.unpack_from("<I", f, 13)[0]  # direction counts
    crypto.crypt(app, 0, devaddr, 2, f, 9, 13)
    assert bytes(f[9:13]) == b"test"


def test_downlink_multiblock_payload_and_fopts():
    # lora-packet fromFields({MType: "Unconfirmed Data Down", DevAddr 26011000, FCnt 7, FPort 3, ACK,
    # FOpts 0206, payload 00..27 (40 B, three A_i blocks)}, AppSKey, NwkSKey)
    f = bytearray(unhex("6000100126220700020603dd76dc86932b3ae2b9fe81e8af18d1747d8b0b3f301febfd"
                        "cb4f63c53d614c9b33eef1fbae7de300328485eb"))
    nwk = Cmac(NWK_SKEY)
    assert crypto.mic(nwk, 1, 0x26011000, 7, f, len(f) - 4) == struct.unpack_from("<I", f, len(f) - 4)[0]
    crypto.crypt(cryptolib.aes(APP_SKEY, 1), 1, 0x26011000, 7, f, 11, len(f) - 4)
    assert bytes(f[11:-4]) == bytes(range(40))


def test_crypt_is_an_involution_and_respects_bounds():
    app = cryptolib.aes(APP_SKEY, 1)
    b = bytearray(b"\xaa" * 8 + bytes(range(50)) + b"\xbb" * 8)
    crypto.crypt(app, 0, 0x01020304, 0x12345, b, 8, 58)
    assert b[:8] == b"\xaa" * 8 and b[58:] == b"\xbb" * 8 and bytes(b[8:58]) != bytes(range(50))
    crypto.crypt(app, 0, 0x01020304, 0x12345, b, 8, 58)
    assert bytes(b[8:58]) == bytes(range(50))
