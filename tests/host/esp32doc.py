"""Reads ../shared/docs/esp32-api.md (the ESP32 port's API reference) into what tests check the double against:
table rows by section, NAME=value constants, pin ranges and the errors quoted in backticks."""
from __future__ import annotations

import functools
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2].parent / "shared" / "docs" / "esp32-api.md"


@functools.lru_cache(maxsize=1)
def sections() -> dict[str, list[tuple[str, str]]]:
    """{heading: [(API cell, Behaviour cell)]} of every table row; the arg-check line is section "Arg errors"."""
    out: dict[str, list] = {}
    head = ""
    for line in DOC.read_text().splitlines():
        if line.startswith("#"):
            head = line.lstrip("#").strip()
            out.setdefault(head, [])
        elif line.startswith("Arg errors"):
            out["Arg errors"] = [("", line)]
        elif line.startswith("|") and not line.startswith("|---") and not line.startswith("| API"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
            if len(cells) >= 2:
                out[head].append((cells[0], cells[1]))
    return out


def row(section: str, api: str) -> str:
    """The whole row (API and Behaviour) whose API cell starts with `api` (backticks ignored)."""
    for a, b in sections()[section]:
        if a.strip("`").startswith(api):
            return a + " | " + b
    raise AssertionError(f"no row {api!r} in {section!r} of {DOC.name}")


def current(api: str) -> bool:
    """False for rows about other versions (**Δ v1.27** ...)."""
    return not api.startswith("**Δ")


def constants(text: str) -> dict[str, int | bool]:
    """NAME=value pairs, with chains (A=B=2), hex and boolean values; DRIVE_0..3=0..3 expanded."""
    out: dict = {}
    pat = r"\b([A-Z][A-Z0-9_]*(?:\.\.\d+)?)((?:=[A-Z][A-Z0-9_]*)*)=(0x[0-9A-Fa-f]+|-?\d+(?:\.\.\d+)?|True|False)\b"
    for m in re.finditer(pat, text):
        names = [m.group(1)] + [n for n in m.group(2).split("=") if n]
        v = m.group(3)
        if ".." in m.group(1):  # DRIVE_0..3=0..3
            base, hi = m.group(1).split("..")
            stem, lo = base.rsplit("_", 1)
            vlo = int(v.split("..")[0])
            for k in range(int(lo), int(hi) + 1):
                out[f"{stem}_{k}"] = vlo + k - int(lo)
            continue
        val = {"True": True, "False": False}.get(v)
        if val is None:
            val = int(v, 0)
        for n in names:
            out[n] = val
    return out


def messages(text: str, exc: str) -> list[str]:
    """The messages of `exc` quoted in `text`: ValueError('invalid pin') -> 'invalid pin'."""
    return re.findall(exc + r"\('(.+?)'\)", text) + re.findall(exc + r'\("(.+?)"\)', text)


def errors(text: str) -> list[tuple[str, object]]:
    """Every error quoted in backticks: (type name, message pattern or errno or (errno, name)); `ValueError()`
    gives an empty message. Placeholders (n), N and 0x%04x match the numbers the port puts there."""
    out = []
    for exc, arg in re.findall(r"`(\w+Error)\((.*?)\)`", text):
        arg = arg.strip()
        m = re.fullmatch(r"(-?\d+)\s*,\s*'(\w+)'", arg)
        if m:
            out.append((exc, (int(m.group(1)), m.group(2))))
        elif re.fullmatch(r"-?\d+", arg):
            out.append((exc, int(arg)))
        elif arg[:1] in "'\"" and arg[-1:] == arg[:1]:
            pat = re.escape(arg[1:-1]).replace(r"\(n\)", r"\(-?\d+\)").replace(r"length\ N", r"length\ \d+")
            out.append((exc, re.compile(pat.replace("0x%04x", "0x[0-9a-f]{4}") + "$")))
        elif not arg:
            out.append((exc, re.compile("$")))
    return out


def matches(e: BaseException, doc: tuple[str, object]) -> bool:
    """Whether a raised exception is the documented one (type name, and message or errno)."""
    exc, what = doc
    if type(e).__name__ != exc:
        return False
    if isinstance(what, int):
        return bool(e.args) and e.args[0] == what
    if isinstance(what, tuple):
        return tuple(e.args[:2]) == what
    return bool(what.match(str(e)))


def ranges(text: str) -> set[int]:
    """0-23, 25-27 -> the numbers."""
    out = set()
    for a, b in re.findall(r"(\d+)(?:-(\d+))?", text):
        out |= set(range(int(a), int(b or a) + 1))
    return out
