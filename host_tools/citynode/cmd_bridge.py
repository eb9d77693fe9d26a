"""`citynode bridge`: decode uplinks from a network server's MQTT integration and publish SenML per device."""
from __future__ import annotations

import logging
import signal
import sys

from .bridge import Bridge, parse_broker
from .cli import add_command


def register(sub) -> None:
    p = add_command(sub, "bridge", cmd_bridge,
                    "Decode uplinks from MQTT (TTS v3 or ChirpStack v4) and publish SenML JSON per device.",
                    "citynode bridge --broker mqtt://localhost:1883 --input ttn "
                    "--subscribe 'v3/city@ttn/devices/+/up' --publish city/senml --group decoders")
    p.add_argument("--broker", required=True, metavar="mqtt://HOST:PORT")
    p.add_argument("--input", choices=("ttn", "chirpstack"), required=True,
                   help="ttn: The Things Stack v3 uplink messages; chirpstack: ChirpStack v4 up events")
    p.add_argument("--subscribe", required=True, metavar="TOPIC", help="topic filter of the uplinks")
    p.add_argument("--publish", required=True, metavar="PREFIX",
                   help="SenML goes to PREFIX/<dev_eui>, error records to PREFIX/_errors")
    p.add_argument("--group", metavar="NAME", help="shared subscription $share/NAME/TOPIC: bridges split the load")
    p.add_argument("--client-id", metavar="ID",
                   help="MQTT client id; give a fixed one so that a restarted bridge resumes its session and "
                        "gets the messages it had not acknowledged (default: host name and process id)")
    p.add_argument("--session-expiry", type=int, default=3600, metavar="S",
                   help="seconds the broker keeps the session (and its messages) while the bridge is away")
    p.add_argument("--min-delay", type=float, default=1.0, metavar="S", help="first reconnect delay")
    p.add_argument("--max-delay", type=float, default=60.0, metavar="S", help="longest reconnect delay")
    p.add_argument("-q", "--quiet", action="store_true", help="log errors only")


def cmd_bridge(args) -> int:
    host, port = parse_broker(args.broker)
    logging.basicConfig(stream=sys.stderr, level=logging.ERROR if args.quiet else logging.INFO,
                        format="citynode bridge: %(message)s")
    bridge = Bridge(host, port, args.input, args.subscribe, args.publish, group=args.group,
                    client_id=args.client_id, session_expiry=args.session_expiry, min_delay=args.min_delay,
                    max_delay=args.max_delay)
    signal.signal(signal.SIGTERM, lambda *_: bridge.stop())
    try:
        bridge.run()
    except KeyboardInterrupt:
        bridge.stop()
    c = bridge.counters
    sys.stderr.write(f"citynode bridge: {c.received} received, {c.published} published, {c.errors} errors\n")
    return 0
