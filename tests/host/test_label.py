"""TR005 QR labels: the payload string, and the drawn SVG/PNG read back module by module."""
from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET
import zlib

import pytest
import segno

from citynode.device import registry as registry_db
from citynode.cli import main
from citynode.errors import InputError
from citynode.device.label import tr005_payload
from citynode.device.registry import Registry

DEV_EUI = "0018B20000000101"
JOIN_EUI = "70B3D57ED0000010"
# LoRa Alliance TR005 example (facts.md)
EXAMPLE = "LW:D0:70B3D57ED0000010:0018B20000000101:000AF8BE"


def test_payload_matches_the_tr005_example():
    assert tr005_payload(JOIN_EUI, DEV_EUI, "000AF8BE") == EXAMPLE
    assert tr005_payload("70b3d57ed0000010", "00-18-b2-00-00-00-01-01", "000af8be") == EXAMPLE
    assert tr005_payload(JOIN_EUI, DEV_EUI, "000AF8BE", serial="A17") == EXAMPLE + ":SA17"
    with pytest.raises(InputError):
        tr005_payload(JOIN_EUI, DEV_EUI[:-1], "000AF8BE")
    with pytest.raises(InputError):
        tr005_payload(JOIN_EUI, DEV_EUI, "0AF8BE")


@pytest.fixture
def reg(tmp_path, monkeypatch):
    monkeypatch.setattr(registry_db, "new_dev_eui", lambda prefix="": DEV_EUI)
    path = tmp_path / "fleet.db"
    with Registry(path) as r:
        r.create(1, join_eui=JOIN_EUI)
    return str(path)


def expected_matrix(payload: str, border: int = 4) -> list[list[int]]:
    qr = segno.make(payload, error="M", micro=False)
    return [[1 if v else 0 for v in row] for row in qr.matrix_iter(scale=1, border=border)]


def svg_matrix(root: ET.Element) -> list[list[int]]:
    ns = {"s": "http://www.w3.org/2000/svg"}
    w = int(root.get("viewBox").split()[2])
    path = root.find("s:path", ns).get("d")
    grid = [[0] * w for _ in range(w)]
    for x, y, n in re.findall(r"M(\d+) (\d+)h(\d+)v1h-\3z", path):
        for i in range(int(n)):
            grid[int(y)][int(x) + i] = 1
    assert re.sub(r"M(\d+) (\d+)h(\d+)v1h-\3z", "", path) == ""  # nothing but module runs
    return grid


def test_svg_label_holds_the_qr_code_and_the_dev_eui_text(reg, tmp_path, capsys):
    out = tmp_path / "label.svg"
    assert main(["label", DEV_EUI.lower(), "--registry", reg, "-o", str(out), "--profile-id", "000AF8BE"]) == 0
    assert capsys.readouterr().out.strip() == EXAMPLE
    root = ET.fromstring(out.read_text())
    # 47 alphanumeric characters: more than version 2-M holds (38), within 3-M (61): 29 modules + 2 x 4 border
    assert len(expected_matrix(EXAMPLE)) == 37
    assert svg_matrix(root) == expected_matrix(EXAMPLE)
    text = root.find("{http://www.w3.org/2000/svg}text").text
    assert DEV_EUI in text
    # a different payload gives a different drawing: the comparison can fail
    assert svg_matrix(root) != expected_matrix(EXAMPLE.replace("0101", "0102"))


def read_png(data: bytes):
    """Minimal PNG reader for the test: greyscale or palette, bit depth 1-8, no interlace -> rows of ints."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, palette = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        assert zlib.crc32(kind + body) == struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = [body[i:i + 3] for i in range(0, n, 3)]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    assert ctype in (0, 3) and depth <= 8 and interlace == 0
    raw = zlib.decompress(idat)
    stride = (w * depth + 7) // 8
    rows, prev = [], bytearray(stride)
    for y in range(h):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - 1] if i else 0
            b, c = prev[i], (prev[i - 1] if i else 0)
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        prev = line
        bits = "".join(f"{byte:08b}" for byte in line)
        vals = [int(bits[x * depth:(x + 1) * depth], 2) for x in range(w)]
        if palette is not None:
            vals = [sum(palette[v]) for v in vals]
        rows.append(vals)
    return w, h, rows


def test_png_label_is_the_bare_qr_code_read_back_module_by_module(reg, tmp_path, capsys):
    out = tmp_path / "label.png"
    assert main(["label", DEV_EUI, "--registry", reg, "-o", str(out), "--scale", "3"]) == 0
    payload = capsys.readouterr().out.strip()
    assert payload == f"LW:D0:{JOIN_EUI}:{DEV_EUI}:00000000"
    want = expected_matrix(payload)
    w, h, rows = read_png(out.read_bytes())
    assert (w, h) == (len(want) * 3, len(want) * 3)
    dark = min(min(r) for r in rows)
    got = [[1 if rows[y * 3 + 1][x * 3 + 1] == dark else 0 for x in range(len(want))] for y in range(len(want))]
    assert got == want
    # every pixel of a module agrees (a crisp scale-3 drawing)
    assert all(rows[y][x] == rows[y - y % 3][x - x % 3] for y in range(h) for x in range(w))


def test_label_errors(reg, tmp_path, capsys):
    assert main(["label", "0018B200000001FF", "--registry", reg, "-o", str(tmp_path / "x.svg")]) == 1
    assert "not in registry" in capsys.readouterr().err
    assert main(["label", DEV_EUI, "--registry", reg, "-o", str(tmp_path / "x.gif")]) == 2
    assert ".png or .svg" in capsys.readouterr().err
    assert main(["label", "0018B2", "--registry", reg, "-o", str(tmp_path / "x.svg")]) == 2
    assert not (tmp_path / "x.svg").exists()
