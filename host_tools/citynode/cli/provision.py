"""`citynode provision`, `citynode registry (init|list|export)` and `citynode label`: device identities."""
from __future__ import annotations

import os
import sys

from citynode.cli import add_command
from citynode.errors import CitynodeError, UsageError
from citynode.device.label import DEFAULT_PROFILE_ID, write_label
from citynode.device.registry import Registry
from citynode.device.exports import FORMATS, FREQUENCY_PLAN, export


def register(sub) -> None:
    _add_provision(sub)
    _add_registry(sub)
    _add_label(sub)


def _add_provision(sub) -> None:
    p = add_command(sub, "provision", cmd_provision,
                    "Create unique device identities and keys; with --port, write them to a node.",
                    "citynode provision --registry fleet.db --board heltec-wifi-lora-32-v2 --port /dev/ttyUSB0")
    p.description = (
        "Create unique device identities (DevEUI, JoinEUI, AppKey from `secrets`) and record them in the\n"
        "registry (SQLite, mode 0600; safe for several provisioning processes at once).\n\n"
        "--count N  creates N identities and prints their DevEUIs, one a line.\n"
        "--port P   creates one identity, writes it to the node's NVS (esp32.NVS('cn_keys') blobs dev_eui,\n"
        "           join_eui, app_key) through mpremote, reads it back and compares. A node that already\n"
        "           holds a DevEUI is left alone unless --replace (or --dev-eui with that DevEUI).\n"
        "--replace DEV_EUI  also when the node holds no DevEUI any more (a reflash erased it): DEV_EUI, the\n"
        "           identity it had, is retired. The way back for a node whose enclosure was opened.\n"
        "--production  production mode: the node turns Ctrl-C off at every boot and resets instead of\n"
        "           falling to the REPL, so mpremote no longer reaches its keys over USB. The node is reset\n"
        "           and must say so at boot. Afterwards only `citynode flash` (which erases NVS: keys and\n"
        "           production mode) makes it usable again. esptool read-flash, download mode and JTAG stay\n"
        "           open: see docs/security.md.\n\n"
        "Keys are never printed unless --show-keys (then each line is DEV_EUI JOIN_EUI APP_KEY).\n"
        "Use `citynode registry export` to hand the keys to the network server.\n\n"
        "Example:\n  citynode provision --registry fleet.db --board heltec-wifi-lora-32-v2 --port /dev/ttyUSB0\n"
        "  citynode provision --registry fleet.db --board heltec-wifi-lora-32-v2 --port /dev/ttyUSB0 --production\n"
        "  citynode provision --registry fleet.db --count 50 --board heltec-wifi-lora-32-v2")
    p.add_argument("--registry", required=True, metavar="FILE", help="SQLite registry (created, mode 0600)")
    p.add_argument("--board", metavar="NAME", help="board name recorded with the identity")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--port", metavar="PORT", help="node to write one identity to (device path or pyserial URL)")
    how.add_argument("--count", type=int, metavar="N", help="create N identities without writing any node")
    p.add_argument("--dev-eui", metavar="EUI", help="with --port: write this existing registry identity instead "
                                                    "of creating a new one (e.g. a replacement board)")
    p.add_argument("--join-eui", metavar="HEX", help="JoinEUI of new identities (default: the registry's, "
                                                     "else 0000000000000000)")
    p.add_argument("--eui-prefix", metavar="HEX", help="DevEUI prefix of new identities, e.g. your IEEE OUI "
                                                       "(default: the registry's, else random locally "
                                                       "administered EUI-64)")
    p.add_argument("--replace", nargs="?", const=True, default=False, metavar="DEV_EUI",
                   help="with --port: give the node a new identity, retiring the one it holds (default: refuse); "
                        "with DEV_EUI, the identity to retire even if the node holds none any more")
    p.add_argument("--production", action="store_true",
                   help="with --port: production mode (REPL closed at every boot; see docs/security.md)")
    p.add_argument("--baud", type=int, default=115200, help="serial speed for --port")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S", help="seconds to wait for the node's REPL")
    p.add_argument("--show-keys", action="store_true", help="also print JoinEUI and AppKey (DEV_EUI JOIN_EUI APP_KEY)")


