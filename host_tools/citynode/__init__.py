"""citynode: host library and CLI for citynode sensor nodes (flash, provision, decode, simulate)."""

__version__ = "0.1.0"
