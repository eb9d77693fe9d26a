"""The simulated ESP32 ROM loader, checked byte by byte and against the real esptool (library API)."""
from __future__ import annotations

import hashlib
import random
import socket
import struct
import zlib

import pytest
from esptool import cmds
from esptool.util import FatalError

from citynode.sim.hwsim.esp32rom import Esp32RomSim, SlipDecoder, checksum, slip_encode

SYNC_PAYLOAD = b"\x07\x07\x12\x20" + b"\x55" * 32


def image(n: int, seed: int = 1, compressible: bool = False) -> bytes:
    rnd = random.Random(seed)
    if compressible:  # text-like data: deflate shrinks it a lot
        words = [b"temperature", b"humidity", b"pm10", b"lorawan", b"citynode", b"\x00\x00\x00\x00"]
        out = bytearray()
        while len(out) < n:
            out += rnd.choice(words)
        data = bytes(out[:n])
    else:
        data = rnd.randbytes(n)
    return b"\x00" + data[1:]  # never 0xE9: not an ESP app image header, so esptool leaves it alone


@pytest.fixture
def sim():
    with Esp32RomSim() as s:
        yield s


def roundtrip(sim: Esp32RomSim, frame: bytes, replies: int = 1) -> list[bytes]:
    with socket.create_connection(("127.0.0.1", sim.port), timeout=2) as c:
        c.sendall(slip_encode(frame))
        dec, got = SlipDecoder(), []
        while len(got) < replies:
            got += dec.feed(c.recv(4096))
        return got


# -- framing and wire bytes -----------------------------------------------------------------------------------
def test_slip_escapes_c0_and_db():
    assert slip_encode(b"\x01\xc0\x02\xdb\x03") == bytes.fromhex("c001dbdc02dbdd03c0")
    assert SlipDecoder().feed(bytes.fromhex("c001dbdc02dbdd03c0")) == [b"\x01\xc0\x02\xdb\x03"]


def test_slip_decoder_skips_noise_and_splits_frames():
    dec = SlipDecoder()
    assert dec.feed(b"boot noise\r\n\xc0\x01\x02") == []
    assert dec.feed(b"\xc0\xc0\x03\xc0") == [b"\x01\x02", b"\x03"]


def test_checksum_is_xor_seeded_with_0xef():
    assert checksum(b"") == 0xEF
    assert checksum(b"\x01\x02") == 0xEF ^ 0x01 ^ 0x02
    assert checksum(bytes(range(256))) == 0xEF  # XOR of 0..255 is 0


def test_sync_is_answered_eight_times_with_4_status_bytes(sim):
    req = struct.pack("<BBHI", 0, 0x08, len(SYNC_PAYLOAD), 0) + SYNC_PAYLOAD
    replies = roundtrip(sim, req, 8)
    assert replies == [bytes.fromhex("0108040007071220" "00000000")] * 8


def test_read_reg_chip_magic_exact_bytes(sim):
    req = struct.pack("<BBHI", 0, 0x0A, 4, 0) + struct.pack("<I", 0x40001000)
    assert roundtrip(sim, req) == [bytes.fromhex("010a0400" "831df000" "00000000")]


def test_esp32_rom_rejects_get_security_info(sim):
    req = struct.pack("<BBHI", 0, 0x14, 0, 0)
    assert roundtrip(sim, req) == [bytes.fromhex("0114040000000000" "01050000")]


def test_esp32s3_answers_security_info_with_chip_id_9():
    with Esp32RomSim(chip="esp32s3") as s:
        (reply,) = roundtrip(s, struct.pack("<BBHI", 0, 0x14, 0, 0))
    assert reply[:4] == bytes.fromhex("01141800")  # 20 data bytes + 4 status bytes
    assert struct.unpack_from("<I", reply, 8 + 12)[0] == 9
    assert reply[-4:] == b"\x00\x00\x00\x00"


def test_flash_data_with_bad_checksum_is_refused(sim):
    block = b"\x11" * 0x400
    begin = struct.pack("<IIII", 0x1000, 1, 0x400, 0x1000)
    data = struct.pack("<IIII", len(block), 0, 0, 0) + block
    with socket.create_connection(("127.0.0.1", sim.port), timeout=2) as c:
        dec = SlipDecoder()
        c.sendall(slip_encode(struct.pack("<BBHI", 0, 0x02, len(begin), 0) + begin))
        got = []
        while not got:
            got += dec.feed(c.recv(4096))
        assert got == [bytes.fromhex("0102040000000000" "00000000")]
        bad = checksum(block) ^ 0xFF
        c.sendall(slip_encode(struct.pack("<BBHI", 0, 0x03, len(data), bad) + data))
        got = []
        while not got:
            got += dec.feed(c.recv(4096))
    assert got == [bytes.fromhex("0103040000000000" "01070000")]  # 0x07: invalid CRC in message
    assert sim.flash[0x1000:0x1400] == b"\xff" * 0x400  # erased by FLASH_BEGIN, not written