def _add_registry(sub) -> None:
    p = add_command(sub, "registry", _registry_help, "Manage the device registry (init, list, flag, locate, export).",
                    "citynode registry export --registry fleet.db --format tts-csv -o devices.csv")
    rsub = p.add_subparsers(dest="registry_command", metavar="ACTION", parser_class=type(p))
    p.set_defaults(registry_parser=p)
    _add_registry_init(rsub)
    _add_registry_list(rsub)
    _add_registry_flag(rsub)
    _add_registry_locate(rsub)
    _add_registry_export(rsub)


def _add_registry_init(rsub) -> None:
    q = add_command(rsub, "init", cmd_registry_init, "Create a registry or set its defaults for new identities.",
                    "citynode registry init --registry fleet.db --join-eui 70B3D57ED0000010 --eui-prefix 70B3D5")
    q.add_argument("--registry", required=True, metavar="FILE")
    q.add_argument("--join-eui", metavar="HEX", help="JoinEUI for new identities (16 hex digits)")
    q.add_argument("--eui-prefix", metavar="HEX", help="DevEUI prefix for new identities (0..10 hex digits; '' = "
                                                       "random locally administered)")


def _add_registry_list(rsub) -> None:
    q = add_command(rsub, "list", cmd_registry_list, "List the devices (no keys): DevEUI, JoinEUI, id, board, "
                    "status, created, flag.", "citynode registry list --registry fleet.db")
    q.add_argument("--registry", required=True, metavar="FILE")


def _add_registry_flag(rsub) -> None:
    q = add_command(rsub, "flag", cmd_registry_flag, "Flag a device whose enclosure was found open (its AppKey may "
                    "be copied), or clear that flag.",
                    "citynode registry flag --registry fleet.db 70B3D57ED0000001 --opened --note 'seal 0421 broken'")
    q.description = (
        "Record, with the time and a note, that a device's enclosure was found open: its AppKey may be copied,\n"
        "and a clone could join as the device. Until its node gets a new identity\n"
        "(citynode provision --port PORT --replace DEV_EUI, which retires this one) or the flag is cleared,\n"
        "`registry export` leaves the device out (one line on stderr each, exit 1), `registry list` shows the\n"
        "flag, and `provision --dev-eui` will not write the identity to a node. Every flag and clearing stays in\n"
        "the registry (table events). See docs/security.md, section 4.\n\n"
        "Example:\n  citynode registry flag --registry fleet.db 70B3D57ED0000001 --opened --note 'seal 0421 broken'\n"
        "  citynode registry flag --registry fleet.db 70B3D57ED0000001 --clear --note 'our own visit, ticket 88'")
    q.add_argument("--registry", required=True, metavar="FILE")
    q.add_argument("dev_eui", metavar="DEV_EUI")
    what = q.add_mutually_exclusive_group(required=True)
    what.add_argument("--opened", action="store_true", help="the enclosure was found open")
    what.add_argument("--clear", action="store_true", help="clear the flag (say why with --note)")
    q.add_argument("--note", metavar="TEXT", help="what was found, or why the flag is cleared (kept as one line)")


def _add_registry_locate(rsub) -> None:
    q = add_command(rsub, "locate", cmd_registry_locate, "Record where a node is mounted (its SensorThings "
                    "Location).", "citynode registry locate --registry fleet.db 70B3D57ED0000001 52.2799 8.0472")
    q.add_argument("--registry", required=True, metavar="FILE")
    q.add_argument("dev_eui", metavar="DEV_EUI")
    q.add_argument("lat", type=float, metavar="LAT", help="WGS 84 latitude in degrees")
    q.add_argument("lon", type=float, metavar="LON", help="WGS 84 longitude in degrees")


