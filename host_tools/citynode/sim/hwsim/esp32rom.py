"""Simulated ESP32 / ESP32-S3 ROM serial loader (and a stand-in for esptool's flasher stub) on a loopback socket.

The real `esptool` talks to it through the pyserial URL `socket://127.0.0.1:PORT`. Protocol, from Espressif's
"Serial Protocol" documentation (esptool docs, advanced-topics/serial-protocol):
- SLIP frames: 0xC0 ... 0xC0, inside 0xC0 -> DB DC and 0xDB -> DB DD.
- request  <BBHI (0x00, op, len, checksum) + data; checksum = XOR of the payload seeded with 0xEF, checked only
  for FLASH_DATA, FLASH_DEFL_DATA and MEM_DATA (it covers the data after the 16-byte header).
- response <BBHI (0x01, op, len, value) + data + status; status is 4 bytes from the ROM (status, error, 0, 0)
  and 2 bytes from the stub. Errors: 0x05 invalid message, 0x06 failed to act, 0x07 bad checksum,
  0x08 flash write error, 0x09 flash read error, 0x0B deflate error.
- MEM_BEGIN 0x05, MEM_END 0x06, MEM_DATA 0x07 (esptool's ESP_CMDS table; END comes before DATA).
- SYNC is answered 8 times; ESP32 is identified by the magic 0x00F01D83 read at 0x40001000 (the ESP32 ROM rejects
  GET_SECURITY_INFO); ESP32-S3 answers GET_SECURITY_INFO with chip id 9.
- flash ID (JEDEC, command 0x9F) is read by esptool through the SPI controller's "user command" registers; the
  sim runs such a command when SPI_CMD_REG gets the USR bit, so esptool detects the flash size.
- The stub is "uploaded" with MEM_BEGIN/DATA/END; on MEM_END with an entry point the sim sends OHAI and from then
  on answers like the stub (2 status bytes, raw 16-byte MD5, ERASE_FLASH/ERASE_REGION).

Faults for tests: chip="esp32s3" (wrong chip), corrupt=True (every flash write flips one bit: verify mismatch),
busy=True (a serial server that already has a client: it says so and hangs up, as ser2net does),
silent=True (the port opens, nothing ever answers: board not in download mode).
CPython only (threads and sockets): it is a host-side peer of esptool, not a firmware twin.
"""
from __future__ import annotations

import hashlib
import socket
import struct
import threading
import time
import zlib
from typing import NamedTuple

SLIP_END, SLIP_ESC, SLIP_ESC_END, SLIP_ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD
CHECKSUM_SEED = 0xEF

# Opcodes (esptool serial protocol).
FLASH_BEGIN, FLASH_DATA, FLASH_END = 0x02, 0x03, 0x04
MEM_BEGIN, MEM_END, MEM_DATA = 0x05, 0x06, 0x07  # note the order: END before DATA
SYNC, WRITE_REG, READ_REG = 0x08, 0x09, 0x0A
SPI_SET_PARAMS, SPI_ATTACH, CHANGE_BAUDRATE = 0x0B, 0x0D, 0x0F
FLASH_DEFL_BEGIN, FLASH_DEFL_DATA, FLASH_DEFL_END = 0x10, 0x11, 0x12
SPI_FLASH_MD5, GET_SECURITY_INFO = 0x13, 0x14
ERASE_FLASH, ERASE_REGION, READ_FLASH, RUN_USER_CODE = 0xD0, 0xD1, 0xD2, 0xD3

ERR_INVALID, ERR_FAILED, ERR_CHECKSUM, ERR_FLASH_WRITE, ERR_DEFLATE = 0x05, 0x06, 0x07, 0x08, 0x0B

CHIP_MAGIC_REG = 0x40001000


class ChipSpec(NamedTuple):
    magic: int | None  # value at 0x40001000 (chips detected by magic), None if detected by security info
    chip_id: int | None  # GET_SECURITY_INFO chip id, None if the ROM rejects the command
    spi: int  # SPI flash controller base (esptool SPI_REG_BASE) and the offsets of USR2 and W0
    usr2: int
    w0: int
    uart_clkdiv: int


