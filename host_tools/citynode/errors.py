"""Errors the library raises for bad input or a bad environment; the CLI prints them as one line."""


class CitynodeError(Exception):
    """Base of every error meant for a person: its message is complete and names what to fix."""

    exit_code = 1


class UsageError(CitynodeError):
    exit_code = 2
