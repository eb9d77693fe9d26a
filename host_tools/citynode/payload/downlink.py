"""Host side of downlink commands (docs/downlink.md): builds command frames for port 3 and reads status frames.

The command ids and result codes come from the node's own module (cnode.downlink), so host, node and the
generated JavaScript codec (which reads COMMANDS and FPORT from here) cannot disagree.

Example:
    >>> encode("set_interval", 600, counter=7).hex()
    'a30007010102190258'
"""
from __future__ import annotations

from typing import Any

import cbor2

from cnode import downlink as _node
from cnode.config import SETTINGS, channel_id

FPORT: int = _node.FPORT
COMMANDS: dict[str, int] = dict(_node.COMMANDS)
RESULTS: dict[int, str] = {
    _node.R_OK: "ok",
    _node.R_MALFORMED: "malformed",
    _node.R_FORMAT: "bad_format",
    _node.R_UNKNOWN: "unknown_command",
    _node.R_BAD_ARG: "bad_argument",
    _node.R_REPLAY: "replay",
    _node.R_WINDOW: "counter_too_far",
    _node.R_CHALLENGE: "wrong_challenge",
    _node.R_UNSUPPORTED: "unsupported",
}
REFUSED = ("replay", "counter_too_far", "wrong_challenge")  # refusals: the status carries node_counter, challenge
WINDOW: int = _node.WINDOW
STATUS_KEYS: dict[int, str] = {
    0: "counter", 1: "command", 2: "result", 3: "interval", 4: "dr", 5: "adr", 6: "channels_off",
    _node.S_NODE_COUNTER: "node_counter", _node.S_CHALLENGE: "challenge",
    _node.S_QUEUE_DEPTH: "queue_depth", _node.S_DROPPED: "dropped", _node.S_UPTIME: "uptime_s",
    _node.S_RESET_CAUSE: "reset_cause", _node.S_FW_VERSION: "fw_version", _node.S_BATTERY_MV: "battery_mv",
}
_NO_ARGS = ("status", "reboot", "rejoin")
_BOUNDS = {"set_interval": "interval", "set_dr": "dr"}


def argument_kinds() -> dict[str, Any]:
    """What each command takes: "none", "bool", "channel" (a registry channel id) or [lo, hi] (an integer), as
    the node checks it; the generated JavaScript codec reads this."""
    out: dict[str, Any] = {}
    for name in COMMANDS:
        if name in _NO_ARGS:
            out[name] = "none"
        elif name == "set_adr":
            out[name] = "bool"
        elif name in ("enable_channel", "disable_channel"):
            out[name] = "channel"
        elif name == "resync":
            out[name] = [1, 0xFFFFFFFF]
        elif name in _BOUNDS:
            out[name] = list(SETTINGS[_BOUNDS[name]][1:3])
        else:
            raise ValueError(f"no argument rule for downlink command {name!r}")
    return out


class CommandError(ValueError):
    """A command that the node would reject: unknown name, missing or bad argument, bad counter."""


def encode(command: str | int, args: Any = None, *, counter: int) -> bytes:
    """The CBOR frame {0: counter, 1: id, 2: args} for `command`; channel arguments may be names.

    Checks the argument against the node's bounds first, so a frame built here is accepted by the node
    (unless its counter is not above the node's last accepted one, or more than WINDOW above it). For
    `resync` the argument is the challenge of the node's last refusal and `counter` the node's new counter
    (0 allowed): encode("resync", challenge, counter=0).
    """
    name = command
    if isinstance(command, int):
        names = [k for k, v in COMMANDS.items() if v == command]
        if not names:
            raise CommandError(f"unknown command id {command}")
        name = names[0]
    if name not in COMMANDS:
        raise CommandError(f"unknown command {name!r} (one of {', '.join(COMMANDS)})")
    low = 0 if name == "resync" else 1
    if isinstance(counter, bool) or not isinstance(counter, int) or not low <= counter <= 0xFFFFFFFF:
        raise CommandError("counter must be an integer 1..2^32-1 (each command needs a higher one)" if low else
                           "resync: the new counter must be an integer 0..2^32-1")
    msg: dict[int, Any] = {0: counter, 1: COMMANDS[name]}
    if name == "resync":
        if isinstance(args, bool) or not isinstance(args, int) or not 1 <= args <= 0xFFFFFFFF:
            raise CommandError("resync takes the node's challenge, an integer 1..2^32-1 (from its last refusal)")
        msg[2] = args
    elif name in _NO_ARGS:
        if args is not None:
            raise CommandError(f"{name} takes no argument")
    elif name == "set_adr":
        if not isinstance(args, bool):
            raise CommandError("set_adr takes true or false")
        msg[2] = args
    elif name in ("enable_channel", "disable_channel"):
        try:
            msg[2] = channel_id(args)
        except ValueError:
            raise CommandError(f"{name}: no channel {args!r} in the registry") from None
    else:
        setting = _BOUNDS[name]
        _, lo, hi, _ = SETTINGS[setting]
        if isinstance(args, bool) or not isinstance(args, int) or not lo <= args <= hi:
            raise CommandError(f"{name} takes an integer {lo}..{hi}")
        msg[2] = args
    return cbor2.dumps(msg)


def decode_command(frame: bytes) -> dict[str, Any]:
    """{"counter", "command" (name), "args"} of a command frame (for logs and tests)."""
    msg = cbor2.loads(frame)
    ids = {v: k for k, v in COMMANDS.items()}
    return {"counter": msg[0], "command": ids.get(msg[1], msg[1]), "args": msg.get(2)}


def decode_status(frame: bytes) -> dict[str, Any]:
    """A status frame (uplink on port 3) with names: result as text, channels_off as channel names."""
    from citynode.payload.channels import CHANNELS

    msg = cbor2.loads(frame)
    if not isinstance(msg, dict):
        raise ValueError("status frame is not a CBOR map")
    ids = {v: k for k, v in COMMANDS.items()}
    out: dict[str, Any] = {}
    for k, v in msg.items():
        name = STATUS_KEYS.get(k, str(k))
        if k == 1:
            v = ids.get(v, v)
        elif k == 2:
            v = RESULTS.get(v, v)
        elif k == 6:
            v = [c.name for c in CHANNELS if v >> c.id & 1]
        out[name] = v
    return out