CHIPS = {
    "esp32": ChipSpec(magic=0x00F01D83, chip_id=None, spi=0x3FF42000, usr2=0x24, w0=0x80, uart_clkdiv=0x3FF40014),
    "esp32s3": ChipSpec(magic=None, chip_id=9, spi=0x60002000, usr2=0x20, w0=0x58, uart_clkdiv=0x60000014),
}
SPI_CMD_USR = 1 << 18
JEDEC_RDID = 0x9F
FLASH_SECTOR = 0x1000
SIZE_CODE = {1 << n: n for n in range(18, 28)}  # JEDEC capacity byte = log2(size)


def slip_encode(frame: bytes) -> bytes:
    return b"\xc0" + frame.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0"


def checksum(data: bytes) -> int:
    state = CHECKSUM_SEED
    for b in data:
        state ^= b
    return state


class SlipDecoder:
    """Feeds raw bytes, returns complete frames (bytes between two 0xC0, unescaped)."""

    def __init__(self):
        self._buf = bytearray()
        self._in_frame = False
        self._esc = False

    def feed(self, data: bytes) -> list[bytes]:
        frames = []
        for b in data:
            if b == SLIP_END:
                if self._in_frame and self._buf:
                    frames.append(bytes(self._buf))
                self._buf.clear()
                self._in_frame = True
                self._esc = False
            elif not self._in_frame:
                continue  # noise between frames
            elif self._esc:
                self._buf.append(SLIP_END if b == SLIP_ESC_END else SLIP_ESC if b == SLIP_ESC_ESC else b)
                self._esc = False
            elif b == SLIP_ESC:
                self._esc = True
            else:
                self._buf.append(b)
        return frames


