"""`citynode command`: a downlink command for one device with the next counter from the registry, and the node's
status answers read back into it, so the host always knows the counter the node expects (docs/downlink.md)."""
from __future__ import annotations

import base64
import binascii
import json
import sys

from citynode.cli import add_command
from citynode.payload.downlink import COMMANDS, FPORT, REFUSED, CommandError, decode_status, encode
from citynode.errors import UsageError

FORMATS = ("hex", "base64", "tts-json", "chirpstack-json")


def register(sub) -> None:
    p = add_command(sub, "command", cmd_command,
                    "Build a downlink command with the device's next counter, or record its status answer.",
                    "citynode command 70B3D57ED0000001 set_interval 600 --registry fleet.db")
    assert p.description is not None  # add_command always gives one
    p.description += (
        "\n  citynode command 70B3D57ED0000001 --status a5000101060205071affffffff0e1a12345678"
        " --registry fleet.db\n  citynode command 70B3D57ED0000001 resync --registry fleet.db\n\n"
        f"Commands: {', '.join(COMMANDS)}. Channel arguments are names (co2); set_adr takes true or false.\n"
        "The counter is taken from the registry and recorded there before the frame is printed. Queue the frame\n"
        "on the network server for FPort 3. Record each status the node sends on FPort 3 with --status: a\n"
        "refused command (replay, counter_too_far) carries the node's counter, and the next command is built\n"
        "above it; it also carries the challenge that `resync` needs to set the node's counter back to 0.")
    p.add_argument("dev_eui", metavar="DEV_EUI")
    p.add_argument("name", nargs="?", metavar="COMMAND", help="one of: " + ", ".join(COMMANDS))
    p.add_argument("arg", nargs="?", metavar="ARG", help="the command's argument, if it takes one")
    p.add_argument("--registry", required=True, metavar="FILE")
    p.add_argument("--status", metavar="FRAME", help="a status frame from the node (FPort 3), hex or base64")
    p.add_argument("--format", choices=FORMATS, default="hex",
                   help="hex (default), base64, or the JSON a network server's MQTT downlink API takes")


def _arg(name: str, text: str | None):
    if text is None:
        return None
    if name == "set_adr":
        if text.lower() not in ("true", "false"):
            raise UsageError("set_adr takes true or false")
        return text.lower() == "true"
    if name in ("enable_channel", "disable_channel"):
        return int(text) if text.isdigit() else text
    try:
        return int(text, 0)
    except ValueError:
        raise UsageError(f"{name} takes an integer, not {text!r}") from None


def _frame(text: str) -> bytes:
    t = text.strip()
    try:
        return bytes.fromhex(t)
    except ValueError:
        pass
    try:
        return base64.b64decode(t, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError(f"--status {text[:40]!r} is neither hex nor base64") from None


def _show(frame: bytes, counter: int, dev_eui: str, fmt: str) -> str:
    b64 = base64.b64encode(frame).decode()
    if fmt == "hex":
        return frame.hex()
    if fmt == "base64":
        return b64
    if fmt == "tts-json":  # The Things Stack: v3/{app}@{tenant}/devices/{device}/down/push
        return json.dumps({"downlinks": [{"f_port": FPORT, "frm_payload": b64, "priority": "NORMAL"}]})
    return json.dumps({"devEui": dev_eui.lower(), "confirmed": False, "fPort": FPORT, "data": b64})  # ChirpStack v4


def cmd_command(args) -> int:
    from citynode.cli.provision import _open_registry

    if (args.status is None) == (args.name is None):
        raise UsageError("give a COMMAND to build, or --status FRAME to record (not both)")
    if args.status is not None:
        frame = _frame(args.status)
        try:
            status = decode_status(frame)
        except Exception as e:  # noqa: BLE001 - cbor2 raises several kinds for bad bytes
            raise UsageError(f"--status is not a status frame ({e})") from None
        with _open_registry(args.registry, create=False) as reg:
            reg.record_command_status(args.dev_eui, status)
            now = reg.command_counter(args.dev_eui)
        print(json.dumps(status))
        if status.get("result") in REFUSED:
            sys.stderr.write(f"citynode: the node refused it ({status['result']}); its counter is "
                             f"{status.get('node_counter')}: the next command gets {now['sent'] + 1}"
                             + (", or resync it" if status.get("node_counter") == 0xFFFFFFFF else "") + "\n")
        return 0
    name = args.name
    if name not in COMMANDS:
        raise UsageError(f"unknown command {name!r} (one of {', '.join(COMMANDS)})")
    if name == "resync" and args.arg is not None:
        raise UsageError("resync takes no argument here: the challenge comes from the registry")
    value = _arg(name, args.arg)
    try:
        encode(name, value if name != "resync" else 1, counter=0 if name == "resync" else 1)  # check it first
    except CommandError as e:
        raise UsageError(str(e)) from None
    with _open_registry(args.registry, create=False) as reg:
        dev = reg.get(args.dev_eui)
        counter, challenge = reg.take_command_counter(dev.dev_eui, resync=name == "resync")
    frame = encode(name, challenge if name == "resync" else value, counter=counter)
    print(_show(frame, counter, dev.dev_eui, args.format))
    sys.stderr.write(f"citynode: {name} for {dev.dev_eui} with counter {counter} (recorded in {args.registry})\n")
    return 0