def _add_registry_export(rsub) -> None:
    q = add_command(rsub, "export", cmd_registry_export,
                    "Write the devices, WITH THEIR APPKEYS, for bulk import into The Things Stack or ChirpStack.",
                    "citynode registry export --registry fleet.db --format tts-json -o devices.json")
    q.description = (
        "Write the devices for bulk import into The Things Stack or ChirpStack.\n\n"
        "The export CONTAINS THE APPKEYS: that is its purpose, and it is the one place citynode prints keys\n"
        "without --show-keys. Keep it private; files written with -o get mode 0600.\n\n"
        "  tts-csv          ';'-separated CSV for the TTS Console bulk import\n"
        "  tts-json         one end-device object per line (a JSON stream), for\n"
        "                   ttn-lw-cli end-devices create --application-id APP < devices.json\n"
        "  chirpstack-json  a JSON array of {device, device_keys} request bodies for the ChirpStack v4 API\n"
        "                   (LoRaWAN 1.0.x: the AppKey is in nwk_key)\n\n"
        "Devices whose node write failed, and retired ones (their node got a new identity), are left out\n"
        "unless --all. Flagged devices (`registry flag --opened`: their enclosure was found open) are always\n"
        "left out, each named on stderr, and the command exits 1: a possibly copied identity is never handed\n"
        "to the network server again unnoticed.\n\n"
        "Example:\n  citynode registry export --registry fleet.db --format tts-json -o devices.json")
    q.add_argument("--registry", required=True, metavar="FILE")
    q.add_argument("--format", required=True, choices=FORMATS)
    q.add_argument("-o", "--output", metavar="FILE", help="write here (mode 0600) instead of stdout")
    q.add_argument("--application-id", metavar="ID", help="TTS application id / ChirpStack application UUID")
    q.add_argument("--device-profile-id", metavar="UUID", help="ChirpStack device-profile UUID")
    q.add_argument("--frequency-plan", default=FREQUENCY_PLAN, help="TTS frequency_plan_id")
    q.add_argument("--all", action="store_true", help="include failed and retired devices")


def _add_label(sub) -> None:
    p = add_command(sub, "label", cmd_label,
                    "Draw the TR005 QR label of a registry device (.svg with DevEUI text, .png bare QR).",
                    "citynode label 0018B20000000101 --registry fleet.db -o label.svg")
    p.description = (
        "Draw the LoRa Alliance TR005 onboarding QR code LW:D0:<JoinEUI>:<DevEUI>:<ProfileID> of a device\n"
        "in the registry. An .svg label shows the DevEUI as text under the code; a .png label is the bare\n"
        "QR code (segno draws no text). Prints the QR payload. The label holds no key.\n\n"
        "Example:\n  citynode label 0018B20000000101 --registry fleet.db -o label.svg")
    p.add_argument("dev_eui", metavar="DEV_EUI")
    p.add_argument("--registry", required=True, metavar="FILE")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="label.png or label.svg")
    p.add_argument("--profile-id", default=DEFAULT_PROFILE_ID, metavar="HEX8",
                   help="TR005 ProfileID: VendorID + VendorProfileID (8 hex digits)")
    p.add_argument("--scale", type=int, default=8, help="pixels per module (PNG) / SVG size factor")


def _open_registry(path: str, create: bool, readonly: bool = False) -> Registry:
    def waiting():
        sys.stderr.write(f"citynode: waiting for the registry lock on {path} (another citynode process is "
                         "writing it)\n")
        sys.stderr.flush()

    return Registry(path, create=create, readonly=readonly, on_wait=waiting)


def _print_devices(devs, show_keys: bool) -> None:
    for d in devs:
        print(f"{d.dev_eui} {d.join_eui} {d.app_key}" if show_keys else d.dev_eui)


