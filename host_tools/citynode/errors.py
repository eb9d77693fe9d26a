"""Errors the library raises for bad input or a bad environment; the CLI prints them as one line."""


class CitynodeError(Exception):
    """Base of every error meant for a person: its message is complete and names what to fix."""

    exit_code = 1


class InputError(CitynodeError):
    """Bad input given to the library: an argument, an option's value, a file's contents (the CLI exits 2)."""

    exit_code = 2


class UsageError(InputError):
    """Wrong use of the command line; raised by the CLI layer only (library code raises InputError)."""
