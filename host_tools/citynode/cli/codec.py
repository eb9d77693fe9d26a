"""`citynode codec`: writes the JavaScript payload codec (and the device-repository YAML) from the registry."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from citynode.cli import add_command
from citynode.payload.codec import TARGETS, device_repo_yaml, generate
from citynode.errors import CitynodeError

_VECTORS = Path(__file__).resolve().parents[3] / "tests" / "vectors" / "payload.json"


def register(sub) -> None:
    p = add_command(sub, "codec", cmd_codec,
                    "Generate the JavaScript payload codec for The Things Stack or ChirpStack.",
                    "citynode codec --target ttn -o citynode.js --yaml citynode.yaml")
    p.add_argument("--target", choices=TARGETS, required=True,
                   help="ttn: The Things Stack payload formatter (ES5); chirpstack: ChirpStack v4 codec (ES2020)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the codec here (default: stdout)")
    p.add_argument("--yaml", metavar="FILE",
                   help="also write the LoRaWAN device-repository codec YAML (examples from --vectors)")
    p.add_argument("--vectors", metavar="FILE", default=str(_VECTORS),
                   help="payload vectors (JSON) for the YAML examples (default: the repository's shared vectors)")


def cmd_codec(args) -> int:
    try:
        src = generate(args.target)
    except ValueError as e:
        raise CitynodeError(str(e)) from None
    if args.output:
        Path(args.output).write_text(src)
    else:
        sys.stdout.write(src)
    if args.yaml:
        try:
            vectors = json.loads(Path(args.vectors).read_text())
        except (OSError, ValueError) as e:
            raise CitynodeError(f"cannot read vectors {args.vectors}: {e}") from None
        name = Path(args.output).name if args.output else "citynode.js"
        Path(args.yaml).write_text(device_repo_yaml(vectors, name))
    return 0