def cmd_provision(args) -> int:
    if args.board:
        from citynode.device.boards import get_board

        get_board(args.board)  # a name no board file has is refused before anything is stored
    if args.count is not None:
        if args.count < 1:
            raise UsageError("--count must be at least 1")
        if args.dev_eui or args.replace or args.production:
            raise UsageError("--dev-eui, --replace and --production go with --port")
        with _open_registry(args.registry, True) as reg:
            devs = reg.create(args.count, board=args.board, join_eui=args.join_eui, eui_prefix=args.eui_prefix)
        _print_devices(devs, args.show_keys)
        return 0
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    from citynode.device.keys import NodeSession

    confirmed = None
    with _open_registry(args.registry, True) as reg:
        old = reg.get(args.replace).dev_eui if isinstance(args.replace, str) else None
        if args.dev_eui:
            dev = reg.get(args.dev_eui)
            flag = reg.flags().get(dev.dev_eui)
            if flag is not None:
                raise CitynodeError(f"DevEUI {dev.dev_eui} is flagged: {_flag_text(flag)}; its AppKey may be "
                                    "copied, so no node gets it again: give the node a new identity (--replace "
                                    f"{dev.dev_eui} without --dev-eui), or clear the flag if the opening was your "
                                    f"own (citynode registry flag {dev.dev_eui} --clear --note WHY)")
        with NodeSession(args.port, baud=args.baud, timeout=args.timeout) as node:  # no board: nothing spent
            held = node.dev_eui()
            if old is not None and held and held != old:
                raise CitynodeError(f"the node on {args.port} holds DevEUI {held}, not {old}: give --replace "
                                    f"without a DevEUI to retire {held}")
            if held and not args.replace and held != (dev.dev_eui if args.dev_eui else None):
                raise CitynodeError(_held_message(reg, held, args.port))
            if args.production:
                node.preflight()  # before an identity is spent
            if args.dev_eui:
                if args.board:
                    reg.set_board(dev.dev_eui, args.board)
            else:  # recorded (committed) before the node is written: an identity is never lost nor reused
                dev = reg.create(1, board=args.board, join_eui=args.join_eui, eui_prefix=args.eui_prefix)[0]
            try:
                node.write(dev, production=args.production)
            except BaseException:  # incl. Ctrl-C: the node may hold part of it; never export it as is
                reg.set_status(dev.dev_eui, "failed")
                raise
            dev = reg.set_status(dev.dev_eui, "provisioned")
            gone = held or old
            if gone and gone != dev.dev_eui and _in_registry(reg, gone):
                reg.set_status(gone, "retired")
                reg.record_event(gone, "replaced", f"by {dev.dev_eui}")
            if args.production:
                confirmed = node.restart()
    _print_devices([dev], args.show_keys)
    if confirmed is False:
        from citynode.device.production import MARK

        raise CitynodeError(f"provisioned {dev.dev_eui} on {args.port} (keys read back and verified) with production "
                            "mode set, but after its reset the node did not say it runs in production mode: watch "
                            f"its console (citynode monitor --port {args.port}) for '{MARK}' at boot; until it "
                            "says so, its REPL may be open")
    sys.stderr.write(f"provisioned {dev.dev_eui} on {args.port} (keys read back and verified)"
                     + ("; production mode: the node restarted with its REPL closed\n" if confirmed else "\n"))
    return 0


def _flag_text(ev) -> str:
    return f"enclosure found open {ev.at}" + (f" ({ev.note})" if ev.note else "")


def _in_registry(reg: Registry, dev_eui: str) -> bool:
    try:
        reg.get(dev_eui)
        return True
    except CitynodeError:
        return False


def _held_message(reg: Registry, held: str, port: str) -> str:
    try:
        where = f"status {reg.get(held).status} in this registry"
    except CitynodeError:
        where = "not in this registry"
    return (f"the node on {port} already holds DevEUI {held} ({where}); give --dev-eui {held} to write that "
            f"identity again, or --replace to give the node a new one")


def _registry_help(args) -> int:
    args.registry_parser.print_help(sys.stderr)
    return 2


