"""What a flash fails with: one plain line for the technician."""
from __future__ import annotations

from citynode.errors import CitynodeError


class FlashError(CitynodeError):
    pass


class FlashInterrupted(CitynodeError):
    exit_code = 130
