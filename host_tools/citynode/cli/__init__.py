"""The `citynode` command line: a thin layer over the library (each command lives in a cmd_* module)."""
from __future__ import annotations

import argparse
import importlib
import sys

from citynode import __version__
from citynode.errors import CitynodeError

# Command modules; each has register(subparsers). Order is the order of `citynode --help`.
MODULES = (
    "citynode.cli.payload",  # channels, encode, decode
    "citynode.cli.simulate",  # simulate
    "citynode.cli.budget",  # budget
    "citynode.cli.flash",  # flash, boards, monitor
    "citynode.cli.provision",  # provision, registry, label
    "citynode.cli.command",  # command
    "citynode.cli.codec",  # codec
    "citynode.cli.bridge",  # bridge
)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors: one line, exit 2
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="citynode", description="Tools for citynode LoRaWAN sensor nodes.",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"citynode {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue  # command not built yet
            raise
        mod.register(sub)
    return p


def add_command(sub, name: str, func, help: str, example: str) -> argparse.ArgumentParser:
    """Add a sub-command whose --help ends with an example."""
    sp = sub.add_parser(name, help=help, description=f"{help}\n\nExample:\n  {example}",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    sp.set_defaults(func=func)
    return sp


def main(argv=None) -> int:
    """Run one command. Errors are one line on stderr (`--debug` shows the traceback): CitynodeError with its
    exit code (2 for usage), anything unexpected with 1 and a plea to report it, Ctrl-C with 130, also while
    the commands are still being loaded."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    command = "citynode"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
        command = f"citynode {args.command}"
        return int(args.func(args) or 0)
    except CitynodeError as e:
        if debug:
            raise
        sys.stderr.write(f"{command}: error: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"{command}: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # noqa: BLE001 - the contract: one line, --debug for the traceback
        if debug:
            raise
        sys.stderr.write(f"{command}: internal error: {type(e).__name__}: {e} (run again with --debug for the "
                         "traceback, and please report it)\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