def cmd_registry_init(args) -> int:
    with _open_registry(args.registry, True) as reg:
        cfg = reg.set_settings(args.join_eui, args.eui_prefix)
        n = reg.count()
    print(f"registry {args.registry}: {n} devices, JoinEUI {cfg['join_eui']}, DevEUI prefix "
          f"{cfg['eui_prefix'] or '(random, locally administered)'}")
    return 0


def cmd_registry_list(args) -> int:
    with _open_registry(args.registry, False, readonly=True) as reg:
        devs = reg.devices()
        flags = reg.flags()
    print("dev_eui          join_eui         device_id            board          status       created              "
          "flag")
    for d in devs:
        f = flags.get(d.dev_eui)
        flag = "-" if f is None else f"opened {f.at}" + (f" ({f.note})" if f.note else "")
        print(f"{d.dev_eui} {d.join_eui} {d.device_id:<20} {d.board or '-':<14} {d.status:<12} {d.created:<20} "
              f"{flag}")
    return 0


def cmd_registry_flag(args) -> int:
    with _open_registry(args.registry, False) as reg:
        if args.opened:
            ev = reg.flag_opened(args.dev_eui, args.note)
            print(f"{ev.dev_eui}: flagged, {_flag_text(ev)}; left out of registry export until its node gets a new "
                  f"identity (citynode provision --port PORT --replace {ev.dev_eui}) or the flag is cleared")
        else:
            ev = reg.clear_flag(args.dev_eui, args.note)
            print(f"{ev.dev_eui}: flag cleared {ev.at}" + (f" ({ev.note})" if ev.note else ""))
    return 0


def cmd_registry_locate(args) -> int:
    with _open_registry(args.registry, False) as reg:
        reg.set_location(args.dev_eui, args.lat, args.lon)
        eui = reg.get(args.dev_eui).dev_eui
    print(f"{eui}: {args.lat:.6f}, {args.lon:.6f}")
    return 0


def cmd_registry_export(args) -> int:
    if args.format == "chirpstack-json" and not (args.application_id and args.device_profile_id):
        raise UsageError("chirpstack-json needs --application-id and --device-profile-id: ChirpStack's "
                         "DeviceService.Create refuses a device without them")
    with _open_registry(args.registry, False, readonly=True) as reg:
        devs = reg.devices(None if args.all else ("new", "provisioned"))
        flags = reg.flags()
    held = [d for d in devs if d.dev_eui in flags]
    devs = [d for d in devs if d.dev_eui not in flags]
    for d in held:
        sys.stderr.write(f"citynode registry export: error: {d.dev_eui} left out: flagged, "
                         f"{_flag_text(flags[d.dev_eui])}; give its node a new identity (citynode provision --port "
                         f"PORT --replace {d.dev_eui}) or clear the flag (citynode registry flag {d.dev_eui} --clear "
                         "--note WHY)\n")
    if args.output:
        try:
            fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as e:
            raise CitynodeError(f"cannot write {args.output}: {e.strerror}") from None
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            export(args.format, devs, out, args.application_id, args.device_profile_id, args.frequency_plan)
        sys.stderr.write(f"wrote {len(devs)} devices to {args.output} (contains AppKeys: keep it private)\n")
    else:
        export(args.format, devs, sys.stdout, args.application_id, args.device_profile_id, args.frequency_plan)
    return 1 if held else 0


def cmd_label(args) -> int:
    if args.scale < 1:
        raise UsageError("--scale must be at least 1")
    from citynode.device.label import kind_of

    kind_of(args.output)  # usage error before touching the registry
    with _open_registry(args.registry, False, readonly=True) as reg:
        dev = reg.get(args.dev_eui)
    try:
        payload = write_label(args.output, dev.join_eui, dev.dev_eui, args.profile_id, args.scale)
    except OSError as e:
        raise CitynodeError(f"cannot write {args.output}: {e.strerror}") from None
    print(payload)
    return 0

