"""TR005 onboarding labels: the `LW:D0:` QR payload, drawn with segno as SVG (QR + DevEUI text) or PNG (QR only).

LoRa Alliance TR005: `LW:D0:<JoinEUI 16 hex>:<DevEUI 16 hex>:<ProfileID 8 hex>`, then optional
`:O<OwnerToken>:S<SerNum>:P<Proprietary>`; e.g. `LW:D0:70B3D57ED0000010:0018B20000000101:000AF8BE`.
Upper-case hex keeps the whole payload in the QR alphanumeric mode (a smaller symbol).
"""
from __future__ import annotations

from pathlib import Path

from citynode.errors import InputError
from citynode.device.registry import norm_hex

ERROR_LEVEL = "M"  # segno raises it when that fits in the same symbol size (boost_error)
BORDER = 4  # quiet zone in modules (ISO/IEC 18004)
DEFAULT_PROFILE_ID = "00000000"  # VendorID 0000 + VendorProfileID 0000: no LoRa Alliance vendor id
KINDS = ("png", "svg")


def tr005_payload(join_eui: str, dev_eui: str, profile_id: str = DEFAULT_PROFILE_ID, owner_token: str = "",
                  serial: str = "") -> str:
    parts = ["LW", "D0", norm_hex(join_eui, 8, "JoinEUI"), norm_hex(dev_eui, 8, "DevEUI"),
             norm_hex(profile_id, 4, "ProfileID")]
    for tag, value in (("O", owner_token), ("S", serial)):
        if value:
            if ":" in value:
                raise InputError(f"TR005 field {tag} may not contain ':'")
            parts.append(tag + value)
    return ":".join(parts)


def make_qr(payload: str):
    """The segno QRCode of `payload` (segno is imported here: `citynode` start-up stays quick)."""
    import segno

    return segno.make(payload, error=ERROR_LEVEL, micro=False)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def kind_of(path: str | Path) -> str:
    ext = Path(path).suffix.lower().lstrip(".")
    if ext not in KINDS:
        raise InputError(f"label file must end in .png or .svg, got {Path(path).name!r}")
    return ext


def svg_label(qr, text: str, scale: int = 8) -> str:
    """The QR (dark modules as one path, one unit a module, scaled) with `text` centred under it."""
    w, h = qr.symbol_size(scale=1, border=BORDER)
    runs = []
    for y, row in enumerate(qr.matrix_iter(scale=1, border=BORDER)):
        x = 0
        row = list(row)
        while x < w:
            if row[x]:
                start = x
                while x < w and row[x]:
                    x += 1
                runs.append(f"M{start} {y}h{x - start}v1h-{x - start}z")
            else:
                x += 1
    text_h = 3  # modules of room for one line of text
    total_h = h + text_h
    return (f'<?xml version="1.0" encoding="utf-8"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{w * scale}" height="{total_h * scale}" '
            f'viewBox="0 0 {w} {total_h}">\n'
            f'<rect width="{w}" height="{total_h}" fill="#fff"/>\n'
            f'<path fill="#000" shape-rendering="crispEdges" d="{"".join(runs)}"/>\n'
            f'<text x="{w / 2:g}" y="{h + 1}" font-family="monospace" font-size="2" text-anchor="middle" '
            f'fill="#000">{_escape(text)}</text>\n</svg>\n')


def write_label(path: str | Path, join_eui: str, dev_eui: str, profile_id: str = DEFAULT_PROFILE_ID,
                scale: int = 8) -> str:
    """Write the label; returns the TR005 payload. SVG carries the DevEUI as text under the code; PNG is the
    bare QR code (segno draws no text)."""
    kind = kind_of(path)
    payload = tr005_payload(join_eui, dev_eui, profile_id)
    qr = make_qr(payload)
    if kind == "svg":
        Path(path).write_text(svg_label(qr, "DevEUI " + norm_hex(dev_eui, 8, "DevEUI"), scale), encoding="utf-8")
    else:
        qr.save(str(path), kind="png", scale=scale, border=BORDER)
    return payload