def test_unknown_command_is_invalid_message(sim):
    assert roundtrip(sim, struct.pack("<BBHI", 0, 0x7E, 0, 0)) == [bytes.fromhex("017e040000000000" "01050000")]


# -- against the real esptool ---------------------------------------------------------------------------------
def connect(sim: Esp32RomSim):
    return cmds.detect_chip(sim.url, connect_mode="no-reset", connect_attempts=1)


def test_esptool_detects_esp32_and_reads_mac(sim):
    esp = connect(sim)
    try:
        assert esp.CHIP_NAME == "ESP32"
        assert bytes(esp.read_mac()) == sim.mac
        assert 0x14 in sim.commands and 0x0A in sim.commands  # tried security info, then read the magic
    finally:
        esp._port.close()


def test_esptool_detects_esp32s3():
    with Esp32RomSim(chip="esp32s3") as s:
        esp = connect(s)
        try:
            assert esp.CHIP_NAME == "ESP32-S3"
        finally:
            esp._port.close()


def test_esptool_reads_flash_size_through_spi_user_command():
    with Esp32RomSim(flash_size=8 << 20) as s:
        esp = connect(s)
        try:
            cmds.attach_flash(esp)
            assert cmds.detect_flash_size(esp) == "8MB"
            assert esp.flash_id() == 0x1740EF  # Winbond, type 0x40, capacity 2^0x17
        finally:
            esp._port.close()


def test_rom_write_is_byte_exact_and_verified(sim):
    data = image(70_000, seed=2)
    esp = connect(sim)
    try:
        cmds.attach_flash(esp)
        cmds.write_flash(esp, [(0x1000, data)], no_compress=True)
        cmds.verify_flash(esp, [(0x1000, data)])
    finally:
        esp._port.close()
    assert bytes(sim.flash[0x1000:0x1000 + len(data)]) == data
    assert sim.flash[:0x1000] == b"\xff" * 0x1000
    assert sim.commands.count(0x03) == -(-len(data) // 0x400)  # one FLASH_DATA per 0x400 block
    assert 0x10 not in sim.commands


def test_rom_deflate_write_sends_less_and_writes_the_same(sim):
    data = image(200_000, seed=3, compressible=True)
    esp = connect(sim)
    try:
        cmds.attach_flash(esp)
        cmds.write_flash(esp, [(0x10000, data)], compress=True)
    finally:
        esp._port.close()
    assert bytes(sim.flash[0x10000:0x10000 + len(data)]) == data
    assert 0x10 in sim.commands and 0x11 in sim.commands and 0x03 not in sim.commands
    assert sim.rx_bytes < len(zlib.compress(data, 9)) + 20_000  # the deflated stream plus framing
    assert sim.rx_bytes < len(data) // 3


def test_stub_upload_then_write(sim):
    data = image(50_000, seed=4)
    esp = cmds.run_stub(connect(sim))
    try:
        assert esp.IS_STUB and sim.stub
        cmds.attach_flash(esp)
        cmds.write_flash(esp, [(0x1000, data)])
        assert esp.flash_md5sum(0x1000, len(data)) == hashlib.md5(data).hexdigest()
    finally:
        esp._port.close()
    assert {0x05, 0x06, 0x07} <= set(sim.commands)  # MEM_BEGIN, MEM_END, MEM_DATA
    assert bytes(sim.flash[0x1000:0x1000 + len(data)]) == data


def test_corrupting_flash_fails_esptool_verification():
    data = image(20_000, seed=5)
    with Esp32RomSim(corrupt=True) as s:
        esp = connect(s)
        try:
            cmds.attach_flash(esp)
            with pytest.raises(FatalError, match="MD5 of file does not match"):
                cmds.write_flash(esp, [(0x1000, data)], no_compress=True)
        finally:
            esp._port.close()


def test_silent_board_fails_to_connect():
    with Esp32RomSim(silent=True) as s, pytest.raises(FatalError, match="No serial data received"):
        connect(s)


def test_change_baudrate_is_acknowledged_and_taken(sim):
    esp = connect(sim)
    try:
        esp.change_baud(460800)
        assert esp.read_reg(0x40001000) == 0x00F01D83  # still talking after the change
    finally:
        esp._port.close()
    assert sim.baud == 460800