class Esp32RomSim:
    """One simulated chip in download mode, served to one client at a time on 127.0.0.1.

    sim = Esp32RomSim(); sim.start(); esptool on sim.url; sim.flash holds the flash contents; sim.stop().
    line_rate=True paces the replies as a UART at the current baud rate would (10 bits a byte), so wall time
    is comparable with a real serial link; rx_bytes/tx_bytes count the bytes on the wire each way.
    """

    def __init__(self, chip: str = "esp32", flash_size: int = 4 << 20, corrupt: bool = False,
                 busy: bool = False, silent: bool = False, line_rate: bool = False, baud: int = 115200,
                 mac: bytes = b"\x24\x0a\xc4\x12\x34\x56", drop_after_blocks: int | None = None,
                 stub_fails: str | None = None):
        if chip not in CHIPS:
            raise ValueError(f"unknown chip {chip!r}; expected one of {sorted(CHIPS)}")
        if flash_size not in SIZE_CODE:
            raise ValueError("flash_size must be a power of two from 256 KiB to 128 MiB")
        self.chip = chip
        self._c = CHIPS[chip]
        self.flash = bytearray(b"\xff" * flash_size)
        self.corrupt, self.busy, self.silent, self.line_rate = corrupt, busy, silent, line_rate
        # faults: the link drops after this many flash data blocks (a cable pulled mid-write); the uploaded
        # stub does not start: "garbage" instead of its OHAI greeting, or "silent" from then on
        self.drop_after_blocks, self.stub_fails = drop_after_blocks, stub_fails
        self._blocks = 0
        self.baud = baud
        self.mac = mac
        self.regs: dict[int, int] = {}
        self.stub = False
        self.rx_bytes = self.tx_bytes = 0
        self.commands: list[int] = []  # opcodes in order, for tests
        self.resets = 0
        self._write = None  # (offset, erase_size, next_seq, deflate)
        self._inflater = None
        self._mem = None
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(4)
        self.port = self._sock.getsockname()[1]
        self.url = f"socket://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="esp32rom-sim", daemon=True)
        self._client_busy = False

    # -- life cycle ------------------------------------------------------------------------------------------
    def start(self) -> Esp32RomSim:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        try:
            self._sock.close()
        except OSError:
            pass
        self._thread.join(timeout=2)

    def __enter__(self) -> Esp32RomSim:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _serve(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if self.busy or self._client_busy:
                threading.Thread(target=self._refuse, args=(conn,), daemon=True).start()
                continue
            self._client_busy = True
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    @staticmethod
    def _refuse(conn: socket.socket) -> None:
        """Say the port is taken and hang up cleanly (drain what the client sends, so it sees EOF, not RST)."""
        try:
            conn.sendall(b"Port already in use\r\n")
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(2)
            while conn.recv(4096):
                pass
        except OSError:
            pass
        finally:
            conn.close()

    def _client(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(0.1)
        dec = SlipDecoder()
        wire_free = time.monotonic()  # when the simulated UART has sent everything so far
        try:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    break
                self.rx_bytes += len(data)
                if self.line_rate:
                    wire_free = max(wire_free, time.monotonic()) + len(data) * 10 / self.baud
                for frame in dec.feed(data):
                    if self.silent:
                        continue
                    if len(frame) > 1 and frame[1] in (FLASH_DATA, FLASH_DEFL_DATA):
                        self._blocks += 1
                        if self.drop_after_blocks is not None and self._blocks > self.drop_after_blocks:
                            raise OSError("link dropped (simulated)")
                    for reply in self._handle(frame):
                        out = slip_encode(reply)
                        if self.line_rate:
                            wire_free += len(out) * 10 / self.baud
                            delay = wire_free - time.monotonic()
                            if delay > 0:
                                time.sleep(delay)
                        conn.sendall(out)
                        self.tx_bytes += len(out)
                    if self._pending_baud:
                        self.baud, self._pending_baud = self._pending_baud, 0
        except OSError:
            pass
        finally:
            conn.close()
            self._client_busy = False

    _pending_baud = 0

    # -- protocol --------------------------------------------------------------------------------------------
    def _reply(self, op: int, value: int = 0, data: bytes = b"", status: int = 0, error: int = 0) -> bytes:
        tail = bytes((status, error)) if self.stub else bytes((status, error, 0, 0))
        body = data + tail
        return struct.pack("<BBHI", 0x01, op, len(body), value) + body

    def _handle(self, frame: bytes) -> list[bytes]:
        if len(frame) < 8:
            return []
        direction, op, size, chk = struct.unpack_from("<BBHI", frame)
        data = frame[8:]
        if direction != 0x00:
            return []
        self.commands.append(op)
        if len(data) != size:
            return [self._reply(op, status=1, error=ERR_INVALID)]
        if op in (FLASH_DATA, FLASH_DEFL_DATA, MEM_DATA) and checksum(data[16:]) != chk & 0xFF:
            return [self._reply(op, status=1, error=ERR_CHECKSUM)]
        handler = getattr(self, f"_op_{op:02x}", None)
        if handler is None:
            return [self._reply(op, status=1, error=ERR_INVALID)]
        try:
            return handler(op, data)
        except (struct.error, ValueError, IndexError):
            return [self._reply(op, status=1, error=ERR_FAILED)]

    def _op_08(self, op, data):  # SYNC
        if data != b"\x07\x07\x12\x20" + b"\x55" * 32:
            return [self._reply(op, status=1, error=ERR_INVALID)]
        value = 0 if self.stub else 0x20120707  # the ROM answers with a non-zero value, the stub with 0
        return [self._reply(op, value)] * 8

    def _op_0a(self, op, data):  # READ_REG
        (addr,) = struct.unpack("<I", data[:4])
        if addr == CHIP_MAGIC_REG and self._c.magic is not None:
            return [self._reply(op, self._c.magic)]
        return [self._reply(op, self._read_reg(addr))]

    def _read_reg(self, addr: int) -> int:
        if self.chip == "esp32":
            efuse = 0x3FF5A000
            # eFuse BLK0 words 1 and 2 hold the MAC (ESP32 TRM ch. 20; esptool ESP32ROM.read_mac)
            if addr == efuse + 4:
                return int.from_bytes(self.mac[2:6], "big")
            if addr == efuse + 8:
                return int.from_bytes(self.mac[0:2], "big")
            # The ROM's crystal estimate (esptool ESP32ROM.get_rom_cal_crystal_freq, used by CHANGE_BAUDRATE):
            # cali * 15625 * ck8m / 40 = 40 MHz with ck8m = 100 (eFuse word 4) and cali = 1024 (RTCCALICFG1 >> 7)
            if addr == efuse + 16:
                return 100
            if addr == 0x3FF5F06C:
                return 1024 << 7
        elif addr == 0x60007044:  # ESP32-S3 eFuse MAC words (esptool ESP32S3ROM.read_mac)
            return int.from_bytes(self.mac[2:6], "big")
        elif addr == 0x60007048:
            return int.from_bytes(self.mac[0:2], "big")
        if addr == self._c.uart_clkdiv:  # UART divider for a 40 MHz crystal at 115200 baud
            return 40_000_000 // 115200
        return self.regs.get(addr, 0)

    def _op_09(self, op, data):  # WRITE_REG addr, value, mask, delay
        addr, value, mask, _delay = struct.unpack("<IIII", data[:16])
        old = self.regs.get(addr, 0)
        self.regs[addr] = (old & ~mask) | (value & mask)
        spi = self._c.spi
        if addr == spi and value & SPI_CMD_USR:
            self._run_spi_user_command()
        return [self._reply(op)]

    def _run_spi_user_command(self) -> None:
        spi = self._c.spi
        command = self.regs.get(spi + self._c.usr2, 0) & 0xFF
        result = 0
        if command == JEDEC_RDID:  # manufacturer 0xEF (Winbond), type 0x40, capacity log2(size)
            result = 0xEF | (0x40 << 8) | (SIZE_CODE[len(self.flash)] << 16)
        self.regs[spi + self._c.w0] = result
        self.regs[spi] = self.regs.get(spi, 0) & ~SPI_CMD_USR  # command done

    def _op_14(self, op, data):  # GET_SECURITY_INFO
        if self._c.chip_id is None:
            return [self._reply(op, status=1, error=ERR_INVALID)]  # the ESP32 ROM does not know it
        info = struct.pack("<IB7BII", 0, 0, *([0] * 7), self._c.chip_id, 0)
        return [self._reply(op, data=info)]

    def _op_0b(self, op, data):  # SPI_SET_PARAMS id, total size, block, sector, page, status mask
        return [self._reply(op)]

    def _op_0d(self, op, data):  # SPI_ATTACH
        return [self._reply(op)]

    def _op_0f(self, op, data):  # CHANGE_BAUDRATE new, old: the reply goes out at the old rate
        (new,) = struct.unpack("<I", data[:4])
        self._pending_baud = new
        return [self._reply(op)]

    def _begin(self, op, data, deflate: bool):
        erase_size, blocks, block_size, offset = struct.unpack("<IIII", data[:16])
        if offset + erase_size > len(self.flash) or offset % FLASH_SECTOR and not self.stub:
            return [self._reply(op, status=1, error=ERR_FAILED)]
        if not self.stub:  # the ROM erases up front, whole sectors
            end = min(len(self.flash), -(-(offset + erase_size) // FLASH_SECTOR) * FLASH_SECTOR)
            self.flash[offset:end] = b"\xff" * (end - offset)
        self._write = [offset, erase_size, 0, deflate]
        self._erased = set()
        self._inflater = zlib.decompressobj() if deflate else None
        return [self._reply(op)]

    def _op_02(self, op, data):
        return self._begin(op, data, False)

    def _op_10(self, op, data):
        return self._begin(op, data, True)

    def _store(self, chunk: bytes) -> bool:
        w = self._write
        assert w is not None
        pos = w[0]
        if pos + len(chunk) > len(self.flash):
            return False
        if self.stub:  # the stub erases sector by sector as it goes
            first = pos - pos % FLASH_SECTOR
            last = -(-(pos + len(chunk)) // FLASH_SECTOR) * FLASH_SECTOR
            for s in range(first, last, FLASH_SECTOR):
                if s not in self._erased:
                    self.flash[s:s + FLASH_SECTOR] = b"\xff" * FLASH_SECTOR
                self._erased.add(s)
        if self.corrupt and chunk:
            flipped = bytearray(chunk)
            flipped[len(chunk) // 2] ^= 0x10  # one flipped bit per block: the MD5 check must catch it
            chunk = bytes(flipped)
        # NOR flash: a write can only clear bits
        for i, b in enumerate(chunk):
            self.flash[pos + i] &= b
        w[0] = pos + len(chunk)
        return True

    _erased: set = set()

    def _data(self, op, data, deflate: bool):
        size, seq, _, _ = struct.unpack("<IIII", data[:16])
        payload = data[16:16 + size]
        w = self._write
        if w is None or w[3] != deflate or len(payload) != size:
            return [self._reply(op, status=1, error=ERR_INVALID)]
        if seq != w[2]:
            return [self._reply(op, status=1, error=ERR_FAILED)]
        if deflate:
            assert self._inflater is not None
            try:
                chunk = self._inflater.decompress(payload)
            except zlib.error:
                return [self._reply(op, status=1, error=ERR_DEFLATE)]
        else:
            chunk = payload
        if not self._store(chunk):
            return [self._reply(op, status=1, error=ERR_FLASH_WRITE)]
        w[2] = seq + 1
        return [self._reply(op)]

    def _op_03(self, op, data):
        return self._data(op, data, False)

    def _op_11(self, op, data):
        return self._data(op, data, True)

    def _end(self, op, data):
        (stay,) = struct.unpack("<I", data[:4])
        self._write = None
        replies = [self._reply(op)]
        if not stay:  # reboot into the application
            self.resets += 1
            self.stub = False
        return replies

    def _op_04(self, op, data):
        return self._end(op, data)

    def _op_12(self, op, data):
        return self._end(op, data)

    def _op_13(self, op, data):  # SPI_FLASH_MD5 addr, size, 0, 0
        addr, size, _, _ = struct.unpack("<IIII", data[:16])
        if addr + size > len(self.flash):
            return [self._reply(op, status=1, error=ERR_FAILED)]
        digest = hashlib.md5(self.flash[addr:addr + size]).digest()
        return [self._reply(op, data=digest if self.stub else digest.hex().encode())]

    def _op_05(self, op, data):  # MEM_BEGIN size, blocks, block size, offset
        size, _blocks, _bs, offset = struct.unpack("<IIII", data[:16])
        self._mem = [offset, size, 0]
        return [self._reply(op)]

    def _op_07(self, op, data):  # MEM_DATA size, seq, 0, 0 + data (RAM contents are not kept)
        size, seq, _, _ = struct.unpack("<IIII", data[:16])
        if self._mem is None or seq != self._mem[2] or len(data) - 16 != size:
            return [self._reply(op, status=1, error=ERR_FAILED)]
        self._mem[2] += 1
        return [self._reply(op)]

    def _op_06(self, op, data):  # MEM_END no-entry flag, entry point
        no_entry, entry = struct.unpack("<II", data[:8])
        replies = [self._reply(op)]
        self._mem = None
        if not no_entry and entry and self.stub_fails:  # the stub crashes at once
            if self.stub_fails == "silent":
                self.silent = True
                return replies
            return replies + [b"OHNO"]
        if not no_entry and entry:  # "runs" the uploaded flasher stub
            self.stub = True
            self._erased = set()
            replies.append(b"OHAI")
        return replies

    # Stub-only commands
    def _op_d0(self, op, data):  # ERASE_FLASH
        if not self.stub:
            return [self._reply(op, status=1, error=ERR_INVALID)]
        self.flash[:] = b"\xff" * len(self.flash)
        return [self._reply(op)]

    def _op_d1(self, op, data):  # ERASE_REGION offset, size
        if not self.stub:
            return [self._reply(op, status=1, error=ERR_INVALID)]
        offset, size = struct.unpack("<II", data[:8])
        if offset % FLASH_SECTOR or size % FLASH_SECTOR or offset + size > len(self.flash):
            return [self._reply(op, status=1, error=ERR_FAILED)]
        self.flash[offset:offset + size] = b"\xff" * size
        return [self._reply(op)]

    def _op_d3(self, op, data):  # RUN_USER_CODE
        if not self.stub:
            return [self._reply(op, status=1, error=ERR_INVALID)]
        self.resets += 1
        self.stub = False
        return []
