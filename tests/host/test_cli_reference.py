"""docs/cli.md cannot drift from the parser: every command and option is in it, and its generated part is what
`make cli-doc` writes today."""
from __future__ import annotations

import argparse
from pathlib import Path

from citynode.cli.reference import MARK, commands, markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_every_command_and_option_is_in_the_reference():
    text = DOC.read_text()
    missing = []
    for path, _, parser in commands():
        if f"### `{path}`" not in text:
            missing.append(path)
        for a in parser._actions:
            if a.help == argparse.SUPPRESS:  # kept for old scripts, not shown
                continue
            for opt in a.option_strings:
                if opt.startswith("--") and opt not in ("--help", "--debug") and f"`{opt}" not in text \
                        and f", {opt}" not in text:
                    missing.append(f"{path} {opt}")
    assert not missing, f"not in docs/cli.md (run `make cli-doc`): {missing}"
    assert len(list(commands())) >= 19  # channels ... bridge, with the registry's actions


def test_the_generated_part_is_up_to_date():
    text = DOC.read_text()
    assert MARK in text
    assert text.split(MARK, 1)[1] == markdown().split(MARK, 1)[1], "docs/cli.md is stale: run `make cli-doc`"
