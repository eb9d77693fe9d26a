"""`citynode bridge`: decode uplinks from a network server's MQTT integration and deliver them, once each, as
SenML per device on MQTT or as Observations to an OGC SensorThings server."""
from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
from pathlib import Path

from citynode.bridge.core import Bridge, BridgeError, default_client_id, parse_broker
from citynode.bridge.state import DeliveryState, StateError
from citynode.cli import add_command
from citynode.errors import CitynodeError, UsageError


def register(sub) -> None:
    p = add_command(sub, "bridge", cmd_bridge,
                    "Decode uplinks from MQTT (TTS v3 or ChirpStack v4) and publish SenML JSON per device, or post "
                    "them to an OGC SensorThings server.",
                    "citynode bridge --broker mqtt://localhost:1883 --input ttn "
                    "--subscribe 'v3/city@ttn/devices/+/up' --publish city/senml --group decoders\n"
                    "  citynode bridge --broker mqtt://localhost:1883 --input ttn --subscribe 'v3/city@ttn/devices/+/up' "
                    "--publish sta --sta-url https://frost.example/FROST-Server/v1.1 "
                    "--sta-token-file /etc/citynode/sta-token --registry fleet.db --client-id bridge-a")
    p.add_argument("--broker", required=True, metavar="mqtt://HOST:PORT")
    p.add_argument("--input", choices=("ttn", "chirpstack"), required=True,
                   help="ttn: The Things Stack v3 uplink messages; chirpstack: ChirpStack v4 up events")
    p.add_argument("--subscribe", required=True, metavar="TOPIC", help="topic filter of the uplinks")
    p.add_argument("--publish", required=True, metavar="PREFIX|sta",
                   help="SenML goes to PREFIX/<dev_eui>, error records to PREFIX/_errors; 'sta': Observations go "
                        "to the SensorThings server at --sta-url, error records to citynode/_errors")
    p.add_argument("--sta-url", metavar="URL", help="the SensorThings API's base, e.g. https://host/FROST/v1.1; "
                   "credentials from CITYNODE_STA_TOKEN (bearer) or CITYNODE_STA_USER and CITYNODE_STA_PASSWORD "
                   "(basic), or --sta-token-file / --sta-basic-file")
    p.add_argument("--sta-token-file", metavar="FILE", help="a file holding the bearer token")
    p.add_argument("--sta-basic-file", metavar="FILE", help="a file holding USER:PASSWORD for HTTP basic auth")
    p.add_argument("--boards-dir", metavar="DIR", help="board files for each Thing's Sensors (default: built in)")
    p.add_argument("--registry", metavar="FILE", help="device registry: board, label and location of each Thing; "
                   "the nodes' status answers (FPort 3) update its command counters")
    p.add_argument("--errors-topic", metavar="TOPIC", help="where error records and FCnt gaps go")
    p.add_argument("--group", metavar="NAME", help="shared subscription $share/NAME/TOPIC: bridges split the load")
    p.add_argument("--client-id", metavar="ID",
                   help="MQTT client id (its sessions are ID-0..ID-7 and ID-out); a restarted bridge with the same "
                        "id resumes them and gets what it had not acknowledged (default: citynode-bridge-HOST)")
    p.add_argument("--session-expiry", type=int, default=86400, metavar="S",
                   help="seconds the broker keeps the sessions (and their messages) while the bridge is away")
    p.add_argument("--state", metavar="FILE",
                   help="what was delivered, for dropping redeliveries across restarts and counting FCnt gaps "
                        "(default: ~/.local/state/citynode/bridge-ID.sqlite; bridges on one host may share it)")
    p.add_argument("--gap-grace", type=float, default=300, metavar="S",
                   help="report a gap in a device's FCnt once it is this old (late uplinks fill it first)")
    p.add_argument("--min-delay", type=float, default=1.0, metavar="S", help="first reconnect/retry delay")
    p.add_argument("--max-delay", type=float, default=60.0, metavar="S", help="longest reconnect/retry delay")
    p.add_argument("-q", "--quiet", action="store_true", help="log errors only")


def state_path(arg: str | None, client_id: str) -> Path:
    if arg:
        return Path(arg)
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "citynode" / f"bridge-{client_id}.sqlite"


def cmd_bridge(args) -> int:
    host, port = parse_broker(args.broker)
    output = None
    if args.publish == "sta":
        if not args.sta_url:
            raise UsageError("--publish sta needs --sta-url URL")
        from citynode.bridge.sta import StaOutput, credentials

        output = StaOutput(args.sta_url, credentials(os.environ, args.sta_token_file, args.sta_basic_file),
                           boards_dir=args.boards_dir, registry=args.registry)
    elif args.sta_url or args.sta_token_file or args.sta_basic_file:
        raise UsageError("--sta-url and its credentials go with --publish sta")
    logging.basicConfig(stream=sys.stderr, level=logging.ERROR if args.quiet else logging.INFO,
                        format="citynode bridge: %(message)s")
    client_id = args.client_id or default_client_id()
    try:
        state = DeliveryState(state_path(args.state, client_id), keep_s=max(7 * 86400, 2 * args.session_expiry))
    except StateError as e:
        raise CitynodeError(str(e)) from None
    bridge = Bridge(host, port, args.input, args.subscribe, None if output else args.publish, output=output,
                    errors_topic=args.errors_topic, group=args.group, client_id=client_id,
                    session_expiry=args.session_expiry, min_delay=args.min_delay, max_delay=args.max_delay,
                    gap_grace=args.gap_grace, state=state, on_status=_status_recorder(args.registry))
    for sig in (signal.SIGTERM, signal.SIGINT):  # both finish the batch in hand: the next run repeats nothing
        signal.signal(sig, lambda *_: bridge.stop())
    if hasattr(signal, "SIGQUIT"):  # an operator's "where is it stuck?": every thread's stack to stderr, running on
        faulthandler.register(signal.SIGQUIT, all_threads=True)
    rc = 0
    try:
        bridge.run()
    except BridgeError as e:
        sys.stderr.write(f"citynode bridge: {e}\n")
        rc = 1
    if output is not None:
        sys.stderr.write(f"citynode bridge: {output.summary()}\n")
    c = bridge.counters
    sys.stderr.write(f"citynode bridge: {c.received} received, {c.published} published, {c.errors} errors, "
                     f"{c.duplicates} duplicates dropped, {c.missing} missing upstream\n")
    return rc


def _status_recorder(path: str | None):
    """on_status for the bridge: each status answer updates the device's command counters in the registry (one
    short write; a device the registry does not know is reported on the errors topic)."""
    if not path:
        return None
    from citynode.device.registry import Registry

    def record(device: str | None, status: dict) -> None:
        with Registry(path, create=False) as reg:
            reg.record_command_status(device or "", status)

    return record
